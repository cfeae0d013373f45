"""One entry point for a model on the virtual microcontroller: generate C, build, run, measure.

:func:`compile_model` turns an int8 ``.tflite`` into firmware for a board
(:mod:`~tinyml_course.mcu.codegen` + :mod:`~tinyml_course.mcu.build`);
:class:`CompiledModel` runs it on a :class:`~tinyml_course.mcu.emulator.VirtualBoard`, counts
one inference (:meth:`CompiledModel.measure`) and checks it against tflite-micro
(:func:`compare_with_micro`).

Examples
--------
>>> compiled = compile_model(model_bytes)          # doctest: +SKIP
>>> print(compiled.measure(x_int8[0]))             # doctest: +SKIP
>>> compare_with_micro(compiled, model_bytes, x_int8[:200]).mismatches   # doctest: +SKIP
0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinyml_course.mcu.board import DEFAULT_BOARD, Board, get_board
from tinyml_course.mcu.build import Firmware, build
from tinyml_course.mcu.codegen import GeneratedModel, Layer, generate_c
from tinyml_course.mcu.emulator import CycleEstimate, RunResult, VirtualBoard, estimate


@dataclass(frozen=True)
class LayerCost:
    """Instructions one layer of a counted inference took, and its MACs."""

    layer: Layer
    instructions: int

    @property
    def instructions_per_mac(self) -> float | None:
        """Instructions per multiply-accumulate (None for layers without MACs)."""
        return self.instructions / self.layer.macs if self.layer.macs else None


@dataclass(frozen=True)
class Measurement:
    """What one counted inference on the virtual board cost.

    Attributes
    ----------
    flash_bytes : int
        The firmware's flash image: code, weights and other constants, initial data.
    ram_bytes : int
        Static RAM (the activation arena, the input and output buffers, other variables) plus
        the peak stack the run used, measured.
    stack_bytes : int
        The measured peak stack.
    instructions : int
        Instructions executed by one inference (exact, for this emulator).
    layers : tuple of LayerCost
        Instructions per layer, in execution order.
    estimate : CycleEstimate
        An ESTIMATE of the cycles and milliseconds on the real core (see its ``assumptions``).
    class_counts : dict of str to int
        Instructions per class (loads, stores, multiply/DSP, ALU, branches, ...).
    """

    flash_bytes: int
    ram_bytes: int
    stack_bytes: int
    instructions: int
    layers: tuple[LayerCost, ...]
    estimate: CycleEstimate
    class_counts: dict[str, int]

    def __str__(self) -> str:
        return (
            f"flash {self.flash_bytes:,} B | RAM {self.ram_bytes:,} B (stack {self.stack_bytes:,} B, "
            f"measured) | {self.instructions:,} instructions per inference | estimated "
            f"{self.estimate.cycles:,} cycles = {self.estimate.milliseconds:.2f} ms at "
            f"{self.estimate.clock_hz / 1e6:g} MHz (an estimate)"
        )


@dataclass
class CompiledModel:
    """A model compiled to C and built for a board, ready to run on the virtual board."""

    generated: GeneratedModel
    firmware: Firmware
    board: Board
    simd: bool
    _virtual: VirtualBoard | None = None

    @property
    def virtual_board(self) -> VirtualBoard:
        """The emulated chip running this firmware (created on first use)."""
        if self._virtual is None:
            self._virtual = VirtualBoard(self.firmware)
        return self._virtual

    @property
    def flash_bytes(self) -> int:
        """Bytes of flash the firmware image takes."""
        return int(self.firmware.sizes.flash_bytes)

    @property
    def static_ram_bytes(self) -> int:
        """``.data`` + ``.bss``: RAM used before any stack."""
        return int(self.firmware.sizes.static_ram_bytes)

    def _check_input(self, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        if arr.dtype != np.int8:
            raise TypeError(
                f"inputs must be int8 (quantized with the model's input scale and zero point); got "
                f"{arr.dtype}. Use TFLiteModel(model).quantize_input(x) first."
            )
        return arr

    def infer(self, x: Any) -> np.ndarray:
        """Run a batch of int8 inputs ``(N, *input_shape)``; return the int8 outputs."""
        arr = self._check_input(x)
        size = self.generated.input_size
        if arr.size % size:
            raise ValueError(
                f"x has {arr.size} values, not a whole number of inputs of {size} values "
                f"(the model's input shape is {self.generated.input_shape})."
            )
        flat = arr.reshape(-1, size)
        outputs = self.virtual_board.infer_batch(flat)
        return np.asarray(outputs, np.int8).reshape((len(flat), *self.generated.output_shape[1:]))

    def measure(self, x: Any) -> Measurement:
        """Count one inference on input ``x`` (one sample): instructions, layers, stack, RAM."""
        arr = self._check_input(x)
        if arr.size != self.generated.input_size:
            raise ValueError(
                f"measure takes one input of {self.generated.input_size} values; got {arr.size}."
            )
        result: RunResult = self.virtual_board.infer(arr.reshape(-1), count=True)
        by_index = {layer.index: layer for layer in self.generated.layers}
        layers = tuple(
            LayerCost(by_index[i], n)
            for i, n in zip(result.marker_ids, result.layer_instructions, strict=True)
            if i in by_index
        )
        return Measurement(
            flash_bytes=self.flash_bytes,
            ram_bytes=int(result.ram_bytes),
            stack_bytes=int(result.stack_bytes),
            instructions=int(result.instructions or 0),
            layers=layers,
            estimate=estimate(result, self.board),
            class_counts=dict(result.class_counts),
        )


def compile_model(
    model_content: bytes,
    *,
    board: str | Board = DEFAULT_BOARD,
    simd: bool = False,
    opt: str = "-O2",
) -> CompiledModel:
    """Generate C for an int8 model and build it for a board (cached: identical inputs reuse).

    Parameters
    ----------
    model_content : bytes
        A full-integer int8 ``.tflite``.
    board : str or Board
        The chip (its memory map, clock and stack reserve); default the nRF52840.
    simd : bool
        Build the kernels' SMLAD paths (``-DTINYML_SIMD``).
    opt : str
        The compiler's optimisation level.

    Raises
    ------
    ValueError
        If the model is not int8 or uses an operator the generator does not support.
    tinyml_course.mcu.build.BuildError
        If compiling or linking fails (e.g. the model does not fit the board's flash or RAM).
    """
    board_ = get_board(board)
    generated = generate_c(bytes(model_content))
    firmware = build(generated.files, board=board_, simd=simd, opt=opt, harness="model")
    return CompiledModel(generated, firmware, board_, simd)


@dataclass(frozen=True)
class Comparison:
    """The generated code's outputs against tflite-micro's, element by element."""

    compared: int
    mismatches: int
    first_difference: str

    def __str__(self) -> str:
        if not self.mismatches:
            return f"{self.compared} inputs: every output element equals tflite-micro's"
        return (
            f"{self.mismatches} of {self.compared} inputs differ from tflite-micro; first: "
            f"{self.first_difference}"
        )


def compare_with_micro(compiled: CompiledModel, model_content: bytes, x: Any) -> Comparison:
    """Run int8 inputs through the generated code and through tflite-micro, and compare.

    Raises
    ------
    RuntimeError
        Where tflite-micro is not installed (it ships Linux x86_64 wheels only).
    """
    from tinyml_course.micro import micro_available, run_micro

    if not micro_available():
        raise RuntimeError(
            "compare_with_micro needs tflite-micro, which ships Linux x86_64 wheels only."
        )
    arr = compiled._check_input(x)  # noqa: SLF001 - same validation
    ours = compiled.infer(arr)
    theirs = run_micro(bytes(model_content), arr).reshape(ours.shape)
    differ = np.flatnonzero((ours != theirs).reshape(len(ours), -1).any(axis=1))
    first = ""
    if differ.size:
        n = int(differ[0])
        element = int(np.flatnonzero(ours[n].reshape(-1) != theirs[n].reshape(-1))[0])
        first = (
            f"input {n}, output element {element}: generated code {int(ours[n].reshape(-1)[element])}, "
            f"tflite-micro {int(theirs[n].reshape(-1)[element])}"
        )
    return Comparison(len(ours), int(differ.size), first)
