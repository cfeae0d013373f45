"""The mask classifier: a tiny CNN on a ``size x size`` grayscale face, trained and made int8.

Two architectures:

* :func:`build_original_model`: the 2020 demo's network, ``SeparableConv2D(5, 3) ->
  Flatten -> Dense(1, sigmoid)`` (340 parameters at 10x10).
* :func:`build_mask_model`: the course's version, two small convolutions with pooling, then
  ``Dense(1, sigmoid)`` (about 2.8k parameters at 10x10, 3.1k at 16x16). Its output is the
  probability that the face wears a mask.

Both take ``pixels / 255`` as float input. :func:`default_model` returns the course's
trained full-integer int8 ``.tflite`` (cached under ``results/mask/``), training it first
when the cache is empty; that takes seconds on a laptop CPU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tinyml_course.mask.faces import FaceSet, generate_faces
from tinyml_course.mask.preprocess import _check_size, crop_and_resize, to_gray
from tinyml_course.quantization import dequantize

FAITHFUL_SIZE = 10
"""The original demo's input size (and the lab's default)."""

DEFAULT_SIZE = 16
"""The input size ``tinyml-course mask classify`` uses: the smallest that met both accuracy targets
(95% on generated faces, 90% on held-out real faces) in notebook 06's resolution sweep."""

TRAIN_FACES = 3000
"""Synthetic faces in the default training set (each also used mirrored)."""

DEFAULT_WIDTH = 12
"""Filters of the first convolution of the course model (the second has twice as many)."""

EPOCHS = 15
"""Training epochs of the course model."""

REAL_REPEATS = 6
"""How often each real training face is repeated (with a new box jitter) among the synthetic ones."""


def build_mask_model(size: int = 10, *, width: int = DEFAULT_WIDTH, name: str | None = None) -> Any:
    """The course's tiny mask CNN for ``size x size x 1`` inputs in [0, 1].

    ``Conv2D(width, 3) -> MaxPool -> Conv2D(2*width, 3) -> MaxPool -> Flatten -> Dense(1, sigmoid)``,
    'same' padding, ReLU.

    Parameters
    ----------
    size : int
        Input side in pixels (at least 8).
    width : int
        Filters of the first convolution.

    Returns
    -------
    keras.Sequential
        Built, uncompiled; output is the probability of a mask.
    """
    size = _check_size(size)
    if size < 8:
        raise ValueError(f"size must be at least 8 for two poolings; got {size}.")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive number of filters; got {width!r}.")
    from tinyml_course._setup import get_keras

    keras = get_keras()
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(size, size, 1)),
            layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(1, activation="sigmoid", name="mask_probability"),
        ],
        name=name or f"mask_cnn_{size}",
    )


def build_original_model(size: int = 10) -> Any:
    """The 2020 demo's network: ``SeparableConv2D(5, 3) -> Flatten -> Dense(1, sigmoid)``."""
    size = _check_size(size)
    from tinyml_course._setup import get_keras

    keras = get_keras()
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(size, size, 1)),
            layers.SeparableConv2D(5, 3, activation="relu", name="sepconv"),
            layers.Flatten(name="flatten"),
            layers.Dense(1, activation="sigmoid", name="mask_probability"),
        ],
        name=f"original_mask_cnn_{size}",
    )


def crops_from_boxes(
    images: np.ndarray,
    boxes: np.ndarray,
    size: int,
    *,
    jitter: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Preprocess images with known face boxes into uint8 crops ``(n, size, size)``.

    Parameters
    ----------
    images : np.ndarray
        uint8 RGB or grayscale images ``(n, H, W[, C])``.
    boxes : np.ndarray
        ``(n, 4)`` face boxes ``(x, y, w, h)``.
    size : int
        Output side.
    jitter : float
        Random shift and scale of each box, as a fraction of its side (e.g. 0.08), so the
        model tolerates the imprecise boxes a detector gives. 0 uses the exact boxes.
    """
    size = _check_size(size)
    images, boxes = np.asarray(images), np.asarray(boxes)
    if len(images) != len(boxes) or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"boxes must be (n, 4) with n = len(images) = {len(images)}; got shape {boxes.shape}."
        )
    if not 0.0 <= jitter < 0.5:
        raise ValueError(f"jitter must be in [0, 0.5); got {jitter}.")
    rng = np.random.default_rng(seed)
    out = np.empty((len(images), size, size), np.uint8)
    for i, (image, box) in enumerate(zip(images, boxes, strict=True)):
        gray = to_gray(image)
        x, y, w, h = (float(v) for v in box)
        if jitter:
            scale = 1 + rng.uniform(-jitter, jitter)
            x += rng.uniform(-jitter, jitter) * w + w * (1 - scale) / 2
            y += rng.uniform(-jitter, jitter) * h + h * (1 - scale) / 2
            w, h = w * scale, h * scale
        x0, y0 = int(round(max(x, 0))), int(round(max(y, 0)))
        x1, y1 = int(round(min(x + w, gray.shape[1]))), int(round(min(y + h, gray.shape[0])))
        out[i] = crop_and_resize(gray, (x0, y0, max(1, x1 - x0), max(1, y1 - y0)), size)
    return out


def to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 crops ``(n, size, size)`` to the model's float input ``(n, size, size, 1)`` = pixels / 255."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3:
        raise ValueError(
            f"pixels must be uint8 crops of shape (n, size, size); got {pixels.dtype} {pixels.shape}."
        )
    return (pixels.astype(np.float32) / 255.0)[..., None]


def with_flips(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The data plus its horizontal mirror images (a face mirrored is still a face)."""
    return np.concatenate([x, x[:, :, ::-1]]), np.concatenate([y, y])


def synthetic_data(
    n: int = TRAIN_FACES, size: int = 10, *, seed: int = 0, jitter: float = 0.08
) -> tuple[np.ndarray, np.ndarray, FaceSet]:
    """Generate ``n`` faces and return ``(x, y, faces)``: float inputs, labels and the raw faces."""
    faces = generate_faces(n, seed=seed)
    pixels = crops_from_boxes(faces.images, faces.boxes, size, jitter=jitter, seed=seed + 1)
    return to_input(pixels), faces.labels.astype(np.float32), faces


def train_mask_model(
    x: np.ndarray,
    y: np.ndarray,
    *,
    model: Any = None,
    epochs: int = EPOCHS,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    flips: bool = True,
    validation_data: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    verbose: int = 1,
) -> Any:
    """Train a mask model (default: :func:`build_mask_model` at the data's size) with Adam.

    Parameters
    ----------
    x, y : np.ndarray
        Float inputs ``(n, size, size, 1)`` in [0, 1] and labels (1 = mask).
    model : keras.Model, optional
        An uncompiled model to train; built for ``x``'s size when omitted.
    flips : bool
        Also train on the horizontal mirror of every face.
    verbose : int
        Keras verbosity (1: progress bar, 2: one line per epoch, 0: silent).

    Returns
    -------
    keras.Model
        The trained model (``model.history`` holds the loss curves).
    """
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32).reshape(-1)
    if x.ndim != 4 or x.shape[1] != x.shape[2] or x.shape[3] != 1:
        raise ValueError(f"x must be (n, size, size, 1); got {x.shape}. Use to_input(pixels).")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
    from tinyml_course._setup import get_keras
    from tinyml_course.models import set_seed

    keras = get_keras()
    set_seed(seed)
    if model is None:
        model = build_mask_model(x.shape[1])
    if flips:
        x, y = with_flips(x, y)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        validation_data=validation_data,
        verbose=verbose,
    )
    return model


def to_int8_tflite(model: Any, representative: np.ndarray) -> bytes:
    """Full-integer int8 ``.tflite`` (int8 input and output) calibrated on ``representative`` inputs."""
    from tinyml_course.tflite import convert_to_tflite

    return convert_to_tflite(model, "int8", representative_data=representative[:300])


def int8_scores(model_content: bytes, pixels: np.ndarray) -> np.ndarray:
    """Mask probabilities from the int8 model for uint8 crops ``(n, size, size)``.

    The crops are quantized with :func:`~tinyml_course.mask.preprocess.quantize_frame` (the
    device's formula), run through LiteRT, and the int8 output is dequantized.
    """
    from tinyml_course.mask.preprocess import quantize_frame
    from tinyml_course.tflite import TFLiteModel

    model = TFLiteModel(model_content)
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[None]
    q = quantize_frame(pixels, model.input.scale, model.input.zero_point)[..., None]
    raw = model.invoke_raw(q).reshape(-1)
    return dequantize(raw, model.output.scale, model.output.zero_point)


def default_model_path(size: int) -> Any:
    """Where :func:`default_model` caches the model of this input size."""
    from tinyml_course.paths import output_path

    return output_path("mask", f"mask_model_{_check_size(size)}.tflite")


def _recipe(size: int) -> dict[str, int]:
    """What the cached model was trained with; a cache from another recipe is retrained."""
    return {
        "recipe_version": 1,
        "size": size,
        "train_faces": TRAIN_FACES,
        "width": DEFAULT_WIDTH,
        "epochs": EPOCHS,
        "real_repeats": REAL_REPEATS,
    }


def _recipe_matches(path: Any, size: int) -> bool:
    import json

    sidecar = path.with_suffix(".json")
    try:
        return json.loads(sidecar.read_text()) == _recipe(size)
    except (OSError, ValueError):
        return False


def _valid_cache(data: bytes, size: int) -> bool:
    try:
        from tinyml_course.tflite import TFLiteModel

        info = TFLiteModel(data).input
    except Exception:
        return False
    return info.shape == (1, size, size, 1) and np.dtype(info.dtype) == np.int8


def training_data(
    size: int,
    *,
    n_synthetic: int = TRAIN_FACES,
    real: Any = None,
    real_people: Any = None,
    real_repeats: int = REAL_REPEATS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The course model's training set: synthetic faces, plus real faces of some people.

    Parameters
    ----------
    size : int
        Input side.
    n_synthetic : int
        Generated faces (crops with a little box jitter).
    real : RealFaceSet, optional
        Real faces (:func:`~tinyml_course.mask.real_faces.load_real_faces`); omitted: synthetic only.
    real_people : array-like of int, optional
        The people (``real.person`` ids) whose faces may be trained on; default
        :func:`~tinyml_course.mask.real_faces.split_people`'s training half. Keep the people
        you test on out of it.
    real_repeats : int
        Copies of each real face, each with a different box jitter.

    Returns
    -------
    (x, y)
        Float inputs ``(n, size, size, 1)`` and float labels.
    """
    size = _check_size(size)
    x, y, _ = synthetic_data(n_synthetic, size, seed=seed)
    if real is None:
        return x, y
    from tinyml_course.mask.real_faces import split_people

    people = split_people()[0] if real_people is None else np.asarray(real_people)
    keep = np.isin(real.person, people)
    if not keep.any():
        raise ValueError("real_people selects no real face; pass person ids from real.person.")
    xs, ys = [x], [y]
    for repeat in range(int(real_repeats)):
        crops = crops_from_boxes(
            real.images[keep], real.boxes[keep], size, jitter=0.08, seed=seed + 100 + repeat
        )
        xs.append(to_input(crops))
        ys.append(real.labels[keep].astype(np.float32))
    return np.concatenate(xs), np.concatenate(ys)


def default_model(size: int | None = None, *, retrain: bool = False, verbose: int = 1) -> bytes:
    """The course's trained full-int8 mask model, trained and cached on first use.

    Trained on :data:`TRAIN_FACES` synthetic faces and on the real faces of the training half
    of the people (:func:`~tinyml_course.mask.real_faces.split_people`), so the other half
    stays an honest test set.

    Parameters
    ----------
    size : int, optional
        Input side; :data:`DEFAULT_SIZE` when omitted (:data:`FAITHFUL_SIZE` = 10 is the
        original demo's).
    retrain : bool
        Train again even when a cached model exists. A cache written with another training
        recipe (see the ``.json`` beside it) is retrained too.
    verbose : int
        Keras verbosity while training (1: progress bar, 2: a line per epoch).

    Returns
    -------
    bytes
        The ``.tflite``: input int8 ``(1, size, size, 1)`` (quantized ``pixels / 255``), output
        int8 ``(1, 1)`` (the probability of a mask after dequantization).

    Examples
    --------
    >>> model_bytes = default_model()  # doctest: +SKIP
    """
    size = DEFAULT_SIZE if size is None else _check_size(size)
    path = default_model_path(size)
    if path.exists() and not retrain and _recipe_matches(path, size):
        data = path.read_bytes()
        if _valid_cache(data, size):
            return data
    from tinyml_course.mask.real_faces import load_real_faces

    x, y = training_data(size, real=load_real_faces())
    model = train_mask_model(x, y, model=build_mask_model(size), verbose=verbose)
    data = to_int8_tflite(model, x)
    import json

    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(_recipe(size), indent=2))
    return data
