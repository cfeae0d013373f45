"""The keyword model: a small DS-CNN (Zhang et al. 2017, "Hello Edge"), trained and cached.

:func:`build_ds_cnn` builds it, :func:`train_keyword_model` trains it on a
:class:`~tinyml_course.kws.data.KeywordDataset` and converts it to a full-integer int8
``.tflite``; :func:`default_model` is the course's model the ``kws`` commands use (trained
once and cached under ``results/kws/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyml_course.kws.data import DatasetSpec, KeywordDataset, load_keyword_dataset
from tinyml_course.kws.frontend import DEFAULT_FRONTEND, FrontEndConfig, quantize_features


def build_ds_cnn(
    input_shape: tuple[int, int] = DEFAULT_FRONTEND.shape,
    num_classes: int = 12,
    *,
    channels: int = 48,
    blocks: int = 4,
    dropout: float = 0.2,
) -> Any:
    """A DS-CNN: a strided (10, 4) convolution, ``blocks`` depthwise-separable blocks, average, dense.

    Parameters
    ----------
    input_shape : (frames, features)
        One clip's features.
    num_classes : int
        Outputs (softmax).
    channels : int
        Width of every layer (Hello Edge's DS-CNN-S uses 64).
    blocks : int
        Depthwise-separable blocks (3x3 depthwise, BN, ReLU, 1x1 pointwise, BN, ReLU).
    """
    from tinyml_course import keras

    for name, value, low in (
        ("num_classes", num_classes, 2),
        ("channels", channels, 1),
        ("blocks", blocks, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value!r}: must be an int of at least {low}.")
    layers = keras.layers
    inputs = keras.Input((*input_shape, 1))
    x = layers.Conv2D(channels, (10, 4), strides=(2, 2), padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    for _ in range(blocks):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.Conv2D(channels, 1, use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="ds_cnn")


@dataclass
class TrainedKeywordModel:
    """A trained keyword model: the Keras model, its int8 ``.tflite`` and its labels."""

    keras_model: Any
    tflite: bytes
    labels: tuple[str, ...]
    history: dict[str, list[float]]


def train_keyword_model(
    data: KeywordDataset,
    *,
    epochs: int = 25,
    batch_size: int = 64,
    channels: int = 48,
    blocks: int = 4,
    seed: int = 0,
    verbose: int = 0,
) -> TrainedKeywordModel:
    """Train a DS-CNN on ``data`` (one-cycle-like decaying learning rate) and convert it to int8."""
    from tinyml_course import keras
    from tinyml_course.models import set_seed
    from tinyml_course.tflite import convert_to_tflite

    if epochs < 1:
        raise ValueError(f"epochs={epochs!r}: must be at least 1.")
    set_seed(seed)
    model = build_ds_cnn(data.x_train.shape[1:], len(data.labels), channels=channels, blocks=blocks)
    steps = epochs * int(np.ceil(len(data.x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = model.fit(
        data.x_train[..., None], data.y_train, epochs=epochs, batch_size=batch_size,
        shuffle=True, verbose=verbose,
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    rep = data.x_train[rng.choice(len(data.x_train), 300, replace=False)][..., None]
    tflite = convert_to_tflite(model, "int8", representative_data=rep, representative_samples=300)
    return TrainedKeywordModel(
        model, tflite, data.labels, {k: list(v) for k, v in history.history.items()}
    )


def int8_predict(model_content: bytes, features: np.ndarray) -> np.ndarray:
    """Class probabilities from an int8 ``.tflite`` for features (N, frames, values)."""
    from tinyml_course.tflite import TFLiteModel

    model = TFLiteModel(model_content)
    x = np.asarray(features, np.float32)
    if x.ndim == 2:
        x = x[None]
    shape = tuple(model.input.shape[1:3])
    if x.shape[1:] != shape:
        raise ValueError(f"features have shape {x.shape[1:]}; this model takes {shape}.")
    return np.asarray(model.predict(x[..., None]))


def int8_input_params(model_content: bytes) -> tuple[float, int]:
    """(scale, zero_point) of the model's int8 input."""
    from tinyml_course.tflite import TFLiteModel

    info = TFLiteModel(model_content).input
    return float(info.scale), int(info.zero_point)


def quantized_input(model_content: bytes, features: np.ndarray) -> np.ndarray:
    """Features quantized exactly as the int8 model's input parameters say."""
    scale, zero_point = int8_input_params(model_content)
    return quantize_features(features, scale, zero_point)


# ---------------------------------------------------------------------------- course model
def default_model_path() -> Path:
    """Where the course's cached keyword model lives (``results/kws/kws_model.tflite``)."""
    from tinyml_course.kws.data import cache_folder

    return cache_folder() / "kws_model.tflite"


def save_model(model_content: bytes, labels: tuple[str, ...], path: str | Path) -> Path:
    """Write the ``.tflite`` and its labels (``<path>.labels.json``) side by side."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(model_content)
    file.with_suffix(".labels.json").write_text(json.dumps(list(labels)))
    return file


def load_labels(path: str | Path, num_classes: int) -> tuple[str, ...]:
    """The labels saved next to a model, or the course's labels when they match its size."""
    from tinyml_course.kws.data import labels_for

    side = Path(path).with_suffix(".labels.json")
    if side.is_file():
        labels = tuple(json.loads(side.read_text()))
    else:
        labels = labels_for()
    if len(labels) != num_classes:
        raise ValueError(
            f"{path}: the model has {num_classes} outputs but {len(labels)} labels; write them "
            f"as a JSON list in {side.name}."
        )
    return labels


def default_model(*, retrain: bool = False, verbose: int = 0) -> tuple[bytes, tuple[str, ...]]:
    """The course's int8 keyword model and its labels (trained on the default set once, cached)."""
    path = default_model_path()
    if path.is_file() and not retrain:
        data = path.read_bytes()
        return data, load_labels(path, _num_outputs(data))
    dataset = load_keyword_dataset(DatasetSpec())
    trained = train_keyword_model(dataset, verbose=verbose)
    save_model(trained.tflite, trained.labels, path)
    return trained.tflite, trained.labels


def _num_outputs(model_content: bytes) -> int:
    from tinyml_course.tflite import TFLiteModel

    return int(np.prod(TFLiteModel(model_content).output.shape[1:]))


__all__ = [
    "FrontEndConfig", "TrainedKeywordModel", "build_ds_cnn", "default_model", "default_model_path",
    "int8_input_params", "int8_predict", "load_labels", "quantized_input", "save_model",
    "train_keyword_model",
]  # fmt: skip
