"""The ``tinyml-course`` command: environment check, running the course, reports, grading, the mask demo."""

from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Sub-command groups that live next to the code they drive. Each module has
# ``register(subparsers)``; a missing one is skipped.
_PLUGINS = ("tinyml_course.grading", "tinyml_course.mask.cli", "tinyml_course.mcu.cli")


def _cmd_check(args: argparse.Namespace) -> int:
    """Print what the course stack looks like on this machine."""
    from importlib.metadata import PackageNotFoundError, version

    print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    for package in (
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "ai-edge-litert",
        "tflite-micro",
        "opencv-python-headless",
        "jupyterlab",
        "nbgrader",
    ):
        try:
            print(f"  {package:<32}{version(package)}")
        except PackageNotFoundError:
            print(f"  {package:<32}not installed")
    from tinyml_course._setup import get_keras
    from tinyml_course.micro import micro_available

    keras = get_keras()
    print(f"keras API: tf-keras {keras.__version__} (Keras 2)")
    print(
        f"tflite-micro runtime: {'available' if micro_available() else 'not available here (falls back to LiteRT reference kernels)'}"
    )
    from tinyml_course.grading.sandbox import sandbox_status

    works, why = sandbox_status()
    print(f"grading sandbox: {'works (' + why + ')' if works else 'not available: ' + why}")
    from tinyml_course.datasets import load_fashion_mnist

    data = load_fashion_mnist()
    print(f"Fashion-MNIST: {data}")
    print("environment OK")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from tinyml_course.paths import results_dir
    from tinyml_course.runner import run_notebooks

    paths = [Path(p) for p in args.notebooks]  # none: the whole course, in a fresh report
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"error: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    runs = run_notebooks(paths or None, timeout=args.timeout, quick=args.quick)
    print(f"report: {results_dir() / 'report.md'} and {results_dir() / 'results.json'}")
    return 0 if all(r.ok for r in runs) else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from tinyml_course.results import write_report

    path = write_report()
    print(path.with_name("report.md").read_text())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Time every notebook (and every exercise solution) headless and print the table."""
    from tinyml_course.paths import repo_root
    from tinyml_course.runner import course_notebooks, run_notebooks

    paths = course_notebooks()
    root = repo_root()
    if args.solutions and root is not None:
        paths += sorted((root / "solutions").glob("*/*.ipynb"))
    runs = run_notebooks(paths, timeout=args.timeout, echo=False)
    print(f"{'notebook':<40}{'seconds':>10}  status")
    for run in runs:
        print(f"{run.stem:<40}{run.seconds:>10.1f}  {'ok' if run.ok else 'FAILED: ' + run.error}")
    print(f"{'total':<40}{sum(r.seconds for r in runs):>10.1f}")
    return 0 if all(r.ok for r in runs) else 1


def _cmd_lab(args: argparse.Namespace) -> int:
    from tinyml_course.paths import repo_root

    root = repo_root()
    if root is None:
        print("error: run the course from its clone (pip install -e .)", file=sys.stderr)
        return 2
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        f"--ServerApp.root_dir={root}",
        "--LabApp.default_url=/lab/tree/notebooks",
    ]
    if args.no_browser:
        command.append("--no-browser")
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinyml-course", description="The TinyML course: run, measure and grade it."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "check", help="check the installed stack, the Keras set-up, tflite-micro and the data"
    )
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "run",
        help="execute notebooks headless and write results/report.md and results/results.json",
    )
    p.add_argument("notebooks", nargs="*", help="notebooks to run (default: all of notebooks/)")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    p.add_argument("--quick", action="store_true", help="use the notebooks' small training path")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "report", help="rebuild the results report from the recorded figures and print it"
    )
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "bench", help="time every notebook (and solution) headless and print the times"
    )
    p.add_argument("--solutions", action="store_true", help="also time the exercise solutions")
    p.add_argument("--timeout", type=int, default=900)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("lab", help="start JupyterLab on notebooks/")
    p.add_argument("--no-browser", action="store_true")
    p.set_defaults(func=_cmd_lab)

    for name in _PLUGINS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
