"""The mask classifier: architecture, data plumbing, int8 conversion and the cached default model."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml_course  # noqa: F401
from tinyml_course.mask import model as mm
from tinyml_course.mask.preprocess import preprocess_face, quantize_frame


def _expected_params(size: int, width: int) -> int:
    conv1 = 9 * width + width
    conv2 = 9 * width * 2 * width + 2 * width
    dense = (size // 4) ** 2 * 2 * width + 1
    return conv1 + conv2 + dense


@pytest.mark.parametrize("size", [8, 10, 16, 24])
def test_mask_model_shape_and_parameters(size) -> None:
    model = mm.build_mask_model(size)
    assert tuple(model.input_shape) == (None, size, size, 1)
    assert tuple(model.output_shape) == (None, 1)
    assert model.count_params() == _expected_params(size, mm.DEFAULT_WIDTH)


def test_original_demo_model_has_its_340_parameters() -> None:
    # SeparableConv2D(5, 3) on 10x10x1: 9 depthwise + 5 pointwise + 5 biases; Dense on 8*8*5 + 1.
    assert mm.build_original_model(10).count_params() == 9 + 5 + 5 + 8 * 8 * 5 + 1


def test_sizes_and_validation() -> None:
    assert mm.FAITHFUL_SIZE == 10
    assert 8 <= mm.DEFAULT_SIZE <= 32
    with pytest.raises(ValueError, match="size"):
        mm.build_mask_model(6)
    with pytest.raises(ValueError, match="width"):
        mm.build_mask_model(10, width=0)
    with pytest.raises(ValueError, match="size"):
        mm.default_model(3)


def test_crops_from_boxes_is_preprocess_face_with_the_box() -> None:
    from tinyml_course.mask.faces import generate_faces

    faces = generate_faces(5, seed=4)
    crops = mm.crops_from_boxes(faces.images, faces.boxes, 12)
    for crop, image, box in zip(crops, faces.images, faces.boxes, strict=True):
        np.testing.assert_array_equal(crop, preprocess_face(image, 12, box=tuple(box)).pixels)
    jittered = mm.crops_from_boxes(faces.images, faces.boxes, 12, jitter=0.1, seed=1)
    assert jittered.shape == crops.shape and not np.array_equal(jittered, crops)
    with pytest.raises(ValueError, match="boxes"):
        mm.crops_from_boxes(faces.images, faces.boxes[:3], 12)


def test_inputs_and_flips() -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    x = mm.to_input(pixels)
    assert x.shape == (2, 3, 3, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], pixels / 255.0)
    xf, yf = mm.with_flips(x, np.array([0.0, 1.0]))
    assert len(xf) == 4 and list(yf) == [0, 1, 0, 1]
    np.testing.assert_array_equal(xf[2, :, 0, 0], x[0, :, 2, 0])


def test_training_data_keeps_test_people_out() -> None:
    from types import SimpleNamespace

    images = np.zeros((8, 40, 40, 3), np.uint8)
    images[:, :, :, :] = np.arange(8, dtype=np.uint8)[:, None, None, None] * 30
    real = SimpleNamespace(
        images=images,
        labels=np.array([0, 0, 0, 0, 1, 1, 1, 1]),
        boxes=np.tile([5, 5, 30, 30], (8, 1)),
        person=np.array([0, 1, 2, 3, 0, 1, 2, 3]),
    )
    x, y = mm.training_data(10, n_synthetic=10, real=real, real_people=[1, 3], real_repeats=2)
    assert len(x) == 10 + 2 * 4
    values = set(np.round(x[10:, 5, 5, 0] * 255).astype(int))
    assert values == {30, 90, 150, 210}  # images of people 1 and 3 only


@pytest.fixture(scope="module")
def small_int8():
    """A quickly trained small model (seconds): enough to test the int8 plumbing, not accuracy."""
    x, y, _ = mm.synthetic_data(300, 10, seed=7)
    model = mm.train_mask_model(x, y, epochs=2, verbose=0)
    return model, mm.to_int8_tflite(model, x), x


def test_int8_model_is_full_integer_and_matches_float(small_int8) -> None:
    from tinyml_course.tflite import TFLiteModel

    model, data, x = small_int8
    info = TFLiteModel(data)
    assert info.input.dtype == np.int8 and info.input.shape == (1, 10, 10, 1)
    assert info.output.dtype == np.int8 and info.output.shape == (1, 1)
    pixels = np.round(x[:50, ..., 0] * 255).astype(np.uint8)
    scores = mm.int8_scores(data, pixels)
    floats = model.predict(x[:50], verbose=0)[:, 0]
    assert scores.shape == (50,)
    assert np.abs(scores - floats).max() < 0.05  # int8 within a few quantization steps


def test_int8_scores_quantize_like_the_device(small_int8) -> None:
    from tinyml_course.tflite import TFLiteModel

    _, data, x = small_int8
    model = TFLiteModel(data)
    pixels = np.round(x[:5, ..., 0] * 255).astype(np.uint8)
    q = quantize_frame(pixels, model.input.scale, model.input.zero_point)[..., None]
    raw = model.invoke_raw(q).reshape(-1)
    expected = (raw.astype(np.float32) - model.output.zero_point) * model.output.scale
    np.testing.assert_allclose(mm.int8_scores(data, pixels), expected)


@pytest.mark.slow
def test_default_model_trains_once_then_uses_the_cache(tmp_path, monkeypatch) -> None:
    import os

    from tinyml_course.tflite import TFLiteModel

    monkeypatch.setenv("TINYML_COURSE_RESULTS", str(tmp_path))
    data = mm.default_model(10, verbose=0)
    path = mm.default_model_path(10)
    assert path.is_file() and path.read_bytes() == data and str(path).startswith(str(tmp_path))
    model = TFLiteModel(data)
    assert model.input.shape == (1, 10, 10, 1) and model.input.dtype == np.int8
    assert model.output.shape == (1, 1) and model.output.dtype == np.int8
    stamp = os.stat(path).st_mtime_ns
    assert mm.default_model(10) == data and os.stat(path).st_mtime_ns == stamp
    # It learned: synthetic faces it never saw are classified well above chance.
    x, y, _ = mm.synthetic_data(300, 10, seed=123, jitter=0.0)
    scores = mm.int8_scores(data, np.round(x[..., 0] * 255).astype(np.uint8))
    assert np.mean((scores > 0.5) == y) > 0.85
    recipe = path.with_suffix(".json")
    assert recipe.is_file()
    recipe.write_text(recipe.read_text().replace('"epochs": ', '"epochs": 1'))  # another recipe
    assert not mm._recipe_matches(path, 10)
    path.write_bytes(b"garbage")  # a corrupt or outdated cache is replaced, not returned
    assert TFLiteModel(mm.default_model(10, verbose=0)).input.shape == (1, 10, 10, 1)
