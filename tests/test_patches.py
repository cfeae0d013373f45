"""Patch-based inference: geometry against brute force, tiling, bit-exact int8 stages, and scenes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tinyml_course.patches import (
    SpatialLayer,
    assemble_patches,
    build_patch_based,
    extract_patches,
    halo,
    input_span,
    measure_arenas,
    model_operators,
    output_size,
    patch_input_size,
    plan_patches,
    profile_operators,
    receptive_field,
    rest_model,
    run_patch_based,
    same_padding,
    schedule_peak_bytes,
    split_range,
    stage_layers,
    stage_model,
    total_stride,
)


# --------------------------------------------------------------------------- geometry
def _needed_inputs(layers: list[SpatialLayer], start: int, stop: int, size: int):
    """Brute force: the input positions (and the padded ones) an output range depends on."""
    sizes = [size]
    for layer in layers:
        sizes.append(output_size(sizes[-1], *layer.axis(0), layer.padding))
    needed = set(range(start, stop))
    real, pads = [], []
    for i in range(len(layers) - 1, -1, -1):
        k, s = layers[i].axis(0)
        before = same_padding(sizes[i], k, s)[0] if layers[i].padding == "same" else 0
        positions = {j * s - before + t for j in needed for t in range(k)}
        inside = {p for p in positions if 0 <= p < sizes[i]}
        pads.insert(0, (sum(p < 0 for p in positions), sum(p >= sizes[i] for p in positions)))
        real.insert(0, (min(inside), max(inside) + 1))
        assert inside == set(range(min(inside), max(inside) + 1)), "needed inputs are contiguous"
        needed = inside
    return real, pads


def _random_stage(rng: np.random.Generator) -> list[SpatialLayer]:
    layers = []
    for i in range(int(rng.integers(1, 5))):
        kernel = int(rng.choice([1, 2, 3, 5]))
        stride = (
            int(rng.choice([1, 2])) if kernel > 1 else 1
        )  # a stride above the kernel skips inputs
        padding = str(rng.choice(["same", "valid"]))
        layers.append(SpatialLayer(f"l{i}", kernel, stride, padding, 1, 1))
    return layers


def test_input_span_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    checked = 0
    while checked < 300:
        layers = _random_stage(rng)
        size = int(rng.integers(12, 60))
        try:
            out = size
            for layer in layers:
                out = output_size(out, *layer.axis(0), layer.padding)
        except ValueError:
            continue
        start = int(rng.integers(0, out))
        stop = int(rng.integers(start + 1, out + 1))
        span = input_span(layers, start, stop, size)
        real, pads = _needed_inputs(layers, start, stop, size)
        assert list(span.spans[:-1]) == real, (layers, size, start, stop)
        assert list(span.pads) == pads, (layers, size, start, stop)
        assert span.spans[-1] == (start, stop)
        checked += 1


def test_receptive_field_and_halo_match_an_interior_output() -> None:
    rng = np.random.default_rng(1)
    for _ in range(100):
        layers = _random_stage(rng)
        size = 400
        out = size
        for layer in layers:
            out = output_size(out, *layer.axis(0), layer.padding)
        j = out // 2
        (lo, hi), *_ = input_span(layers, j, j + 1, size).spans
        assert hi - lo == receptive_field(layers)
        (lo, hi), *_ = input_span(layers, j, j + 5, size).spans
        assert hi - lo == patch_input_size(layers, 5) == 5 * total_stride(layers) + halo(layers)


def test_same_padding_follows_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    for size, kernel, stride in itertools.product((7, 8, 15, 16), (1, 2, 3, 5), (1, 2, 3)):
        x = tf.zeros((1, size, 1, 1))
        w = tf.zeros((kernel, 1, 1, 1))
        expected = tf.nn.conv2d(x, w, strides=(stride, 1), padding="SAME").shape[1]
        assert output_size(size, kernel, stride, "same") == expected
        before, after = same_padding(size, kernel, stride)
        assert (size + before + after - kernel) // stride + 1 == expected
        assert after - before in (0, 1)


def test_split_range_covers_every_position_once() -> None:
    for size, n in itertools.product(range(1, 30), range(1, 8)):
        if n > size:
            with pytest.raises(ValueError, match="non-empty parts"):
                split_range(size, n)
            continue
        parts = split_range(size, n)
        assert parts[0][0] == 0 and parts[-1][1] == size and len(parts) == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
        lengths = [b - a for a, b in parts]
        assert max(lengths) - min(lengths) <= 1


def test_plan_tiles_the_output_and_counts_macs() -> None:
    layers = [
        SpatialLayer("stem", 3, 2, "same", 1, 8),
        SpatialLayer("expand", 1, 1, "valid", 8, 32),
        SpatialLayer("dw", 3, 2, "same", 32, 32, depthwise=True),
        SpatialLayer("project", 1, 1, "valid", 32, 8),
    ]
    whole = plan_patches(layers, (40, 36, 1), 1)
    assert whole.macs() == whole.layerwise_macs() and whole.mac_overhead() == 0.0
    for n in (2, 3, 4):
        plan = plan_patches(layers, (40, 36), n)
        covered = np.zeros(plan.output_shape[:2], int)
        for patch in plan.patches:
            covered[patch.output_slice] += 1
        assert (covered == 1).all()
        assert plan.macs() > plan.layerwise_macs()
        assert plan.patch_peak_bytes() < whole.patch_peak_bytes()
    frames = np.arange(2 * 40 * 36, dtype=np.int32).reshape(2, 40, 36, 1)
    plan = plan_patches(layers, (40, 36, 1), 3)
    pieces = extract_patches(frames, plan)
    assert pieces[0].shape == (2, plan.patches[0].rows.sizes[0], plan.patches[0].cols.sizes[0], 1)
    # a stage of one 1x1 "layer" per position: assembling the sub-sampled tiles gives the whole map back
    outputs = [
        np.zeros(
            (
                2,
                p.output_slice[0].stop - p.output_slice[0].start,
                p.output_slice[1].stop - p.output_slice[1].start,
                8,
            )
        )
        + i
        for i, p in enumerate(plan.patches)
    ]
    assembled = assemble_patches(outputs, plan)
    for i, patch in enumerate(plan.patches):
        assert (assembled[(slice(None), *patch.output_slice)] == i).all()


def test_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="padding"):
        SpatialLayer("x", 3, 1, "SAME", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="kernel"):
        SpatialLayer("x", 3.0, 1, "same", 1, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layers is empty"):
        receptive_field([])
    with pytest.raises(ValueError, match="n=9"):
        plan_patches([SpatialLayer("x", 3, 2, "same", 1, 1)], (16, 16), 9)
    with pytest.raises(ValueError, match="channels"):
        plan_patches([SpatialLayer("x", 3, 2, "same", 3, 1)], (16, 16, 1), 2)
    with pytest.raises(ValueError, match="not a non-empty range"):
        input_span([SpatialLayer("x", 3, 1, "same", 1, 1)], 5, 5, 10)
    with pytest.raises(ValueError, match="patch_peak must be >= 0"):
        schedule_peak_bytes(-1, 0, 0)
    assert schedule_peak_bytes(10, 5, 12, frame=3) == 18


# --------------------------------------------------------------------------- the int8 model cut in two
@pytest.fixture(scope="module")
def tiny_int8() -> bytes:
    """A small MobileNet-like int8 model on a non-square, odd-sized input: every padding case."""
    from tinyml_course import keras
    from tinyml_course.models import set_seed
    from tinyml_course.tflite import convert_to_tflite

    layers = keras.layers
    set_seed(0)
    inputs = keras.Input((21, 18, 1))
    h = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu6")(inputs)
    h = layers.Conv2D(12, 1, activation="relu6")(h)
    h = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(
        h
    )  # stride 1: pads both sides
    h = layers.DepthwiseConv2D(5, strides=2, padding="same", activation="relu6")(h)
    h = layers.Conv2D(8, 1)(h)
    skip = h
    h = layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = layers.Add()([h, skip])
    h = layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, layers.Dense(3)(h))
    rng = np.random.default_rng(0)
    data = rng.uniform(-1, 1, (64, 21, 18, 1)).astype(np.float32)
    return convert_to_tflite(model, "int8", representative_data=data)


def _reference_runner(model_content: bytes, x: np.ndarray) -> np.ndarray:
    from tinyml_course.tflite import TFLiteModel

    return TFLiteModel(model_content, reference_kernels=True).invoke_raw(x)


def _frames(model_content: bytes, n: int = 24) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(-128, 128, (n, 21, 18, 1), dtype=np.int8)


def test_stage_reads_the_model(tiny_int8: bytes) -> None:
    ops = model_operators(tiny_int8)
    assert [o.op for o in ops[:5]] == [
        "CONV_2D",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
    ]
    layers = stage_layers(tiny_int8, 5)
    assert [(layer.kernel, layer.stride, layer.padding) for layer in layers] == [
        ((3, 3), (2, 2), "same"),
        ((1, 1), (1, 1), "valid"),
        ((3, 3), (1, 1), "same"),
        ((5, 5), (2, 2), "same"),
        ((1, 1), (1, 1), "valid"),
    ]
    assert layers[2].depthwise and not layers[1].depthwise
    with pytest.raises(ValueError, match="operators"):
        stage_layers(tiny_int8, len(ops))
    with pytest.raises(ValueError, match="ADD"):
        stage_layers(tiny_int8, 7)  # the residual connection's ADD


@pytest.mark.parametrize("n", [2, 3, 4])
def test_patches_are_bit_exact(tiny_int8: bytes, n: int) -> None:
    x = _frames(tiny_int8)
    whole = _reference_runner(tiny_int8, x)
    patched = build_patch_based(tiny_int8, 5, n)
    hows = {
        patch.layer_padding(i, layer)
        for patch in patched.plan.patches
        for i, layer in enumerate(patched.plan.layers)
    }
    assert {"valid", "pad"} <= hows
    outputs, stage = run_patch_based(patched, x, runner=_reference_runner)
    np.testing.assert_array_equal(
        stage, _reference_runner(patched.whole_stage, x).reshape(stage.shape)
    )
    np.testing.assert_array_equal(outputs, whole)
    np.testing.assert_array_equal(_reference_runner(patched.rest, stage), whole)


def test_patches_are_bit_exact_in_tflite_micro(tiny_int8: bytes) -> None:
    from tinyml_course.micro import micro_available, run_micro

    if not micro_available():
        pytest.skip("tflite-micro ships Linux x86_64 wheels only")
    x = _frames(tiny_int8)
    patched = build_patch_based(tiny_int8, 5, 3)
    outputs, _ = run_patch_based(patched, x)
    np.testing.assert_array_equal(outputs, run_micro(tiny_int8, x))
    tiles = measure_arenas(list(patched.patch_models.values()))
    from tinyml_course.micro import measure_arena

    assert tiles[0] == measure_arena(next(iter(patched.patch_models.values()))).bytes
    assert max(tiles) < measure_arena(stage_model(tiny_int8, 5)).bytes


def test_cut_models_keep_quantization_and_shrink(tiny_int8: bytes) -> None:
    from tinyml_course.tflite import TFLiteModel

    rest = rest_model(tiny_int8, 5)
    whole_stage = stage_model(tiny_int8, 5)
    assert TFLiteModel(rest).input.scale == TFLiteModel(whole_stage).output.scale
    assert TFLiteModel(rest).output.scale == TFLiteModel(tiny_int8).output.scale
    assert len(whole_stage) < len(tiny_int8) and len(rest) < len(tiny_int8)
    profile = profile_operators(tiny_int8)
    first = profile[0]
    assert first.macs == 11 * 9 * 6 * 3 * 3 * 1
    assert first.live_bytes == 21 * 18 + 11 * 9 * 6
    assert max(p.live_bytes for p in profile_operators(whole_stage)) == max(
        p.live_bytes for p in profile[:5]
    )
    with pytest.raises(ValueError, match=r"\.tflite"):
        model_operators(b"not a model")
    with pytest.raises(TypeError, match="int8"):
        run_patch_based(build_patch_based(tiny_int8, 5, 2), np.zeros((1, 21, 18, 1), np.float32))


# --------------------------------------------------------------------------- scenes
def test_scenes_are_seeded_and_boxed() -> None:
    from tinyml_course.mask.scenes import face_crops, generate_scenes

    a = generate_scenes(6, seed=3, size=64)
    b = generate_scenes(6, seed=3, size=64)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (6, 64, 64) and a.images.dtype == np.uint8
    assert a.labels.tolist() == [0, 1, 0, 1, 0, 1]
    x, y, w, h = a.boxes.T
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 64).all() and (y + h <= 64).all()
    assert (w == h).all() and (w >= 0.3 * 64 - 1).all()
    assert face_crops(a, size=20).shape == (6, 20, 20)
    with pytest.raises(ValueError, match="face_fraction"):
        generate_scenes(2, face_fraction=(0.5, 0.9))
    with pytest.raises(ValueError, match="n must"):
        generate_scenes(0)
