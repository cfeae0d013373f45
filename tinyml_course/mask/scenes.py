"""Whole camera frames for a frame-level mask classifier: a face, masked or not, anywhere in a scene.

Notebook 06 classifies a face crop that a detector on the laptop found. A product would give the
microcontroller the whole frame. :func:`generate_scenes` makes such frames, seeded: a face from the
course's generator (:func:`tinyml_course.mask.faces.generate_faces`), with its hair and a little of
its own background, blended with a soft elliptical edge into a grayscale background (a plain wall,
a gradient, blurred clutter or a smooth texture), at a random size and position, under random
lighting and sensor noise. The label says whether the face wears a mask; the face box is returned
too, so :func:`face_crops` can cut training crops without a detector.

:func:`load_scenes` caches a set under the results folder, so a notebook generates it once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SOURCE_SIZE = 64  # side of the generated face images the scenes are made from
_CONTEXT = 1.6  # side of the pasted square, in face-box sides (hair, hat and chin included)


@dataclass(frozen=True)
class SceneSet:
    """Generated whole frames.

    Attributes
    ----------
    images : np.ndarray
        uint8 grayscale frames ``(n, size, size)``.
    labels : np.ndarray
        int64 ``(n,)``: 1 = the face wears a mask, 0 = bare face.
    boxes : np.ndarray
        int64 ``(n, 4)``: the face box ``(x, y, w, h)`` in the frame (framed like notebook 06's crops).
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _check_count(name: str, value: object, low: int, high: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or not low <= int(value) <= high
    ):
        raise ValueError(f"{name} must be a whole number in [{low}, {high}]; got {value!r}.")
    return int(value)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A grayscale background: a plain wall, a gradient, blurred clutter or a smooth texture."""
    import cv2

    kind = int(rng.integers(0, 4))
    base = float(rng.uniform(0, 255))
    image = np.full((size, size), base, np.float32)
    if kind == 1:
        ramp = np.linspace(base, float(rng.uniform(0, 255)), size, dtype=np.float32)
        image = np.broadcast_to(
            ramp[None, :] if rng.random() < 0.5 else ramp[:, None], (size, size)
        ).copy()
    elif kind == 2:
        for _ in range(int(rng.integers(3, 10))):
            p1 = rng.integers(-size // 4, size, 2)
            p2 = p1 + rng.integers(size // 8, size // 2, 2)
            cv2.rectangle(
                image,
                (int(p1[0]), int(p1[1])),
                (int(p2[0]), int(p2[1])),
                float(rng.uniform(0, 255)),
                -1,
            )
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 2.0)))
    elif kind == 3:
        small = rng.uniform(0, 255, (5, 5)).astype(np.float32)
        image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) * 0.6 + base * 0.4
    return image


def generate_scenes(
    n: int,
    *,
    seed: int = 0,
    size: int = 96,
    face_fraction: tuple[float, float] = (0.3, 0.55),
) -> SceneSet:
    """Generate ``n`` seeded grayscale frames, each with one face (half of them masked) somewhere in it.

    Parameters
    ----------
    n : int
        Number of frames (1 to 100,000).
    seed : int
        Random seed: the same seed gives the same frames.
    size : int
        Side of the square frames (48 to 512 pixels).
    face_fraction : (float, float)
        The face box's side, as a fraction of the frame's side, is drawn uniformly from this range
        (within (0, 0.62]: the pasted square around the face must fit the frame).

    Returns
    -------
    SceneSet

    Examples
    --------
    >>> scenes = generate_scenes(4, seed=1)
    >>> scenes.images.shape, scenes.labels.tolist()
    ((4, 96, 96), [0, 1, 0, 1])
    """
    import cv2

    from tinyml_course.mask.faces import generate_faces

    n = _check_count("n", n, 1, 100_000)
    size = _check_count("size", size, 48, 512)
    low, high = (float(v) for v in face_fraction)
    if not 0.0 < low <= high <= 1.0 / _CONTEXT:
        raise ValueError(
            f"face_fraction must be (low, high) with 0 < low <= high <= {1 / _CONTEXT:.3f}; got {face_fraction!r}."
        )
    faces = generate_faces(n, seed=seed, size=_SOURCE_SIZE)
    rng = np.random.default_rng([int(seed), 1])
    images = np.empty((n, size, size), np.uint8)
    boxes = np.empty((n, 4), np.int64)
    margin = _SOURCE_SIZE
    for i in range(n):
        gray = cv2.cvtColor(faces.images[i], cv2.COLOR_RGB2GRAY).astype(np.float32)
        fx, fy, fw, _ = (float(v) for v in faces.boxes[i])
        side = _CONTEXT * fw
        x0, y0 = fx + fw / 2 - side / 2, fy + fw / 2 - side / 2
        padded = np.pad(gray, margin, mode="edge")
        sx, sy, span = int(round(x0)), int(round(y0)), int(round(side))
        source = padded[sy + margin : sy + margin + span, sx + margin : sx + margin + span]
        target = int(round(size * rng.uniform(low, high) * _CONTEXT))
        patch = cv2.resize(source, (target, target), interpolation=cv2.INTER_AREA)
        grid = np.linspace(-1.0, 1.0, target, dtype=np.float32)
        alpha = np.clip(
            (1.0 - np.sqrt(grid[None, :] ** 2 / 0.8 + grid[:, None] ** 2)) * 4.0, 0.0, 1.0
        )
        frame = _background(rng, size)
        px, py = (int(v) for v in rng.integers(0, size - target + 1, 2))
        region = frame[py : py + target, px : px + target]
        frame[py : py + target, px : px + target] = region * (1 - alpha) + patch * alpha
        frame = frame * rng.uniform(0.7, 1.2) + rng.normal(0.0, rng.uniform(1.0, 6.0), frame.shape)
        images[i] = np.clip(frame, 0, 255).astype(np.uint8)
        scale = target / span
        face = fw * scale
        boxes[i] = (
            round(px + (fx - sx) * scale),
            round(py + (fy - sy) * scale),
            round(face),
            round(face),
        )
    return SceneSet(images, faces.labels.astype(np.int64), boxes)


def face_crops(
    scenes: SceneSet,
    *,
    size: int = 40,
    seed: int = 0,
    scale: tuple[float, float] = (0.75, 1.1),
    shift: float = 0.1,
) -> np.ndarray:
    """Square crops around each frame's face box, jittered in size and position, resized to ``size``.

    Cheap training inputs for the first layers of a fully convolutional network: they hold the
    part of the frame the label is about, at about the scale it has in the frame.

    Returns
    -------
    np.ndarray
        uint8 ``(n, size, size)``.
    """
    import cv2

    if not isinstance(scenes, SceneSet):
        raise TypeError(
            f"scenes must be a SceneSet (from generate_scenes); got {type(scenes).__name__}."
        )
    size = _check_count("size", size, 8, 512)
    rng = np.random.default_rng([int(seed), 2])
    frame = scenes.images.shape[1]
    out = np.empty((len(scenes), size, size), np.uint8)
    for i, (image, (x, y, w, _)) in enumerate(zip(scenes.images, scenes.boxes, strict=True)):
        side = w * rng.uniform(*scale)
        cx = x + w / 2 + rng.uniform(-shift, shift) * w
        cy = y + w / 2 + rng.uniform(-shift, shift) * w
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(frame, cx + side / 2)), int(min(frame, cy + side / 2))
        out[i] = cv2.resize(image[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
    return out


def load_scenes(n: int, *, seed: int = 0, size: int = 96) -> SceneSet:
    """:func:`generate_scenes` with the default face sizes, cached under the results folder."""
    from tinyml_course.paths import output_path

    n = _check_count("n", n, 1, 100_000)
    size = _check_count("size", size, 48, 512)
    path = output_path("patches", f"scenes_v1_{n}_{seed}_{size}.npz")
    if path.is_file():
        try:
            with np.load(path) as data:
                return SceneSet(data["images"], data["labels"], data["boxes"])
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)
    scenes = generate_scenes(n, seed=seed, size=size)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, images=scenes.images, labels=scenes.labels, boxes=scenes.boxes)
    tmp.replace(path)
    return scenes
