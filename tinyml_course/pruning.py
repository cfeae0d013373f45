"""Pruning and weight clustering: masks, filter ranking, structured pruning, tfmot helpers.

Two kinds of pruning (Han et al. 2015; Li et al. 2017):

* **Unstructured (magnitude) pruning** zeroes the individual weights of smallest
  magnitude. With sparsity :math:`s` the mask keeps the :math:`(1-s)\\,n` largest
  :math:`|w|`. The tensor keeps its shape, so a dense kernel still does every
  multiply-accumulate; the gain is in *compression* (zeros gzip well: download and
  storage bytes, not the flash a microcontroller runs the model from, which holds the
  raw flatbuffer) and on sparse kernels, which TFLM does not have.
* **Structured pruning** removes whole filters (output channels) ranked by their L1
  norm :math:`\\lVert W_{:,:,:,j} \\rVert_1`. The next layer loses the matching input
  channels, and the rebuilt model is really smaller: fewer parameters, fewer MACs,
  lower latency on any hardware.

Weight clustering (Han et al. 2016, "Deep Compression") replaces each layer's weights
with the nearest of *k* shared centroids, so a weight can be stored as a small index.

The tfmot helpers wrap ``tensorflow_model_optimization`` (Keras 2 API only; import
:mod:`tinyml_course` first).
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_PASS_THROUGH = {
    "MaxPooling2D",
    "AveragePooling2D",
    "MaxPooling1D",
    "AveragePooling1D",
    "Dropout",
    "SpatialDropout2D",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "Softmax",
    "ZeroPadding2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "InputLayer",
}
_CLUSTER_INITS = ("kmeans++", "linear", "random", "density")


# --------------------------------------------------------------------------- by hand
def _check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    try:
        value = float(sparsity)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1); got {sparsity!r}.") from None
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"{name}={sparsity!r} is outside [0, 1): it is the fraction of weights set to zero, "
            "for example 0.8 for 80% sparsity."
        )
    return value


def magnitude_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
    """Boolean mask that keeps the largest-magnitude weights.

    Exactly ``round(sparsity * weights.size)`` weights (those of smallest ``|w|``, ties
    broken by position) are dropped.

    Parameters
    ----------
    weights : np.ndarray
        Any weight tensor.
    sparsity : float
        Fraction of weights to drop, in ``[0, 1)``.

    Returns
    -------
    np.ndarray
        ``bool`` array of the same shape: True where the weight is kept.

    Raises
    ------
    ValueError
        If ``sparsity`` is outside ``[0, 1)`` or ``weights`` is empty.

    Examples
    --------
    >>> magnitude_mask(np.array([0.1, -2.0, 0.5, -0.05]), 0.5)
    array([False,  True,  True, False])
    """
    sparsity = _check_sparsity(sparsity)
    w = np.asarray(weights)
    if w.size == 0:
        raise ValueError("weights is empty; pass a layer's kernel (layer.get_weights()[0]).")
    n_drop = int(round(sparsity * w.size))
    mask = np.ones(w.size, dtype=bool)
    if n_drop:
        order = np.argsort(np.abs(w).reshape(-1), kind="stable")
        mask[order[:n_drop]] = False
    return mask.reshape(w.shape)


def sparsity_of(weights: np.ndarray) -> float:
    """Fraction of exactly-zero entries of an array.

    >>> sparsity_of(np.array([0.0, 1.0, 0.0, 3.0]))
    0.5
    """
    w = np.asarray(weights)
    if w.size == 0:
        raise ValueError("weights is empty; pass a non-empty array.")
    return float(np.mean(w == 0))


def _kernel_layers(model: Any) -> list[Any]:
    if not hasattr(model, "layers"):
        raise TypeError(f"model must be a Keras model; got {type(model).__name__}.")
    return [
        layer
        for layer in model.layers
        if getattr(layer, "kernel", None) is not None
        or getattr(layer, "depthwise_kernel", None) is not None
    ]


def model_sparsity(model: Any) -> dict[str, float]:
    """Sparsity of every kernel of a model, and ``"total"`` over all kernels.

    Biases and batch-norm parameters are not counted (pruning leaves them dense).

    Returns
    -------
    dict
        ``{layer name: fraction of zero kernel weights, ..., "total": overall fraction}``.
    """
    result: dict[str, float] = {}
    zeros = total = 0
    for layer in _kernel_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            kernel = layer.depthwise_kernel
        values = np.asarray(kernel.numpy())
        result[layer.name] = float(np.mean(values == 0))
        zeros += int(np.sum(values == 0))
        total += values.size
    if total == 0:
        raise ValueError(f"model {getattr(model, 'name', '')!r} has no kernels to measure.")
    result["total"] = zeros / total
    return result


def l1_filter_norms(kernel: np.ndarray) -> np.ndarray:
    """L1 norm of every output channel (the last axis) of a conv or dense kernel.

    For a Conv2D kernel of shape ``(Kh, Kw, C_in, C_out)`` this is
    ``sum(|W[:, :, :, j]|)`` for each filter ``j``; for a Dense kernel ``(in, out)``,
    the column sums.

    >>> l1_filter_norms(np.array([[1.0, -3.0], [-2.0, 0.5]]))
    array([3. , 3.5])
    """
    k = np.asarray(kernel)
    if k.ndim < 2:
        raise ValueError(
            f"kernel must have at least 2 axes (inputs..., outputs); got shape {k.shape}."
        )
    return np.abs(k).reshape(-1, k.shape[-1]).sum(axis=0)


def rank_filters(kernel: np.ndarray) -> np.ndarray:
    """Output-channel indices from the largest L1 norm to the smallest (ties: lower index first)."""
    norms = l1_filter_norms(kernel)
    return np.argsort(-norms, kind="stable")


def filters_to_keep(kernel: np.ndarray, keep: int | float) -> np.ndarray:
    """Sorted indices of the filters with the largest L1 norms.

    Parameters
    ----------
    kernel : np.ndarray
        Kernel whose last axis holds the filters.
    keep : int or float
        How many filters to keep (an int >= 1), or the fraction to keep (a float in (0, 1]).

    Returns
    -------
    np.ndarray
        Ascending indices of the kept filters (so the kept channels keep their order).
    """
    n = np.asarray(kernel).shape[-1]
    count = _keep_count(keep, n, "keep")
    return np.sort(rank_filters(kernel)[:count])


def _keep_count(keep: int | float, n: int, name: str) -> int:
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an int (filters) or a float fraction; got {keep!r}.")
    if isinstance(keep, (int, np.integer)):
        if not 1 <= keep <= n:
            raise ValueError(
                f"{name}={keep} filters is outside [1, {n}] for a layer of {n} filters."
            )
        return int(keep)
    if not 0.0 < keep <= 1.0:
        raise ValueError(
            f"{name}={keep} must be a fraction in (0, 1], for example 0.5 to keep half the filters."
        )
    return max(1, int(round(keep * n)))


def structured_prune(
    model: Any, keep: Mapping[str, int | float], *, name: str | None = None
) -> Any:
    """Rebuild a ``keras.Sequential`` model without its lowest-L1 filters.

    For every layer named in ``keep`` (Conv2D or Dense), only the
    filters/units of largest L1 norm are kept; the following layers lose the matching
    input channels (through pooling, batch norm, ``Flatten`` and depthwise layers), so the
    result is a smaller dense model with the surviving weights copied in. Fine-tune it
    afterwards to recover accuracy.

    Parameters
    ----------
    model : keras.Sequential
        A built tf-keras Sequential model of Conv2D, DepthwiseConv2D, Dense,
        BatchNormalization, pooling, Flatten, Dropout and activation layers.
    keep : mapping
        ``{layer name: filters to keep (int) or fraction to keep (float)}``. The last
        layer (the model's output) cannot be pruned.
    name : str, optional
        Name of the new model (default: ``"<name>_structured"``).

    Returns
    -------
    keras.Sequential
        A new, uncompiled model.

    Raises
    ------
    ValueError
        Unknown layer names, pruning the output layer, or an unsupported layer type.

    Examples
    --------
    >>> small = structured_prune(model, {"conv1": 0.5, "conv2": 0.5})  # doctest: +SKIP
    """
    from tinyml_course._setup import get_keras

    keras = get_keras()
    if type(model).__name__ != "Sequential":
        raise TypeError(
            f"model must be a keras.Sequential; got {type(model).__name__}. Rebuild it as a Sequential first."
        )
    if not getattr(model, "built", False) or not getattr(model, "inputs", None):
        raise ValueError(
            "model is not built: start it with keras.Input(shape=...) or call model.build(...)."
        )
    names = [layer.name for layer in model.layers]
    unknown = sorted(set(keep) - set(names))
    if unknown:
        raise ValueError(
            f"keep names layers {unknown} that are not in the model; its layers are {names}."
        )
    if model.layers[-1].name in keep:
        raise ValueError(
            f"keep includes {model.layers[-1].name!r}, the output layer: its units are the classes and must stay."
        )

    new_layers = [keras.Input(shape=tuple(model.inputs[0].shape[1:]))]
    weights: list[list[np.ndarray]] = []
    kept_in: np.ndarray | None = None  # indices kept along the current feature axis
    for layer in model.layers:
        kind = type(layer).__name__
        config = layer.get_config()
        values = [np.asarray(w) for w in layer.get_weights()]
        if kind in ("Conv2D", "Dense"):
            kernel = values[0]
            if kept_in is not None:
                kernel = kernel[..., kept_in, :] if kind == "Conv2D" else kernel[kept_in, :]
            out_idx = None
            if layer.name in keep:
                out_idx = filters_to_keep(kernel, keep[layer.name])
                kernel = kernel[..., out_idx]
                config["filters" if kind == "Conv2D" else "units"] = len(out_idx)
            rest = [v[out_idx] if out_idx is not None else v for v in values[1:]]
            values = [kernel, *rest]
            kept_in = out_idx
        elif kind == "DepthwiseConv2D":
            if int(config.get("depth_multiplier", 1)) != 1:
                raise ValueError(f"layer {layer.name!r}: depth_multiplier > 1 is not supported.")
            if layer.name in keep:
                raise ValueError(
                    f"layer {layer.name!r} is depthwise: prune the layer before it instead."
                )
            if kept_in is not None:
                values = [values[0][:, :, kept_in, :], *[v[kept_in] for v in values[1:]]]
        elif kind == "BatchNormalization":
            if kept_in is not None:
                values = [v[kept_in] for v in values]
        elif kind == "Flatten":
            if kept_in is not None:
                shape = tuple(int(d) for d in layer.input_shape[1:])
                kept_in = np.arange(int(np.prod(shape))).reshape(shape)[..., kept_in].reshape(-1)
        elif kind not in _PASS_THROUGH:
            raise ValueError(
                f"layer {layer.name!r} of type {kind} is not supported by structured_prune; "
                "supported: Conv2D, DepthwiseConv2D, Dense, BatchNormalization, Flatten, pooling, "
                "Dropout and activation layers."
            )
        if kind != "InputLayer":
            new_layers.append(type(layer).from_config(config))
            weights.append(values)
    pruned = keras.Sequential(new_layers, name=name or f"{model.name}_structured")
    for layer, values in zip(pruned.layers, weights, strict=True):
        layer.set_weights(values)
    return pruned


# --------------------------------------------------------------------------- size
def gzip_size(data: bytes | np.ndarray, *, level: int = 9) -> int:
    """Bytes of ``data`` after gzip (fixed mtime, so the result is repeatable).

    The *download* size of a model; a microcontroller runs the raw ``.tflite`` in place from
    flash, so its flash bytes are ``len(data)``, not this.

    Parameters
    ----------
    data : bytes or np.ndarray
        A ``.tflite`` flatbuffer, or an array (its raw bytes are compressed).
    level : int
        gzip compression level, 1-9.

    >>> gzip_size(bytes(1000)) < 100
    True
    """
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).tobytes()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"data must be bytes (a .tflite model) or a numpy array; got {type(data).__name__}."
        )
    if not 1 <= int(level) <= 9:
        raise ValueError(f"level={level} must be between 1 and 9.")
    return len(gzip.compress(bytes(data), compresslevel=int(level), mtime=0))


def unique_weight_counts(model: Any) -> dict[str, int]:
    """Number of distinct values in each layer's kernel (clustering leaves k of them)."""
    result = {}
    for layer in _kernel_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            kernel = layer.depthwise_kernel
        result[layer.name] = int(np.unique(np.asarray(kernel.numpy())).size)
    return result


# --------------------------------------------------------------------------- tfmot
def _tfmot() -> Any:
    from tinyml_course._setup import get_keras

    get_keras()
    import tensorflow_model_optimization as tfmot

    return tfmot


def prune_low_magnitude(
    model: Any,
    target_sparsity: float | Mapping[str, float],
    *,
    end_step: int,
    begin_step: int = 0,
    initial_sparsity: float = 0.0,
    frequency: int = 50,
) -> Any:
    """Wrap a model for magnitude pruning with tfmot's polynomial sparsity schedule.

    The sparsity at training step :math:`t` rises from ``initial_sparsity`` to
    ``target_sparsity`` as
    :math:`s_t = s_f + (s_i - s_f)\\,(1 - \\tfrac{t - t_0}{t_1 - t_0})^3` (Zhu and Gupta 2017),
    re-applying the magnitude mask every ``frequency`` steps. Train the result with
    :func:`pruning_callbacks` and remove the wrappers with :func:`strip_pruning`.

    Parameters
    ----------
    model : keras.Model
        A built tf-keras Sequential or functional model (trained weights are the usual start).
    target_sparsity : float or mapping
        Final fraction of zero weights in every kernel, in ``[0, 1)``; or
        ``{layer name: sparsity}`` to prune only those layers, each to its own target
        (layers differ in how many weights they hold and how much they tolerate).
    end_step : int
        Training step (batch) at which the target is reached; keep training a little after.
    begin_step, initial_sparsity, frequency
        The rest of the schedule.

    Returns
    -------
    keras.Model
        The wrapped model (compile it before training). Like tfmot, it reuses the layers of
        ``model``, so training it changes ``model`` too: pass a copy to keep the original.

    Examples
    --------
    >>> wrapped = prune_low_magnitude(model, 0.8, end_step=400)  # doctest: +SKIP
    >>> wrapped = prune_low_magnitude(model, {"dense1": 0.9}, end_step=400)  # doctest: +SKIP
    """
    initial = _check_sparsity(initial_sparsity, "initial_sparsity")
    if isinstance(target_sparsity, Mapping):
        if not target_sparsity:
            raise ValueError(
                "target_sparsity is an empty mapping; name at least one layer, e.g. {'dense1': 0.9}."
            )
        names = [layer.name for layer in getattr(model, "layers", [])]
        unknown = sorted(set(target_sparsity) - set(names))
        if unknown:
            raise ValueError(
                f"target_sparsity names layers {unknown} that are not in the model; its layers are {names}."
            )
        targets = {
            name: _check_sparsity(v, f"target_sparsity[{name!r}]")
            for name, v in target_sparsity.items()
        }
    else:
        targets = {"": _check_sparsity(target_sparsity, "target_sparsity")}
    if int(end_step) <= int(begin_step):
        raise ValueError(
            f"end_step={end_step} must be after begin_step={begin_step}; use about (steps per epoch) x (epochs - 1)."
        )
    if int(frequency) < 1:
        raise ValueError(
            f"frequency={frequency} must be >= 1 (training steps between mask updates)."
        )
    tfmot = _tfmot()

    def schedule(target: float) -> Any:
        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=min(initial, target),
            final_sparsity=target,
            begin_step=int(begin_step),
            end_step=int(end_step),
            frequency=int(frequency),
        )

    if "" in targets:
        return tfmot.sparsity.keras.prune_low_magnitude(
            model, pruning_schedule=schedule(targets[""])
        )
    from tinyml_course._setup import get_keras

    def wrap(layer: Any) -> Any:  # the tfmot guide's per-layer recipe
        if layer.name in targets:
            return tfmot.sparsity.keras.prune_low_magnitude(
                layer, pruning_schedule=schedule(targets[layer.name])
            )
        return layer

    return get_keras().models.clone_model(model, clone_function=wrap)


def pruning_callbacks() -> list[Any]:
    """The callbacks pruning training needs (``UpdatePruningStep`` advances the schedule)."""
    return [_tfmot().sparsity.keras.UpdatePruningStep()]


def strip_pruning(model: Any) -> Any:
    """Remove the pruning wrappers, leaving a plain model with zeros in its kernels."""
    return _tfmot().sparsity.keras.strip_pruning(model)


def cluster_weights(
    model: Any, n_clusters: int, *, init: str = "kmeans++", preserve_sparsity: bool = False
) -> Any:
    """Wrap a model for weight clustering: each kernel shares ``n_clusters`` values.

    Parameters
    ----------
    model : keras.Model
        A built, trained tf-keras model.
    n_clusters : int
        Shared values per layer (16 means 4-bit indices).
    init : {"kmeans++", "linear", "random", "density"}
        How the centroids start.
    preserve_sparsity : bool
        Keep pruned zeros at zero (tfmot's sparsity-preserving clustering), for
        prune + cluster + int8 pipelines.

    Returns
    -------
    keras.Model
        The wrapped model: compile it, fine-tune briefly, then :func:`strip_clustering`.
    """
    if (
        isinstance(n_clusters, bool)
        or not isinstance(n_clusters, (int, np.integer))
        or n_clusters < 2
    ):
        raise ValueError(f"n_clusters={n_clusters!r} must be an int >= 2, for example 16.")
    if init not in _CLUSTER_INITS:
        raise ValueError(f"init={init!r}; choose one of {_CLUSTER_INITS}.")
    tfmot = _tfmot()
    cinit = tfmot.clustering.keras.CentroidInitialization
    method = {
        "kmeans++": cinit.KMEANS_PLUS_PLUS,
        "linear": cinit.LINEAR,
        "random": cinit.RANDOM,
        "density": cinit.DENSITY_BASED,
    }[init]
    clustered = tfmot.clustering.keras.cluster_weights(
        model,
        number_of_clusters=int(n_clusters),
        cluster_centroids_init=method,
        preserve_sparsity=bool(preserve_sparsity),
    )
    if clustered is None:  # Keras 3 models are silently refused by tfmot
        raise TypeError(
            "tfmot returned None: the model is not a tf-keras (Keras 2) model. Build it with `from tinyml_course import keras`."
        )
    return clustered


def strip_clustering(model: Any) -> Any:
    """Remove the clustering wrappers, leaving a plain model whose kernels hold k values each."""
    return _tfmot().clustering.keras.strip_clustering(model)


__all__: Sequence[str] = (
    "cluster_weights",
    "filters_to_keep",
    "gzip_size",
    "l1_filter_norms",
    "magnitude_mask",
    "model_sparsity",
    "prune_low_magnitude",
    "pruning_callbacks",
    "rank_filters",
    "sparsity_of",
    "strip_clustering",
    "strip_pruning",
    "structured_prune",
    "unique_weight_counts",
)
