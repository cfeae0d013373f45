"""``tinyml-course mask ...``: classify photos, stream to a device, run a virtual ESP32.

Loaded by :mod:`tinyml_course.cli` through :func:`register`.

* ``mask classify PATH... [--model FILE] [--size N]``: one line per image,
  ``PATH<TAB>mask|no_mask<TAB>SCORE<TAB>DETECTOR`` (SCORE is the probability of a mask,
  DETECTOR the step that found the face); the course's model by default, trained and cached
  first if there is none.
* ``mask stream --port PORT (--camera N | PATH...)``: the same through a device.
* ``mask virtual-device [--model FILE]``: a virtual ESP32 on a new pseudo-terminal.
* ``mask sketch OUT_DIR [--model FILE]``: write the Arduino sketch and compile-check it.
"""

from __future__ import annotations

import argparse
import sys


def _load_model(path: str | None, size: int | None) -> bytes | None:
    """The model bytes, or None after printing why not."""
    if path is not None:
        from tinyml_course.tflite import read_tflite

        try:
            return read_tflite(path)
        except ValueError as err:
            print(f"error: --model {err}", file=sys.stderr)
            return None
    from tinyml_course.mask.model import DEFAULT_SIZE, default_model, default_model_path

    chosen = DEFAULT_SIZE if size is None else size
    if not default_model_path(chosen).exists():
        print(
            f"no trained {chosen}x{chosen} mask model cached yet: training it (this happens once)...",
            file=sys.stderr,
        )
    return default_model(chosen, verbose=0)


def _cmd_classify(args: argparse.Namespace) -> int:
    from tinyml_course.mask.host import read_image
    from tinyml_course.mask.model import int8_scores
    from tinyml_course.mask.preprocess import preprocess_face
    from tinyml_course.tflite import TFLiteModel

    model = _load_model(args.model, args.size)
    if model is None:
        return 2
    shape = TFLiteModel(model).input.shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
        print(
            f"error: the model's input must be (1, size, size, 1); this one's is {shape}",
            file=sys.stderr,
        )
        return 2
    size = int(shape[1])
    status = 0
    for path in args.paths:
        try:
            image = read_image(path)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        crop = preprocess_face(image, size)
        score = float(int8_scores(model, crop.pixels)[0])
        label = "mask" if score > 0.5 else "no_mask"
        print(f"{path}\t{label}\t{score:.3f}\t{crop.detector}", flush=True)
    return status


def _cmd_stream(args: argparse.Namespace) -> int:
    from tinyml_course.mask.host import DeviceError, DeviceTimeout, stream

    if args.camera is None and not args.paths:
        print("error: give image files or --camera N", file=sys.stderr)
        return 2
    if args.camera is not None and args.paths:
        print("error: give either image files or --camera N, not both", file=sys.stderr)
        return 2
    try:
        return stream(
            args.port,
            args.paths,
            camera=args.camera,
            max_frames=args.frames,
            timeout=args.timeout,
            out=lambda line: print(line, flush=True),
            err=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (DeviceError, DeviceTimeout, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _cmd_virtual_device(args: argparse.Namespace) -> int:
    from tinyml_course.mask.virtual_device import run_foreground
    from tinyml_course.micro import NotInt8ModelError

    model = _load_model(args.model, args.size)
    if model is None:
        return 2
    try:
        return run_foreground(model, arena_size=args.arena, quiet=args.quiet)
    except (NotInt8ModelError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _cmd_sketch(args: argparse.Namespace) -> int:
    from tinyml_course.mask.sketch import compile_check, generate_sketch

    model = _load_model(args.model, args.size)
    if model is None:
        return 2
    try:
        folder = generate_sketch(
            model,
            args.out_dir,
            arena_bytes=args.arena,
            device_name=args.name,
            overwrite=args.overwrite,
        )
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"sketch written to {folder}")
    if args.no_check:
        return 0
    result = compile_check(folder)
    print(result)
    return 0 if result.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``mask`` command group to the ``tinyml-course`` parser."""
    mask = subparsers.add_parser(
        "mask", help="the mask-detection demo: classify, stream, virtual ESP32, sketch"
    )
    sub = mask.add_subparsers(dest="mask_command", required=True)

    p = sub.add_parser("classify", help="classify face photos: PATH, mask|no_mask, score, detector")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files (PNG, JPEG, ...)")
    p.add_argument(
        "--model",
        help="an int8 .tflite mask model (default: the course's, trained once and cached)",
    )
    p.add_argument(
        "--size",
        type=int,
        help="input size of the course model to use (default: the best on real faces)",
    )
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser(
        "stream", help="send faces to a device (ESP32 or virtual) and print its answers"
    )
    p.add_argument("--port", required=True, help="serial port: /dev/rfcomm0, COM5, /dev/pts/N, ...")
    p.add_argument("--camera", type=int, help="webcam number (instead of image files)")
    p.add_argument("--frames", type=int, help="stop after this many camera frames")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for each answer")
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files")
    p.set_defaults(func=_cmd_stream)

    p = sub.add_parser(
        "virtual-device",
        help="serve the protocol on a pseudo-terminal with tflite-micro (Ctrl-C stops)",
    )
    p.add_argument("--model", help="an int8 .tflite mask model (default: the course's)")
    p.add_argument("--size", type=int, help="input size of the course model to use")
    p.add_argument(
        "--arena", type=int, help="tensor arena bytes (default: measured + the sketch's margin)"
    )
    p.add_argument("--quiet", action="store_true", help="do not print a line per request")
    p.set_defaults(func=_cmd_virtual_device)

    p = sub.add_parser(
        "sketch", help="write the ESP32 Arduino sketch for a model and compile-check it"
    )
    p.add_argument("out_dir", help="folder to create mask_detector/ in")
    p.add_argument("--model", help="an int8 .tflite mask model (default: the course's)")
    p.add_argument("--size", type=int, help="input size of the course model to use")
    p.add_argument("--arena", type=int, help="tensor arena bytes (default: measured + margin)")
    p.add_argument("--name", default="ESP32-MaskDetector", help="Bluetooth device name")
    p.add_argument("--overwrite", action="store_true", help="replace an edited sketch folder")
    p.add_argument("--no-check", action="store_true", help="skip the host compile check")
    p.set_defaults(func=_cmd_sketch)
