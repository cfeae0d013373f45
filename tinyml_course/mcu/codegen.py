"""Generate plain C99 from an int8 ``.tflite`` model, bit-exact with TensorFlow Lite Micro.

:func:`generate_c` reads the model's flatbuffer (with ``ai_edge_litert``'s schema module, which
ships on every platform) and writes one C function per model, ``model_invoke(input, output)``,
that calls one kernel per layer with constant parameters:

* weights and biases become ``const`` arrays (flash), 16-byte aligned;
* all intermediate activations share **one** static arena, planned from tensor lifetimes like
  TFLM's ``GreedyMemoryPlanner`` (:mod:`tinyml_course.mcu.planner`); ``RESHAPE``/``SQUEEZE``
  are aliases (no copy, no bytes); the first layer reads the caller's input buffer and the last
  layer writes the caller's output buffer directly;
* every float is turned into integers here, at generation time: TFLite's ``QuantizeMultiplier``
  (:func:`tinyml_course.quantization.quantize_multiplier`) gives each layer's fixed-point
  multipliers and shifts, so the device needs no floating point and no ``math.h``.

The kernels (``tinyml_kernels.c``, shipped in ``tinyml_course/mcu/c/``) port TFLM's int8
reference kernels, including the gemmlowp fixed-point ``exp`` and reciprocal of SOFTMAX and
LOGISTIC; :data:`SUPPORTED_OPS` lists the operators. Any C99 compiler builds them.

**SIMD is chosen when compiling, not when generating.** With ``-DTINYML_SIMD`` on a core with
the Arm DSP extension (``__ARM_FEATURE_DSP``: Cortex-M4, M7, M33 built with
``-mcpu=cortex-m4``...), the convolution, pointwise, depthwise and fully connected inner loops
widen int8 pairs to int16 (``SXTB16``) and do two multiply-accumulates per ``SMLAD``, and max
pooling compares four channels per instruction; the outputs are the same bytes. Without the
define, or on a host, the plain C loops run. SIMD convolutions need a little scratch for their
int16 columns, planned in the same arena: ``MODEL_ARENA_SIZE`` takes the larger SIMD value when
the define is active.

Define ``TINYML_LAYER_DONE(i)`` before the headers (``-D'TINYML_LAYER_DONE(i)=my_hook(i)'``) to
run code after each layer ``i``; the virtual board counts instructions per layer with it.

Examples
--------
>>> from tinyml_course.mcu.codegen import generate_c
>>> gen = generate_c(Path("mask.tflite").read_bytes())  # doctest: +SKIP
>>> print(gen.summary())  # doctest: +SKIP
>>> paths = gen.write()  # into results/mcu/model/  # doctest: +SKIP

Then, on the device (or the host: ``python -m ziglang cc -O2 -c model.c tinyml_kernels.c``)::

    #include "model.h"
    int8_t in[MODEL_INPUT_SIZE], out[MODEL_OUTPUT_SIZE];
    model_invoke(in, out);   /* in and out must not overlap */
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyml_course.mcu.planner import BufferRequest, plan_arena
from tinyml_course.quantization import quantize_multiplier

KERNEL_DIR = Path(__file__).resolve().parent / "c"
"""Folder of the hand-written kernel sources copied next to every generated model."""

KERNEL_FILES = ("tinyml_kernels.h", "tinyml_kernels.c")

SUPPORTED_OPS = (
    "ADD",
    "AVERAGE_POOL_2D",
    "CONCATENATION",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "EXPAND_DIMS",
    "FULLY_CONNECTED",
    "LOGISTIC",
    "MAX_POOL_2D",
    "MEAN",
    "PAD",
    "PADV2",
    "QUANTIZE",
    "RESHAPE",
    "SOFTMAX",
    "SQUEEZE",
)
"""TFLite builtin operators :func:`generate_c` translates (int8 activations, int8 weights)."""

# TensorType values of the schema.
_INT8, _INT32 = 9, 2
_TYPE_NAMES = {
    0: "float32",
    1: "float16",
    2: "int32",
    3: "uint8",
    4: "int64",
    6: "bool",
    7: "int16",
    9: "int8",
    10: "float64",
    17: "int4",
}
_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6"}
_ACTIVATION_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_SIMD_CONDITION = "defined(TINYML_SIMD) && defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1)"


# --------------------------------------------------------------------------- public types
@dataclass(frozen=True)
class Layer:
    """One operator of the generated model.

    Attributes
    ----------
    index : int
        Position in the model (the ``i`` of ``TINYML_LAYER_DONE(i)``; TFLite's operator order).
    op : str
        TFLite builtin name, e.g. ``"CONV_2D"``.
    macs : int
        Multiply-accumulates (0 for pooling, reshapes and activations).
    output_shape : tuple of int
        Shape of the layer's output tensor.
    kind : str
        ``"conv"``, ``"pointwise"`` (1x1 convolution), ``"depthwise"``, ``"dense"``, ``"pool"``
        (max/average pooling and MEAN), ``"reshape"`` (aliases, no code) or ``"other"``.
    """

    index: int
    op: str
    macs: int
    output_shape: tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class GeneratedModel:
    """C sources for one model, and what the device needs to know about it.

    Attributes
    ----------
    files : dict of str to str
        File name -> C source: ``<name>.h``, ``<name>.c``, ``tinyml_kernels.h``,
        ``tinyml_kernels.c``.
    input_shape, output_shape : tuple of int
        Tensor shapes (batch included).
    input_scale, input_zero_point, output_scale, output_zero_point
        Quantization of the int8 input and output.
    arena_bytes : int
        ``MODEL_ARENA_SIZE`` of a plain build: the intermediate activations, in one planned
        buffer (the input and the output stay in the caller's buffers).
    simd_arena_bytes : int
        ``MODEL_ARENA_SIZE`` of a ``-DTINYML_SIMD`` build (adds the convolutions' scratch).
    weight_bytes : int
        Constant data copied from the model: weights, biases and constant operands (flash).
    layers : tuple of Layer
        One entry per operator, in execution order.
    name : str
        The C prefix: ``<name>_invoke``, ``<NAME>_INPUT_SIZE``.
    """

    files: dict[str, str]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    arena_bytes: int
    simd_arena_bytes: int
    weight_bytes: int
    layers: tuple[Layer, ...]
    name: str = "model"

    @property
    def macs(self) -> int:
        """Total multiply-accumulates of one inference."""
        return sum(layer.macs for layer in self.layers)

    @property
    def input_size(self) -> int:
        """Bytes of one int8 input (``<NAME>_INPUT_SIZE``)."""
        return int(np.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        """Bytes of one int8 output (``<NAME>_OUTPUT_SIZE``)."""
        return int(np.prod(self.output_shape))

    def summary(self) -> str:
        """A table of the layers with their MACs, and the memory totals."""
        rows = [f"{'#':>3}  {'op':<18}{'kind':<11}{'output':<18}{'MACs':>12}"]
        for layer in self.layers:
            shape = "x".join(str(d) for d in layer.output_shape)
            rows.append(
                f"{layer.index:>3}  {layer.op:<18}{layer.kind:<11}{shape:<18}{layer.macs:>12,}"
            )
        rows.append(
            f"total {self.macs:,} MACs; weights {self.weight_bytes:,} B; arena "
            f"{self.arena_bytes:,} B ({self.simd_arena_bytes:,} B with TINYML_SIMD)"
        )
        return "\n".join(rows)

    def write(self, folder: str | Path | None = None, *, overwrite: bool = False) -> list[Path]:
        """Write :attr:`files` into ``folder`` (default ``results/mcu/<name>/``).

        Parameters
        ----------
        folder : str or Path, optional
            Destination folder, created if missing.
        overwrite : bool
            Replace existing files whose content differs. Identical files are left alone.

        Returns
        -------
        list of Path
            The paths of all files (written or already identical).

        Raises
        ------
        FileExistsError
            If a file exists with different content and ``overwrite`` is false.
        """
        if folder is None:
            from tinyml_course.paths import output_path

            target = output_path("mcu", self.name, "model.c").parent
        else:
            target = Path(folder).expanduser()
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"folder={str(target)!r} is a file; pass a folder path.")
        clashes = [
            target / n
            for n, text in self.files.items()
            if (target / n).exists() and (target / n).read_text() != text
        ]
        if clashes and not overwrite:
            raise FileExistsError(
                f"folder={str(target)!r} already holds different versions of "
                f"{', '.join(p.name for p in clashes)}; pass overwrite=True to replace them "
                "or choose another folder."
            )
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, text in self.files.items():
            path = target / n
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            paths.append(path)
        return paths


# --------------------------------------------------------------------------- parsing
@dataclass
class _Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: int
    scales: np.ndarray  # float32
    zero_points: np.ndarray  # int64
    quantized_dimension: int
    data: np.ndarray | None  # constant contents, or None for activations

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def scale(self) -> np.float32:
        return np.float32(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.zero_points.size else 0

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.dtype, f"type {self.dtype}")


def _operator_names() -> dict[int, str]:
    from ai_edge_litert import schema_py_generated as schema

    return {
        int(value): name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


_NUMPY_TYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}


def _parse(model_content: bytes) -> tuple[Any, Any, list[_Tensor]]:
    from ai_edge_litert import schema_py_generated as schema

    if isinstance(model_content, (bytearray, memoryview)):
        model_content = bytes(model_content)
    if not isinstance(model_content, bytes):
        raise TypeError(
            f"model_content must be the bytes of a .tflite model; got {type(model_content).__name__}. "
            "Read it with Path('model.tflite').read_bytes() or take convert_to_tflite(...)'s result."
        )
    if len(model_content) < 8 or model_content[4:8] != b"TFL3":
        raise ValueError(
            f"model_content ({len(model_content)} bytes) is not a .tflite flatbuffer (no 'TFL3' "
            "identifier); pass the bytes returned by convert_to_tflite(model, 'int8', ...)."
        )
    try:
        model = schema.ModelT.InitFromPackedBuf(model_content, 0)
    except Exception as exc:  # pragma: no cover - corrupt flatbuffers
        raise ValueError(f"model_content could not be parsed as a .tflite model: {exc}") from exc
    if not model.subgraphs or len(model.subgraphs) != 1:
        count = len(model.subgraphs or [])
        raise ValueError(
            f"the model has {count} subgraphs; generate_c supports models with exactly one "
            "(no control flow)."
        )
    graph = model.subgraphs[0]
    tensors = []
    for index, t in enumerate(graph.tensors or []):
        q = t.quantization
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [], np.float32)
        zps = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [], np.int64)
        data = None
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers or []) else None
        raw = None
        if buffer is not None and buffer.data is not None and len(buffer.data):
            raw = np.asarray(buffer.data, np.uint8).tobytes()
        elif buffer is not None and getattr(buffer, "offset", 0) and getattr(buffer, "size", 0):
            raw = model_content[int(buffer.offset) : int(buffer.offset) + int(buffer.size)]
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        if raw is not None:
            np_type = _NUMPY_TYPES.get(int(t.type))
            if np_type is not None:
                data = np.frombuffer(raw, dtype=np.dtype(np_type).newbyteorder("<")).astype(np_type)
                if data.size == int(np.prod(shape)) and shape:
                    data = data.reshape(shape)
            else:
                data = np.frombuffer(raw, np.uint8)
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        tensors.append(
            _Tensor(
                index=index,
                name=name,
                shape=shape,
                dtype=int(t.type),
                scales=scales,
                zero_points=zps,
                quantized_dimension=int(q.quantizedDimension) if q is not None else 0,
                data=data,
            )
        )
    return model, graph, tensors


# --------------------------------------------------------------------------- TFLite arithmetic
def _round_away(x: float) -> int:
    """C's ``std::round`` (halves away from zero) of a float, exactly."""
    x = float(x)
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _quantize_value(value: float, scale: np.float32, zero_point: int) -> int:
    """TFLite's ``Quantize`` helper of ``CalculateActivationRangeQuantized`` (float32 division)."""
    ratio = np.float32(np.float32(value) / np.float32(scale))
    return zero_point + _round_away(float(ratio))


def _activation_range(code: int, out: _Tensor, op: str) -> tuple[int, int]:
    if code not in _ACTIVATIONS:
        raise ValueError(
            f"{op} has the fused activation {_ACTIVATION_NAMES.get(code, code)}; generate_c "
            "supports NONE, RELU, RELU_N1_TO_1 and RELU6 (use a separate LOGISTIC or SOFTMAX)."
        )
    lo, hi = -128, 127
    kind = _ACTIVATIONS[code]
    if kind == "relu":
        lo = max(lo, _quantize_value(0.0, out.scale, out.zero_point))
    elif kind == "relu6":
        lo = max(lo, _quantize_value(0.0, out.scale, out.zero_point))
        hi = min(hi, _quantize_value(6.0, out.scale, out.zero_point))
    elif kind == "relu_n1_to_1":
        lo = max(lo, _quantize_value(-1.0, out.scale, out.zero_point))
        hi = min(hi, _quantize_value(1.0, out.scale, out.zero_point))
    return lo, hi


def _padding(
    padding: int, stride: int, dilation: int, in_size: int, k: int, out_size: int, op: str
) -> int:
    """TFLite's ``ComputePaddingHeightWidth`` for one dimension (checks the output size)."""
    eff = (k - 1) * dilation + 1
    if padding == 0:  # SAME
        expected = (in_size + stride - 1) // stride
    else:  # VALID
        expected = (in_size - eff + stride) // stride
    if expected != out_size:
        raise ValueError(
            f"{op}: the output size {out_size} does not match {'SAME' if padding == 0 else 'VALID'} "
            f"padding ({expected} for input {in_size}, kernel {k}, stride {stride}, dilation "
            f"{dilation}); the model looks inconsistent."
        )
    total = max((out_size - 1) * stride + eff - in_size, 0)
    return total // 2


def _multiplier(real: float) -> tuple[int, int]:
    m, s = quantize_multiplier(float(real))
    return int(m), int(s)


# --------------------------------------------------------------------------- C formatting
def _c_array(ctype: str, name: str, values: np.ndarray, *, per_line: int, align: int = 0) -> str:
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    attr = f" TINYML_ALIGN({align})" if align else ""
    lines = []
    for start in range(0, len(flat), per_line):
        lines.append("    " + ", ".join(str(v) for v in flat[start : start + per_line]) + ",")
    body = "\n".join(lines) if lines else "    0"
    return f"static const {ctype} {name}[{max(len(flat), 1)}]{attr} = {{\n{body}\n}};\n"


def _c_struct(ctype: str, name: str, fields: Sequence[tuple[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return "{" + ", ".join(str(int(x)) for x in v) + "}"
        return str(int(v))

    body = "\n".join(f"    .{k} = {value(v)}," for k, v in fields)
    return f"static const {ctype} {name} = {{\n{body}\n}};\n"


def _affine(t: _Tensor) -> str:
    zp = t.zero_point
    return f"{float(t.scale)!r} * (q {'-' if zp >= 0 else '+'} {abs(zp)})"


def _dims(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


# --------------------------------------------------------------------------- generator
@dataclass
class _LayerCode:
    index: int
    op: str
    kind: str
    macs: int
    comment: str
    inputs: list[int]  # activation tensor indices read
    outputs: list[int]  # activation tensor indices written
    decls: list[str] = field(default_factory=list)
    call: str = ""  # C statement with {T<idx>} placeholders and {SCRATCH}
    scratch_bytes: int = 0  # SIMD builds only
    alias: tuple[int, int] | None = None  # (input, output) sharing one buffer


class _Generator:
    def __init__(self, model_content: bytes, name: str) -> None:
        self.model, self.graph, self.tensors = _parse(model_content)
        self.names = _operator_names()
        self.name = name
        self.weight_bytes = 0

    # -- helpers
    def t(self, index: int) -> _Tensor:
        return self.tensors[index]

    def is_const(self, index: int) -> bool:
        return self.tensors[index].data is not None

    def op_name(self, op: Any) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = self.names.get(builtin, f"builtin {builtin}")
        if name == "CUSTOM":
            custom = (
                code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            )
            name = f"CUSTOM ({custom})"
        return name

    def require_int8(self, index: int, op: str, role: str) -> _Tensor:
        t = self.t(index)
        if t.dtype != _INT8:
            raise ValueError(
                f"{op}: the {role} tensor {t.name!r} is {t.type_name}; generate_c supports int8 "
                "activations only. Convert the model with convert_to_tflite(model, 'int8', "
                "representative_data=...)."
            )
        if t.scales.size == 0:
            raise ValueError(f"{op}: the {role} tensor {t.name!r} has no quantization parameters.")
        return t

    def activation_input(self, index: int, op: str, role: str = "input") -> _Tensor:
        t = self.require_int8(index, op, role)
        return t

    def const_int8_operand(self, layer: _LayerCode, index: int) -> str:
        """A constant int8 operand (e.g. of ADD) as a const array; returns its C name."""
        t = self.t(index)
        cname = f"l{layer.index}_const{index}"
        layer.decls.append(_c_array("int8_t", cname, t.data, per_line=16, align=16))
        self.weight_bytes += t.size
        return cname

    def operand(self, layer: _LayerCode, index: int, op: str, role: str) -> str:
        self.require_int8(index, op, role)
        if self.is_const(index):
            return self.const_int8_operand(layer, index)
        layer.inputs.append(index)
        return f"{{T{index}}}"

    # -- per-op translation
    def conv_like(self, layer: _LayerCode, op: Any, depthwise: bool) -> None:
        name = layer.op
        opts = op.builtinOptions
        inputs = list(op.inputs)
        x = self.activation_input(inputs[0], name)
        if self.is_const(inputs[0]):
            raise ValueError(f"{name}: a constant input tensor is not supported.")
        w = self.t(inputs[1])
        if w.dtype != _INT8 or w.data is None:
            raise ValueError(
                f"{name}: the filter {w.name!r} is {w.type_name}"
                f"{'' if w.data is not None else ' and not constant'}; generate_c supports "
                "constant int8 filters (int4 or float filters are not supported)."
            )
        if np.any(w.zero_points != 0):
            raise ValueError(
                f"{name}: the filter {w.name!r} has non-zero zero points; int8 "
                "filters must be symmetric."
            )
        has_bias = len(inputs) > 2 and inputs[2] >= 0
        bias = self.t(inputs[2]) if has_bias else None
        if bias is not None and (bias.dtype != _INT32 or bias.data is None):
            raise ValueError(
                f"{name}: the bias {bias.name!r} is {bias.type_name}; expected a "
                "constant int32 bias."
            )
        y = self.require_int8(op.outputs[0], name, "output")
        if len(x.shape) != 4 or len(y.shape) != 4 or len(w.shape) != 4:
            raise ValueError(
                f"{name}: expected 4-D NHWC tensors; got input {x.shape}, filter "
                f"{w.shape}, output {y.shape}."
            )
        batches, in_h, in_w, in_c = x.shape
        _, out_h, out_w, out_c = y.shape
        if depthwise:
            _, k_h, k_w, w_c = w.shape
            if w_c != out_c or out_c % in_c:
                raise ValueError(
                    f"{name}: filter {w.shape} does not fit input {x.shape} and output {y.shape}."
                )
            dm = out_c // in_c
            macs = batches * out_h * out_w * out_c * k_h * k_w
            kind = "depthwise"
        else:
            w_oc, k_h, k_w, w_ic = w.shape
            if w_oc != out_c:
                raise ValueError(
                    f"{name}: filter {w.shape} has {w_oc} output channels; the output has {out_c}."
                )
            if w_ic != in_c:
                raise ValueError(
                    f"{name}: grouped convolution (filter depth {w_ic}, input depth {in_c}) is "
                    "not supported; generate_c supports ordinary and depthwise convolutions."
                )
            dm = 1
            macs = batches * out_h * out_w * out_c * k_h * k_w * in_c
            kind = "pointwise" if k_h == 1 and k_w == 1 else "conv"
        stride_h, stride_w = int(opts.strideH), int(opts.strideW)
        dil_h, dil_w = int(opts.dilationHFactor or 1), int(opts.dilationWFactor or 1)
        pad_h = _padding(int(opts.padding), stride_h, dil_h, in_h, k_h, out_h, name)
        pad_w = _padding(int(opts.padding), stride_w, dil_w, in_w, k_w, out_w, name)
        act_min, act_max = _activation_range(int(opts.fusedActivationFunction), y, name)
        # Per-channel multipliers (PopulateConvolutionQuantizationParams).
        scales = w.scales if w.scales.size == out_c else np.repeat(w.scales[:1], out_c)
        if scales.size != out_c:
            raise ValueError(f"{name}: the filter has {w.scales.size} scales for {out_c} channels.")
        pairs = [
            _multiplier(float(x.scale) * float(np.float32(s)) / float(y.scale)) for s in scales
        ]
        i = layer.index
        layer.decls.append(_c_array("int8_t", f"l{i}_filter", w.data, per_line=16, align=16))
        self.weight_bytes += w.size
        bias_ref = "NULL"
        if bias is not None:
            layer.decls.append(_c_array("int32_t", f"l{i}_bias", bias.data, per_line=8, align=16))
            self.weight_bytes += 4 * bias.size
            bias_ref = f"l{i}_bias"
        layer.decls.append(_c_array("int32_t", f"l{i}_mult", [m for m, _ in pairs], per_line=8))
        layer.decls.append(_c_array("int32_t", f"l{i}_shift", [s for _, s in pairs], per_line=16))
        layer.decls.append(
            _c_struct(
                "tinyml_conv_params",
                f"l{i}_params",
                [
                    ("batches", batches),
                    ("in_h", in_h),
                    ("in_w", in_w),
                    ("in_c", in_c),
                    ("out_h", out_h),
                    ("out_w", out_w),
                    ("out_c", out_c),
                    ("k_h", k_h),
                    ("k_w", k_w),
                    ("stride_h", stride_h),
                    ("stride_w", stride_w),
                    ("dil_h", dil_h),
                    ("dil_w", dil_w),
                    ("pad_h", pad_h),
                    ("pad_w", pad_w),
                    ("depth_multiplier", dm),
                    ("input_offset", -x.zero_point),
                    ("output_offset", y.zero_point),
                    ("act_min", act_min),
                    ("act_max", act_max),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        args = (
            f"&l{i}_params, {{T{x.index}}}, l{i}_filter, {bias_ref}, l{i}_mult, l{i}_shift, "
            f"{{T{y.index}}}"
        )
        if depthwise:
            layer.call = f"tinyml_depthwise_conv2d_s8({args});"
        else:
            k_even = k_h * k_w * in_c + ((k_h * k_w * in_c) & 1)
            layer.scratch_bytes = (4 if in_c % 4 == 0 else 6) * k_even
            layer.call = f"tinyml_conv2d_s8({args}, {{SCRATCH}});"
        layer.kind = kind
        layer.macs = macs
        pad_name = "SAME" if int(opts.padding) == 0 else "VALID"
        extra = f" dilation {dil_h}x{dil_w}," if (dil_h, dil_w) != (1, 1) else ""
        extra += f" depth multiplier {dm}," if depthwise and dm != 1 else ""
        act = _ACTIVATION_NAMES.get(int(opts.fusedActivationFunction), "?")
        layer.comment = (
            f"{name} {k_h}x{k_w} stride {stride_h}x{stride_w} {pad_name},{extra} {act}: "
            f"{_dims(x.shape)} -> {_dims(y.shape)}, {macs:,} MACs"
        )

    def fully_connected(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        opts = op.builtinOptions
        inputs = list(op.inputs)
        x = self.activation_input(inputs[0], name)
        w = self.t(inputs[1])
        if w.dtype != _INT8 or w.data is None or len(w.shape) != 2:
            raise ValueError(
                f"{name}: the weights {w.name!r} are {w.type_name} {w.shape}; generate_c "
                "supports constant 2-D int8 weights."
            )
        if opts is not None and int(getattr(opts, "weightsFormat", 0) or 0) != 0:
            raise ValueError(f"{name}: shuffled weight formats are not supported.")
        if np.any(w.zero_points != 0):
            raise ValueError(
                f"{name}: the weights have non-zero zero points; int8 weights must be symmetric."
            )
        has_bias = len(inputs) > 2 and inputs[2] >= 0
        bias = self.t(inputs[2]) if has_bias else None
        if bias is not None and (bias.dtype != _INT32 or bias.data is None):
            raise ValueError(
                f"{name}: the bias {bias.name!r} is {bias.type_name}; expected a "
                "constant int32 bias."
            )
        y = self.require_int8(op.outputs[0], name, "output")
        out_depth, depth = w.shape
        if x.size % depth or y.size != (x.size // depth) * out_depth:
            raise ValueError(
                f"{name}: input {x.shape}, weights {w.shape} and output {y.shape} do not match."
            )
        batches = x.size // depth
        act_code = int(opts.fusedActivationFunction) if opts is not None else 0
        act_min, act_max = _activation_range(act_code, y, name)
        if w.scales.size > 1:
            if w.scales.size != out_depth:
                raise ValueError(f"{name}: {w.scales.size} weight scales for {out_depth} outputs.")
            pairs = [
                _multiplier(float(x.scale) * float(np.float32(s)) / float(y.scale))
                for s in w.scales
            ]
        else:
            # GetQuantizedConvolutionMultipler: the scale product is taken in float32.
            product = np.float32(x.scale * np.float32(w.scales[0]))
            pairs = [_multiplier(float(product) / float(y.scale))] * out_depth
        i = layer.index
        layer.decls.append(_c_array("int8_t", f"l{i}_filter", w.data, per_line=16, align=16))
        self.weight_bytes += w.size
        bias_ref = "NULL"
        if bias is not None:
            layer.decls.append(_c_array("int32_t", f"l{i}_bias", bias.data, per_line=8, align=16))
            self.weight_bytes += 4 * bias.size
            bias_ref = f"l{i}_bias"
        layer.decls.append(_c_array("int32_t", f"l{i}_mult", [m for m, _ in pairs], per_line=8))
        layer.decls.append(_c_array("int32_t", f"l{i}_shift", [s for _, s in pairs], per_line=16))
        layer.decls.append(
            _c_struct(
                "tinyml_fc_params",
                f"l{i}_params",
                [
                    ("batches", batches),
                    ("in_depth", depth),
                    ("out_depth", out_depth),
                    ("input_offset", -x.zero_point),
                    ("output_offset", y.zero_point),
                    ("act_min", act_min),
                    ("act_max", act_max),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        layer.call = (
            f"tinyml_fully_connected_s8(&l{i}_params, {{T{x.index}}}, l{i}_filter, "
            f"{bias_ref}, l{i}_mult, l{i}_shift, {{T{y.index}}});"
        )
        layer.kind = "dense"
        layer.macs = batches * depth * out_depth
        act = _ACTIVATION_NAMES.get(act_code, "?")
        layer.comment = (
            f"{name} {depth} -> {out_depth}, {act}: {_dims(x.shape)} -> "
            f"{_dims(y.shape)}, {layer.macs:,} MACs"
        )

    def pool(self, layer: _LayerCode, op: Any, average: bool) -> None:
        name = layer.op
        opts = op.builtinOptions
        x = self.activation_input(op.inputs[0], name)
        y = self.require_int8(op.outputs[0], name, "output")
        if len(x.shape) != 4 or len(y.shape) != 4:
            raise ValueError(f"{name}: expected 4-D NHWC tensors; got {x.shape} -> {y.shape}.")
        if abs(float(x.scale) - float(y.scale)) > 1e-6 or x.zero_point != y.zero_point:
            raise ValueError(
                f"{name}: input and output quantization differ; TFLM requires them "
                "equal for int8 pooling."
            )
        batches, in_h, in_w, ch = x.shape
        _, out_h, out_w, _ = y.shape
        k_h, k_w = int(opts.filterHeight), int(opts.filterWidth)
        s_h, s_w = int(opts.strideH), int(opts.strideW)
        pad_h = _padding(int(opts.padding), s_h, 1, in_h, k_h, out_h, name)
        pad_w = _padding(int(opts.padding), s_w, 1, in_w, k_w, out_w, name)
        act_min, act_max = _activation_range(int(opts.fusedActivationFunction), y, name)
        i = layer.index
        layer.decls.append(
            _c_struct(
                "tinyml_pool_params",
                f"l{i}_params",
                [
                    ("batches", batches),
                    ("in_h", in_h),
                    ("in_w", in_w),
                    ("channels", ch),
                    ("out_h", out_h),
                    ("out_w", out_w),
                    ("k_h", k_h),
                    ("k_w", k_w),
                    ("stride_h", s_h),
                    ("stride_w", s_w),
                    ("pad_h", pad_h),
                    ("pad_w", pad_w),
                    ("act_min", act_min),
                    ("act_max", act_max),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        fn = "tinyml_avg_pool_s8" if average else "tinyml_max_pool_s8"
        layer.call = f"{fn}(&l{i}_params, {{T{x.index}}}, {{T{y.index}}});"
        layer.kind = "pool"
        pad_name = "SAME" if int(opts.padding) == 0 else "VALID"
        layer.comment = (
            f"{name} {k_h}x{k_w} stride {s_h}x{s_w} {pad_name}: {_dims(x.shape)} -> "
            f"{_dims(y.shape)}"
        )

    def mean(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        x = self.activation_input(op.inputs[0], name)
        y = self.require_int8(op.outputs[0], name, "output")
        axes_t = self.t(op.inputs[1])
        if axes_t.data is None:
            raise ValueError(f"{name}: the axes must be a constant tensor.")
        nd = len(x.shape)
        axes = sorted({int(a) + nd if int(a) < 0 else int(a) for a in np.ravel(axes_t.data)})
        if not axes or axes != list(range(axes[0], axes[-1] + 1)) or axes[-1] >= nd:
            raise ValueError(
                f"{name}: reducing over axes {axes} of a {nd}-D tensor is not supported; "
                "generate_c supports one contiguous block of axes (e.g. [1, 2], global average "
                "pooling)."
            )
        outer = int(np.prod(x.shape[: axes[0]]))
        reduce = int(np.prod(x.shape[axes[0] : axes[-1] + 1]))
        inner = int(np.prod(x.shape[axes[-1] + 1 :]))
        if reduce == 0:
            raise ValueError(f"{name}: reducing over an empty dimension is not supported.")
        multiplier, shift = _multiplier(float(x.scale) / float(y.scale))
        # QuantizedMeanOrSum folds 1/num_elements into the multiplier.
        n_shift = min(reduce.bit_length() - 1, 32, 31 + shift)
        multiplier = (multiplier << n_shift) // reduce if n_shift >= 0 else multiplier
        shift -= n_shift
        i = layer.index
        layer.decls.append(
            _c_struct(
                "tinyml_mean_params",
                f"l{i}_params",
                [
                    ("outer", outer),
                    ("reduce", reduce),
                    ("inner", inner),
                    ("input_zero_point", x.zero_point),
                    ("multiplier", multiplier),
                    ("shift", shift),
                    ("output_zero_point", y.zero_point),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        layer.call = f"tinyml_mean_s8(&l{i}_params, {{T{x.index}}}, {{T{y.index}}});"
        layer.kind = "pool"
        layer.comment = f"{name} over axes {axes}: {_dims(x.shape)} -> {_dims(y.shape)}"

    def add(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        opts = op.builtinOptions
        a_idx, b_idx = int(op.inputs[0]), int(op.inputs[1])
        a_ref = self.operand(layer, a_idx, name, "first input")
        b_ref = self.operand(layer, b_idx, name, "second input")
        a, b = self.t(a_idx), self.t(b_idx)
        y = self.require_int8(op.outputs[0], name, "output")
        if len(y.shape) > 4:
            raise ValueError(f"{name}: tensors of rank {len(y.shape)} are not supported (max 4).")
        out4 = (1,) * (4 - len(y.shape)) + tuple(y.shape)

        def strides(shape: tuple[int, ...]) -> list[int]:
            if len(shape) > 4:
                raise ValueError(f"{name}: inputs of rank {len(shape)} are not supported.")
            s4 = (1,) * (4 - len(shape)) + tuple(shape)
            contiguous = [int(np.prod(s4[k + 1 :])) for k in range(4)]
            result = []
            for k in range(4):
                if s4[k] == out4[k]:
                    result.append(contiguous[k] if s4[k] > 1 else 0)
                elif s4[k] == 1:
                    result.append(0)
                else:
                    raise ValueError(f"{name}: cannot broadcast {shape} to {y.shape}.")
            return result

        broadcast = tuple(a.shape) != tuple(b.shape)
        stride1, stride2 = strides(a.shape), strides(b.shape)
        left_shift = 20
        twice_max = 2.0 * float(max(a.scale, b.scale))
        reals = (
            float(a.scale) / twice_max,
            float(b.scale) / twice_max,
            twice_max / ((1 << left_shift) * float(y.scale)),
        )
        for real in reals:
            if not 0.0 < real < 1.0:
                raise ValueError(
                    f"{name}: a rescaling factor is {real}, outside (0, 1); TFLM "
                    "cannot run this ADD either."
                )
        (m1, s1), (m2, s2), (mo, so) = (_multiplier(r) for r in reals)
        act_code = int(opts.fusedActivationFunction) if opts is not None else 0
        act_min, act_max = _activation_range(act_code, y, name)
        i = layer.index
        layer.decls.append(
            _c_struct(
                "tinyml_add_params",
                f"l{i}_params",
                [
                    ("broadcast", int(broadcast)),
                    ("size", y.size),
                    ("dims", out4),
                    ("stride1", stride1),
                    ("stride2", stride2),
                    ("input1_offset", -a.zero_point),
                    ("input2_offset", -b.zero_point),
                    ("left_shift", left_shift),
                    ("input1_multiplier", m1),
                    ("input1_shift", s1),
                    ("input2_multiplier", m2),
                    ("input2_shift", s2),
                    ("output_multiplier", mo),
                    ("output_shift", so),
                    ("output_offset", y.zero_point),
                    ("act_min", act_min),
                    ("act_max", act_max),
                ],
            )
        )
        layer.outputs.append(y.index)
        layer.call = f"tinyml_add_s8(&l{i}_params, {a_ref}, {b_ref}, {{T{y.index}}});"
        layer.kind = "other"
        act = _ACTIVATION_NAMES.get(act_code, "?")
        layer.comment = f"{name}, {act}: {_dims(a.shape)} + {_dims(b.shape)} -> {_dims(y.shape)}"

    def pad(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        x = self.activation_input(op.inputs[0], name)
        y = self.require_int8(op.outputs[0], name, "output")
        pads_t = self.t(op.inputs[1])
        if pads_t.data is None:
            raise ValueError(f"{name}: the paddings must be a constant tensor.")
        pads = np.asarray(pads_t.data, np.int64).reshape(-1, 2)
        nd = len(x.shape)
        if nd > 4 or pads.shape[0] != nd:
            raise ValueError(f"{name}: padding a {nd}-D tensor is not supported (max 4-D).")
        pad_value = y.zero_point
        if name == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
            value_t = self.t(op.inputs[2])
            if value_t.data is None or value_t.dtype != _INT8:
                raise ValueError(f"{name}: the pad value must be a constant int8 tensor.")
            pad_value = int(np.ravel(value_t.data)[0])
        lead = 4 - nd
        in4 = (1,) * lead + tuple(x.shape)
        out4 = (1,) * lead + tuple(y.shape)
        before = [0] * lead + [int(p) for p in pads[:, 0]]
        for k in range(4):
            after = out4[k] - in4[k] - before[k]
            if after < 0 or before[k] < 0:
                raise ValueError(f"{name}: negative padding is not supported.")
        i = layer.index
        layer.decls.append(
            _c_struct(
                "tinyml_pad_params",
                f"l{i}_params",
                [
                    ("in_dims", in4),
                    ("out_dims", out4),
                    ("before", before),
                    ("pad_value", pad_value),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        layer.call = f"tinyml_pad_s8(&l{i}_params, {{T{x.index}}}, {{T{y.index}}});"
        layer.kind = "other"
        layer.comment = f"{name} {pads.tolist()}: {_dims(x.shape)} -> {_dims(y.shape)}"

    def softmax(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        x = self.activation_input(op.inputs[0], name)
        y = self.require_int8(op.outputs[0], name, "output")
        if y.zero_point != -128 or y.scale != np.float32(1.0 / 256):
            raise ValueError(
                f"{name}: int8 softmax needs output scale 1/256 and zero point -128 "
                f"(TFLM's requirement); got {float(y.scale)} and {y.zero_point}."
            )
        beta = float(np.float32(op.builtinOptions.beta)) if op.builtinOptions is not None else 1.0
        real = min(beta * float(x.scale) * float(1 << (31 - 5)), float((1 << 31) - 1))
        if real <= 1.0:
            raise ValueError(
                f"{name}: beta * input_scale * 2**26 = {real} must exceed 1 "
                "(QuantizeMultiplierGreaterThanOne)."
            )
        multiplier, left_shift = _multiplier(real)
        radius = math.floor(1.0 * ((1 << 5) - 1) * float(1 << (31 - 5)) / float(2.0**left_shift))
        depth = y.shape[-1] if y.shape else 1
        i = layer.index
        layer.decls.append(
            _c_struct(
                "tinyml_softmax_params",
                f"l{i}_params",
                [
                    ("outer", y.size // depth),
                    ("depth", depth),
                    ("input_multiplier", multiplier),
                    ("input_left_shift", left_shift),
                    ("diff_min", -radius),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        layer.call = f"tinyml_softmax_s8(&l{i}_params, {{T{x.index}}}, {{T{y.index}}});"
        layer.kind = "other"
        layer.comment = f"{name} beta {beta:g}: {_dims(x.shape)} -> {_dims(y.shape)}"

    def logistic(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        x = self.activation_input(op.inputs[0], name)
        y = self.require_int8(op.outputs[0], name, "output")
        if y.zero_point != -128:
            raise ValueError(
                f"{name}: int8 logistic needs output zero point -128 (TFLM's "
                f"requirement); got {y.zero_point}."
            )
        real = float(x.scale) * float(1 << (31 - 4))
        q, left_shift = math.frexp(real)
        multiplier = _round_away(q * float(1 << 31))
        if multiplier >= 1 << 31:  # static_cast<int32_t> of 2^31 wraps on the targets TFLM runs
            multiplier -= 1 << 32
        radius = math.floor(1.0 * ((1 << 4) - 1) * float(1 << (31 - 4)) / float(2.0**left_shift))
        i = layer.index
        layer.decls.append(
            _c_struct(
                "tinyml_logistic_params",
                f"l{i}_params",
                [
                    ("size", x.size),
                    ("input_zero_point", x.zero_point),
                    ("input_range_radius", radius),
                    ("input_multiplier", multiplier),
                    ("input_left_shift", left_shift),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        layer.call = f"tinyml_logistic_s8(&l{i}_params, {{T{x.index}}}, {{T{y.index}}});"
        layer.kind = "other"
        layer.comment = f"{name}: {_dims(x.shape)} -> {_dims(y.shape)}"

    def quantize(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        x = self.t(op.inputs[0])
        y = self.t(op.outputs[0])
        if x.dtype != _INT8 or y.dtype != _INT8:
            raise ValueError(
                f"{name}: {x.type_name} -> {y.type_name} is not supported; generate_c supports "
                "int8 -> int8 requantization only (a model with float input or output needs "
                "convert_to_tflite(model, 'int8', representative_data=...))."
            )
        self.activation_input(x.index, name)
        multiplier, shift = _multiplier(float(x.scale) / float(y.scale))
        i = layer.index
        layer.decls.append(
            _c_struct(
                "tinyml_requantize_params",
                f"l{i}_params",
                [
                    ("size", x.size),
                    ("input_zero_point", x.zero_point),
                    ("multiplier", multiplier),
                    ("shift", shift),
                    ("output_zero_point", y.zero_point),
                ],
            )
        )
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        layer.call = f"tinyml_requantize_s8(&l{i}_params, {{T{x.index}}}, {{T{y.index}}});"
        layer.kind = "other"
        layer.comment = f"{name} (requantize): {_dims(x.shape)} -> {_dims(y.shape)}"

    def concatenation(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        opts = op.builtinOptions
        y = self.require_int8(op.outputs[0], name, "output")
        act_code = int(opts.fusedActivationFunction) if opts is not None else 0
        if act_code != 0:
            raise ValueError(f"{name} with a fused activation is not supported.")
        nd = len(y.shape)
        axis = int(opts.axis) if opts is not None else 0
        axis = axis + nd if axis < 0 else axis
        if not 0 <= axis < max(nd, 1):
            raise ValueError(f"{name}: axis {axis} is outside a {nd}-D output.")
        outer = int(np.prod(y.shape[:axis]))
        out_inner = int(np.prod(y.shape[axis:]))
        calls, offset = [], 0
        i = layer.index
        for k, index in enumerate(op.inputs):
            ref = self.operand(layer, int(index), name, f"input {k}")
            x = self.t(int(index))
            if x.scale != y.scale or x.zero_point != y.zero_point:
                raise ValueError(
                    f"{name}: input {k} is quantized differently from the output (TFLM requires "
                    "the same scale and zero point)."
                )
            in_inner = int(np.prod(x.shape[axis:]))
            layer.decls.append(
                _c_struct(
                    "tinyml_concat_params",
                    f"l{i}_params{k}",
                    [
                        ("outer", outer),
                        ("in_inner", in_inner),
                        ("out_inner", out_inner),
                        ("offset", offset),
                    ],
                )
            )
            calls.append(f"tinyml_concat_piece_s8(&l{i}_params{k}, {ref}, {{T{y.index}}});")
            offset += in_inner
        if offset != out_inner:
            raise ValueError(f"{name}: the inputs do not add up to the output shape {y.shape}.")
        layer.outputs.append(y.index)
        layer.call = "\n    ".join(calls)
        layer.kind = "other"
        layer.comment = f"{name} on axis {axis}: {len(op.inputs)} inputs -> {_dims(y.shape)}"

    def alias(self, layer: _LayerCode, op: Any) -> None:
        name = layer.op
        x = self.activation_input(op.inputs[0], name)
        y = self.require_int8(op.outputs[0], name, "output")
        if x.data is not None:
            raise ValueError(f"{name} of a constant tensor is not supported.")
        if x.size != y.size:
            raise ValueError(f"{name}: {x.shape} and {y.shape} hold different element counts.")
        layer.alias = (x.index, y.index)
        layer.inputs.append(x.index)
        layer.outputs.append(y.index)
        layer.kind = "reshape"
        layer.comment = f"{name}: {_dims(x.shape)} -> {_dims(y.shape)} (same bytes, no code)"

    # -- whole model
    def layers(self) -> list[_LayerCode]:
        result = []
        for index, op in enumerate(self.graph.operators or []):
            name = self.op_name(op)
            layer = _LayerCode(
                index=index, op=name, kind="other", macs=0, comment="", inputs=[], outputs=[]
            )
            if name not in SUPPORTED_OPS:
                raise ValueError(
                    f"operator {index} is {name}, which generate_c does not support; supported "
                    f"operators: {', '.join(SUPPORTED_OPS)}."
                )
            if len(op.outputs) != 1:
                raise ValueError(
                    f"operator {index} ({name}) has {len(op.outputs)} outputs; expected 1."
                )
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                self.conv_like(layer, op, depthwise=name == "DEPTHWISE_CONV_2D")
            elif name == "FULLY_CONNECTED":
                self.fully_connected(layer, op)
            elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
                self.pool(layer, op, average=name == "AVERAGE_POOL_2D")
            elif name == "MEAN":
                self.mean(layer, op)
            elif name == "ADD":
                self.add(layer, op)
            elif name in ("PAD", "PADV2"):
                self.pad(layer, op)
            elif name == "SOFTMAX":
                self.softmax(layer, op)
            elif name == "LOGISTIC":
                self.logistic(layer, op)
            elif name == "QUANTIZE":
                self.quantize(layer, op)
            elif name == "CONCATENATION":
                self.concatenation(layer, op)
            else:
                self.alias(layer, op)
            result.append(layer)
        return result


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(
            f"name={name!r} must be a C identifier (letters, digits, underscores; not starting "
            "with a digit), e.g. 'model' or 'mask_cnn'."
        )
    if name.startswith("tinyml_"):
        raise ValueError(f"name={name!r} must not start with 'tinyml_' (the kernels' prefix).")
    return name


def generate_c(model_content: bytes, *, name: str = "model") -> GeneratedModel:
    """Translate an int8 ``.tflite`` model into C99 sources bit-exact with TFLite Micro.

    Parameters
    ----------
    model_content : bytes
        A full-integer model: int8 input and output, int8 weights (per-channel or per-tensor),
        int32 biases, one subgraph. :data:`SUPPORTED_OPS` lists the operators.
    name : str
        C prefix of the generated files and symbols: ``<name>.h``, ``<name>.c``,
        ``void <name>_invoke(const int8_t *input, int8_t *output)`` and the macros
        ``<NAME>_INPUT_SIZE``, ``<NAME>_OUTPUT_SIZE``, ``<NAME>_ARENA_SIZE``.

    Returns
    -------
    GeneratedModel
        The sources (not written; call :meth:`GeneratedModel.write`) and the model's facts.

    Raises
    ------
    TypeError
        If ``model_content`` is not bytes.
    ValueError
        If the model is not a .tflite flatbuffer, is not int8, or uses an unsupported operator,
        data type or option (the message names it and what is supported).

    Notes
    -----
    Build the files with any C99 compiler. ``-DTINYML_SIMD`` selects the Cortex-M DSP kernels
    (ignored unless ``__ARM_FEATURE_DSP``); define ``TINYML_LAYER_DONE(i)`` to run code after
    each layer (the virtual board counts instructions per layer with it).
    """
    name = _check_name(name)
    gen = _Generator(model_content, name)
    graph, tensors = gen.graph, gen.tensors
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ValueError(
            f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "generate_c supports one input and one output."
        )
    x_in, y_out = tensors[int(graph.inputs[0])], tensors[int(graph.outputs[0])]
    for role, t in (("input", x_in), ("output", y_out)):
        if t.dtype != _INT8:
            raise ValueError(
                f"the model's {role} is {t.type_name}, but generate_c needs a full-integer int8 "
                "model (int8 input and output). Convert it with convert_to_tflite(model, 'int8', "
                "representative_data=x_train[:200])."
            )
    layers = gen.layers()
    n_layers = len(layers)
    if n_layers == 0:
        raise ValueError("the model has no operators.")

    # ---- buffers: union-find over aliases, lifetimes in layer indices
    parent: dict[int, int] = {}

    def root(t: int) -> int:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for layer in layers:
        if layer.alias is not None:
            parent[root(layer.alias[1])] = root(layer.alias[0])
    first: dict[int, int] = {root(x_in.index): 0}
    last: dict[int, int] = {}
    for layer in layers:
        for t in layer.outputs:
            r = root(t)
            first[r] = min(first.get(r, layer.index), layer.index)
            last[r] = max(last.get(r, layer.index), layer.index)
        for t in layer.inputs:
            r = root(t)
            if r not in first:
                raise ValueError(
                    f"layer {layer.index} reads tensor {tensors[t].name!r} before "
                    "any layer writes it."
                )
            last[r] = max(last.get(r, layer.index), layer.index)
    out_root = root(y_out.index)
    if out_root not in first:
        raise ValueError("no layer writes the model's output tensor.")
    last[out_root] = n_layers - 1
    in_root = root(x_in.index)
    last.setdefault(in_root, 0)
    # The layers read the caller's input buffer and write the caller's output buffer directly
    # (no copies, no arena bytes), unless the model is a mere alias of its input.
    direct_io = in_root != out_root
    roots = sorted(r for r in first if not (direct_io and r in (in_root, out_root)))
    sizes = {
        r: max(tensors[t].size for t in range(len(tensors)) if root(t) == r)
        for r in (*roots, in_root, out_root)
    }

    def plan(simd: bool) -> tuple[dict[int, int], dict[int, int], int]:
        requests = [BufferRequest(sizes[r], first[r], last[r]) for r in roots]
        scratch_layers = [ly for ly in layers if simd and ly.scratch_bytes]
        requests += [BufferRequest(ly.scratch_bytes, ly.index, ly.index) for ly in scratch_layers]
        arena = plan_arena(requests, alignment=16)
        arena.check()
        tensor_offsets = {r: arena.offsets[k] for k, r in enumerate(roots)}
        scratch_offsets = {
            ly.index: arena.offsets[len(roots) + k] for k, ly in enumerate(scratch_layers)
        }
        return tensor_offsets, scratch_offsets, arena.size

    plain_offsets, _, plain_size = plan(False)
    simd_offsets, simd_scratch, simd_size = plan(True)

    # ---- model.c
    upper = name.upper()
    arena = f"{name}_arena"
    lines = [
        f"/* {name}.c - generated by tinyml_course.mcu.codegen from a .tflite model. Do not edit. */",
        f"/* {len(layers)} layers, {sum(ly.macs for ly in layers):,} MACs, {gen.weight_bytes:,} "
        f"bytes of weights, arena {plain_size:,} bytes ({simd_size:,} with TINYML_SIMD). */",
        f'#include "{name}.h"',
        '#include "tinyml_kernels.h"',
        "",
        "/* Activation arena: every intermediate tensor at an offset planned from its lifetime",
        "   (the model reads its input from, and writes its output to, the caller's buffers). */",
        f"static int8_t {arena}[{upper}_ARENA_SIZE > 0 ? {upper}_ARENA_SIZE : 1] TINYML_ALIGN(16);",
        "",
        "#if TINYML_USE_SIMD",
    ]

    def offset_defines(offsets: dict[int, int], scratch: dict[int, int]) -> list[str]:
        out = [f"#define T{r}_OFFSET {offsets[r]}" for r in roots]
        for ly in layers:
            if ly.scratch_bytes:
                if ly.index in scratch:
                    out.append(
                        f"#define L{ly.index}_SCRATCH ((int16_t *)({arena} + {scratch[ly.index]}))"
                    )
                else:
                    out.append(f"#define L{ly.index}_SCRATCH ((int16_t *)NULL)")
        return out

    lines += offset_defines(simd_offsets, simd_scratch)
    lines.append("#else")
    lines += offset_defines(plain_offsets, {})
    lines += ["#endif", ""]

    def label(r: int) -> str:
        members = [t for t in range(len(tensors)) if root(t) == r and tensors[t].data is None]
        return ", ".join(
            f"{tensors[t].name.split(';')[0]} {_dims(tensors[t].shape)}" for t in members[:3]
        )

    for r in roots:
        lines.append(f"#define T{r} ({arena} + T{r}_OFFSET) /* {sizes[r]} B: {label(r)} */")
    if direct_io:
        lines.append(f"#define T{in_root} input /* the caller's buffer: {label(in_root)} */")
        lines.append(f"#define T{out_root} output /* the caller's buffer: {label(out_root)} */")
    lines.append("")
    for layer in layers:
        if layer.decls:
            lines.append(f"/* Layer {layer.index}: {layer.comment} */")
            lines += [d for d in layer.decls]
    lines += [
        f"void {name}_invoke(const int8_t *input, int8_t *output) {{",
        f"    (void){arena}; /* unused when every tensor is the input or the output */",
    ]
    if not direct_io:
        lines.append(f"    tinyml_copy_s8(T{in_root}, input, {upper}_INPUT_SIZE);")
    for layer in layers:
        lines.append(f"    /* Layer {layer.index}: {layer.comment} */")
        if layer.call:
            call = re.sub(r"\{T(\d+)\}", lambda m: f"T{root(int(m.group(1)))}", layer.call)
            call = call.replace("{SCRATCH}", f"L{layer.index}_SCRATCH")
            lines.append(f"    {call}")
        lines.append(f"    TINYML_LAYER_DONE({layer.index});")
    if not direct_io:
        lines.append(f"    tinyml_copy_s8(output, T{out_root}, {upper}_OUTPUT_SIZE);")
    lines += ["}", ""]
    model_c = "\n".join(lines)

    # ---- model.h
    guard = f"{upper}_H"
    header = "\n".join(
        [
            f"/* {name}.h - generated by tinyml_course.mcu.codegen. Do not edit. */",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            "#include <stdint.h>",
            "",
            f"/* Input: int8 {_dims(x_in.shape)}, real = {_affine(x_in)}. */",
            f"#define {upper}_INPUT_SIZE {x_in.size}",
            f"#define {upper}_INPUT_SCALE {float(x_in.scale)!r}f",
            f"#define {upper}_INPUT_ZERO_POINT ({x_in.zero_point})",
            f"/* Output: int8 {_dims(y_out.shape)}, real = {_affine(y_out)}. */",
            f"#define {upper}_OUTPUT_SIZE {y_out.size}",
            f"#define {upper}_OUTPUT_SCALE {float(y_out.scale)!r}f",
            f"#define {upper}_OUTPUT_ZERO_POINT ({y_out.zero_point})",
            f"#define {upper}_NUM_LAYERS {n_layers}",
            "",
            "/* Bytes of the static activation arena: the intermediate tensors (input and output stay",
            "   in the caller's buffers), more with the SIMD kernels' scratch. */",
            f"#if {_SIMD_CONDITION}",
            f"#define {upper}_ARENA_SIZE {simd_size}",
            "#else",
            f"#define {upper}_ARENA_SIZE {plain_size}",
            "#endif",
            "",
            "/* Hook called after each layer; define it before including this header to profile. */",
            "#ifndef TINYML_LAYER_DONE",
            "#define TINYML_LAYER_DONE(i) ((void)0)",
            "#endif",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            f"/* Run one inference: reads {upper}_INPUT_SIZE int8 values, writes {upper}_OUTPUT_SIZE",
            "   (the two buffers must not overlap). */",
            f"void {name}_invoke(const int8_t *input, int8_t *output);",
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif /* {guard} */",
            "",
        ]
    )
    files = {f"{name}.h": header, f"{name}.c": model_c}
    for kernel_file in KERNEL_FILES:
        files[kernel_file] = (KERNEL_DIR / kernel_file).read_text()
    return GeneratedModel(
        files=files,
        input_shape=tuple(x_in.shape),
        output_shape=tuple(y_out.shape),
        input_scale=float(x_in.scale),
        input_zero_point=x_in.zero_point,
        output_scale=float(y_out.scale),
        output_zero_point=y_out.zero_point,
        arena_bytes=plain_size,
        simd_arena_bytes=simd_size,
        weight_bytes=gen.weight_bytes,
        layers=tuple(
            Layer(
                index=ly.index,
                op=ly.op,
                macs=ly.macs,
                output_shape=tuple(tensors[ly.outputs[0]].shape) if ly.outputs else (),
                kind=ly.kind,
            )
            for ly in layers
        ),
        name=name,
    )
