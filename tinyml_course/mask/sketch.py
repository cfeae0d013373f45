"""The ESP32 Arduino sketch of the mask detector, generated from the model, and its host check.

:func:`generate_sketch` writes an Arduino sketch folder::

    mask_detector/
        mask_detector.ino   setup(): model, op resolver, interpreter, Bluetooth Serial;
                            loop(): parse frames, run the model, answer with the score
        model_data.h        the .tflite as a C array (tinyml_course.deploy.to_c_array)
        model_settings.h    constants read from the model: input size, input and output
                            scale and zero point, arena size, operator count, protocol
        mask_protocol.h     the framed protocol (parser, CRC-16, encoder) and the input
                            quantization, in plain C++

Everything the device and the host must agree on is generated from the model file, so they
cannot disagree (the original demo trained on ``(x - 127) / 128`` and ran ``(b - 127) / 127``
on the device, and guessed a 5 KB arena). The op resolver registers exactly the operators
the ``.tflite`` uses (:func:`model_ops`), and the arena is tflite-micro's measured arena plus
a stated margin (:func:`arena_with_margin`).

No ESP32 toolchain is installed here, so :func:`compile_check` compiles the sketch with the
host ``g++`` against minimal stand-in headers shipped in ``tinyml_course/mask/stubs/`` and
links a small harness that drives ``setup()`` and ``loop()``; :func:`run_harness` feeds it
bytes encoded by :mod:`tinyml_course.mask.protocol`. That proves the C++ is consistent and
that the sketch's parser and quantization agree with the Python ones; it does not prove the
sketch runs on a board (the virtual device runs the real model in tflite-micro).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyml_course.mask import protocol

PACKAGE_DIR = Path(__file__).resolve().parent
STUBS_DIR = PACKAGE_DIR / "stubs"
TEMPLATE_DIR = PACKAGE_DIR / "sketch_template"
SKETCH_NAME = "mask_detector"
MANIFEST = ".tinyml-generated.json"

ARENA_MARGIN_FRACTION = 0.25
ARENA_MARGIN_MIN_BYTES = 1024
"""The arena margin: 25% of the measured arena, at least 1 KB, rounded up to 16 bytes.

The measurement is tflite-micro's x86-64 build; the ESP32 build has 4-byte pointers (smaller
bookkeeping) but may use ESP-NN optimized kernels that ask for scratch buffers, and a newer
library version may plan memory differently. The margin covers that; ``setup()`` prints the
arena actually used so it can be trimmed on the board."""

# TFLite builtin operator -> the MicroMutableOpResolver method that registers it.
OP_RESOLVER_METHODS = {
    "ADD": "AddAdd",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize",
    "EXPAND_DIMS": "AddExpandDims",
    "FULLY_CONNECTED": "AddFullyConnected",
    "HARD_SWISH": "AddHardSwish",
    "LEAKY_RELU": "AddLeakyRelu",
    "LOGISTIC": "AddLogistic",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MUL": "AddMul",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "QUANTIZE": "AddQuantize",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "SHAPE": "AddShape",
    "SOFTMAX": "AddSoftmax",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
}


def model_ops(model_content: bytes) -> list[str]:
    """The builtin operators a ``.tflite`` model uses, read from its flatbuffer, in file order.

    Examples
    --------
    >>> model_ops(model_bytes)  # doctest: +SKIP
    ['DEPTHWISE_CONV_2D', 'CONV_2D', 'RESHAPE', 'FULLY_CONNECTED', 'LOGISTIC']
    """
    if not isinstance(model_content, (bytes, bytearray)) or bytes(model_content[4:8]) != b"TFL3":
        raise ValueError(
            "model_content must be the bytes of a .tflite model (no 'TFL3' identifier found)."
        )
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytes(model_content), 0)
    names = {
        value: name
        for name, value in vars(schema.BuiltinOperator).items()
        if not name.startswith("_")
    }
    ops = []
    for code in model.operatorCodes or []:
        number = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = names.get(number, f"BUILTIN_{number}")
        if name == "CUSTOM":
            name = f"CUSTOM:{code.customCode.decode() if code.customCode else '?'}"
        if name not in ops:
            ops.append(name)
    return ops


def arena_with_margin(measured_bytes: int) -> int:
    """The sketch's ``kTensorArenaSize``: measured + max(25%, 1 KB), rounded up to 16 bytes.

    Examples
    --------
    >>> arena_with_margin(2000)
    3024
    """
    if (
        isinstance(measured_bytes, bool)
        or not isinstance(measured_bytes, (int, np.integer))
        or measured_bytes <= 0
    ):
        raise ValueError(
            f"measured_bytes must be a positive number of bytes (measure_arena(model).bytes); got {measured_bytes!r}."
        )
    margin = max(ARENA_MARGIN_MIN_BYTES, math.ceil(ARENA_MARGIN_FRACTION * int(measured_bytes)))
    return int(math.ceil((int(measured_bytes) + margin) / 16) * 16)


@dataclass(frozen=True)
class SketchSettings:
    """The constants of ``model_settings.h``, all read from the model."""

    input_size: int
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    measured_arena_bytes: int | None
    arena_bytes: int
    ops: tuple[str, ...]
    device_name: str
    model_bytes: int
    model_sha256: str
    max_payload: int = field(default=0)

    @property
    def resolver_methods(self) -> list[str]:
        return [OP_RESOLVER_METHODS[op] for op in self.ops]


def settings_for(
    model_content: bytes, *, arena_bytes: int | None = None, device_name: str = "ESP32-MaskDetector"
) -> SketchSettings:
    """Read everything the sketch needs from the model (measuring the arena unless given).

    Raises
    ------
    NotInt8ModelError
        If the model is not full-integer int8.
    ValueError
        If the input is not ``(1, size, size, 1)``, an operator has no known resolver method,
        or ``device_name`` / ``arena_bytes`` are invalid.
    """
    from tinyml_course.micro import measure_arena, require_int8
    from tinyml_course.tflite import TFLiteModel

    if not isinstance(model_content, (bytes, bytearray)):
        raise TypeError(
            f"model_content must be the bytes of an int8 .tflite; got {type(model_content).__name__}."
        )
    model_content = bytes(model_content)
    require_int8(model_content)
    model = TFLiteModel(model_content)
    shape = model.input.shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
        raise ValueError(
            f"the mask model's input must be (1, size, size, 1); this model's is {shape}."
        )
    if int(np.prod(model.output.shape)) != 1:
        raise ValueError(
            f"the mask model must have one output (the score); this model's is {model.output.shape}."
        )
    if (
        not isinstance(device_name, str)
        or not 1 <= len(device_name) <= 31
        or not device_name.isprintable()
        or '"' in device_name
        or "\\" in device_name
    ):
        raise ValueError(
            f"device_name must be 1-31 printable characters without quotes or backslashes; got {device_name!r}."
        )
    ops = model_ops(model_content)
    unknown = [op for op in ops if op not in OP_RESOLVER_METHODS]
    if unknown:
        raise ValueError(
            f"the model uses {unknown}, which this sketch generator cannot register; known operators: "
            f"{sorted(OP_RESOLVER_METHODS)}. Rebuild the model with supported layers."
        )
    measured = None
    if arena_bytes is None:
        measured = measure_arena(model_content).bytes
        arena_bytes = arena_with_margin(measured)
    elif (
        isinstance(arena_bytes, bool)
        or not isinstance(arena_bytes, (int, np.integer))
        or arena_bytes <= 0
    ):
        raise ValueError(
            f"arena_bytes must be a positive number of bytes or None (measured + margin); got {arena_bytes!r}."
        )
    size = int(shape[1])
    return SketchSettings(
        input_size=size,
        input_scale=model.input.scale,
        input_zero_point=model.input.zero_point,
        output_scale=model.output.scale,
        output_zero_point=model.output.zero_point,
        measured_arena_bytes=measured,
        arena_bytes=int(arena_bytes),
        ops=tuple(ops),
        device_name=device_name,
        model_bytes=len(model_content),
        model_sha256=hashlib.sha256(model_content).hexdigest(),
        max_payload=protocol.device_max_payload(size),
    )


def _float_literal(value: float) -> str:
    """An exact C++ float literal (hex float) for a value that is a float32."""
    single = float(np.float32(value))
    if single != value:
        raise ValueError(f"{value!r} is not a float32 value.")
    return f"{single.hex()}f"


def model_settings_header(settings: SketchSettings) -> str:
    """The text of ``model_settings.h``."""
    measured = (
        f"{settings.measured_arena_bytes};  // tflite-micro on the host (tinyml_course.micro.measure_arena)"
        if settings.measured_arena_bytes is not None
        else "0;  // not measured: kTensorArenaSize was given"
    )
    margin = (
        f"measured + max({ARENA_MARGIN_FRACTION:.0%}, {ARENA_MARGIN_MIN_BYTES} B), rounded up to 16 bytes"
        if settings.measured_arena_bytes is not None
        else "given by the caller"
    )
    m, e = protocol.MessageType, protocol.ErrorCode
    return f"""\
// model_settings.h: generated by tinyml_course.mask.sketch from the model
// (sha256 {settings.model_sha256}, {settings.model_bytes} bytes). Do not edit: regenerate.
#ifndef MODEL_SETTINGS_H_
#define MODEL_SETTINGS_H_

#include <stdint.h>

// The model's input: a kInputSize x kInputSize grey frame, int8, q = round(pixel / 255 / scale) + zero point.
constexpr int kInputSize = {settings.input_size};
constexpr int kInputPixels = kInputSize * kInputSize;
constexpr float kInputScale = {_float_literal(settings.input_scale)};  // {settings.input_scale!r}
constexpr int kInputZeroPoint = {settings.input_zero_point};
// The model's output: one int8; score (probability of a mask) = (q - zero point) * scale.
constexpr float kOutputScale = {_float_literal(settings.output_scale)};  // {settings.output_scale!r}
constexpr int kOutputZeroPoint = {settings.output_zero_point};

// Memory: the tensor arena.
constexpr int kMeasuredArenaBytes = {measured}
constexpr int kTensorArenaSize = {settings.arena_bytes};  // {margin}

// Operators registered with MicroMutableOpResolver: {", ".join(settings.ops)}.
constexpr int kOpCount = {len(settings.ops)};

constexpr char kDeviceName[] = "{settings.device_name}";  // the Bluetooth name to pair with

// The framed serial protocol (tinyml_course.mask.protocol).
constexpr uint8_t kProtocolVersion = {protocol.PROTOCOL_VERSION};
constexpr uint8_t kSync0 = 0x{protocol.SYNC[0]:02X};
constexpr uint8_t kSync1 = 0x{protocol.SYNC[1]:02X};
constexpr int kProtocolHeaderBytes = {protocol.HEADER_BYTES};
constexpr int kProtocolCrcBytes = {protocol.CRC_BYTES};
constexpr int kProtocolMaxPayload = {settings.max_payload};
constexpr int kScoreBytes = 5;
constexpr int kDeviceInfoBytes = 16;
constexpr uint32_t kFrameTimeoutMs = {round(protocol.FRAME_TIMEOUT_S * 1000)};
constexpr uint8_t kMsgFrame = 0x{m.FRAME:02X};
constexpr uint8_t kMsgGray = 0x{m.GRAY:02X};
constexpr uint8_t kMsgInfo = 0x{m.INFO:02X};
constexpr uint8_t kMsgScore = 0x{m.SCORE:02X};
constexpr uint8_t kMsgDevice = 0x{m.DEVICE:02X};
constexpr uint8_t kMsgError = 0x{m.ERROR:02X};
constexpr uint8_t kErrBadCrc = {e.BAD_CRC:d};
constexpr uint8_t kErrBadLength = {e.BAD_LENGTH:d};
constexpr uint8_t kErrUnknownType = {e.UNKNOWN_TYPE:d};
constexpr uint8_t kErrTimeout = {e.TIMEOUT:d};
constexpr uint8_t kErrInvokeFailed = {e.INVOKE_FAILED:d};

#endif  // MODEL_SETTINGS_H_
"""


def _sketch_files(model_content: bytes, settings: SketchSettings) -> dict[str, str]:
    from tinyml_course.deploy import to_c_array

    registrations = "\n".join(
        f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;  // {op}"
        for op, method in zip(settings.ops, settings.resolver_methods, strict=True)
    )
    ino = (TEMPLATE_DIR / "mask_detector.ino.in").read_text()
    ino = (
        ino.replace("@OP_REGISTRATIONS@", registrations)
        .replace("@MODEL_SHA@", f"sha256 {settings.model_sha256[:16]}")
        .replace("@MODEL_BYTES@", str(settings.model_bytes))
    )
    model_data = (
        "// model_data.h: the int8 mask model. Generated by tinyml_course.mask.sketch; do not edit.\n"
        "#ifndef MODEL_DATA_H_\n#define MODEL_DATA_H_\n\n"
        + to_c_array(model_content, "g_model")
        + "\n#endif  // MODEL_DATA_H_\n"
    )
    return {
        f"{SKETCH_NAME}.ino": ino,
        "model_data.h": model_data,
        "model_settings.h": model_settings_header(settings),
        "mask_protocol.h": (TEMPLATE_DIR / "mask_protocol.h").read_text(),
    }


def _digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def edited_files(sketch_dir: str | Path) -> list[str]:
    """Files in a sketch folder that differ from what :func:`generate_sketch` wrote there.

    A folder without the generator's manifest counts as entirely the user's.
    """
    folder = Path(sketch_dir)
    manifest_path = folder / MANIFEST
    present = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )
    if not manifest_path.is_file():
        return present
    try:
        written = json.loads(manifest_path.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return present
    return [name for name in present if written.get(name) != _digest((folder / name).read_bytes())]


def generate_sketch(
    model_content: bytes,
    out_dir: str | Path,
    *,
    arena_bytes: int | None = None,
    device_name: str = "ESP32-MaskDetector",
    overwrite: bool = False,
) -> Path:
    """Write the Arduino sketch folder ``out_dir/mask_detector/`` for this model.

    Parameters
    ----------
    model_content : bytes
        The full-integer int8 mask model.
    out_dir : str or Path
        Where to create the ``mask_detector`` sketch folder (an Arduino sketch lives in a
        folder named like its ``.ino``).
    arena_bytes : int, optional
        ``kTensorArenaSize``; default: tflite-micro's measured arena plus the margin of
        :func:`arena_with_margin`.
    device_name : str
        The Bluetooth name the ESP32 advertises.
    overwrite : bool
        Replace a sketch folder even if its files were edited (or not made by this function).
        Without it, regenerating over an untouched generated folder is allowed and anything
        else raises, so nothing a user changed is lost without asking.

    Returns
    -------
    Path
        The sketch folder.

    Raises
    ------
    FileExistsError
        If the folder holds edited or foreign files and ``overwrite`` is False.

    Examples
    --------
    >>> folder = generate_sketch(model_bytes, output_path("mask"))  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
    ['mask_detector.ino', 'mask_protocol.h', 'model_data.h', 'model_settings.h']
    """
    settings = settings_for(model_content, arena_bytes=arena_bytes, device_name=device_name)
    folder = Path(out_dir) / SKETCH_NAME
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; choose another out_dir.")
    if folder.is_dir() and not overwrite:
        changed = edited_files(folder)
        if changed:
            raise FileExistsError(
                f"{folder} holds files that generate_sketch did not write or that were edited since: "
                f"{', '.join(changed)}. Nothing was changed. Pass overwrite=True to replace them, or "
                "choose another out_dir."
            )
    folder.mkdir(parents=True, exist_ok=True)
    files = _sketch_files(bytes(model_content), settings)
    for name, text in files.items():
        (folder / name).write_text(text)
    manifest = {
        "generator": "tinyml_course.mask.sketch.generate_sketch",
        "model_sha256": settings.model_sha256,
        "files": {name: _digest(text.encode()) for name, text in files.items()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


@dataclass(frozen=True)
class CompileResult:
    """The outcome of :func:`compile_check`."""

    ok: bool
    command: tuple[str, ...]
    output: str
    executable: Path | None

    def __str__(self) -> str:
        if self.ok:
            return f"compiled OK with the stand-in headers: {self.executable}"
        return f"compile FAILED:\n{self.output}"


def compile_check(
    sketch_dir: str | Path, *, build_dir: str | Path | None = None, compiler: str = "g++"
) -> CompileResult:
    """Compile the sketch with the host C++ compiler against the stand-in headers.

    The ``.ino`` is compiled as C++17 with ``-Wall -Werror`` together with the stand-ins
    (``tinyml_course/mask/stubs``) and the harness, into one host executable that
    :func:`run_harness` drives.

    Parameters
    ----------
    sketch_dir : str or Path
        The sketch folder (``.../mask_detector``).
    build_dir : str or Path, optional
        Where to put the executable; default ``results/mask/sketch_build``.
    compiler : str
        The C++ compiler.

    Returns
    -------
    CompileResult
        ``ok``, the command, the compiler's output and the executable's path.

    Raises
    ------
    FileNotFoundError
        If the sketch folder has no ``mask_detector.ino`` or the compiler is not installed.
    """
    folder = Path(sketch_dir)
    ino = folder / f"{SKETCH_NAME}.ino"
    if not ino.is_file():
        raise FileNotFoundError(f"{ino} not found; pass the folder generate_sketch returned.")
    if shutil.which(compiler) is None:
        raise FileNotFoundError(
            f"the C++ compiler {compiler!r} is not installed; install g++ (apt install g++)."
        )
    if build_dir is None:
        from tinyml_course.paths import output_path

        build = output_path("mask", "sketch_build", "x").parent
    else:
        build = Path(build_dir)
        build.mkdir(parents=True, exist_ok=True)
    executable = build / "mask_detector_host"
    command = (
        compiler,
        "-std=gnu++17",
        "-O1",
        "-Wall",
        "-Werror",
        "-I",
        str(STUBS_DIR),
        "-I",
        str(folder),
        "-x",
        "c++",
        str(ino),
        str(STUBS_DIR / "stubs.cpp"),
        str(STUBS_DIR / "harness.cpp"),
        "-o",
        str(executable),
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    ok = result.returncode == 0 and executable.is_file()
    return CompileResult(
        ok, command, (result.stdout + result.stderr).strip(), executable if ok else None
    )


def run_harness(
    executable: str | Path | CompileResult,
    data: bytes = b"",
    *,
    mode: str = "serve",
    timeout: float = 30.0,
) -> bytes:
    """Run the compiled sketch harness: ``serve`` returns the sketch's replies to ``data``.

    Modes: ``serve`` (bytes in, reply bytes out; a trailing partial frame times out),
    ``quantize`` (the sketch's int8 value of each pixel 0-255, one per line) and
    ``settings`` (its constants and registered operators).

    Raises
    ------
    RuntimeError
        If the harness fails (for example ``setup()`` refused the model).
    """
    if isinstance(executable, CompileResult):
        if not executable.ok or executable.executable is None:
            raise RuntimeError(f"the sketch did not compile:\n{executable.output}")
        executable = executable.executable
    if mode not in ("serve", "quantize", "settings"):
        raise ValueError(f"mode must be 'serve', 'quantize' or 'settings'; got {mode!r}.")
    result = subprocess.run(
        [str(executable), mode], input=bytes(data), capture_output=True, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"the sketch harness exited with {result.returncode}: {result.stderr.decode(errors='replace').strip()}"
        )
    return result.stdout
