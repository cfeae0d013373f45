"""A realistic test set: the real faces bundled with scikit-image, bare and with masks drawn on.

``skimage.data.lfw_subset()`` ships 100 grayscale faces from Labeled Faces in the Wild
(Huang et al. 2007), cropped and aligned to 25 x 25 pixels, inside the scikit-image wheel:
nothing is downloaded and nothing is copied into the repository. Each face is upscaled and
placed in the middle of a larger frame (so a detector sees some background around it, as
in a webcam frame), and used twice: bare (label 0) and with a mask drawn over nose and
mouth (label 1). The mask is placed from the face's geometry: the eye line and eye distance
found by OpenCV's Haar eye cascade when it finds a plausible pair, else the average
geometry of these aligned crops. Its colour is shaded by the face's own lighting.

Limits, stated honestly: the masks are drawn, not photographed; the subset carries no
identity labels, so "people" are the 100 images (LFW may hold two images of one person).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyml_course.mask.faces import MASK_KINDS, _draw_mask
from tinyml_course.mask.preprocess import EYES_BOX_PER_EYE_DISTANCE, EYES_TOP_PER_EYE_DISTANCE

N_FACES = 100
CROP = 25  # side of the shipped crops
# Average geometry of the aligned 25 x 25 crops, as fractions of the crop side.
EYE_LINE = 0.34
EYE_DISTANCE = 0.32
EYE_MID_X = 0.42  # the aligned crops sit the face a little left of centre


@dataclass(frozen=True)
class RealFaceSet:
    """Real faces, bare and masked.

    Attributes
    ----------
    images : np.ndarray
        uint8 RGB ``(2 * n, H, W, 3)`` (gray faces; coloured masks): the bare faces first,
        then the same faces masked, in the same order.
    labels : np.ndarray
        int64 ``(2 * n,)``: 0 for the bare half, 1 for the masked half.
    boxes : np.ndarray
        int64 ``(2 * n, 4)``: where the original crop lies in each frame (``x, y, w, h``).
    person : np.ndarray
        int64 ``(2 * n,)``: index of the face (0 to n - 1); a face's bare and masked
        versions share it, so splits by ``person`` keep a face on one side only.
    mask_kinds : np.ndarray
        str: the mask drawn, or ``"none"``.
    mask_placement : np.ndarray
        str: ``"eyes"`` (placed from detected eyes) or ``"average"`` (the crops' average geometry).
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    person: np.ndarray
    mask_kinds: np.ndarray
    mask_placement: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def lfw_faces() -> np.ndarray:
    """The 100 real faces of ``skimage.data.lfw_subset()`` as uint8 ``(100, 25, 25)``."""
    from skimage import data

    images = np.asarray(data.lfw_subset())[:N_FACES]
    if images.dtype != np.uint8:
        images = np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)
    return images


def _frame(
    face: np.ndarray, scale: int, frame: int
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The face upscaled and centred in a ``frame x frame`` picture with a soft background."""
    import cv2

    side = CROP * scale
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    # Background: the face's own border colours, stretched and blurred (no second face in it).
    border = cv2.resize(face[[0, 1, -2, -1]][:, :], (frame, frame), interpolation=cv2.INTER_LINEAR)
    background = cv2.GaussianBlur(border, (0, 0), frame / 8)
    canvas = background.copy()
    offset = (frame - side) // 2
    canvas[offset : offset + side, offset : offset + side] = big
    return canvas, (offset, offset, side, side)


def _eye_geometry(
    gray: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[float, float, float] | None:
    """Eye line, eye distance and midpoint x from a plausible Haar eye pair inside the face box."""
    from tinyml_course.mask.preprocess import _detect_eyes, box_from_eyes

    x, y, w, h = box
    eyes = [
        e
        for e in _detect_eyes(gray)
        if x <= e[0] and e[0] + e[2] <= x + w and y <= e[1] + e[3] / 2 <= y + 0.6 * h
    ]
    found = box_from_eyes(eyes, gray.shape)
    if found is None or found[1] != "haar_eyes":
        return None
    # Recover the pair's geometry from the box: the eye line is the box top + the calibrated offset.
    (bx, by, bw, _), _ = found
    distance = bw / EYES_BOX_PER_EYE_DISTANCE
    line = by + EYES_TOP_PER_EYE_DISTANCE * distance
    mid = bx + bw / 2
    if not (0.22 * w <= distance <= 0.5 * w and abs(mid - (x + w / 2)) < 0.15 * w):
        return None
    return line, distance, mid


def mask_face(
    image: np.ndarray, box: tuple[int, int, int, int], *, seed: int = 0, kind: str | None = None
) -> tuple[np.ndarray, str, str]:
    """Draw a mask on a real face in a frame, placed from its eyes (or the average geometry).

    Parameters
    ----------
    image : np.ndarray
        uint8 grayscale ``(H, W)`` or RGB frame holding the face.
    box : (x, y, w, h)
        The aligned face crop's place in the frame.
    seed : int
        Chooses the mask kind (when not given), colour, shape and pattern.
    kind : str, optional
        One of :data:`~tinyml_course.mask.faces.MASK_KINDS`.

    Returns
    -------
    (image, kind, placement)
        The RGB frame with the mask, the kind drawn, and ``"eyes"`` or ``"average"``.
    """
    import cv2

    from tinyml_course.mask.preprocess import to_gray

    rng = np.random.default_rng(seed)
    if kind is None:
        kind = MASK_KINDS[int(rng.integers(0, len(MASK_KINDS)))]
    if kind not in MASK_KINDS:
        raise ValueError(f"kind={kind!r}; choose one of {MASK_KINDS}.")
    gray = to_gray(image)
    x, y, w, h = (int(v) for v in box)
    geometry = _eye_geometry(cv2.equalizeHist(gray), (x, y, w, h))
    if geometry is None:
        eye_y, distance, mid = y + EYE_LINE * h, EYE_DISTANCE * w, x + EYE_MID_X * w
        placement = "average"
    else:
        eye_y, distance, mid = geometry
        placement = "eyes"
    s = distance * EYES_BOX_PER_EYE_DISTANCE  # the face's side, framed like a Haar face box
    chin = y + h * 0.95
    b = s * 0.6
    geometry_dict = {"cx": mid, "cy": chin - b, "a": s * 0.42, "b": b, "s": s, "eye_y": eye_y}
    rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB).astype(np.float32)
    drawn = rgb.copy()
    _draw_mask(drawn, rng, geometry_dict, kind)
    changed = np.any(np.abs(drawn - rgb) > 0.5, axis=2)
    # Shade the flat mask with the face's own lighting (smoothed luminance), like real cloth.
    light = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), max(1.0, s / 12))
    shading = np.clip(
        0.7 + 0.3 * light / max(float(light[changed].mean()) if changed.any() else 1.0, 1.0),
        0.5,
        1.3,
    )
    out = rgb.copy()
    out[changed] = drawn[changed] * shading[changed][:, None]
    return np.clip(out, 0, 255).astype(np.uint8), kind, placement


def load_real_faces(*, scale: int = 6, frame_fraction: float = 0.6, seed: int = 0) -> RealFaceSet:
    """The 100 real faces, bare and masked, in frames (200 images, labels, boxes, person ids).

    Parameters
    ----------
    scale : int
        Upscaling of the 25 x 25 crops (Haar cascades work from 24 x 24 windows, and the
        eye cascade needs the eyes a few dozen pixels wide; 6 gives 150-pixel faces).
    frame_fraction : float
        The face's share of the frame side (0.6: a face filling the middle of a webcam shot).
    seed : int
        Seeds the masks.

    Examples
    --------
    >>> real = load_real_faces()  # doctest: +SKIP
    >>> real.images.shape, int(real.labels.sum())  # doctest: +SKIP
    ((200, 250, 250, 3), 100)
    """
    import cv2

    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 20:
        raise ValueError(f"scale must be a whole number in [1, 20]; got {scale!r}.")
    if not 0.2 <= float(frame_fraction) <= 1.0:
        raise ValueError(f"frame_fraction must be in [0.2, 1]; got {frame_fraction!r}.")
    faces = lfw_faces()
    frame = int(round(CROP * scale / frame_fraction))
    bare, masked, boxes, kinds, placements = [], [], [], [], []
    for i, face in enumerate(faces):
        canvas, box = _frame(face, int(scale), frame)
        bare.append(cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB))
        drawn, kind, placement = mask_face(canvas, box, seed=seed * 1000 + i)
        masked.append(drawn)
        boxes.append(box)
        kinds.append(kind)
        placements.append(placement)
    n = len(faces)
    return RealFaceSet(
        images=np.stack(bare + masked),
        labels=np.repeat(np.array([0, 1], np.int64), n),
        boxes=np.array(boxes + boxes, np.int64),
        person=np.tile(np.arange(n, dtype=np.int64), 2),
        mask_kinds=np.array(["none"] * n + kinds),
        mask_placement=np.array(["none"] * n + placements),
    )


def split_people(
    n: int = N_FACES, *, test_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split the person ids ``0 .. n-1`` into disjoint (train, test) sets, seeded.

    Train on the faces of the first set, test on the second: no face (bare or masked) is on
    both sides.
    """
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    order = np.random.default_rng(seed).permutation(int(n))
    n_test = int(round(n * float(test_fraction)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def detect_all(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run the detector chain of :func:`~tinyml_course.mask.preprocess.find_face` on every image.

    Returns
    -------
    (boxes, detectors)
        int64 ``(n, 4)`` boxes and the str name of the step that found each face.
    """
    from tinyml_course.mask.preprocess import find_face

    found = [find_face(image) for image in images]
    return np.array([b for b, _ in found], np.int64).reshape(-1, 4), np.array([d for _, d in found])
