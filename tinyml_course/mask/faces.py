"""A seeded procedural generator of frontal faces with and without masks.

Every face is drawn with OpenCV primitives from random parameters: skin tone, face shape,
eyes, brows, nose, mouth, ears, hair style and colour, hats, glasses, beards, clothes,
background, lighting and a little pose jitter (position, scale, tilt). Half of the faces
wear a mask over nose and mouth: surgical (pleats and ear loops), cloth (plain or printed
patterns), N95 (a rounded cup, sometimes a valve) and black masks, because printed and
black masks were the ones a model trained on plain masks got wrong.

Because the generator knows where it drew the face, it returns the **exact crop box**
of each face (framed the way OpenCV's Haar face cascade frames a real face: eyes at about
38% of the box height, about 0.35 box sides apart), so no detector is needed to build the training set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SKIN_TONES = np.array(
    [  # RGB, from very dark to very light
        (45, 30, 25),
        (70, 45, 32),
        (95, 62, 45),
        (125, 85, 60),
        (150, 105, 75),
        (175, 125, 95),
        (195, 145, 115),
        (215, 170, 140),
        (232, 190, 160),
        (245, 212, 190),
    ],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [
        (15, 12, 10),
        (45, 30, 20),
        (90, 60, 35),
        (150, 110, 60),
        (210, 180, 120),
        (160, 70, 35),
        (170, 170, 170),
        (235, 235, 230),
    ],
    dtype=np.float32,
)
MASK_KINDS = ("surgical", "cloth", "patterned", "n95", "black")


@dataclass(frozen=True)
class FaceSet:
    """Generated faces.

    Attributes
    ----------
    images : np.ndarray
        uint8 RGB, ``(n, size, size, 3)``.
    labels : np.ndarray
        int64 ``(n,)``: 1 = wearing a mask, 0 = bare face.
    boxes : np.ndarray
        int64 ``(n, 4)``: the exact face crop box ``(x, y, w, h)`` of each image.
    mask_kinds : np.ndarray
        str ``(n,)``: the mask drawn (one of :data:`MASK_KINDS`) or ``"none"``.
    """

    images: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    mask_kinds: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def _colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(low, high, 3))  # type: ignore[return-value]


def _jitter(
    rgb: np.ndarray, rng: np.random.Generator, amount: float = 12.0
) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(rgb + rng.normal(0, amount, 3), 0, 255))  # type: ignore[return-value]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    import cv2

    kind = rng.integers(0, 4)
    base = np.array(_colour(rng), np.float32)
    if kind == 0:  # plain wall
        image = np.ones((size, size, 3), np.float32) * base
    elif kind == 1:  # gradient
        other = np.array(_colour(rng), np.float32)
        t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        t = t if rng.random() < 0.5 else t.transpose(1, 0, 2)
        image = np.broadcast_to(base * (1 - t) + other * t, (size, size, 3)).copy()
    elif kind == 2:  # blurred clutter: a room, a bookshelf, a street
        image = np.ones((size, size, 3), np.float32) * base
        for _ in range(int(rng.integers(3, 9))):
            p1 = rng.integers(0, size, 2)
            p2 = p1 + rng.integers(size // 8, size // 2, 2)
            cv2.rectangle(
                image, tuple(int(v) for v in p1), tuple(int(v) for v in p2), _colour(rng), -1
            )
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 2.5)))
    else:  # smooth noise texture
        small = rng.uniform(0, 255, (4, 4, 3)).astype(np.float32)
        image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) * 0.5 + base * 0.5
    return np.clip(image, 0, 255)


def _draw_pattern(
    layer: np.ndarray, rng: np.random.Generator, region: tuple[int, int, int, int], unit: float
) -> None:
    """Print a random pattern (stripes, dots, checks, flowers, camouflage) on a mask layer."""
    import cv2

    x0, y0, x1, y1 = region
    kind = rng.integers(0, 5)
    colours = [_colour(rng) for _ in range(3)]
    step = max(2, int(unit * rng.uniform(0.12, 0.3)))
    if kind == 0:  # stripes
        horizontal = rng.random() < 0.5
        for k, pos in enumerate(range(y0 if horizontal else x0, y1 if horizontal else x1, step)):
            if k % 2:
                continue
            if horizontal:
                cv2.rectangle(layer, (x0, pos), (x1, pos + step // 2), colours[k // 2 % 3], -1)
            else:
                cv2.rectangle(layer, (pos, y0), (pos + step // 2, y1), colours[k // 2 % 3], -1)
    elif kind == 1:  # dots
        for yy in range(y0, y1, step):
            for xx in range(x0, x1, step):
                cv2.circle(
                    layer, (xx + step // 2, yy + step // 2), max(1, step // 3), colours[0], -1
                )
    elif kind == 2:  # checks
        for row, yy in enumerate(range(y0, y1, step)):
            for col, xx in enumerate(range(x0, x1, step)):
                if (row + col) % 2:
                    cv2.rectangle(layer, (xx, yy), (xx + step - 1, yy + step - 1), colours[1], -1)
    elif kind == 3:  # flowers / printed blobs
        for _ in range(int(rng.integers(4, 12))):
            centre = (int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1)))
            cv2.circle(
                layer,
                centre,
                max(1, int(step * rng.uniform(0.4, 1.0))),
                colours[int(rng.integers(0, 3))],
                -1,
            )
    else:  # camouflage
        for _ in range(int(rng.integers(5, 12))):
            centre = (int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1)))
            axes = (
                max(1, int(step * rng.uniform(0.5, 1.5))),
                max(1, int(step * rng.uniform(0.3, 1.0))),
            )
            cv2.ellipse(
                layer,
                centre,
                axes,
                float(rng.uniform(0, 180)),
                0,
                360,
                colours[int(rng.integers(0, 3))],
                -1,
            )


def _draw_mask(
    canvas: np.ndarray, rng: np.random.Generator, g: dict[str, float], kind: str
) -> None:
    """Draw a mask over nose and mouth, following the face's lower outline."""
    import cv2

    cx, cy, a, b, s = g["cx"], g["cy"], g["a"], g["b"], g["s"]
    top = g["eye_y"] + s * rng.uniform(0.08, 0.16)  # just below the eyes, over the nose bridge
    bottom = cy + b * rng.uniform(0.95, 1.08)  # under the chin
    half = a * rng.uniform(0.95, 1.12)
    angles = np.linspace(0, np.pi, 24)
    if kind == "n95":  # a rounded cup
        lower = [
            (cx + half * 0.95 * np.cos(t), top + (bottom - top) * (0.45 + 0.55 * np.sin(t)))
            for t in angles
        ]
        upper = [
            (cx - half * 0.8, top + (bottom - top) * 0.25),
            (cx, top),
            (cx + half * 0.8, top + (bottom - top) * 0.25),
        ]
    else:
        lower = [
            (cx + half * np.cos(t), top + (bottom - top) * (0.3 + 0.7 * np.sin(t) ** 0.7))
            for t in angles
        ]
        sag = (bottom - top) * rng.uniform(-0.05, 0.1)
        upper = [
            (cx - half * 0.98, top + sag),
            (cx, top - sag * 0.5),
            (cx + half * 0.98, top + sag),
        ]
    polygon = np.array(lower + upper, np.float32)
    points = np.round(polygon).astype(np.int32)
    if kind == "surgical":
        base = [
            (140, 185, 215),
            (230, 235, 240),
            (150, 200, 170),
            (120, 160, 210),
            (225, 190, 200),
            (90, 100, 110),
        ][int(rng.integers(0, 6))]
        colour = _jitter(np.array(base, np.float32), rng, 10)
    elif kind == "black":
        colour = tuple(int(v) for v in rng.integers(5, 45, 3))
    elif kind == "n95":
        colour = _jitter(np.array((225, 225, 220), np.float32), rng, 18)
    else:
        colour = _colour(rng)
    layer = canvas.copy()
    cv2.fillPoly(layer, [points], colour)
    if kind == "patterned":
        pattern = layer.copy()
        x0, y0 = points.min(0)
        x1, y1 = points.max(0)
        _draw_pattern(pattern, rng, (int(x0), int(y0), int(x1), int(y1)), s)
        region = np.zeros(canvas.shape[:2], np.uint8)
        cv2.fillPoly(region, [points], 255)
        layer[region > 0] = pattern[region > 0]
    shade = tuple(int(v * 0.75) for v in colour)
    line = max(1, int(round(s / 40)))
    if kind == "surgical":  # pleats
        for k in range(1, 4):
            y = int(round(top + (bottom - top) * (0.15 + 0.2 * k)))
            cv2.line(layer, (int(cx - half * 0.8), y), (int(cx + half * 0.8), y), shade, line)
    elif kind == "n95":  # central seam, sometimes a valve
        cv2.line(layer, (int(cx), int(top)), (int(cx), int(bottom)), shade, line)
        if rng.random() < 0.4:
            cv2.circle(
                layer,
                (int(cx + half * 0.45), int(top + (bottom - top) * 0.6)),
                max(2, int(s * 0.07)),
                shade,
                -1,
            )
    if kind != "n95" or rng.random() < 0.5:  # ear loops / straps
        for side in (-1, 1):
            ear = (int(cx + side * a * 1.02), int(g["eye_y"] + s * 0.12))
            cv2.line(
                layer,
                (int(cx + side * half * 0.95), int(top + (bottom - top) * 0.2)),
                ear,
                shade,
                line,
            )
    cv2.polylines(layer, [points], True, shade, line)
    canvas[:] = layer


def _draw_face(
    rng: np.random.Generator, size: int, masked: bool, kind: str
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    import cv2

    canvas = _background(rng, size)
    # The face box (Haar framing): side s, top-left (x0, y0); everything below hangs off it.
    s = size * rng.uniform(0.42, 0.62)
    x0 = (size - s) / 2 + rng.uniform(-0.12, 0.12) * size
    y0 = (size - s) / 2 + rng.uniform(-0.1, 0.12) * size
    cx = x0 + s / 2 + rng.uniform(-0.03, 0.03) * s
    a = s * rng.uniform(0.36, 0.44)  # half width of the face oval
    b = s * rng.uniform(0.55, 0.65)  # half height
    cy = y0 + s * rng.uniform(0.95, 1.02) - b  # chin near the box bottom
    eye_y = y0 + s * rng.uniform(0.35, 0.41)
    g = {"cx": cx, "cy": cy, "a": a, "b": b, "s": s, "eye_y": eye_y}
    tone = SKIN_TONES[int(rng.integers(0, len(SKIN_TONES)))] + rng.normal(0, 8, 3)
    skin = tuple(int(v) for v in np.clip(tone, 0, 255))
    dark = tuple(int(v * 0.7) for v in skin)
    hair = _jitter(HAIR_COLOURS[int(rng.integers(0, len(HAIR_COLOURS)))], rng, 8)
    line = max(1, int(round(s / 40)))

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round(x)), int(round(y))

    def ax(x: float, y: float) -> tuple[int, int]:
        return max(1, int(round(x))), max(1, int(round(y)))

    # clothes and neck
    cv2.rectangle(
        canvas, pt(cx - a * 2.2, cy + b * 0.95), pt(cx + a * 2.2, size + 5), _colour(rng), -1
    )
    cv2.rectangle(
        canvas, pt(cx - a * 0.45, cy + b * 0.5), pt(cx + a * 0.45, cy + b * 1.15), dark, -1
    )
    hair_style = rng.integers(0, 4)  # 0 bald/shaved, 1 short, 2 long, 3 curly/afro
    if hair_style == 2:
        cv2.ellipse(canvas, pt(cx, cy - b * 0.1), ax(a * 1.2, b * 1.15), 0, 180, 360, hair, -1)
        cv2.rectangle(
            canvas,
            pt(cx - a * 1.2, cy - b * 0.1),
            pt(cx + a * 1.2, cy + b * rng.uniform(0.6, 1.3)),
            hair,
            -1,
        )
    elif hair_style == 3:
        cv2.ellipse(canvas, pt(cx, cy - b * 0.25), ax(a * 1.35, b * 1.05), 0, 0, 360, hair, -1)
    for side in (-1, 1):  # ears
        cv2.ellipse(
            canvas,
            pt(cx + side * a * 0.98, eye_y + s * 0.12),
            ax(a * 0.15, b * 0.2),
            0,
            0,
            360,
            dark,
            -1,
        )
    cv2.ellipse(canvas, pt(cx, cy), ax(a, b), 0, 0, 360, skin, -1)
    if hair_style in (1, 2, 3):  # hair on top of the head
        cv2.ellipse(canvas, pt(cx, cy - b * 0.2), ax(a * 1.03, b * 0.88), 0, 180, 360, hair, -1)
        cv2.ellipse(
            canvas,
            pt(cx, eye_y - s * 0.18),
            ax(a * 0.9, s * rng.uniform(0.05, 0.12)),
            0,
            0,
            360,
            skin,
            -1,
        )
    if rng.random() < 0.2:  # hat
        hat = _colour(rng)
        cv2.ellipse(canvas, pt(cx, eye_y - s * 0.3), ax(a * 1.1, b * 0.7), 0, 180, 360, hat, -1)
        cv2.rectangle(
            canvas,
            pt(cx - a * 1.25, eye_y - s * 0.33),
            pt(cx + a * 1.25, eye_y - s * 0.25),
            hat,
            -1,
        )
    # eyes and brows
    eye_dx = s * rng.uniform(0.155, 0.195)
    eye_w, eye_h = s * rng.uniform(0.06, 0.085), s * rng.uniform(0.03, 0.05)
    iris = _colour(rng, 10, 120)
    brow = hair if hair_style else tuple(int(v * 0.4) for v in skin)
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.ellipse(canvas, pt(ex, eye_y), ax(eye_w, eye_h), 0, 0, 360, (235, 235, 230), -1)
        cv2.circle(
            canvas,
            pt(ex + rng.uniform(-0.2, 0.2) * eye_w, eye_y),
            max(1, int(round(eye_h * 0.9))),
            iris,
            -1,
        )
        by = eye_y - s * rng.uniform(0.07, 0.11)
        cv2.line(
            canvas,
            pt(ex - eye_w * 1.1, by),
            pt(ex + eye_w * 1.1, by - s * rng.uniform(-0.02, 0.02)),
            brow,
            max(1, line + int(rng.integers(0, 2))),
        )
    # nose and mouth
    nose_y = eye_y + s * rng.uniform(0.17, 0.23)
    cv2.line(canvas, pt(cx, eye_y + s * 0.05), pt(cx - s * 0.03, nose_y), dark, line)
    cv2.ellipse(canvas, pt(cx, nose_y), ax(s * 0.06, s * 0.025), 0, 0, 360, dark, -1)
    mouth_y = eye_y + s * rng.uniform(0.31, 0.37)
    lips = _jitter(
        np.array((150, 60, 60), np.float32) * 0.5 + np.array(skin, np.float32) * 0.5, rng, 10
    )
    mouth_w = s * rng.uniform(0.09, 0.15)
    if rng.random() < 0.4:  # open smile
        cv2.ellipse(
            canvas,
            pt(cx, mouth_y),
            ax(mouth_w, s * rng.uniform(0.03, 0.07)),
            0,
            0,
            180,
            (60, 20, 25),
            -1,
        )
    else:
        cv2.ellipse(canvas, pt(cx, mouth_y), ax(mouth_w, s * 0.03), 0, 0, 360, lips, -1)
    if rng.random() < 0.25:  # beard and moustache
        beard = tuple(int(v) for v in np.array(hair) * 0.9)
        cv2.ellipse(canvas, pt(cx, cy + b * 0.2), ax(a * 0.9, b * 0.78), 0, 0, 180, beard, -1)
        cv2.ellipse(
            canvas, pt(cx, mouth_y - s * 0.04), ax(mouth_w * 1.2, s * 0.03), 0, 0, 360, beard, -1
        )
        cv2.ellipse(canvas, pt(cx, mouth_y), ax(mouth_w * 0.8, s * 0.02), 0, 0, 360, lips, -1)
    if masked:
        _draw_mask(canvas, rng, g, kind)
    if rng.random() < 0.3:  # glasses
        frame = _colour(rng, 0, 120) if rng.random() < 0.7 else _colour(rng)
        for side in (-1, 1):
            cv2.circle(
                canvas, pt(cx + side * eye_dx, eye_y), max(2, int(round(eye_w * 1.4))), frame, line
            )
        cv2.line(
            canvas,
            pt(cx - eye_dx + eye_w * 1.4, eye_y),
            pt(cx + eye_dx - eye_w * 1.4, eye_y),
            frame,
            line,
        )
    # pose jitter: a small tilt around the face centre
    angle = float(rng.uniform(-12, 12))
    rotation = cv2.getRotationMatrix2D((float(cx), float(eye_y + s * 0.2)), angle, 1.0)
    canvas = cv2.warpAffine(canvas, rotation, (size, size), borderMode=cv2.BORDER_REFLECT)
    # lighting: brightness, contrast, a side light, blur and sensor noise
    gain = rng.uniform(0.55, 1.35)
    side_light = np.linspace(-1, 1, size, dtype=np.float32)[None, :, None] * rng.uniform(
        -0.35, 0.35
    )
    canvas = (canvas - 128) * rng.uniform(0.7, 1.2) + 128
    canvas = canvas * gain * (1 + side_light) + rng.normal(0, 6, 3)
    if rng.random() < 0.4:
        canvas = cv2.GaussianBlur(canvas, (0, 0), float(rng.uniform(0.3, 1.2)))
    canvas = canvas + rng.normal(0, rng.uniform(1, 7), canvas.shape)
    box = (int(round(x0)), int(round(y0)), int(round(s)), int(round(s)))
    return np.clip(canvas, 0, 255).astype(np.uint8), box


def generate_faces(n: int, *, seed: int = 0, size: int = 64, mask_fraction: float = 0.5) -> FaceSet:
    """Generate ``n`` seeded faces, about half of them masked, with their exact crop boxes.

    Parameters
    ----------
    n : int
        Number of images (> 0).
    seed : int
        Random seed: the same seed gives the same faces.
    size : int
        Side of the square RGB images in pixels (32 to 512).
    mask_fraction : float
        Fraction of faces wearing a mask (the labels alternate exactly at 0.5).

    Returns
    -------
    FaceSet
        ``images`` (uint8 RGB ``(n, size, size, 3)``), ``labels`` (1 = mask), ``boxes`` and ``mask_kinds``.

    Examples
    --------
    >>> faces = generate_faces(8, seed=1)
    >>> faces.images.shape, int(faces.labels.sum())
    ((8, 64, 64, 3), 4)
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of images; got {n!r}.")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 32 <= size <= 512:
        raise ValueError(f"size must be a whole number of pixels in [32, 512]; got {size!r}.")
    if not 0.0 <= float(mask_fraction) <= 1.0:
        raise ValueError(f"mask_fraction must be in [0, 1]; got {mask_fraction!r}.")
    rng = np.random.default_rng(seed)
    if mask_fraction == 0.5:
        labels = np.arange(n) % 2
    else:
        labels = (rng.random(n) < mask_fraction).astype(np.int64)
    images = np.empty((n, size, size, 3), np.uint8)
    boxes = np.empty((n, 4), np.int64)
    kinds = np.empty(n, dtype=object)
    for i in range(n):
        kind = MASK_KINDS[int(rng.integers(0, len(MASK_KINDS)))] if labels[i] else "none"
        images[i], boxes[i] = _draw_face(rng, int(size), bool(labels[i]), kind)
        kinds[i] = kind
    return FaceSet(images, labels.astype(np.int64), boxes, kinds.astype(str))
