"""``tinyml-course mcu ...``: a model on the virtual Cortex-M4.

Loaded by :mod:`tinyml_course.cli` through :func:`register`.

* ``mcu run MODEL.tflite [--board B] [--simd] [--input X.npy] [--compare N] [--emit DIR]``:
  compile the int8 model to C, build it for the board, run one inference on the virtual board
  and print flash, RAM (with the measured stack), the exact instruction count, the estimated
  cycles and time, the outputs, and (where tflite-micro is installed) whether N inputs give
  the same outputs as tflite-micro. ``--emit DIR`` also writes the C project (sources, header,
  start-up file, linker script, a Makefile for ``arm-none-eabi-gcc``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _cmd_run(args: argparse.Namespace) -> int:
    from tinyml_course.mcu.board import BOARDS
    from tinyml_course.mcu.build import BuildError, emit_project
    from tinyml_course.mcu.model import compare_with_micro, compile_model
    from tinyml_course.micro import micro_available
    from tinyml_course.tflite import read_tflite

    path = Path(args.model)
    try:
        content = read_tflite(path)
    except ValueError as err:
        return _error(str(err))
    if args.board not in BOARDS:
        return _error(f"--board {args.board}: unknown; choose one of {', '.join(BOARDS)}")
    try:
        compiled = compile_model(content, board=args.board, simd=args.simd)
    except (ValueError, BuildError) as err:
        return _error(str(err))
    gen = compiled.generated
    rng = np.random.default_rng(args.seed)
    if args.input:
        try:
            x = np.load(args.input)
        except (OSError, ValueError) as err:
            return _error(f"--input {args.input}: cannot read it as a .npy array ({err})")
        if x.dtype != np.int8 or x.size != gen.input_size:
            return _error(
                f"--input must hold one int8 input of {gen.input_size} values "
                f"{gen.input_shape[1:]}; got {x.dtype} with {x.size} values"
            )
        source = args.input
    else:
        x = rng.integers(-128, 128, gen.input_size, dtype=np.int8)
        source = f"random int8 values (seed {args.seed}); pass --input X.npy for a real one"
    m = compiled.measure(x)
    print(f"model      {path.name}: {len(gen.layers)} layers, {gen.macs:,} MACs")
    print(
        f"board      {compiled.board.name} ({compiled.board.clock_mhz:g} MHz), "
        f"{'SIMD (SMLAD) kernels' if args.simd else 'plain C kernels'}"
    )
    print(
        f"flash      {m.flash_bytes:,} B (code {compiled.firmware.sizes.code_bytes:,}, "
        f"constants {compiled.firmware.sizes.rodata_bytes:,}, data {compiled.firmware.sizes.data_bytes:,})"
    )
    print(
        f"RAM        {m.ram_bytes:,} B (static {compiled.static_ram_bytes:,} incl. the "
        f"{gen.simd_arena_bytes if args.simd else gen.arena_bytes:,} B arena, stack {m.stack_bytes:,} B measured)"
    )
    print(f"run        {m.instructions:,} instructions for one inference (exact, emulated)")
    print(
        f"estimate   {m.estimate.cycles:,} cycles = {m.estimate.milliseconds:.2f} ms (an ESTIMATE "
        f"from the Cortex-M4 TRM's cycle counts with zero flash wait states; range "
        f"{m.estimate.cycles_min:,}-{m.estimate.cycles_max:,} cycles)"
    )
    print(f"input      {source}")
    print(f"output     {compiled.infer(x[None])[0].reshape(-1).tolist()}")
    if args.compare:
        if micro_available():
            xs = rng.integers(-128, 128, (args.compare, *gen.input_shape[1:]), dtype=np.int8)
            print(f"tflite-micro {compare_with_micro(compiled, content, xs)}")
        else:
            print("tflite-micro not installed here (Linux x86_64 wheels only): no comparison")
    if args.emit:
        try:
            folder = emit_project(
                gen.files,
                args.emit,
                board=compiled.board,
                simd=args.simd,
                harness="model",
                overwrite=args.overwrite,
            )
        except (FileExistsError, NotADirectoryError) as err:
            return _error(f"--emit {args.emit}: {err}")
        print(f"C project  {folder} (build it with `make` and arm-none-eabi-gcc)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mcu`` command group to the ``tinyml-course`` parser."""
    mcu = subparsers.add_parser(
        "mcu",
        help="a model compiled to C and run on a virtual Cortex-M4 (flash, RAM, instructions)",
    )
    sub = mcu.add_subparsers(dest="mcu_command", required=True)
    p = sub.add_parser("run", help="compile an int8 .tflite to C, run it on the virtual board")
    p.add_argument("model", metavar="MODEL.tflite", help="a full-integer int8 .tflite model")
    p.add_argument("--board", default="nRF52840", help="the chip (default nRF52840)")
    p.add_argument("--simd", action="store_true", help="use the SMLAD (DSP) kernels")
    p.add_argument("--input", metavar="X.npy", help="one int8 input (default: random values)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--compare", type=int, default=20, metavar="N",
        help="compare N random inputs with tflite-micro (0: skip; default 20)",
    )  # fmt: skip
    p.add_argument("--emit", metavar="DIR", help="also write the C project into DIR")
    p.add_argument("--overwrite", action="store_true", help="let --emit replace differing files")
    p.set_defaults(func=_cmd_run)
