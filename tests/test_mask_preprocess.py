"""The one preprocessing function of the mask demo: detection chain, crop, resize, quantization."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml_course  # noqa: F401  (configures the environment first)
from tinyml_course.mask import preprocess as pp
from tinyml_course.mask.preprocess import FaceCrop, preprocess_face, quantize_frame


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.fixture(scope="module")
def real():
    from tinyml_course.mask.real_faces import load_real_faces

    return load_real_faces()


def test_blank_image_falls_back_to_the_centre_crop() -> None:
    crop = preprocess_face(np.full((120, 200, 3), 90, np.uint8), 10)
    assert isinstance(crop, FaceCrop)
    assert crop.detector == "centre"
    assert crop.pixels.shape == (10, 10) and crop.pixels.dtype == np.uint8
    x, y, w, h = crop.box
    assert w == h == round(pp.CENTRE_FRACTION * 120)
    assert abs((x + w / 2) - 100) <= 1 and abs((y + h / 2) - 60) <= 1


def test_given_box_is_cropped_grayscaled_and_resized_exactly() -> None:
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)
    crop = preprocess_face(image, 16, box=(10, 5, 40, 40))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[5:45, 10:50]
    expected = cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA)
    assert crop.detector == "given" and crop.box == (10, 5, 40, 40)
    np.testing.assert_array_equal(crop.pixels, expected)


def test_gray_rgb_and_rgba_inputs_agree() -> None:
    gray = np.random.default_rng(1).integers(0, 256, (50, 50), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((50, 50, 1), 255, np.uint8)], axis=2)
    box = (5, 5, 30, 30)
    a = preprocess_face(gray, 10, box=box).pixels
    np.testing.assert_array_equal(a, preprocess_face(rgb, 10, box=box).pixels)
    np.testing.assert_array_equal(a, preprocess_face(rgba, 10, box=box).pixels)
    np.testing.assert_array_equal(a, preprocess_face(gray[..., None], 10, box=box).pixels)


def test_box_partly_outside_is_clipped() -> None:
    crop = preprocess_face(np.zeros((40, 40), np.uint8), 8, box=(-10, 30, 30, 30))
    assert crop.box == (0, 30, 20, 10)


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"image": np.zeros((20, 20), np.float32)}, TypeError, "uint8"),
        ({"image": np.zeros((20, 20, 2), np.uint8)}, ValueError, "shape"),
        ({"image": np.zeros((20, 20), np.uint8), "size": 2}, ValueError, "size"),
        ({"image": np.zeros((20, 20), np.uint8), "box": (50, 50, 5, 5)}, ValueError, "outside"),
        ({"image": np.zeros((20, 20), np.uint8), "box": (0, 0, 0, 5)}, ValueError, "w, h > 0"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, error, words) -> None:
    with pytest.raises(error, match=words):
        preprocess_face(**kwargs)


def test_quantize_frame_matches_the_affine_formula() -> None:
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    for scale, zero_point in [(1 / 255, -128), (0.0042, -100), (0.01, 5)]:
        q = quantize_frame(pixels, scale, zero_point)
        assert q.dtype == np.int8 and q.shape == pixels.shape
        expected = np.clip(
            np.round(pixels.astype(np.float64) / 255.0 / scale) + zero_point, -128, 127
        )
        # float32 (device) vs float64 arithmetic may differ only on exact .5 ties
        assert np.abs(q.astype(int) - expected.astype(int)).max() <= 1
        assert np.mean(q.astype(int) == expected.astype(int)) > 0.97
    full = quantize_frame(np.array([0, 255], np.uint8), 1 / 255, -128)
    np.testing.assert_array_equal(full, [-128, 127])
    clipped = quantize_frame(np.array([255], np.uint8), 0.001, 0)
    assert clipped[0] == 127


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((np.zeros(4, np.float32), 0.1, 0), TypeError),
        ((np.zeros(4, np.uint8), 0.0, 0), ValueError),
        ((np.zeros(4, np.uint8), 0.1, 200), ValueError),
        ((np.zeros(4, np.uint8), 0.1, 0.5), ValueError),
    ],
)
def test_quantize_frame_validates(args, error) -> None:
    with pytest.raises(error):
        quantize_frame(*args)


def test_box_from_a_pair_of_eyes_follows_the_calibrated_geometry() -> None:
    # Two 20-pixel eyes 26 pixels apart, centred at (100, 80): a level face in the middle.
    eyes = [(77, 70, 20, 20), (103, 70, 20, 20)]
    (x, y, w, h), detector = pp.box_from_eyes(eyes, (200, 200))
    assert detector == "haar_eyes"
    assert w == pytest.approx(pp.EYES_BOX_PER_EYE_DISTANCE * 26)
    assert x + w / 2 == pytest.approx(100)
    assert 80 - y == pytest.approx(pp.EYES_TOP_PER_EYE_DISTANCE * 26)


def test_one_eye_puts_the_face_towards_the_image_centre() -> None:
    (lx, _, lw, _), detector = pp.box_from_eyes([(50, 70, 20, 20)], (200, 200))
    assert detector == "haar_eye" and lx + lw / 2 > 60
    (rx, _, rw, _), _ = pp.box_from_eyes([(130, 70, 20, 20)], (200, 200))
    assert rx + rw / 2 < 140


def test_tiny_eyes_are_not_taken_for_the_face() -> None:
    assert pp.box_from_eyes([(10, 10, 3, 3)], (400, 400)) is None
    assert pp.box_from_eyes([], (100, 100)) is None


def test_haar_finds_bare_real_faces(real) -> None:
    bare = [i for i in range(len(real)) if real.labels[i] == 0][:20]
    found = [preprocess_face(real.images[i], 10) for i in bare]
    hits = [c for c in found if c.detector == "haar_face"]
    assert len(hits) >= 17
    # ... and frames them where the face is.
    assert np.median([_iou(c.box, real.boxes[i]) for c, i in zip(found, bare, strict=True)]) > 0.7


def test_eye_fallback_boxes_agree_with_the_haar_face_box(real) -> None:
    """The calibration check: on bare faces, the box from both eyes matches Haar's face box."""
    import cv2

    ious = []
    for i in np.flatnonzero(real.labels == 0)[:40]:
        gray = cv2.equalizeHist(pp.to_gray(real.images[i]))
        face = pp._detect_face(gray)
        found = pp.box_from_eyes(pp._detect_eyes(gray), gray.shape)
        if face is not None and found is not None and found[1] == "haar_eyes":
            ious.append(_iou(face, pp._clip_box(found[0], gray.shape)))
    assert len(ious) >= 10
    assert np.median(ious) > 0.6


def test_masked_faces_are_found_by_some_step(real) -> None:
    masked = np.flatnonzero(real.labels == 1)[:30]
    crops = [preprocess_face(real.images[i], 10) for i in masked]
    detectors = {c.detector for c in crops}
    assert detectors <= set(pp.DETECTORS)
    found = [c for c in crops if c.detector != "centre"]
    assert len(found) >= 20
    assert np.median([_iou(c.box, real.boxes[i]) for c, i in zip(crops, masked, strict=True)]) > 0.5
