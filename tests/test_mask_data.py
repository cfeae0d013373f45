"""Mask-demo data: the procedural face generator, the real faces, and a user's folder."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml_course  # noqa: F401
from tinyml_course.mask.faces import MASK_KINDS, generate_faces
from tinyml_course.mask.folder import (
    FolderLayoutError,
    load_mask_folder,
    read_image,
    report_skipped,
)


def test_generator_shapes_labels_and_boxes() -> None:
    faces = generate_faces(200, seed=3, size=64)
    assert faces.images.shape == (200, 64, 64, 3) and faces.images.dtype == np.uint8
    assert set(np.unique(faces.labels)) == {0, 1} and faces.labels.sum() == 100
    assert faces.boxes.shape == (200, 4)
    x, y, w, h = faces.boxes.T
    assert (w > 10).all() and (w == h).all()
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 64).all() and (y + h <= 64).all()
    assert set(faces.mask_kinds[faces.labels == 1]) == set(MASK_KINDS)
    assert set(faces.mask_kinds[faces.labels == 0]) == {"none"}


def test_generator_is_seeded() -> None:
    a, b, c = generate_faces(6, seed=1), generate_faces(6, seed=1), generate_faces(6, seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.images, c.images)


def test_generated_faces_are_varied() -> None:
    faces = generate_faces(100, seed=0)
    inside = [
        img[y : y + h, x : x + w].reshape(-1, 3).mean(0)
        for img, (x, y, w, h) in zip(faces.images, faces.boxes, strict=True)
    ]
    brightness = np.array(inside).mean(1)
    assert brightness.max() - brightness.min() > 80  # dark and light skin, lighting
    assert np.std(faces.boxes[:, 2]) > 2  # face sizes vary


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_each_mask_kind_covers_nose_and_mouth_only(kind) -> None:
    """Drawn on a blank face, every mask covers the mouth and nose tip but leaves the eyes."""
    from tinyml_course.mask.faces import _draw_mask

    s = 100.0
    g = {"cx": 100.0, "cy": 140.0 - 60.0, "a": 40.0, "b": 60.0, "s": s, "eye_y": 78.0}
    for seed in range(5):
        canvas = np.full((200, 200, 3), 128.0, np.float32)
        _draw_mask(canvas, np.random.default_rng(seed), g, kind)
        changed = np.any(canvas != 128.0, axis=2)
        assert changed[105:130, 85:115].mean() > 0.9  # mouth and chin
        assert changed[95, 100]  # the nose tip
        assert not changed[:70].any()  # nothing above the eyes
        assert (
            not changed[:, :45].any() and not changed[:, 155:].any()
        )  # nothing far beside the face


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"n": 0}, "n must"),
        ({"n": 3, "size": 8}, "size"),
        ({"n": 3, "mask_fraction": 2.0}, "mask_fraction"),
    ],
)
def test_generator_validates(kwargs, words) -> None:
    with pytest.raises(ValueError, match=words):
        generate_faces(**kwargs)


@pytest.fixture(scope="module")
def real():
    from tinyml_course.mask.real_faces import load_real_faces

    return load_real_faces()


def test_real_faces_bare_and_masked(real) -> None:
    assert (
        real.images.shape[0] == 200 and real.images.dtype == np.uint8 and real.images.shape[3] == 3
    )
    np.testing.assert_array_equal(real.labels, np.repeat([0, 1], 100))
    np.testing.assert_array_equal(real.person[:100], real.person[100:])
    assert set(real.mask_kinds[100:]) <= set(MASK_KINDS)
    assert set(real.mask_placement[100:]) <= {"eyes", "average"}


def test_real_masks_are_drawn_over_nose_and_mouth(real) -> None:
    """A masked real face differs from its bare twin below the eyes, not above them."""
    changed_low, changed_high = [], []
    for i in range(100):
        x, y, w, h = real.boxes[i]
        diff = np.abs(real.images[i + 100].astype(int) - real.images[i].astype(int)).max(2) > 8
        changed_high.append(diff[y : y + int(0.25 * h), x : x + w].mean())
        changed_low.append(
            diff[y + int(0.7 * h) : y + int(0.9 * h), x + w // 4 : x + 3 * w // 4].mean()
        )
    assert np.median(changed_low) > 0.8
    assert np.median(changed_high) < 0.05


def test_people_split_is_disjoint_and_covers_everyone() -> None:
    from tinyml_course.mask.real_faces import split_people

    train, test = split_people(100, test_fraction=0.5, seed=0)
    assert len(train) == len(test) == 50
    assert not set(train) & set(test) and set(train) | set(test) == set(range(100))
    with pytest.raises(ValueError, match="test_fraction"):
        split_people(10, test_fraction=1.0)


def _write(path, image) -> None:
    import cv2

    assert cv2.imwrite(str(path), image)


def test_folder_loader_reads_formats_and_skips_bad_files(tmp_path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "with_mask").mkdir()
    (tmp_path / "Without_Mask").mkdir()  # names are case-insensitive
    _write(tmp_path / "with_mask" / "a.jpg", rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    _write(
        tmp_path / "with_mask" / "b.png", rng.integers(0, 256, (33, 21), dtype=np.uint8)
    )  # grayscale
    _write(
        tmp_path / "with_mask" / "c.png", rng.integers(0, 256, (20, 20, 4), dtype=np.uint8)
    )  # RGBA
    (tmp_path / "with_mask" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "with_mask" / "notes.txt").write_text("hello")
    _write(tmp_path / "Without_Mask" / "d.bmp", rng.integers(0, 256, (100, 80, 3), dtype=np.uint8))
    data = load_mask_folder(tmp_path)
    assert len(data) == 4
    assert list(data.labels) == [0, 1, 1, 1]
    assert all(img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 for img in data.images)
    assert data.images[0].shape == (100, 80, 3)
    assert sorted(p.name for p, _ in data.skipped) == ["broken.jpg", "notes.txt"]
    assert "broken.jpg" in report_skipped(data)


def test_read_image_converts_bgr_to_rgb(tmp_path) -> None:
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255  # pure blue in OpenCV's BGR order
    _write(tmp_path / "blue.png", bgr)
    rgb = read_image(tmp_path / "blue.png")
    assert rgb[0, 0].tolist() == [0, 0, 255]
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")


def test_folder_loader_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(FolderLayoutError, match="not a directory"):
        load_mask_folder(tmp_path / "nope")
    (tmp_path / "with_mask").mkdir()
    (tmp_path / "masks_off").mkdir()
    with pytest.raises(FolderLayoutError, match="without_mask"):
        load_mask_folder(tmp_path)
    (tmp_path / "without_mask").mkdir()
    _write(tmp_path / "without_mask" / "x.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(FolderLayoutError, match="no readable image"):
        load_mask_folder(tmp_path)
