"""Conversion, LiteRT evaluation, the microcontroller runtime, the arena and the C array."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_course import keras
from tinyml_course.datasets import to_model_input
from tinyml_course.deploy import from_c_array, to_c_array
from tinyml_course.micro import (
    NotInt8ModelError,
    arena_allocates,
    estimate_arena,
    measure_arena,
    micro_available,
    run_micro,
)
from tinyml_course.tflite import (
    ConversionError,
    TFLiteModel,
    convert_to_tflite,
    evaluate_tflite,
    measure_latency,
)

needs_micro = pytest.mark.skipif(
    not micro_available(), reason="tflite-micro has wheels for Linux x86_64 only"
)


def test_all_conversions_run_and_shrink(small_model, fashion) -> None:
    rep = to_model_input(fashion.x_train[:100])
    sizes = {
        q: len(convert_to_tflite(small_model, q, representative_data=rep))
        for q in ("float", "float16", "dynamic", "int8")
    }
    assert sizes["float16"] < sizes["float"]
    assert sizes["int8"] < sizes["float16"]
    assert sizes["dynamic"] < sizes["float16"]


def test_int8_model_has_int8_io_and_close_accuracy(
    small_model, small_int8, small_float, fashion
) -> None:
    model = TFLiteModel(small_int8)
    assert model.input.dtype == np.int8 and model.output.dtype == np.int8
    x, y = to_model_input(fashion.x_test[:500]), fashion.y_test[:500]
    keras_acc = float(np.mean(small_model.predict(x, verbose=0).argmax(-1) == y))
    assert evaluate_tflite(small_float, x, y) == pytest.approx(keras_acc, abs=1e-9)
    assert abs(evaluate_tflite(small_int8, x, y) - keras_acc) < 0.03


def test_conversion_errors_are_clear(small_model, fashion) -> None:
    with pytest.raises(ConversionError, match="representative_data"):
        convert_to_tflite(small_model, "int8")
    with pytest.raises(ConversionError, match=r"shape \(10, 32, 32, 3\).*\(N, 28, 28, 1\)"):
        convert_to_tflite(small_model, "int8", representative_data=np.zeros((10, 32, 32, 3)))
    with pytest.raises(ConversionError, match="quantization='int4'"):
        convert_to_tflite(small_model, "int4")
    with pytest.raises(ConversionError, match="not built"):
        convert_to_tflite(keras.Sequential([keras.layers.Dense(3)]), "float")


def test_latency_is_positive(small_int8) -> None:
    latency = measure_latency(small_int8, runs=30, warmup=5)
    assert 0 < latency.p10_ms <= latency.median_ms <= latency.p90_ms


def test_bad_model_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="not a .tflite"):
        TFLiteModel(b"this is not a model at all")


@needs_micro
def test_micro_runtime_matches_reference_kernels(small_int8, fashion) -> None:
    model = TFLiteModel(small_int8)
    x = model.quantize_input(to_model_input(fashion.x_test[:64]))
    micro = run_micro(small_int8, x)
    reference = TFLiteModel(small_int8, reference_kernels=True).invoke_raw(x)
    assert micro.shape == reference.shape == (64, 10)
    # Same integer arithmetic: at most a rare one-step rounding difference.
    assert np.abs(micro.astype(int) - reference.astype(int)).max() <= 1
    assert np.mean(micro != reference) < 0.02
    assert np.mean(micro.argmax(-1) == reference.argmax(-1)) > 0.95


def test_micro_refuses_float_models(small_float) -> None:
    with pytest.raises(NotInt8ModelError, match="convert_to_tflite\\(model, 'int8'"):
        run_micro(small_float, np.zeros((1, 28, 28, 1), np.int8))
    with pytest.raises(NotInt8ModelError):
        measure_arena(small_float)


@needs_micro
def test_measured_arena_is_what_the_runtime_needs(small_int8) -> None:
    arena = measure_arena(small_int8)
    assert arena.measured and arena.bytes > 0
    assert arena_allocates(small_int8, arena.bytes)
    assert not arena_allocates(small_int8, arena.bytes // 2)
    # the lifetime estimate ignores the interpreter's bookkeeping: a lower bound
    assert estimate_arena(small_int8).bytes <= arena.bytes


def test_c_array_round_trips_exactly(small_int8) -> None:
    source = to_c_array(small_int8, "g_model")
    assert "alignas(16) const unsigned char g_model[]" in source
    assert f"const unsigned int g_model_len = {len(small_int8)};" in source
    assert from_c_array(source) == small_int8
    assert from_c_array(to_c_array(bytes(range(256)), "all_bytes")) == bytes(range(256))


def test_c_array_rejects_bad_names_and_lengths() -> None:
    with pytest.raises(ValueError, match="C identifier"):
        to_c_array(b"\x00", "2bad-name")
    with pytest.raises(ValueError, match="power of two"):
        to_c_array(b"\x00", "ok", alignment=3)
    broken = to_c_array(b"\x01\x02\x03", "m").replace("m_len = 3", "m_len = 4")
    with pytest.raises(ValueError, match="length constant"):
        from_c_array(broken)


def test_compress_weights_saves_flash_with_the_same_outputs() -> None:
    """A clustered kernel stored as 4-bit indices: smaller file, identical tflite-micro outputs."""
    from tinyml_course import keras
    from tinyml_course.micro import compress_weights, micro_available, run_micro
    from tinyml_course.tflite import TFLiteModel, convert_to_tflite

    if not micro_available():
        pytest.skip("tflite-micro (Linux x86_64 only) is not installed")
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((128,)), keras.layers.Dense(128), keras.layers.Dense(4)])
    kernel, bias = model.layers[0].get_weights()
    model.layers[0].set_weights(
        [np.linspace(-0.3, 0.3, 16)[rng.integers(0, 16, kernel.shape)], bias]
    )
    x = rng.normal(size=(64, 128)).astype("float32")
    plain = convert_to_tflite(model, "int8", representative_data=x)
    compressed = compress_weights(plain)
    assert len(compressed.tensors) == 1 and "4-bit indices" in compressed.tensors[0]
    assert (
        len(compressed.content) < len(plain) - 128 * 128 // 4
    )  # at least a quarter of the kernel saved
    x_q = TFLiteModel(plain).quantize_input(x)
    np.testing.assert_array_equal(run_micro(compressed.content, x_q), run_micro(plain, x_q))
    with pytest.raises(RuntimeError, match="cluster the model's weights first"):
        compress_weights(plain, index_bits=2)
    with pytest.raises(ValueError, match="index_bits must be an int from 1 to 7"):
        compress_weights(plain, index_bits=8)
