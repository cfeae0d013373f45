"""Patch-based inference (MCUNetV2): run a network's first stage patch by patch.

A microcontroller runs a network one operator at a time, and while an operator runs its input
and its output must both be in RAM. In a network for whole camera frames the first operators
work at high resolution, so their activations, not the weights, set the RAM a model needs.
Patch-based inference (Lin et al. 2021, *MCUNetV2*) runs that first **stage** on one spatial
patch of the frame at a time: each patch's activations are small, only the stage's (small)
output is assembled in full, and the rest of the network runs layer by layer on it.

A patch of the stage's output needs a larger patch of its input, because every output value
sees a window of inputs (its **receptive field**); neighbouring patches' inputs overlap by a
**halo**, and the overlap is computed twice (the extra MACs). To give exactly the outputs of the
whole-frame stage, a patch takes the real neighbouring pixels as its halo and is zero-padded only
where it touches the frame's edge, as the whole-frame operator pads.

This module holds the pieces, one function per idea:

* geometry along one axis: :func:`same_padding`, :func:`output_size`, :func:`receptive_field`,
  :func:`total_stride`, :func:`halo`, :func:`patch_input_size`, :func:`receptive_field_growth`,
  :func:`input_span`, :func:`split_range`;
* a plan of ``n x n`` patches for a stage: :func:`plan_patches` (:class:`PatchPlan`,
  :class:`Patch`), its MACs (:meth:`PatchPlan.macs`), :func:`extract_patches`,
  :func:`assemble_patches`;
* the int8 ``.tflite`` cut in two and resized per patch with the **same quantization
  parameters** as the whole model (so the outputs are bit-exact): :func:`model_operators`,
  :func:`stage_layers`, :func:`stage_model`, :func:`rest_model`, :func:`build_patch_based`
  (:class:`PatchBasedModel`), :func:`run_patch_based`;
* memory: :func:`profile_operators` (what a layer-by-layer runtime holds at each step, and MACs),
  :func:`measure_arenas` (tflite-micro's arena for many models in one child process) and
  :func:`schedule_peak_bytes`.

Examples
--------
>>> layers = [SpatialLayer("stem", 3, 2, "same", 1, 16), SpatialLayer("dw", 3, 2, "same", 64, 64, True)]
>>> receptive_field(layers), total_stride(layers), patch_input_size(layers, 8)
(7, 4, 35)
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

Padding = Literal["same", "valid"]
LayerPadding = Literal["valid", "same", "pad"]

# The operators a patch stage may hold: convolutions, and element-wise ops that keep the geometry.
_CONV_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D"}
_ELEMENTWISE_OPS = {"RELU", "RELU6", "RELU_N1_TO_1", "LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU"}
_INT32 = 2  # TensorType value of the .tflite schema
_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1, 10: 8, 16: 4, 17: 2}


# --------------------------------------------------------------------------- validation
def _check_int(name: str, value: Any, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number; got {value!r} ({type(value).__name__}).")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value}.")
    return int(value)


def _check_padding(name: str, value: Any) -> Padding:
    if value not in ("same", "valid"):
        raise ValueError(f"{name} must be 'same' or 'valid' (Keras' names); got {value!r}.")
    return value  # type: ignore[no-any-return]


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair (rows, columns); got {value!r}.")
        return _check_int(name, value[0], minimum=1), _check_int(name, value[1], minimum=1)
    v = _check_int(name, value, minimum=1)
    return v, v


# --------------------------------------------------------------------------- one layer's geometry
@dataclass(frozen=True)
class SpatialLayer:
    """The spatial geometry and cost of one layer of a stage.

    Parameters
    ----------
    name : str
        For messages and tables.
    kernel, stride : int or (int, int)
        Kernel and stride, (rows, columns); a 1x1 convolution is ``kernel=1, stride=1``.
    padding : {"same", "valid"}
        The whole-frame layer's padding, as Keras and TFLite define it (``"same"`` pads
        ``total // 2`` before and the rest after, see :func:`same_padding`).
    in_channels, out_channels : int
        Channels in and out.
    depthwise : bool
        One filter per channel (``DepthwiseConv2D``): ``out_channels`` MACs per position and
        kernel tap, instead of ``in_channels * out_channels``.

    Examples
    --------
    >>> SpatialLayer("expand", 1, 1, "same", 16, 64).macs_per_output
    1024
    """

    name: str
    kernel: int | tuple[int, int]
    stride: int | tuple[int, int]
    padding: Padding
    in_channels: int
    out_channels: int
    depthwise: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _pair("kernel", self.kernel))
        object.__setattr__(self, "stride", _pair("stride", self.stride))
        _check_padding("padding", self.padding)
        _check_int("in_channels", self.in_channels, minimum=1)
        _check_int("out_channels", self.out_channels, minimum=1)

    @property
    def macs_per_output(self) -> int:
        """Multiply-accumulates per output position (all output channels)."""
        kh, kw = self.kernel  # type: ignore[misc]
        per_channel = 1 if self.depthwise else int(self.in_channels)
        return int(kh * kw * per_channel * self.out_channels)

    def axis(self, axis: int) -> tuple[int, int]:
        """(kernel, stride) along ``axis`` (0: rows, 1: columns)."""
        if axis not in (0, 1):
            raise ValueError(f"axis must be 0 (rows) or 1 (columns); got {axis!r}.")
        return self.kernel[axis], self.stride[axis]  # type: ignore[index]


def _layers(layers: Sequence[SpatialLayer]) -> list[SpatialLayer]:
    out = list(layers)
    if not out:
        raise ValueError("layers is empty; a stage needs at least one layer.")
    for i, layer in enumerate(out):
        if not isinstance(layer, SpatialLayer):
            raise TypeError(
                f"layers[{i}] is a {type(layer).__name__}; describe each layer with SpatialLayer(...) "
                "or read a model's with stage_layers(model_content, stage_ops)."
            )
    return out


# --------------------------------------------------------------------------- geometry along one axis
def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Zero padding (before, after) of a ``"same"`` layer, the TensorFlow/TFLite rule.

    The output has ``ceil(size / stride)`` positions; the total padding is whatever the last
    window needs beyond the input, ``max((out - 1) * stride + kernel - size, 0)``, and the
    smaller half goes before.

    Examples
    --------
    >>> same_padding(96, 3, 2), same_padding(96, 3, 1), same_padding(95, 3, 2)
    ((0, 1), (1, 1), (1, 1))
    """
    size = _check_int("size", size, minimum=1)
    kernel = _check_int("kernel", kernel, minimum=1)
    stride = _check_int("stride", stride, minimum=1)
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def output_size(size: int, kernel: int, stride: int, padding: Padding) -> int:
    """Output positions of a layer along one axis.

    Examples
    --------
    >>> output_size(96, 3, 2, "same"), output_size(96, 3, 2, "valid")
    (48, 47)
    """
    size = _check_int("size", size, minimum=1)
    kernel = _check_int("kernel", kernel, minimum=1)
    stride = _check_int("stride", stride, minimum=1)
    if _check_padding("padding", padding) == "same":
        return -(-size // stride)
    if size < kernel:
        raise ValueError(
            f"a 'valid' layer with kernel {kernel} needs at least {kernel} inputs; got {size}."
        )
    return (size - kernel) // stride + 1


def receptive_field(layers: Sequence[SpatialLayer], *, axis: int = 0) -> int:
    """Input positions one output position of the stage depends on, along ``axis``.

    Walking back from one output position: a layer with kernel ``k`` and stride ``s`` turns a
    window of ``r`` positions into ``(r - 1) * s + k``.

    Examples
    --------
    >>> receptive_field([SpatialLayer("a", 3, 1, "same", 1, 1)] * 3)
    7
    """
    r = 1
    for layer in reversed(_layers(layers)):
        k, s = layer.axis(axis)
        r = (r - 1) * s + k
    return r


def total_stride(layers: Sequence[SpatialLayer], *, axis: int = 0) -> int:
    """The product of the strides: input positions per output position of the stage."""
    return math.prod(layer.axis(axis)[1] for layer in _layers(layers))


def halo(layers: Sequence[SpatialLayer], *, axis: int = 0) -> int:
    """Extra input positions a patch needs beyond its own share, along ``axis`` (both sides).

    A patch of ``t`` output positions owns ``t * S`` input positions (``S``: the total stride)
    but reads ``(t - 1) * S + R`` (``R``: the receptive field), so ``R - S`` more: the overlap with
    its neighbours, computed twice.

    Examples
    --------
    >>> halo([SpatialLayer("stem", 3, 2, "same", 1, 8), SpatialLayer("dw", 3, 2, "same", 8, 8, True)])
    3
    """
    return receptive_field(layers, axis=axis) - total_stride(layers, axis=axis)


def patch_input_size(layers: Sequence[SpatialLayer], out_size: int, *, axis: int = 0) -> int:
    """Input positions an interior patch of ``out_size`` output positions reads: ``(t-1)*S + R``."""
    out_size = _check_int("out_size", out_size, minimum=1)
    return (out_size - 1) * total_stride(layers, axis=axis) + receptive_field(layers, axis=axis)


def receptive_field_growth(layers: Sequence[SpatialLayer], *, axis: int = 0) -> list[int]:
    """The receptive field of the stage cut after each of its layers (the first 1, 2, ... layers)."""
    layers = _layers(layers)
    return [receptive_field(layers[: i + 1], axis=axis) for i in range(len(layers))]


def split_range(size: int, n: int) -> list[tuple[int, int]]:
    """Split ``range(size)`` into ``n`` contiguous parts whose lengths differ by at most one.

    Examples
    --------
    >>> split_range(24, 3), split_range(10, 4)
    ([(0, 8), (8, 16), (16, 24)], [(0, 3), (3, 6), (6, 8), (8, 10)])
    """
    size = _check_int("size", size, minimum=1)
    n = _check_int("n", n, minimum=1)
    if n > size:
        raise ValueError(
            f"cannot split {size} positions into n={n} non-empty parts; use n <= {size}."
        )
    base, extra = divmod(size, n)
    bounds = [0]
    for i in range(n):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


@dataclass(frozen=True)
class AxisSpan:
    """What one patch reads and computes along one axis, tensor by tensor.

    ``spans[0]`` is the range of the stage's input it reads (clipped to the frame),
    ``spans[i]`` the range of layer ``i``'s output it computes; ``pads[i - 1]`` is the zero
    padding (before, after) layer ``i`` adds, non-zero only where the patch meets the frame's edge.
    """

    spans: tuple[tuple[int, int], ...]
    pads: tuple[tuple[int, int], ...]

    @property
    def sizes(self) -> tuple[int, ...]:
        """Length of each tensor's range."""
        return tuple(stop - start for start, stop in self.spans)


def input_span(
    layers: Sequence[SpatialLayer], start: int, stop: int, size: int, *, axis: int = 0
) -> AxisSpan:
    """Walk an output range ``[start, stop)`` of the stage back to the input it needs.

    Layer ``i`` (kernel ``k``, stride ``s``, whole-frame padding ``p`` before) computes output
    ``j`` from inputs ``j*s - p ... j*s - p + k - 1``. The needed input range is clipped to the
    tensor; what falls outside is the zero padding this patch adds at the frame's edge.

    Parameters
    ----------
    layers : sequence of SpatialLayer
        The stage, first layer first.
    start, stop : int
        The range of the stage's output, ``0 <= start < stop <=`` its size.
    size : int
        The stage's input size along ``axis`` (the frame's height or width).

    Examples
    --------
    >>> layers = [SpatialLayer("stem", 3, 2, "same", 1, 8)]
    >>> input_span(layers, 40, 48, 96)   # the last rows: one padded row after the frame
    AxisSpan(spans=((80, 96), (40, 48)), pads=((0, 1),))
    """
    layers = _layers(layers)
    size = _check_int("size", size, minimum=1)
    sizes = [size]
    for layer in layers:
        k, s = layer.axis(axis)
        sizes.append(output_size(sizes[-1], k, s, layer.padding))
    start = _check_int("start", start)
    stop = _check_int("stop", stop, minimum=1)
    if not start < stop <= sizes[-1]:
        raise ValueError(
            f"[start, stop) = [{start}, {stop}) is not a non-empty range of the stage's output "
            f"(size {sizes[-1]})."
        )
    spans = [(start, stop)]
    pads = []
    for i in range(len(layers) - 1, -1, -1):
        k, s = layers[i].axis(axis)
        before = same_padding(sizes[i], k, s)[0] if layers[i].padding == "same" else 0
        a, b = spans[0]
        lo, hi = a * s - before, (b - 1) * s - before + k
        clipped = (max(lo, 0), min(hi, sizes[i]))
        pads.insert(0, (clipped[0] - lo, hi - clipped[1]))
        spans.insert(0, clipped)
    return AxisSpan(tuple(spans), tuple(pads))


# --------------------------------------------------------------------------- a plan of patches
@dataclass(frozen=True)
class Patch:
    """One patch: the part of the stage's output it computes and the input it reads.

    Attributes
    ----------
    index : (int, int)
        Row and column of the patch in the grid.
    rows, cols : AxisSpan
        What it reads and computes along each axis.
    """

    index: tuple[int, int]
    rows: AxisSpan
    cols: AxisSpan

    @property
    def input_slice(self) -> tuple[slice, slice]:
        """The frame's rows and columns this patch reads (its halo included)."""
        return slice(*self.rows.spans[0]), slice(*self.cols.spans[0])

    @property
    def output_slice(self) -> tuple[slice, slice]:
        """The rows and columns of the stage's output this patch computes."""
        return slice(*self.rows.spans[-1]), slice(*self.cols.spans[-1])

    @property
    def key(self) -> tuple[Any, ...]:
        """Patches with the same key have the same shapes and paddings: one model serves them all."""
        return (self.rows.sizes, self.rows.pads, self.cols.sizes, self.cols.pads)

    def layer_padding(self, i: int, layer: SpatialLayer) -> LayerPadding:
        """How layer ``i`` is realised for this patch: ``"valid"`` (no padding), ``"same"`` (the
        layer's own SAME rule on the patch gives exactly the padding needed) or ``"pad"`` (an
        explicit PAD operator first)."""
        pads = (self.rows.pads[i], self.cols.pads[i])
        if pads == ((0, 0), (0, 0)):
            return "valid"
        sizes = (self.rows.sizes[i], self.cols.sizes[i])
        outs = (self.rows.sizes[i + 1], self.cols.sizes[i + 1])
        for axis in (0, 1):
            k, s = layer.axis(axis)
            if same_padding(sizes[axis], k, s) != pads[axis] or -(-sizes[axis] // s) != outs[axis]:
                return "pad"
        return "same"


@dataclass(frozen=True)
class PatchPlan:
    """``n x n`` patches covering a stage's output, with what each reads.

    Attributes
    ----------
    layers : tuple of SpatialLayer
        The stage.
    input_shape, output_shape : (int, int, int)
        The stage's whole-frame input and output (height, width, channels).
    n : int
        Patches per side.
    patches : tuple of Patch
        Row by row.
    """

    layers: tuple[SpatialLayer, ...]
    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    n: int
    patches: tuple[Patch, ...]

    @property
    def keys(self) -> list[tuple[Any, ...]]:
        """The distinct patch shapes, in first-use order (one model each)."""
        seen: dict[tuple[Any, ...], None] = {}
        for patch in self.patches:
            seen.setdefault(patch.key, None)
        return list(seen)

    def layerwise_macs(self) -> int:
        """MACs of the stage run once on the whole frame."""
        h, w = self.input_shape[:2]
        total = 0
        for layer in self.layers:
            h = output_size(h, *layer.axis(0), layer.padding)
            w = output_size(w, *layer.axis(1), layer.padding)
            total += h * w * layer.macs_per_output
        return total

    def macs(self) -> int:
        """MACs of the stage run patch by patch (the halos' recomputation included)."""
        return sum(
            patch.rows.sizes[i + 1] * patch.cols.sizes[i + 1] * layer.macs_per_output
            for patch in self.patches
            for i, layer in enumerate(self.layers)
        )

    def mac_overhead(self) -> float:
        """Extra MACs of the patches as a fraction of the whole-frame stage's."""
        return self.macs() / self.layerwise_macs() - 1.0

    def patch_tensor_bytes(self, patch: Patch) -> list[list[int]]:
        """int8 bytes of each tensor a patch's stage holds, operator by operator: for each
        operator (a PAD counts as one) the bytes of its input and of its output."""
        steps = []
        channels = [self.layers[0].in_channels] + [layer.out_channels for layer in self.layers]
        for i, layer in enumerate(self.layers):
            rows, cols = patch.rows.sizes[i], patch.cols.sizes[i]
            current = rows * cols * channels[i]
            if patch.layer_padding(i, layer) == "pad":
                (pt, pb), (pl, pr) = patch.rows.pads[i], patch.cols.pads[i]
                padded = (rows + pt + pb) * (cols + pl + pr) * channels[i]
                steps.append([current, padded])
                current = padded
            steps.append(
                [current, patch.rows.sizes[i + 1] * patch.cols.sizes[i + 1] * channels[i + 1]]
            )
        return steps

    def patch_peak_bytes(self) -> int:
        """The largest int8 activation bytes any patch holds at once (an operator's input and
        output), the analytic counterpart of the largest per-patch arena."""
        return max(max(sum(step) for step in self.patch_tensor_bytes(p)) for p in self.patches)

    @property
    def output_bytes(self) -> int:
        """int8 bytes of the assembled stage output."""
        return int(np.prod(self.output_shape))


def plan_patches(layers: Sequence[SpatialLayer], input_shape: Sequence[int], n: int) -> PatchPlan:
    """Plan ``n x n`` patches of a stage: what each computes, reads and pads.

    The stage's output is split into ``n`` near-equal ranges per axis (:func:`split_range`);
    each range is walked back through the layers (:func:`input_span`).

    Parameters
    ----------
    layers : sequence of SpatialLayer
        The stage, first layer first (:func:`stage_layers` reads a model's).
    input_shape : (int, int) or (int, int, int)
        The frame's height, width (and channels).
    n : int
        Patches per side (1: the whole frame, layer by layer).

    Returns
    -------
    PatchPlan

    Examples
    --------
    >>> plan = plan_patches([SpatialLayer("stem", 3, 2, "same", 1, 8)], (96, 96, 1), 2)
    >>> [p.input_slice for p in plan.patches][:2]
    [(slice(0, 49, None), slice(0, 49, None)), (slice(0, 49, None), slice(48, 96, None))]
    """
    layers = _layers(layers)
    shape = tuple(input_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"input_shape must be (height, width[, channels]); got {input_shape!r}.")
    h = _check_int("input_shape[0]", shape[0], minimum=1)
    w = _check_int("input_shape[1]", shape[1], minimum=1)
    c = (
        _check_int("input_shape[2]", shape[2], minimum=1)
        if len(shape) == 3
        else layers[0].in_channels
    )
    if c != layers[0].in_channels:
        raise ValueError(
            f"input_shape has {c} channels but the first layer ({layers[0].name}) takes "
            f"{layers[0].in_channels}."
        )
    n = _check_int("n", n, minimum=1)
    oh, ow = h, w
    for layer in layers:
        oh = output_size(oh, *layer.axis(0), layer.padding)
        ow = output_size(ow, *layer.axis(1), layer.padding)
    if n > min(oh, ow):
        raise ValueError(
            f"n={n} patches per side, but the stage's output is only {oh}x{ow}; use n <= {min(oh, ow)}."
        )
    row_spans = [input_span(layers, a, b, h, axis=0) for a, b in split_range(oh, n)]
    col_spans = [input_span(layers, a, b, w, axis=1) for a, b in split_range(ow, n)]
    patches = tuple(
        Patch((i, j), rows, cols)
        for i, rows in enumerate(row_spans)
        for j, cols in enumerate(col_spans)
    )
    return PatchPlan(tuple(layers), (h, w, c), (oh, ow, layers[-1].out_channels), n, patches)


def extract_patches(frames: np.ndarray, plan: PatchPlan) -> list[np.ndarray]:
    """Cut each patch's input (its halo included) out of a batch of frames ``(N, H, W, C)``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or tuple(frames.shape[1:]) != tuple(plan.input_shape):
        raise ValueError(
            f"frames must be a batch (N, {', '.join(map(str, plan.input_shape))}); got {frames.shape}."
        )
    return [frames[:, rows, cols] for rows, cols in (p.input_slice for p in plan.patches)]


def assemble_patches(outputs: Sequence[np.ndarray], plan: PatchPlan) -> np.ndarray:
    """Write each patch's stage output into its place in the whole stage output ``(N, H', W', C')``."""
    outputs = list(outputs)
    if len(outputs) != len(plan.patches):
        raise ValueError(
            f"got {len(outputs)} patch outputs for a plan of {len(plan.patches)} patches."
        )
    first = np.asarray(outputs[0])
    assembled = np.zeros((first.shape[0], *plan.output_shape), first.dtype)
    for patch, out in zip(plan.patches, outputs, strict=True):
        rows, cols = patch.output_slice
        expected = (
            first.shape[0],
            rows.stop - rows.start,
            cols.stop - cols.start,
            plan.output_shape[2],
        )
        if tuple(np.shape(out)) != expected:
            raise ValueError(
                f"patch {patch.index} output has shape {np.shape(out)}; expected {expected}."
            )
        assembled[:, rows, cols] = out
    return assembled


# --------------------------------------------------------------------------- the .tflite flatbuffer
def _schema() -> Any:
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _load(model_content: bytes) -> Any:
    if isinstance(model_content, (bytearray, memoryview)):
        model_content = bytes(model_content)
    if (
        not isinstance(model_content, bytes)
        or len(model_content) < 8
        or model_content[4:8] != b"TFL3"
    ):
        raise ValueError(
            "model_content must be the bytes of a .tflite model (from convert_to_tflite(model, 'int8', ...))."
        )
    model = _schema().ModelT.InitFromPackedBuf(model_content, 0)
    if len(model.subgraphs or []) != 1:
        raise ValueError("patch-based inference needs a model with exactly one subgraph.")
    return model


def _pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_names() -> dict[int, str]:
    schema = _schema()
    return {
        int(v): k
        for k, v in vars(schema.BuiltinOperator).items()
        if not k.startswith("_") and isinstance(v, int)
    }


def _op_name(model: Any, op: Any) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    return _op_names().get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "CUSTOM")


def _name(tensor: Any) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name or "")


@dataclass(frozen=True)
class OperatorInfo:
    """One operator of a ``.tflite`` model, in execution order."""

    index: int
    op: str
    output_name: str
    output_shape: tuple[int, ...]


def model_operators(model_content: bytes) -> list[OperatorInfo]:
    """The operators of a ``.tflite`` model in execution order, with their output tensor."""
    model = _load(model_content)
    graph = model.subgraphs[0]
    out = []
    for i, op in enumerate(graph.operators):
        t = graph.tensors[op.outputs[0]]
        out.append(OperatorInfo(i, _op_name(model, op), _name(t), tuple(int(d) for d in t.shape)))
    return out


def _check_stage_ops(model: Any, stage_ops: Any) -> int:
    graph = model.subgraphs[0]
    count = len(graph.operators)
    stage_ops = _check_int("stage_ops", stage_ops, minimum=1)
    if stage_ops >= count:
        raise ValueError(
            f"stage_ops={stage_ops}, but the model has {count} operators; the stage must leave at "
            f"least one for the rest (use 1 to {count - 1})."
        )
    names = _op_names()
    previous = graph.inputs[0]
    for i, op in enumerate(graph.operators[:stage_ops]):
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(int(code.builtinCode), int(code.deprecatedBuiltinCode)), "CUSTOM")
        if name not in _CONV_OPS | _ELEMENTWISE_OPS:
            raise ValueError(
                f"operator {i} is {name}; a patch stage may hold only convolutions and element-wise "
                f"activations ({sorted(_CONV_OPS | _ELEMENTWISE_OPS)}). Cut the stage before it."
            )
        if int(op.inputs[0]) != int(previous):
            raise ValueError(
                f"operator {i} ({name}) does not read the previous operator's output: the stage must "
                "be a chain (a residual connection cannot cross into or out of a patch stage)."
            )
        previous = op.outputs[0]
    later_inputs = {int(t) for op in graph.operators[stage_ops:] for t in op.inputs}
    inner = {int(op.outputs[0]) for op in graph.operators[: stage_ops - 1]} | {int(graph.inputs[0])}
    if inner & later_inputs:
        raise ValueError(
            f"a tensor inside the first {stage_ops} operators is read after the cut (a skip "
            "connection): cut the stage where only one tensor crosses."
        )
    return stage_ops


def stage_layers(model_content: bytes, stage_ops: int) -> list[SpatialLayer]:
    """The geometry of the first ``stage_ops`` operators of an int8 ``.tflite`` model.

    Parameters
    ----------
    model_content : bytes
        An int8 ``.tflite`` model.
    stage_ops : int
        Operators in the stage.

    Returns
    -------
    list of SpatialLayer
        One per operator (element-wise activations as 1x1 layers without weights).

    Raises
    ------
    ValueError
        If the stage holds an operator other than convolutions and element-wise activations,
        is not a chain, or has dilations.
    """
    model = _load(model_content)
    stage_ops = _check_stage_ops(model, stage_ops)
    schema = _schema()
    graph = model.subgraphs[0]
    layers = []
    for op in graph.operators[:stage_ops]:
        name = _op_name(model, op)
        x, y = graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]
        label = _name(y).split(";")[0]
        if name not in _CONV_OPS:
            layers.append(SpatialLayer(label, 1, 1, "valid", int(x.shape[-1]), int(y.shape[-1])))
            continue
        options = op.builtinOptions
        if (options.dilationHFactor or 1) != 1 or (options.dilationWFactor or 1) != 1:
            raise ValueError(f"operator {label} is dilated; patch stages support dilation 1 only.")
        w = graph.tensors[op.inputs[1]]
        padding = "same" if options.padding == schema.Padding.SAME else "valid"
        layers.append(
            SpatialLayer(
                label,
                (int(w.shape[1]), int(w.shape[2])),
                (int(options.strideH), int(options.strideW)),
                padding,
                int(x.shape[-1]),
                int(y.shape[-1]),
                depthwise=name == "DEPTHWISE_CONV_2D",
            )
        )
    return layers


def _prune(model: Any) -> Any:
    """Drop the tensors, buffers and operator codes no operator or subgraph boundary uses."""
    graph = model.subgraphs[0]
    used_tensors = sorted(
        {
            int(t)
            for op in graph.operators
            for t in list(op.inputs) + list(op.outputs)
            if int(t) >= 0
        }
        | {int(t) for t in graph.inputs}
        | {int(t) for t in graph.outputs}
    )
    tensor_map = {old: new for new, old in enumerate(used_tensors)}
    graph.tensors = [graph.tensors[i] for i in used_tensors]
    for op in graph.operators:
        op.inputs = np.array(
            [tensor_map.get(int(t), -1) if int(t) >= 0 else -1 for t in op.inputs], np.int32
        )
        op.outputs = np.array([tensor_map[int(t)] for t in op.outputs], np.int32)
        op.intermediates = None
    graph.inputs = np.array([tensor_map[int(t)] for t in graph.inputs], np.int32)
    graph.outputs = np.array([tensor_map[int(t)] for t in graph.outputs], np.int32)
    used_buffers = {0} | {int(t.buffer) for t in graph.tensors}
    used_buffers |= {int(m.buffer) for m in model.metadata or []}
    buffer_map = {old: new for new, old in enumerate(sorted(used_buffers))}
    model.buffers = [model.buffers[i] for i in sorted(used_buffers)]
    for t in graph.tensors:
        t.buffer = buffer_map[int(t.buffer)]
    for m in model.metadata or []:
        m.buffer = buffer_map[int(m.buffer)]
    used_codes = sorted({int(op.opcodeIndex) for op in graph.operators})
    code_map = {old: new for new, old in enumerate(used_codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in used_codes]
    for op in graph.operators:
        op.opcodeIndex = code_map[int(op.opcodeIndex)]
    model.signatureDefs = None  # they name tensors by index; the cut models are called by position
    return model


def rest_model(model_content: bytes, stage_ops: int) -> bytes:
    """The operators after the first ``stage_ops``, as a model whose input is the stage's output.

    Every tensor keeps its quantization parameters and every weight its bytes, so running the
    stage and then this model gives exactly the whole model's outputs.

    Parameters
    ----------
    model_content : bytes
        An int8 ``.tflite`` model.
    stage_ops : int
        Operators in the stage, 1 to the number of operators minus one.

    Returns
    -------
    bytes
        The rest, as a ``.tflite`` model.
    """
    model = _load(model_content)
    stage_ops = _check_stage_ops(model, stage_ops)
    graph = model.subgraphs[0]
    cut = graph.operators[stage_ops - 1].outputs[0]
    graph.operators = graph.operators[stage_ops:]
    graph.inputs = np.array([cut], np.int32)
    return _pack(_prune(model))


def _set_shape(tensor: Any, shape: Sequence[int]) -> None:
    tensor.shape = np.array(shape, np.int32)
    tensor.shapeSignature = np.array(shape, np.int32)


def _pad_code(model: Any) -> int:
    schema = _schema()
    for i, code in enumerate(model.operatorCodes):
        if (
            max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            == schema.BuiltinOperator.PAD
        ):
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.PAD
    code.deprecatedBuiltinCode = schema.BuiltinOperator.PAD
    code.version = 2
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def stage_model(model_content: bytes, stage_ops: int, patch: Patch | None = None) -> bytes:
    """The first ``stage_ops`` operators of an int8 model, for the whole frame or for one patch.

    For a patch every tensor is resized to the patch's ranges, and each convolution pads only
    where the patch meets the frame's edge: no padding (``VALID``) inside the frame, the layer's
    own ``SAME`` rule where that gives exactly the frame's padding, else an explicit ``PAD``
    operator (which pads with the tensor's zero point, as ``SAME`` does). Quantization
    parameters, weights and biases are the whole model's, byte for byte.

    Parameters
    ----------
    model_content : bytes
        A full-integer int8 ``.tflite`` model.
    stage_ops : int
        Operators in the stage (see :func:`model_operators`).
    patch : Patch, optional
        From :func:`plan_patches` on :func:`stage_layers` ``(model_content, stage_ops)``.
    """
    model = _load(model_content)
    stage_ops = _check_stage_ops(model, stage_ops)
    schema = _schema()
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:stage_ops]
    graph.outputs = np.array([graph.operators[-1].outputs[0]], np.int32)
    if patch is not None:
        layers = stage_layers(model_content, stage_ops)
        if len(patch.rows.pads) != len(layers):
            raise ValueError(
                f"patch was planned for a stage of {len(patch.rows.pads)} layers; this one has {len(layers)}."
            )
        operators = []
        first = graph.tensors[graph.inputs[0]]
        _set_shape(first, (1, patch.rows.sizes[0], patch.cols.sizes[0], int(first.shape[-1])))
        for i, (op, layer) in enumerate(zip(graph.operators, layers, strict=True)):
            out = graph.tensors[op.outputs[0]]
            _set_shape(
                out, (1, patch.rows.sizes[i + 1], patch.cols.sizes[i + 1], int(out.shape[-1]))
            )
            how = patch.layer_padding(i, layer)
            if how == "pad":
                operators.append(_insert_pad(model, graph, op, patch, i, schema))
            if _op_name(model, op) in _CONV_OPS:
                op.builtinOptions.padding = (
                    schema.Padding.SAME if how == "same" else schema.Padding.VALID
                )
            operators.append(op)
        graph.operators = operators
    return _pack(_prune(model))


def _insert_pad(model: Any, graph: Any, op: Any, patch: Patch, i: int, schema: Any) -> Any:
    """A PAD operator in front of ``op``: zero-point padding where the patch meets the frame's edge."""
    source = graph.tensors[op.inputs[0]]
    (pt, pb), (pl, pr) = patch.rows.pads[i], patch.cols.pads[i]
    paddings = np.array([[0, 0], [pt, pb], [pl, pr], [0, 0]], np.int32)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(paddings.tobytes(), np.uint8)
    model.buffers.append(buffer)
    const = schema.TensorT()
    const.name = f"patch_paddings_{i}".encode()
    const.type = _INT32
    const.buffer = len(model.buffers) - 1
    _set_shape(const, (4, 2))
    graph.tensors.append(const)
    padded = copy.deepcopy(source)
    padded.name = f"{_name(source)}_padded".encode()
    padded.buffer = 0
    _set_shape(
        padded,
        (1, int(source.shape[1]) + pt + pb, int(source.shape[2]) + pl + pr, int(source.shape[3])),
    )
    graph.tensors.append(padded)
    pad = schema.OperatorT()
    pad.opcodeIndex = _pad_code(model)
    pad.inputs = np.array([op.inputs[0], len(graph.tensors) - 2], np.int32)
    pad.outputs = np.array([len(graph.tensors) - 1], np.int32)
    pad.builtinOptionsType = schema.BuiltinOptions.PadOptions
    pad.builtinOptions = schema.PadOptionsT()
    op.inputs = np.array([len(graph.tensors) - 1, *list(op.inputs[1:])], np.int32)
    return pad


# --------------------------------------------------------------------------- the patch-based model
@dataclass
class PatchBasedModel:
    """An int8 model cut into a patch stage (one ``.tflite`` per patch shape) and the rest.

    Attributes
    ----------
    plan : PatchPlan
        The patches.
    stage_ops : int
        Operators in the stage.
    patch_models : dict
        ``Patch.key`` -> the int8 ``.tflite`` that runs every patch of that shape.
    rest : bytes
        The operators after the stage, reading the assembled stage output.
    whole_stage : bytes
        The stage on the whole frame (layer by layer), for comparisons.
    input_bytes : int
        int8 bytes of one frame.
    """

    plan: PatchPlan
    stage_ops: int
    patch_models: dict[tuple[Any, ...], bytes]
    rest: bytes
    whole_stage: bytes
    input_bytes: int = field(default=0)

    def model_for(self, patch: Patch) -> bytes:
        """The ``.tflite`` that runs ``patch``."""
        return self.patch_models[patch.key]


def build_patch_based(model_content: bytes, stage_ops: int, n: int) -> PatchBasedModel:
    """Cut an int8 model after ``stage_ops`` operators and plan ``n x n`` patches of that stage.

    Parameters
    ----------
    model_content : bytes
        A full-integer int8 ``.tflite`` model with an image input ``(1, H, W, C)``.
    stage_ops : int
        Operators in the patch stage (:func:`model_operators` lists them); the stage must be a
        chain of convolutions and element-wise activations, cut where one tensor crosses.
    n : int
        Patches per side.

    Returns
    -------
    PatchBasedModel
        The plan, one stage ``.tflite`` per distinct patch shape, the rest and the whole stage.

    Raises
    ------
    NotInt8ModelError
        If the model's input or output is not int8.
    ValueError
        If the stage cannot be cut there, or ``n`` is larger than the stage's output.

    Examples
    --------
    >>> patched = build_patch_based(model_int8, stage_ops=5, n=3)   # doctest: +SKIP
    >>> len(patched.patch_models)   # one .tflite per distinct patch shape  # doctest: +SKIP
    4
    """
    from tinyml_course.micro import require_int8

    require_int8(model_content)
    layers = stage_layers(model_content, stage_ops)
    model = _load(model_content)
    graph = model.subgraphs[0]
    frame = tuple(int(d) for d in graph.tensors[graph.inputs[0]].shape[1:])
    if len(frame) != 3:
        raise ValueError(
            f"the model's input must be an image (1, H, W, C); got shape (1, {frame})."
        )
    plan = plan_patches(layers, frame, n)
    models = {}
    for patch in plan.patches:
        if patch.key not in models:
            models[patch.key] = stage_model(model_content, stage_ops, patch)
    return PatchBasedModel(
        plan,
        stage_ops,
        models,
        rest_model(model_content, stage_ops),
        stage_model(model_content, stage_ops),
        int(np.prod(frame)),
    )


Runner = Callable[[bytes, np.ndarray], np.ndarray]


def _default_runner(model_content: bytes, x: np.ndarray) -> np.ndarray:
    from tinyml_course.micro import run_micro

    return run_micro(model_content, x)


def run_patch_based(
    patched: PatchBasedModel, x: np.ndarray, *, runner: Runner | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Run int8 frames patch by patch through the stage, assemble, then run the rest.

    Parameters
    ----------
    patched : PatchBasedModel
        From :func:`build_patch_based`.
    x : np.ndarray
        int8 frames ``(N, H, W, C)``, quantized with the model's input parameters.
    runner : callable, optional
        ``runner(model_bytes, int8_batch) -> int8_outputs``; default
        :func:`tinyml_course.micro.run_micro` (tflite-micro).

    Returns
    -------
    (outputs, stage_outputs)
        The model's int8 outputs ``(N, ...)`` and the assembled stage outputs ``(N, H', W', C')``.
    """
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(f"x must be int8 frames (quantized); got {x.dtype}.")
    run = runner or _default_runner
    pieces = extract_patches(x, patched.plan)
    outputs = []
    for patch, piece in zip(patched.plan.patches, pieces, strict=True):
        rows, cols = patch.output_slice
        out = np.asarray(run(patched.model_for(patch), np.ascontiguousarray(piece)))
        outputs.append(out.reshape(len(x), rows.stop - rows.start, cols.stop - cols.start, -1))
    stage = assemble_patches(outputs, patched.plan)
    return np.asarray(run(patched.rest, stage)), stage


# --------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class OperatorProfile:
    """One operator of an int8 graph, run layer by layer: its output, MACs and the RAM it needs.

    Attributes
    ----------
    index : int
        Position in execution order.
    op : str
        The TFLite operator (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ...).
    output_name : str
        Its output tensor's name (the converter names it after the Keras layers it fused).
    output_shape : tuple of int
        Its output tensor's shape.
    macs : int
        Multiply-accumulates (convolutions and fully connected layers; 0 for the others).
    live_bytes : int
        Bytes of the activation tensors alive while it runs.
    """

    index: int
    op: str
    output_name: str
    output_shape: tuple[int, ...]
    macs: int
    live_bytes: int


def _operator_macs(name: str, graph: Any, op: Any) -> int:
    out = [int(d) for d in graph.tensors[op.outputs[0]].shape]
    if name == "CONV_2D":
        w = [int(d) for d in graph.tensors[op.inputs[1]].shape]  # (out, kh, kw, in)
        return int(np.prod(out)) * w[1] * w[2] * w[3]
    if name == "DEPTHWISE_CONV_2D":
        w = [int(d) for d in graph.tensors[op.inputs[1]].shape]  # (1, kh, kw, out)
        return int(np.prod(out)) * w[1] * w[2]
    if name == "FULLY_CONNECTED":
        w = [int(d) for d in graph.tensors[op.inputs[1]].shape]  # (units, in)
        return int(np.prod(out)) * w[1]
    return 0


def profile_operators(model_content: bytes) -> list[OperatorProfile]:
    """Each operator's MACs and the activation bytes alive while it runs, layer by layer.

    A tensor is alive from the operator that writes it (the model input: from the start) to the
    last operator that reads it (the model outputs: to the end); weights and other constants
    live in flash and are not counted. The largest ``live_bytes`` is the model's peak activation
    memory, a lower bound of the runtime's arena (which adds its own bookkeeping).

    Examples
    --------
    >>> peak = max(p.live_bytes for p in profile_operators(model_int8))   # doctest: +SKIP
    """
    model = _load(model_content)
    graph = model.subgraphs[0]
    constant = {
        i
        for i, t in enumerate(graph.tensors)
        if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)
    }
    born: dict[int, int] = {int(t): -1 for t in graph.inputs}
    last: dict[int, int] = {}
    for step, op in enumerate(graph.operators):
        for t in op.inputs:
            if int(t) >= 0:
                last[int(t)] = step
        for t in op.outputs:
            born.setdefault(int(t), step)
    for t in graph.outputs:
        last[int(t)] = len(graph.operators)

    def nbytes(i: int) -> int:
        t = graph.tensors[i]
        return int(np.prod([int(d) for d in t.shape])) * _ITEMSIZE.get(int(t.type), 4)

    rows = []
    for step, op in enumerate(graph.operators):
        live = [
            i for i, b in born.items() if i not in constant and b <= step and last.get(i, b) >= step
        ]
        name = _op_name(model, op)
        out = graph.tensors[op.outputs[0]]
        rows.append(
            OperatorProfile(
                step,
                name,
                _name(out),
                tuple(int(d) for d in out.shape),
                _operator_macs(name, graph, op),
                sum(map(nbytes, live)),
            )
        )
    return rows


_ARENAS_SCRIPT = r"""
import sys, numpy as np
from tflite_micro import runtime
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    interp = runtime.Interpreter.from_bytes(data, arena_size=4 * 1024 * 1024)
    details = interp.get_input_details(0)
    interp.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
    interp.invoke()
    sys.stdout.flush(); sys.stderr.flush()
    print("== model", path, file=sys.stderr, flush=True)
    interp.print_allocations()
    sys.stdout.flush(); sys.stderr.flush()
"""
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def measure_arenas(models: Sequence[bytes]) -> list[int]:
    """tflite-micro's tensor arena for each of several int8 models, measured in one child process.

    The same measurement as :func:`tinyml_course.micro.measure_arena` (the interpreter's
    recording allocator after one invocation in a generous arena), batched: a child process per
    model costs a second each. Where tflite-micro is not installed, each model's arena is
    estimated from its tensor lifetimes instead (with the notice of
    :func:`~tinyml_course.micro.measure_arena`).

    Raises
    ------
    RuntimeError
        If tflite-micro cannot run one of the models.
    """
    from tinyml_course.micro import measure_arena, micro_available, require_int8

    models = [bytes(m) for m in models]
    for m in models:
        require_int8(m)
    if not micro_available():
        return [measure_arena(m).bytes for m in models]
    if not models:
        return []
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, m in enumerate(models):
            path = Path(folder) / f"model_{i}.tflite"
            path.write_bytes(m)
            paths.append(str(path))
        result = subprocess.run(
            [sys.executable, "-c", _ARENAS_SCRIPT, *paths],
            capture_output=True,
            text=True,
            timeout=600,
        )
    text = result.stdout + "\n" + result.stderr
    totals = [int(v) for v in _TOTAL.findall(text)]
    if result.returncode != 0 or len(totals) != len(models):
        tail = [line for line in text.splitlines() if line.strip()][-3:]
        raise RuntimeError(
            f"tflite-micro could not measure every model: {' | '.join(tail) or 'no output'}"
        )
    return totals


def schedule_peak_bytes(
    patch_peak: int, stage_output: int, rest_peak: int, *, frame: int = 0
) -> int:
    """The peak RAM of a patch-based schedule.

    While the patches run, RAM holds the frame they are cut from, one patch's activations and
    the assembled stage output they are written into; afterwards the rest of the network runs
    layer by layer on that output (``rest_peak`` includes it, as the rest's input).

    Parameters
    ----------
    patch_peak : int
        The largest per-patch need (bytes: analytic peak or measured arena).
    stage_output : int
        Bytes of the assembled stage output.
    rest_peak : int
        The rest's need (bytes), its input included.
    frame : int
        Bytes of the frame held while the patches run (0 if the camera delivers patches).

    Examples
    --------
    >>> schedule_peak_bytes(20_000, 9_216, 30_000, frame=9_216)
    38432
    """
    values = {
        "patch_peak": patch_peak,
        "stage_output": stage_output,
        "rest_peak": rest_peak,
        "frame": frame,
    }
    for name, value in values.items():
        _check_int(name, value)
    return max(int(frame) + int(patch_peak) + int(stage_output), int(rest_peak))
