"""MAC and parameter counts against hand-derived formulas, peak memory, the profile table, devices."""

from __future__ import annotations

import pytest

from tinyml_course import keras
from tinyml_course.devices import DEVICES, check_fit, get_device
from tinyml_course.profiling import (
    conv2d_macs,
    dense_macs,
    depthwise_macs,
    layer_macs,
    peak_activation_elements,
    pointwise_macs,
    pooling_ops,
    profile_model,
    separable_macs,
)


def _single(layer, input_shape):
    model = keras.Sequential([keras.Input(input_shape), layer])
    return model, model.layers[-1]


def test_spec_separable_example_by_formula() -> None:
    # 8x8 output, 5x5 kernel, 3 -> 256 channels: 5*5*3*256*8*8 and 5*5*3*8*8 + 3*256*8*8
    assert conv2d_macs(5, 3, 256, 8) == 5 * 5 * 3 * 256 * 8 * 8 == 1_228_800
    assert separable_macs(5, 3, 256, 8) == 5 * 5 * 3 * 8 * 8 + 3 * 256 * 8 * 8 == 53_952
    ratio = separable_macs(5, 3, 256, 8) / conv2d_macs(5, 3, 256, 8)
    assert ratio == pytest.approx(1 / 256 + 1 / 25)


def test_spec_separable_example_from_real_keras_layers() -> None:
    # A 12x12 input with a 5x5 valid kernel gives the 8x8 output of the example.
    _, conv = _single(keras.layers.Conv2D(256, 5), (12, 12, 3))
    _, sep = _single(keras.layers.SeparableConv2D(256, 5), (12, 12, 3))
    assert layer_macs(conv) == 1_228_800
    assert layer_macs(sep) == 53_952


@pytest.mark.parametrize(
    ("input_shape", "filters", "kernel", "strides", "padding", "out_hw"),
    [
        ((28, 28, 1), 16, 3, 1, "valid", (26, 26)),
        ((32, 32, 3), 8, 5, 1, "same", (32, 32)),
        ((15, 15, 4), 6, (3, 1), 2, "valid", (7, 8)),
    ],
)
def test_conv2d_macs_and_params(input_shape, filters, kernel, strides, padding, out_hw) -> None:
    _, layer = _single(
        keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding), input_shape
    )
    kh, kw = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    c = input_shape[-1]
    assert layer.output_shape[1:3] == out_hw
    assert layer_macs(layer) == kh * kw * c * filters * out_hw[0] * out_hw[1]
    assert layer.count_params() == kh * kw * c * filters + filters


@pytest.mark.parametrize(
    ("input_shape", "kernel", "multiplier"), [((10, 10, 8), 3, 1), ((9, 9, 3), 5, 2)]
)
def test_depthwise_macs(input_shape, kernel, multiplier) -> None:
    _, layer = _single(
        keras.layers.DepthwiseConv2D(kernel, depth_multiplier=multiplier), input_shape
    )
    ho = input_shape[0] - kernel + 1
    assert layer_macs(layer) == kernel * kernel * input_shape[-1] * multiplier * ho * ho
    assert layer_macs(layer) == depthwise_macs(kernel, input_shape[-1], ho, multiplier)


def test_separable_and_pointwise_macs() -> None:
    _, layer = _single(keras.layers.SeparableConv2D(32, 3, padding="same"), (14, 14, 16))
    assert layer_macs(layer) == 3 * 3 * 16 * 14 * 14 + 16 * 32 * 14 * 14
    _, point = _single(keras.layers.Conv2D(32, 1), (14, 14, 16))
    assert layer_macs(point) == pointwise_macs(16, 32, 14)


def test_dense_and_pooling_macs() -> None:
    _, dense = _single(keras.layers.Dense(10), (800,))
    assert layer_macs(dense) == dense_macs(800, 10) == 8000
    _, pool = _single(keras.layers.MaxPooling2D(2), (26, 26, 16))
    # pooling multiplies nothing: its comparisons are counted apart, not as MACs
    assert layer_macs(pool) == 0
    assert pooling_ops(pool) == 2 * 2 * 16 * 13 * 13
    _, gap = _single(keras.layers.GlobalAveragePooling2D(), (7, 7, 32))
    assert layer_macs(gap) == 0
    assert pooling_ops(gap) == 7 * 7 * 32
    _, flat = _single(keras.layers.Flatten(), (5, 5, 32))
    assert layer_macs(flat) == 0 == pooling_ops(flat)
    assert pooling_ops(dense) == 0


def test_peak_activation_of_a_chain_is_the_largest_input_plus_output() -> None:
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(8, 3),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10),
        ]
    )
    peak, live = peak_activation_elements(model)
    steps = [28 * 28 + 26 * 26 * 8, 26 * 26 * 8 + 13 * 13 * 8, 13 * 13 * 8 * 2, 13 * 13 * 8 + 10]
    assert live == steps
    assert peak == max(steps)


def test_peak_activation_keeps_skip_connections_alive() -> None:
    inputs = keras.Input((8, 8, 4))
    a = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    b = keras.layers.Conv2D(4, 3, padding="same")(a)
    out = keras.layers.Add()([inputs, b])
    model = keras.Model(inputs, out)
    _, live = peak_activation_elements(model)
    n = 8 * 8 * 4
    # while conv b runs, the model input is still needed by the Add: three tensors live
    assert live == [2 * n, 3 * n, 3 * n]


def test_profile_totals_and_table(small_model) -> None:
    profile = profile_model(small_model)
    assert profile.params == small_model.count_params()
    assert profile.macs == sum(layer_macs(layer) for layer in small_model.layers)
    assert profile.float32_bytes == 4 * profile.params
    assert profile.int8_bytes == profile.params
    assert profile.peak_activation_bytes("int8") * 4 == profile.peak_activation_bytes("float32")
    text = str(profile)
    assert "conv1" in text and f"{profile.macs:,}" in text
    with pytest.raises(ValueError, match="precision"):
        profile.weight_bytes("int4")


def test_profile_with_tflite_measures_latency(small_model, small_int8) -> None:
    profile = profile_model(small_model, tflite_model=small_int8, latency_runs=20)
    assert profile.tflite_bytes == len(small_int8)
    assert profile.latency_ms is not None and profile.latency_ms > 0


def test_unbuilt_model_gets_a_clear_error() -> None:
    model = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        profile_model(model)


def test_device_catalogue_and_fit_margins() -> None:
    assert {
        "ESP32-WROOM-32",
        "Arduino Nano 33 BLE Sense",
        "STM32F746 Discovery",
        "Arduino Uno",
    } <= set(DEVICES)
    esp32 = get_device("esp32")
    assert esp32.ram_bytes == 320 * 1024 and esp32.flash_bytes == 4 * 1024 * 1024
    report = check_fit(60_000, 16_000, "ESP32")
    assert (
        report.fits
        and report.flash_margin == esp32.flash_bytes - 60_000
        and report.ram_margin == esp32.usable_ram_bytes - 16_000
    )
    # The ESP32's static DRAM ceiling (ESP-IDF: 160 KB of the 320 KB), kept beside the raw figure.
    assert (
        esp32.usable_ram_bytes == 160 * 1024 < esp32.ram_bytes
        and "ESP-IDF" in esp32.usable_ram_source
    )
    between = check_fit(60_000, 200 * 1024, "ESP32")
    assert not between.fits and "usable (327,680 B in all)" in str(between)
    assert get_device("STM32").usable_ram_bytes == get_device("STM32").ram_bytes
    uno = check_fit(60_000, 16_000, "Uno")
    assert not uno.fits and uno.ram_margin < 0 and "does NOT fit" in str(uno)
    with pytest.raises(KeyError, match="known devices"):
        get_device("Commodore 64")
    with pytest.raises(ValueError, match="flash_bytes"):
        check_fit(-1, 0, "ESP32")


def test_layer_subclasses_cost_what_their_base_costs() -> None:
    class MyConv(keras.layers.Conv2D):
        pass

    class MySeparable(keras.layers.SeparableConv2D):
        pass

    _, conv = _single(MyConv(256, 5), (12, 12, 3))
    _, sep = _single(MySeparable(256, 5), (12, 12, 3))
    assert layer_macs(conv) == 1_228_800
    assert layer_macs(sep) == 53_952


def test_unknown_layers_with_weights_are_refused_not_counted_zero() -> None:
    _, transposed = _single(keras.layers.Conv2DTranspose(4, 3), (8, 8, 2))
    with pytest.raises(ValueError, match="Conv2DTranspose.*has weights"):
        layer_macs(transposed)
    model = keras.Sequential(
        [keras.Input((8, 8, 2)), keras.layers.LayerNormalization(), keras.layers.Flatten()]
    )
    with pytest.raises(ValueError, match="LayerNormalization"):
        profile_model(model)
    _, norm = _single(keras.layers.BatchNormalization(), (8, 8, 2))
    assert layer_macs(norm) == 0  # folds into the convolution before it
