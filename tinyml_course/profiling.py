"""Profile a Keras model the way a microcontroller sees it.

* **Parameters** and the bytes they take at float32, float16 and int8 (flash).
* **MACs** (multiply-accumulates) per layer, from the layer shapes:

  ===================  =================================================
  Dense                ``in_features * units`` (per position)
  Conv2D               ``Kh * Kw * (C_in / groups) * C_out * H_out * W_out``
  DepthwiseConv2D      ``Kh * Kw * C_in * depth_multiplier * H_out * W_out``
  SeparableConv2D      depthwise + pointwise ``C_in * dm * C_out * H_out * W_out``
  pooling              0 MACs: no multiplication. Its comparisons (max) or additions
                       (average), one per window element, ``Kh * Kw * C * H_out * W_out``
                       (global pooling: ``H * W * C``), are counted apart, as
                       :func:`pooling_ops`, because a comparison costs far less than a MAC
  batch normalization  0 (folds into the convolution before it)
  everything else      0 without weights (reshapes, activations); a layer with weights
                       that is none of the above is refused (ValueError), never counted 0
  ===================  =================================================

* **Peak activation memory** (RAM): executing layer by layer, the tensors alive at a
  step are the layer's inputs, its output, and every earlier output still needed later.
  The peak is the largest such sum. The microcontroller runtime's memory planner
  shares buffers and so may need a little less or more (notebook 00 compares).
* **Host latency** of a ``.tflite`` (see :func:`tinyml_course.tflite.measure_latency`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

BYTES_PER_PARAM = {"float32": 4, "float16": 2, "int8": 1}


@dataclass(frozen=True)
class LayerProfile:
    """One layer's cost."""

    name: str
    kind: str
    output_shape: tuple[int | None, ...]
    params: int
    macs: int
    output_elements: int
    pooling_ops: int = 0


@dataclass
class ModelProfile:
    """A model's size and cost, printable as a table.

    Attributes
    ----------
    params : int
        All parameters (trainable and not).
    macs : int
        Multiply-accumulates for one input sample (convolutions and dense layers).
    pooling_ops : int
        The pooling layers' comparisons and additions for one input sample (not MACs).
    peak_activation_elements : int
        Largest number of activation values alive at once (times the bytes per value
        gives RAM; see :meth:`peak_activation_bytes`).
    """

    name: str
    layers: list[LayerProfile]
    params: int
    macs: int
    peak_activation_elements: int
    live_elements_per_layer: list[int] = field(default_factory=list)
    pooling_ops: int = 0
    tflite_bytes: int | None = None
    latency_ms: float | None = None

    def weight_bytes(self, precision: str = "float32") -> int:
        """Bytes of the weights at ``"float32"``, ``"float16"`` or ``"int8"``."""
        if precision not in BYTES_PER_PARAM:
            raise ValueError(f"precision={precision!r}; choose one of {list(BYTES_PER_PARAM)}.")
        return self.params * BYTES_PER_PARAM[precision]

    @property
    def float32_bytes(self) -> int:
        return self.weight_bytes("float32")

    @property
    def float16_bytes(self) -> int:
        return self.weight_bytes("float16")

    @property
    def int8_bytes(self) -> int:
        return self.weight_bytes("int8")

    def peak_activation_bytes(self, precision: str = "float32") -> int:
        """Peak activation RAM at a precision (int8 activations: 1 byte each)."""
        if precision not in BYTES_PER_PARAM:
            raise ValueError(f"precision={precision!r}; choose one of {list(BYTES_PER_PARAM)}.")
        return self.peak_activation_elements * BYTES_PER_PARAM[precision]

    def table(self) -> str:
        """The per-layer table and the totals, as text."""
        header = f"{'layer':<24}{'type':<20}{'output shape':<20}{'params':>10}{'MACs':>14}"
        rows = [f"Model profile: {self.name}", header, "-" * len(header)]
        for layer in self.layers:
            shape = str(tuple(layer.output_shape[1:]))
            rows.append(
                f"{layer.name[:23]:<24}{layer.kind[:19]:<20}{shape:<20}{layer.params:>10,}{layer.macs:>14,}"
            )
        rows.append("-" * len(header))
        rows.append(f"{'total':<64}{self.params:>10,}{self.macs:>14,}")
        if self.pooling_ops:
            rows.append(f"pooling (comparisons and additions, not MACs): {self.pooling_ops:,} ops")
        rows.append(
            f"weights: {self.float32_bytes:,} B float32 | {self.float16_bytes:,} B float16 | {self.int8_bytes:,} B int8"
        )
        rows.append(
            f"peak activations: {self.peak_activation_bytes('float32'):,} B float32 | "
            f"{self.peak_activation_bytes('int8'):,} B int8"
        )
        if self.tflite_bytes is not None:
            rows.append(f".tflite file: {self.tflite_bytes:,} B")
        if self.latency_ms is not None:
            rows.append(f"host latency (median): {self.latency_ms:.3f} ms")
        return "\n".join(rows)

    def __str__(self) -> str:
        return self.table()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython display
        printer.text(self.table())

    def summary(self) -> dict[str, int | float | None]:
        """The totals as a plain dict (handy for tables of several models)."""
        return {
            "params": self.params,
            "macs": self.macs,
            "pooling_ops": self.pooling_ops,
            "float32_bytes": self.float32_bytes,
            "int8_bytes": self.int8_bytes,
            "peak_activation_bytes_float32": self.peak_activation_bytes("float32"),
            "peak_activation_bytes_int8": self.peak_activation_bytes("int8"),
            "tflite_bytes": self.tflite_bytes,
            "latency_ms": self.latency_ms,
        }


# --------------------------------------------------------------------------- formulas
def conv2d_macs(
    kernel: int | tuple[int, int],
    c_in: int,
    c_out: int,
    out_hw: int | tuple[int, int],
    groups: int = 1,
) -> int:
    """MACs of a standard convolution: ``Kh*Kw*(C_in/groups)*C_out*H_out*W_out``.

    >>> conv2d_macs(5, 3, 256, 8)
    1228800
    """
    kh, kw = _pair(kernel)
    ho, wo = _pair(out_hw)
    return kh * kw * (c_in // groups) * c_out * ho * wo


def depthwise_macs(
    kernel: int | tuple[int, int],
    c_in: int,
    out_hw: int | tuple[int, int],
    depth_multiplier: int = 1,
) -> int:
    """MACs of a depthwise convolution: ``Kh*Kw*C_in*dm*H_out*W_out``."""
    kh, kw = _pair(kernel)
    ho, wo = _pair(out_hw)
    return kh * kw * c_in * depth_multiplier * ho * wo


def pointwise_macs(c_in: int, c_out: int, out_hw: int | tuple[int, int]) -> int:
    """MACs of a 1x1 (pointwise) convolution: ``C_in*C_out*H_out*W_out``."""
    ho, wo = _pair(out_hw)
    return c_in * c_out * ho * wo


def separable_macs(
    kernel: int | tuple[int, int],
    c_in: int,
    c_out: int,
    out_hw: int | tuple[int, int],
    depth_multiplier: int = 1,
) -> int:
    """MACs of depthwise + pointwise: ``Kh*Kw*C_in*H_out*W_out + C_in*C_out*H_out*W_out``.

    >>> separable_macs(5, 3, 256, 8)
    53952
    """
    return depthwise_macs(kernel, c_in, out_hw, depth_multiplier) + pointwise_macs(
        c_in * depth_multiplier, c_out, out_hw
    )


def dense_macs(in_features: int, units: int) -> int:
    """MACs of a fully connected layer: ``in_features*units``."""
    return in_features * units


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


# --------------------------------------------------------------------------- model walk
def _unwrap(layer: Any) -> Any:
    """The layer inside tfmot wrappers (pruning, clustering, quantization)."""
    while hasattr(layer, "layer") and type(layer).__name__ in {
        "PruneLowMagnitude",
        "ClusterWeights",
        "ClusterWeightsMHA",
        "QuantizeWrapper",
        "QuantizeWrapperV2",
    }:
        layer = layer.layer
    return layer


def _shape_of(tensor_shape: Any) -> tuple[int | None, ...]:
    if isinstance(tensor_shape, list):  # several outputs: take the first
        tensor_shape = tensor_shape[0]
    return tuple(None if d is None else int(d) for d in tuple(tensor_shape))


def _elements(shape: tuple[int | None, ...]) -> int:
    return int(np.prod([d for d in shape[1:] if d is not None])) if len(shape) > 1 else 1


def _has_weights(layer: Any) -> bool:
    try:
        return bool(layer.weights)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return False


def layer_macs(layer: Any) -> int:
    """MACs of one built Keras layer for one input sample (see the module docstring).

    Layers are recognised with ``isinstance``, so a subclass of ``Conv2D`` (or of any other
    counted layer) costs what its base class costs.

    Raises
    ------
    ValueError
        If the layer has weights but is none of the layers this counter knows (its MACs
        would silently count as 0), or if its shapes cannot be read.
    """
    from tinyml_course import keras

    L = keras.layers
    inner = _unwrap(layer)
    if isinstance(inner, keras.Model):
        return sum(layer_macs(sub) for sub in inner.layers)
    transposed = tuple(
        getattr(L, name)
        for name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
        if hasattr(L, name)
    )
    known = not isinstance(inner, transposed) and isinstance(
        inner,
        (
            L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D,
            L.SeparableConv1D, L.SeparableConv2D, L.Dense,
        ),
    )  # fmt: skip
    try:
        in_shape = _shape_of(layer.input_shape)
        out_shape = _shape_of(layer.output_shape)
    except (AttributeError, RuntimeError) as err:
        if known or _has_weights(inner):
            raise ValueError(
                f"layer {layer.name!r} ({type(inner).__name__}) has weights but its input and output "
                f"shapes cannot be read ({err}); profile a built model in which each layer is used once."
            ) from err
        return 0
    out_positions = _elements(out_shape[:-1] + (1,)) if len(out_shape) > 2 else 1
    if known and isinstance(inner, (L.SeparableConv1D, L.SeparableConv2D)):
        dm = inner.depth_multiplier
        c_in = in_shape[-1]
        return (
            int(np.prod(inner.kernel_size)) * c_in * dm * out_positions
            + c_in * dm * inner.filters * out_positions
        )
    if known and isinstance(inner, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return (
            int(np.prod(inner.kernel_size)) * in_shape[-1] * inner.depth_multiplier * out_positions
        )
    if known and isinstance(inner, (L.Conv1D, L.Conv2D, L.Conv3D)):
        k = inner.kernel_size
        groups = getattr(inner, "groups", 1)
        return int(np.prod(k)) * (in_shape[-1] // groups) * inner.filters * out_positions
    if known and isinstance(inner, L.Dense):
        return in_shape[-1] * inner.units * out_positions
    if isinstance(inner, L.BatchNormalization):
        return 0  # folds into the preceding convolution when converted
    if _has_weights(inner):
        raise ValueError(
            f"layer {layer.name!r} is a {type(inner).__name__}, which has weights but is none of the "
            "layers the MAC counter knows (Conv1D/2D/3D, DepthwiseConv1D/2D, SeparableConv1D/2D, "
            "Dense, pooling, BatchNormalization); its cost would silently count as 0. Use those "
            "layers, or count this layer's MACs yourself."
        )
    return 0


def pooling_ops(layer: Any) -> int:
    """Comparisons (max pooling) or additions (average pooling) of one built pooling layer.

    One operation per window element and output value, ``Kh * Kw * C * H_out * W_out``
    (global pooling: ``H * W * C``); 0 for any layer that is not pooling. These are not
    MACs: no multiplication, and an 8-bit comparison costs a fraction of a MAC.

    Raises
    ------
    ValueError
        If the layer's shapes cannot be read.
    """
    from tinyml_course import keras

    L = keras.layers
    inner = _unwrap(layer)
    if isinstance(inner, keras.Model):
        return sum(pooling_ops(sub) for sub in inner.layers)
    windowed = (
        L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D,
        L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    )  # fmt: skip
    global_ = (
        L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
        L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    )  # fmt: skip
    if not isinstance(inner, windowed + global_):
        return 0
    try:
        in_shape = _shape_of(layer.input_shape)
        out_shape = _shape_of(layer.output_shape)
    except (AttributeError, RuntimeError) as err:
        raise ValueError(
            f"pooling layer {layer.name!r} has no readable shapes ({err}); profile a built model."
        ) from err
    if isinstance(inner, global_):
        return _elements(in_shape)
    out_positions = _elements(out_shape[:-1] + (1,))
    return int(np.prod(inner.pool_size)) * out_shape[-1] * out_positions


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _check_built(model: Any) -> None:
    if not hasattr(model, "layers"):
        raise TypeError(f"model must be a Keras model; got {type(model).__name__}.")
    if not getattr(model, "built", False) or not getattr(model, "inputs", None):
        raise ValueError(
            f"model {getattr(model, 'name', '')!r} is not built, so its layer shapes are unknown. "
            "Start it with keras.Input(shape=...) (keras.Sequential([keras.Input((28, 28, 1)), ...])) "
            "or call model.build((None, 28, 28, 1)) first."
        )


def peak_activation_elements(model: Any) -> tuple[int, list[int]]:
    """Peak number of live activation values and the live count at each layer step.

    Every layer's output is counted as a new buffer, alive from the step that makes it
    to the last step that reads it (model outputs stay to the end).
    """
    _check_built(model)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    producers: dict[int, int] = {}  # tensor id -> step that produced it (-1: model input)
    sizes: dict[int, int] = {}
    keep: list[Any] = []
    for tensor in model.inputs:
        producers[id(tensor)] = -1
        sizes[id(tensor)] = _elements(_shape_of(tensor.shape))
        keep.append(tensor)
    last_use: dict[int, int] = {}
    step_inputs: list[list[int]] = []
    step_outputs: list[list[int]] = []
    for step, layer in enumerate(layers):
        ins = [id(t) for t in _as_list(layer.input)]
        outs = []
        for tensor in _as_list(layer.output):
            producers[id(tensor)] = step
            sizes[id(tensor)] = _elements(_shape_of(tensor.shape))
            outs.append(id(tensor))
            keep.append(tensor)
        for tid in ins:
            last_use[tid] = step
        step_inputs.append(ins)
        step_outputs.append(outs)
    for tensor in model.outputs:
        last_use[id(tensor)] = len(layers)
    live_per_step = []
    for step in range(len(layers)):
        live = set(step_inputs[step]) | set(step_outputs[step])
        live |= {
            tid for tid, born in producers.items() if born < step and last_use.get(tid, born) > step
        }
        live_per_step.append(sum(sizes.get(tid, 0) for tid in live))
    return (max(live_per_step) if live_per_step else 0), live_per_step


def profile_model(
    model: Any, *, tflite_model: bytes | None = None, latency_runs: int = 200
) -> ModelProfile:
    """Profile a built Keras model: parameters, MACs per layer, bytes, peak activations.

    Parameters
    ----------
    model : keras.Model
        A built model (started with ``keras.Input`` or built with ``model.build``).
    tflite_model : bytes, optional
        Its converted ``.tflite``; when given, the file size and the median host latency
        (``latency_runs`` timed runs, warm-up excluded) are added.

    Returns
    -------
    ModelProfile

    Raises
    ------
    ValueError
        If the model is not built.

    Examples
    --------
    >>> profile = profile_model(model)  # doctest: +SKIP
    >>> print(profile)                   # doctest: +SKIP
    """
    _check_built(model)
    layers = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        try:
            out_shape = _shape_of(layer.output_shape)
        except (AttributeError, RuntimeError):
            out_shape = ()
        layers.append(
            LayerProfile(
                name=layer.name,
                kind=type(_unwrap(layer)).__name__,
                output_shape=out_shape,
                params=int(layer.count_params()),
                macs=layer_macs(layer),
                output_elements=_elements(out_shape) if out_shape else 0,
                pooling_ops=pooling_ops(layer),
            )
        )
    peak, live = peak_activation_elements(model)
    profile = ModelProfile(
        name=model.name,
        layers=layers,
        params=int(model.count_params()),
        macs=sum(layer.macs for layer in layers),
        peak_activation_elements=peak,
        live_elements_per_layer=live,
        pooling_ops=sum(layer.pooling_ops for layer in layers),
    )
    if tflite_model is not None:
        from tinyml_course.tflite import measure_latency

        profile.tflite_bytes = len(tflite_model)
        profile.latency_ms = measure_latency(tflite_model, runs=latency_runs).median_ms
    return profile
