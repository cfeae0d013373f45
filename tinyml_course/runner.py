"""Execute notebooks headless (nbclient) and write the results report."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tinyml_course.paths import repo_root, results_dir
from tinyml_course.results import clear_figures, write_report


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of executing one notebook."""

    stem: str
    seconds: float
    ok: bool
    error: str = ""
    executed_path: Path | None = None


def course_notebooks() -> list[Path]:
    """The course notebooks in teaching order (``notebooks/NN_*.ipynb``)."""
    root = repo_root()
    if root is None:
        raise FileNotFoundError(
            "notebooks/ not found: run this from a clone of the course (pip install -e .)."
        )
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(
    path: Path,
    *,
    timeout: int = 900,
    save_to: Path | None = None,
    env: dict[str, str] | None = None,
) -> NotebookRun:
    """Execute one notebook top to bottom in a fresh kernel, in the notebook's folder.

    The executed copy (with outputs) is written to ``save_to`` when given; the source
    notebook is never modified.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    saved_env = dict(os.environ)
    os.environ.update(env or {})
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    error = ""
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        error = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    seconds = time.perf_counter() - start
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_to)
    return NotebookRun(path.stem, seconds, not error, error, save_to)


def run_notebooks(
    paths: Sequence[Path] | None = None,
    *,
    timeout: int = 900,
    quick: bool = False,
    echo: bool = True,
) -> list[NotebookRun]:
    """Execute notebooks (all course notebooks by default) and update the results report.

    Each notebook's recorded figures are cleared before it runs, so the report holds for
    every notebook the numbers of its latest run. Running the whole course (no ``paths``)
    starts a fresh report. Executed copies go to ``results/executed/``.
    """
    out = results_dir()
    if not paths:
        paths = course_notebooks()
        for stale in (out / "results.json", *(out / "figures").glob("*.json")):
            stale.unlink(missing_ok=True)
    paths = list(paths)
    runs = []
    # TINYML_COURSE_HEADLESS tells widget explorers there is no front end: draw static figures.
    env = {"TINYML_COURSE_RESULTS": str(out), "TINYML_COURSE_HEADLESS": "1"}
    if quick:
        env["TINYML_COURSE_QUICK"] = "1"
    for path in paths:
        path = Path(path)
        clear_figures(path.stem)
        if echo:
            print(f"running {path.name} ...", flush=True)
        run = execute_notebook(path, timeout=timeout, save_to=out / "executed" / path.name, env=env)
        if echo:
            status = "ok" if run.ok else f"FAILED: {run.error}"
            print(f"  {path.stem}: {run.seconds:.1f} s, {status}", flush=True)
        runs.append(run)
        write_report({r.stem: {"seconds": round(r.seconds, 2), "ok": r.ok} for r in runs})
    return runs
