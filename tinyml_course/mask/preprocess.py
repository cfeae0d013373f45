"""The one preprocessing function of the mask demo: find the face, crop, grayscale, resize.

Training, evaluation, the host tool (``tinyml-course mask classify`` / ``stream``) and the
ESP32 sketch all see a face the same way:

1. **Detect** the face with OpenCV's Haar cascades (Viola and Jones 2001). The frontal-face
   cascade often misses a *masked* face (it looks for a nose and a mouth), so when it
   finds nothing we fall back to the eyes, which a mask leaves visible: a face box from
   both eyes' geometry, then from one eye, and finally a centre crop.
2. **Crop** that box, convert to **grayscale** and **resize** to ``size x size`` pixels.
3. **Quantize** for the int8 model: its float input is ``pixels / 255``, so the int8 input
   is ``clip(round(pixels / 255 / scale) + zero_point, -128, 127)`` with the model's own
   input scale and zero point (:func:`quantize_frame`). The sketch uses the same formula
   with constants generated from the model, so host and device cannot disagree.

The eye-fallback constants below frame a face the way the Haar face cascade frames it
(the eyes at about 38% of the box height, about 0.35 box sides apart); they were
calibrated on the bare real faces of :mod:`tinyml_course.mask.real_faces`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

DETECTORS = ("given", "haar_face", "haar_eyes", "haar_eye", "centre")

# Face box from the eyes, framed like the Haar face cascade frames a face. Calibrated on the
# bare real faces where Haar finds the face and the eyes (medians; notebook 06 shows the
# check): the box side is 2.83 eye distances, the eye line 1.08 eye distances below its top
# (38% of the side), centred between the eyes. A Haar eye box is about 0.76 eye distances
# wide; with one eye, the side is 3.65 eye-box widths and the eye sits 18% of the side beside
# the face's centre line.
EYES_BOX_PER_EYE_DISTANCE = 2.83
EYES_TOP_PER_EYE_DISTANCE = 1.08
EYE_SIZE_PER_EYE_DISTANCE = 0.76
ONE_EYE_BOX_PER_EYE_WIDTH = 3.65
ONE_EYE_CENTRE_OFFSET = 0.18
ONE_EYE_TOP = 0.38
CENTRE_FRACTION = 0.6  # centre crop: a square of this fraction of the shorter side
MIN_FACE_FRACTION = 0.2  # the demo's subject: a face at least this share of the shorter side


@dataclass(frozen=True)
class FaceCrop:
    """A preprocessed face.

    Attributes
    ----------
    pixels : np.ndarray
        uint8 grayscale, shape ``(size, size)``.
    detector : str
        Which step found the face: ``"given"`` (box passed in), ``"haar_face"``,
        ``"haar_eyes"`` (box from both eyes), ``"haar_eye"`` (from one eye) or ``"centre"``.
    box : tuple of int
        ``(x, y, w, h)`` of the crop in the original image.
    """

    pixels: np.ndarray
    detector: str
    box: tuple[int, int, int, int]


@functools.cache
def _cascade(name: str) -> Any:
    import cv2

    path = cv2.data.haarcascades + name
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise RuntimeError(
            f"OpenCV could not load the Haar cascade {path}. Install opencv-python-headless "
            "below version 5 (version 5 ships no Haar cascades)."
        )
    return classifier


def to_gray(image: np.ndarray) -> np.ndarray:
    """An RGB, RGBA or grayscale uint8 image as a 2-D uint8 grayscale image.

    Raises
    ------
    TypeError
        If ``image`` is not a uint8 array.
    ValueError
        If its shape is not ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``.
    """
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(
            f"image must be a uint8 array (0-255); got dtype {image.dtype}. "
            "Convert it with (image * 255).round().astype(np.uint8) if it holds floats in [0, 1]."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        gray = image
    elif image.ndim == 3 and image.shape[2] == 3:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    elif image.ndim == 3 and image.shape[2] == 4:
        gray = cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
    else:
        raise ValueError(
            f"image must have shape (H, W), (H, W, 3) RGB or (H, W, 4) RGBA; got {image.shape}."
        )
    if min(gray.shape) < 2:
        raise ValueError(f"image is too small to hold a face; got shape {image.shape}.")
    return np.ascontiguousarray(gray)


def _clip_box(
    box: tuple[float, float, float, float], shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A square-ish box moved (and if needed shrunk) to lie inside the image."""
    height, width = shape
    x, y, w, h = (float(v) for v in box)
    w, h = min(max(w, 1.0), width), min(max(h, 1.0), height)
    x = min(max(x, 0.0), width - w)
    y = min(max(y, 0.0), height - h)
    return int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h)))


def _detect_face(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    smallest = max(20, int(MIN_FACE_FRACTION * min(gray.shape)))
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest)
    )
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces, key=lambda b: int(b[2]) * int(b[3]))
    return int(x), int(y), int(w), int(h)


def _detect_eyes(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    smallest = max(8, min(gray.shape) // 20)
    eyes = _cascade("haarcascade_eye.xml").detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=4, minSize=(smallest, smallest)
    )
    return [tuple(int(v) for v in e) for e in eyes]  # type: ignore[misc]


def box_from_eyes(
    eyes: list[tuple[int, int, int, int]], shape: tuple[int, int]
) -> tuple[tuple[float, float, float, float], str] | None:
    """A face box from detected eye boxes: from a plausible pair, else from the biggest eye.

    Parameters
    ----------
    eyes : list of (x, y, w, h)
        Eye boxes (from the Haar eye cascade).
    shape : (height, width)
        The image's shape, used to decide on which side of one lone eye the face lies.

    Returns
    -------
    ((x, y, w, h), detector) or None
        The face box (floats, not yet clipped to the image) and ``"haar_eyes"`` or
        ``"haar_eye"``; None when there are no eyes, or they imply a face smaller than
        :data:`MIN_FACE_FRACTION` of the image's shorter side.
    """
    if not eyes:
        return None
    centres = [(x + w / 2, y + h / 2, (w + h) / 2) for x, y, w, h in eyes]
    best: tuple[float, float, float, float] | None = None
    best_score = -1.0
    for i in range(len(centres)):
        for j in range(i + 1, len(centres)):
            (x1, y1, s1), (x2, y2, s2) = centres[i], centres[j]
            size = (s1 + s2) / 2
            dx, dy = abs(x2 - x1), abs(y2 - y1)
            if (
                max(s1, s2) > 1.7 * min(s1, s2)
                or dy > 0.5 * size
                or not 0.9 * size <= dx <= 2.8 * size
            ):
                continue
            if size > best_score:  # the biggest plausible pair is the nearest face
                best_score = size
                best = ((x1 + x2) / 2, (y1 + y2) / 2, dx, size)
    smallest = MIN_FACE_FRACTION * min(shape)
    if best is not None and EYES_BOX_PER_EYE_DISTANCE * best[2] >= smallest:
        mid_x, mid_y, distance, _ = best
        side = EYES_BOX_PER_EYE_DISTANCE * distance
        top = mid_y - EYES_TOP_PER_EYE_DISTANCE * distance
        return (mid_x - side / 2, top, side, side), "haar_eyes"
    x, y, size = max(centres, key=lambda c: c[2])
    side = ONE_EYE_BOX_PER_EYE_WIDTH * size
    if side < smallest:  # too small to be the eye of the face in front of the camera
        return None
    # A lone eye left of the image centre is more likely the face's left-hand eye in the picture.
    centre_x = (
        x + ONE_EYE_CENTRE_OFFSET * side if x < shape[1] / 2 else x - ONE_EYE_CENTRE_OFFSET * side
    )
    return (centre_x - side / 2, y - ONE_EYE_TOP * side, side, side), "haar_eye"


def centre_box(
    shape: tuple[int, int], fraction: float = CENTRE_FRACTION
) -> tuple[int, int, int, int]:
    """The centred square of ``fraction`` times the shorter side (the last-resort crop)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction}.")
    height, width = shape
    side = max(1, int(round(fraction * min(height, width))))
    return (width - side) // 2, (height - side) // 2, side, side


def find_face(image: np.ndarray) -> tuple[tuple[int, int, int, int], str]:
    """Locate the face: Haar face, else a box from both eyes, else one eye, else the centre.

    Returns
    -------
    (box, detector)
        ``box`` is ``(x, y, w, h)`` inside the image; ``detector`` names the step that found it.
    """
    import cv2

    gray = to_gray(image)
    equalized = cv2.equalizeHist(gray)
    face = _detect_face(equalized)
    if face is not None:
        return face, "haar_face"
    from_eyes = box_from_eyes(_detect_eyes(equalized), gray.shape)
    if from_eyes is not None:
        box, detector = from_eyes
        return _clip_box(box, gray.shape), detector
    return centre_box(gray.shape), "centre"


def _check_size(size: int) -> int:
    if (
        isinstance(size, bool)
        or not isinstance(size, (int, np.integer))
        or not 4 <= int(size) <= 256
    ):
        raise ValueError(
            f"size must be a whole number of pixels between 4 and 256; got {size!r}. The demo uses 10."
        )
    return int(size)


def crop_and_resize(gray: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop ``box`` out of a grayscale image and resize it to ``size x size`` (area averaging)."""
    import cv2

    x, y, w, h = box
    crop = gray[y : y + h, x : x + w]
    interpolation = cv2.INTER_AREA if min(w, h) >= size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interpolation)


def preprocess_face(
    image: np.ndarray, size: int = 10, *, box: tuple[int, int, int, int] | None = None
) -> FaceCrop:
    """Detect, crop, grayscale and resize a face to the model's ``size x size`` input.

    Parameters
    ----------
    image : np.ndarray
        uint8 image of any size: RGB ``(H, W, 3)``, RGBA ``(H, W, 4)`` or grayscale ``(H, W)``.
        (OpenCV's ``cv2.imread`` gives BGR: convert with ``cv2.cvtColor(im, cv2.COLOR_BGR2RGB)``.)
    size : int
        Output side in pixels (10 in the original demo).
    box : (x, y, w, h), optional
        A known face box (the generator's exact crop boxes); skips detection.

    Returns
    -------
    FaceCrop
        ``pixels`` (uint8, ``(size, size)``), the ``detector`` used and the ``box``.

    Raises
    ------
    TypeError, ValueError
        For a non-uint8 image, an unsupported shape, a bad size or a box outside the image.

    Examples
    --------
    >>> crop = preprocess_face(np.zeros((64, 64, 3), np.uint8), 10)
    >>> crop.pixels.shape, crop.detector
    ((10, 10), 'centre')
    """
    size = _check_size(size)
    gray = to_gray(image)
    if box is None:
        found, detector = find_face(image)
    else:
        try:
            values = [int(v) for v in box]
        except (TypeError, ValueError):
            values = []
        if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
            raise ValueError(f"box must be (x, y, w, h) with w, h > 0; got {box!r}.")
        x, y, w, h = values
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, gray.shape[1]), min(y + h, gray.shape[0])
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError(
                f"box={tuple(values)} lies outside the image of shape {gray.shape}; "
                "pass (x, y, w, h) in pixels of this image."
            )
        found, detector = (x0, y0, x1 - x0, y1 - y0), "given"
    return FaceCrop(crop_and_resize(gray, found, size), detector, tuple(int(v) for v in found))  # type: ignore[arg-type]


def quantize_frame(pixels: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Quantize uint8 pixels to the int8 model input: ``clip(round(p / 255 / scale) + zp)``.

    The model's float input is ``pixels / 255.0``; the int8 input follows the affine
    quantization ``q = round(x / scale) + zero_point`` with the model's input ``scale`` and
    ``zero_point`` (``TFLiteModel(model).input.scale`` / ``.zero_point``), clipped to
    ``[-128, 127]``, computed in float32 with ties rounded away from zero: the course's one
    quantizer (:func:`tinyml_course.quantization.quantize`), and the same arithmetic as the
    sketch's ``MaskQuantizePixel`` (``roundf``) and TFLite's QUANTIZE kernel.

    Parameters
    ----------
    pixels : np.ndarray
        uint8 pixels, any shape (a ``(size, size)`` crop, or a batch).
    scale : float
        The model input's quantization scale (> 0).
    zero_point : int
        The model input's zero point, in ``[-128, 127]``.

    Returns
    -------
    np.ndarray
        int8, same shape as ``pixels``.

    Examples
    --------
    >>> quantize_frame(np.array([0, 255], np.uint8), 1 / 255, -128)
    array([-128,  127], dtype=int8)
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(
            f"pixels must be uint8 (0-255); got dtype {pixels.dtype}. Use preprocess_face(...).pixels."
        )
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"scale must be a positive number; got {scale}. Read it from the model's input details."
        )
    if (
        isinstance(zero_point, bool)
        or int(zero_point) != zero_point
        or not -128 <= int(zero_point) <= 127
    ):
        raise ValueError(f"zero_point must be an integer in [-128, 127]; got {zero_point!r}.")
    from tinyml_course.quantization import quantize

    x = pixels.astype(np.float32) / np.float32(255.0)
    return quantize(x, scale, int(zero_point), compute_dtype=np.float32)
