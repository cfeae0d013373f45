"""Run int8 models in the real microcontroller runtime, TensorFlow Lite Micro.

``tflite-micro`` (PyPI) wraps the same C++ interpreter and reference kernels that run on
an ESP32 or a Cortex-M. Two things it tells us that LiteRT on the host cannot:

* the exact outputs of the microcontroller's integer kernels, and
* the **tensor arena** the model really needs: activations, plus the interpreter's own
  bookkeeping, as planned by its memory planner.

``tflite-micro`` publishes Linux x86_64 wheels only. Elsewhere these functions fall back,
with a one-line notice, to LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``,
the same integer arithmetic) and to an arena *estimated* from the tensor lifetimes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_NOTICE_SHOWN = False
_GENEROUS_ARENA = 4 * 1024 * 1024


def micro_available() -> bool:
    """True when the ``tflite-micro`` runtime is installed (Linux x86_64)."""
    try:
        from tflite_micro import runtime  # noqa: F401
    except Exception:
        return False
    return True


def _notice(what: str) -> None:
    global _NOTICE_SHOWN
    if not _NOTICE_SHOWN:
        print(f"Note: tflite-micro is not available on this platform (Linux x86_64 only); {what}.")
        _NOTICE_SHOWN = True


class NotInt8ModelError(ValueError):
    """The microcontroller path was given a model that is not full-integer int8."""


def _io_dtypes(model_content: bytes) -> tuple[np.dtype, np.dtype]:
    """The input and output dtypes, read by LiteRT, or by tflite-micro for models only it runs
    (weights compressed with :func:`compress_weights`, which LiteRT cannot load)."""
    from tinyml_course.tflite import TFLiteModel

    try:
        model = TFLiteModel(model_content)
        return np.dtype(model.input.dtype), np.dtype(model.output.dtype)
    except ValueError:
        if not micro_available():
            raise
        from tflite_micro import runtime

        interpreter = runtime.Interpreter.from_bytes(
            bytes(model_content), arena_size=_GENEROUS_ARENA
        )
        return (
            np.dtype(interpreter.get_input_details(0)["dtype"]),
            np.dtype(interpreter.get_output_details(0)["dtype"]),
        )


def require_int8(model_content: bytes) -> None:
    """Raise :class:`NotInt8ModelError` unless input and output are int8."""
    input_dtype, output_dtype = _io_dtypes(model_content)
    if input_dtype != np.int8 or output_dtype != np.int8:
        raise NotInt8ModelError(
            f"this model has {input_dtype.name} input and "
            f"{output_dtype.name} output, but a microcontroller runs full-integer models. "
            "Convert it with convert_to_tflite(model, 'int8', representative_data=x_train[:200])."
        )


def run_micro(
    model_content: bytes, x: np.ndarray, *, arena_size: int = _GENEROUS_ARENA
) -> np.ndarray:
    """Run a batch of int8 inputs through tflite-micro, one sample at a time.

    Parameters
    ----------
    model_content : bytes
        A full-integer int8 ``.tflite`` model.
    x : np.ndarray
        int8 inputs ``(N, *input_shape)`` (quantize floats with the model's input scale and
        zero point first, e.g. ``TFLiteModel(m).quantize_input(x)``).
    arena_size : int
        Bytes of tensor arena to give the interpreter.

    Returns
    -------
    np.ndarray
        The raw int8 outputs, ``(N, *output_shape)``.

    Raises
    ------
    NotInt8ModelError
        If the model is not full-integer int8.
    """
    require_int8(model_content)
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(
            f"x must be int8 (quantized inputs); got {x.dtype}. Quantize it with the model's input parameters."
        )
    if not micro_available():
        _notice("using LiteRT's reference kernels instead (the same integer arithmetic)")
        from tinyml_course.tflite import TFLiteModel

        return TFLiteModel(model_content, reference_kernels=True).invoke_raw(x)
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(bytes(model_content), arena_size=int(arena_size))
    outputs = []
    for sample in x:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
    return np.stack(outputs) if outputs else np.zeros((0,), np.int8)


@dataclass(frozen=True)
class ArenaMeasurement:
    """The tensor arena a model needs; ``method`` says if it was measured or estimated."""

    bytes: int
    method: str  # "tflite-micro" (measured) or "estimate (tensor lifetimes)"
    details: str = ""

    @property
    def measured(self) -> bool:
        return self.method == "tflite-micro"

    def __str__(self) -> str:
        return f"{self.bytes:,} bytes ({self.method})"


_ARENA_SCRIPT = r"""
import sys, numpy as np
from tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
interp = runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2]))
details = interp.get_input_details(0)
interp.set_input(np.zeros(details["shape"], dtype=details["dtype"]), 0)
interp.invoke()
sys.stdout.flush()
interp.print_allocations()
"""

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def _run_arena_probe(path: Path, arena: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _ARENA_SCRIPT, str(path), str(arena)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def arena_allocates(model_content: bytes, arena_size: int) -> bool:
    """True if tflite-micro can allocate and invoke the model in ``arena_size`` bytes.

    Runs in a child process: tflite-micro aborts the process when the arena is too small.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(model_content)
        return _run_arena_probe(path, arena_size).returncode == 0


def measure_arena(model_content: bytes) -> ArenaMeasurement:
    """The tensor arena an int8 model really needs in tflite-micro.

    The model is allocated and invoked once in a generous arena in a child process, and
    the interpreter's recording allocator reports what it used
    (``print_allocations``: "Arena allocation total N bytes").

    Raises
    ------
    NotInt8ModelError
        If the model is not full-integer int8.
    RuntimeError
        If the runtime cannot run the model (for example an op it does not support).
    """
    require_int8(model_content)
    if not micro_available():
        _notice("the arena is estimated from tensor lifetimes instead of measured")
        return estimate_arena(model_content)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.tflite"
        path.write_bytes(model_content)
        result = _run_arena_probe(path, _GENEROUS_ARENA)
    text = result.stdout + result.stderr
    match = _TOTAL.search(text)
    if result.returncode != 0 or match is None:
        tail = [line for line in text.splitlines() if line.strip()][-3:]
        raise RuntimeError(
            f"tflite-micro could not run this model: {' | '.join(tail) or 'no output'}"
        )
    allocations = "\n".join(line for line in text.splitlines() if "RecordingMicroAllocator" in line)
    return ArenaMeasurement(int(match.group(1)), "tflite-micro", allocations)


def estimate_arena(model_content: bytes) -> ArenaMeasurement:
    """Estimate the arena from the tensors' lifetimes (peak bytes of live non-constant tensors).

    A lower bound of what tflite-micro needs: its bookkeeping (a few hundred bytes to a
    few KB) is not included.
    """
    from tinyml_course.tflite import TFLiteModel

    interpreter = TFLiteModel(model_content).interpreter
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the only public view of the graph
    constant = set()
    for idx in tensors:
        try:
            interpreter.get_tensor(idx)
            if not any(idx in op["outputs"] for op in ops) and idx not in {
                d["index"] for d in interpreter.get_input_details()
            }:
                constant.add(idx)
        except ValueError:
            pass

    def size(idx: int) -> int:
        t = tensors[idx]
        return int(np.prod(t["shape"])) * np.dtype(t["dtype"]).itemsize

    last_use: dict[int, int] = {}
    born: dict[int, int] = {d["index"]: -1 for d in interpreter.get_input_details()}
    for step, op in enumerate(ops):
        for idx in op["inputs"]:
            if idx >= 0:
                last_use[idx] = step
        for idx in op["outputs"]:
            born[idx] = step
    for d in interpreter.get_output_details():
        last_use[d["index"]] = len(ops)
    peak = 0
    for step in range(len(ops)):
        live = [
            i
            for i, b in born.items()
            if i not in constant and b <= step and last_use.get(i, b) >= step
        ]
        peak = max(peak, sum(size(i) for i in live))
    return ArenaMeasurement(peak, "estimate (tensor lifetimes)")


# The ops whose weights (their input 1) tflite-micro's LUT compression can hold.
_WEIGHT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


@dataclass(frozen=True)
class CompressedModel:
    """An int8 model whose weights tflite-micro stores as look-up-table indices.

    Attributes
    ----------
    content : bytes
        The compressed ``.tflite`` (with DECODE operators that expand the weights at run time).
    tensors : list of str
        The weight tensors that were compressed, with their index width and table size.
    """

    content: bytes
    tensors: list[str]


def compress_weights(model_content: bytes, *, index_bits: int = 4) -> CompressedModel:
    """Store a model's weights as indices of at most ``index_bits`` bits into value tables.

    Uses the LUT compression of tflite-micro's own ``compression`` module: every int8 weight
    tensor of a convolution or dense layer with at most ``2**index_bits`` distinct values (per
    output channel where the tensor has per-channel scales, else in the whole tensor; a
    clustered model's weights, for example) is replaced by packed indices of as few bits as
    its values need and value tables, unless the tables would cost more than they save; DECODE operators rebuild the weights when the model runs
    in tflite-micro. Other tensors are left as they are.

    Parameters
    ----------
    model_content : bytes
        A full-integer int8 ``.tflite`` model.
    index_bits : int
        The most bits an index may take, 1 to 7 (a tensor with more distinct values is left).

    Raises
    ------
    RuntimeError
        If tflite-micro (Linux x86_64 only) is not installed, or no tensor qualifies.
    ValueError
        If ``index_bits`` is out of range.
    """
    from ai_edge_litert.interpreter import Interpreter

    from tinyml_course._quiet import quiet_stderr

    if isinstance(index_bits, bool) or not isinstance(index_bits, int) or not 1 <= index_bits <= 7:
        raise ValueError(f"index_bits must be an int from 1 to 7; got {index_bits!r}.")
    require_int8(model_content)
    if not micro_available():
        raise RuntimeError(
            "compress_weights needs tflite-micro's compression module, which ships with the "
            "tflite-micro wheel (Linux x86_64 only)."
        )
    from tflite_micro.tensorflow.lite.micro.compression import compress, spec

    with quiet_stderr():
        interpreter = Interpreter(model_content=bytes(model_content))
    specs, names = [], []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in _WEIGHT_OPS:
            continue
        index = int(op["inputs"][1])
        weights = interpreter.get_tensor(index)
        if weights.dtype != np.int8:
            continue
        details = interpreter._get_tensor_details(index, 0)
        quantization = details["quantization_parameters"]
        if len(quantization["scales"]) > 1:  # per-channel scales: one table per channel
            axis = int(quantization["quantized_dimension"])
            rows = np.moveaxis(weights, axis, 0).reshape(weights.shape[axis], -1)
            distinct, tables = max(len(np.unique(row)) for row in rows), weights.shape[axis]
            mode: object = spec.PerChannel(axis=axis)
        else:  # one scale: one table for the whole tensor
            distinct, tables = len(np.unique(weights)), 1
            mode = spec.PerTensor()
        bits = max(1, int(np.ceil(np.log2(distinct))))
        if bits > index_bits or -(-weights.size * bits // 8) + tables * 2**bits >= weights.size:
            continue  # too many values, or too small a tensor to gain from its tables
        specs.append(
            spec.Tensor(
                subgraph=0,
                tensor=index,
                compression=[spec.LookUpTableCompression(index_bitwidth=bits, mode=mode)],
            )
        )
        kind = "per channel" if isinstance(mode, spec.PerChannel) else "in the tensor"
        names.append(f"{details['name']}: {bits}-bit indices ({distinct} values {kind} at most)")
    if not specs:
        raise RuntimeError(
            f"no weight tensor has at most {2**index_bits} distinct values per output channel; "
            "cluster the model's weights first (pruning.cluster_weights) or allow more index bits."
        )
    return CompressedModel(bytes(compress(bytes(model_content), specs)), names)
