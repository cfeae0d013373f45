"""The ``tinyml-course`` command: environment check, running the course, reports, grading, the mask demo."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

# Sub-command groups that live next to the code they drive. Each module has
# ``register(subparsers)``; a missing one is skipped. One that needs a package of another
# install (nbgrader for ``grade``: the instructor install) becomes a command that says how
# to get it.
_PLUGINS = (
    "tinyml_course.grading",
    "tinyml_course.mask.cli",
    "tinyml_course.mcu.cli",
    "tinyml_course.kws.cli",
)
_COMMANDS = {"tinyml_course.grading": "grade"}  # otherwise the module's last name
_REQUIRES = {"tinyml_course.grading": "nbgrader"}  # a package of the instructor install
_INSTALL_HINT = (
    "python3 course.py instructor (or, in another environment: pip install -e '.[instructor]')"
)


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
    from tinyml_course.lab import current_interface
    from tinyml_course.paths import results_dir

    print(f"JupyterLab interface: {current_interface()}")
    print(f"results folder: {results_dir()}")
    if importlib.util.find_spec("nbgrader") is None:
        print(f"grading: not installed (no nbgrader; instructors: {_INSTALL_HINT})")
    else:
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
    """Time every notebook (and every exercise solution) headless and print the table; or,
    with ``--grading N``, benchmark the autograder."""
    if args.grading is not None:
        try:
            from tinyml_course.grading.cli import bench_command
        except ModuleNotFoundError as err:
            if not _third_party(err):
                raise
            print(
                f"error: `tinyml-course bench --grading` needs the grading tools ({err.name}), "
                f"which are not installed here: {_INSTALL_HINT}",
                file=sys.stderr,
            )
            return 2
        return bench_command(args)
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
    from tinyml_course.lab import lab_command

    try:
        command = lab_command(args.jupyterlab_options)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return subprocess.call(command)


def _cmd_interface(args: argparse.Namespace) -> int:
    from tinyml_course.lab import current_interface, nbgrader_installed, set_interface

    if args.interface:
        for path in set_interface(args.interface, folder=args.config_dir):
            print(f"wrote {path}")
        if args.interface == "instructor" and not nbgrader_installed():
            print(f"note: nbgrader is not installed here; add it with {_INSTALL_HINT}")
        if args.config_dir:
            return 0
    print(f"JupyterLab interface: {current_interface()} (takes effect when JupyterLab starts)")
    return 0


def _third_party(err: ModuleNotFoundError) -> bool:
    """Whether a failed import is of a package outside the course (another install's)."""
    return bool(err.name) and err.name.split(".")[0] != "tinyml_course"


def _command_name(module: str) -> str:
    """The command a plugin module adds: ``grade`` for grading, ``mask`` for mask.cli, ..."""
    return _COMMANDS.get(module) or module.removesuffix(".cli").rsplit(".", 1)[-1]


def _missing_plugin(subparsers: argparse._SubParsersAction, command: str, package: str) -> None:
    """A ``command`` that explains it needs ``package`` from the instructor install."""
    message = (
        f"`tinyml-course {command}` needs {package}, which is not installed here: {_INSTALL_HINT}"
    )

    def explain(args: argparse.Namespace) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    p = subparsers.add_parser(
        command, help=f"(needs the instructor install: {package})", add_help=False
    )
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=explain)


def positive_int(text: str) -> int:
    """A positive integer argument (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


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
    grading = p.add_argument_group(
        "grading throughput (instructor install)",
        "--grading N grades N submissions (the lab's solution, blank release and a plausible "
        "wrong answer in turn) once per --jobs value, checks the results are identical, prints "
        "submissions per minute, the speed-up and the projected time for 300 students x 7 labs, "
        "and records the figures in the results report",
    )
    grading.add_argument(
        "--grading",
        type=positive_int,
        metavar="N",
        help="benchmark the autograder on N submissions",
    )
    grading.add_argument(
        "--lab", default="lab00_budget", help="the lab to grade (default lab00_budget)"
    )
    grading.add_argument(
        "--jobs",
        type=positive_int,
        nargs="+",
        default=[1, 2],
        metavar="J",
        help="the --jobs values to compare; the first is the speed-up's baseline (default: 1 2)",
    )
    grading.add_argument(
        "--scheduler", metavar="ADDRESS", help="benchmark an existing Dask cluster"
    )
    grading.add_argument(
        "--workspace",
        help="folder for the batch and the workspaces (default: a temporary one, removed)",
    )
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "lab",
        help="start JupyterLab on notebooks/ (every option goes to JupyterLab)",
        description="Start JupyterLab on the course's notebooks/. Every option is passed to "
        "JupyterLab unchanged: --no-browser, --port 8899, --ip 0.0.0.0, --allow-root, "
        "--ServerApp.token=..., ... (`jupyter lab --help-all` lists them).",
        allow_abbrev=False,
    )
    p.set_defaults(func=_cmd_lab, passes_options=True)

    p = sub.add_parser(
        "interface",
        help="show or choose JupyterLab's interface: student, or instructor (nbgrader's panels)",
    )
    p.add_argument("interface", nargs="?", choices=["student", "instructor"])
    p.add_argument(
        "--config-dir",
        type=Path,
        help="write to this Jupyter configuration folder (default: this environment's)",
    )
    p.set_defaults(func=_cmd_interface)

    for name in _PLUGINS:
        needed = _REQUIRES.get(name)
        if needed and importlib.util.find_spec(needed) is None:
            _missing_plugin(sub, _command_name(name), needed)
            continue
        try:
            module = importlib.import_module(name)
            module.register(sub)
        except ModuleNotFoundError as err:
            if err.name and name.startswith(err.name):
                continue
            if not _third_party(err):
                raise
            _missing_plugin(sub, _command_name(name), err.name.split(".")[0])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_options", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.jupyterlab_options = unknown
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
