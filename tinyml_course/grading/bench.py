"""Grading throughput: the same batch with ``--jobs 1`` and ``--jobs 2``, and where the time goes.

``tinyml-course bench --grading N [--lab LAB] [--jobs 1 2]`` builds a batch of N submissions of
the lab, a mix of three kinds in turn (its solution, the blank release and the plausible wrong
answer of ``tests/grading/wrong_answers/<lab>.json``, when the course has one), grades it
once per ``--jobs`` value in a fresh workspace (the solution's hidden results computed
beforehand, as they are cached in real use), checks that every run produced the same
results (:func:`compare_workspaces`), and prints the throughput and a per-submission split
of the time:

* the grader's share: setting up the scratch course, starting the sandboxed kernel,
  shutting it down, nbgrader's own work (sanitising, deciding the hidden tests, saving the
  grades), the feedback page, sending results back, recording them in the gradebook, and
  the engine's idle time;
* the lab's share: importing TensorFlow (timed once in a bare sandboxed kernel) and the
  notebook's own code (training, tests).

It also projects a class (300 students x 7 labs) onto 8 and 32 cores at the measured rate per
core of the fastest run (an estimate: labs differ in their own training time, and a real
cluster adds its network), and records its figures in the results report
(``results/figures/grading_throughput.json``).

Run it with the machine to itself (``flock /tmp/tinyml-cpu.lock tinyml-course bench --grading 24``).
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tinyml_course.grading.workspace import GradingError, course_root

KINDS = ("solution", "blank", "wrong")
CLASS_SUBMISSIONS = 300 * 7  # the class the projection is for: 300 students, 7 labs
PROJECTED_CORES = (8, 32)
FIGURES = "grading_throughput"  # the results report's entry for the benchmark


def _nbgrader(cell: Any) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def build_batch(lab: str, folder: Path, submissions: int, release_dir: Path) -> dict[str, str]:
    """Write ``submissions`` students into ``folder``, the kinds in turn; return student -> kind."""
    import nbformat

    release = nbformat.read(release_dir / f"{lab}.ipynb", as_version=4)
    solution = nbformat.read(course_root() / "solutions" / lab / f"{lab}.ipynb", as_version=4)
    answers = {
        _nbgrader(c)["grade_id"]: c.source
        for c in solution.cells
        if _nbgrader(c).get("solution") and not _nbgrader(c).get("grade")
    }
    wrong_file = course_root() / "tests" / "grading" / "wrong_answers" / f"{lab}.json"
    wrong = json.loads(wrong_file.read_text()) if wrong_file.is_file() else {}

    def filled(values: dict[str, str]) -> Any:
        nb = copy.deepcopy(release)
        for cell in nb.cells:
            if _nbgrader(cell).get("grade_id") in values:
                cell.source = values[_nbgrader(cell)["grade_id"]]
        return nb

    notebooks = {"solution": filled(answers), "blank": release}
    if wrong:
        notebooks["wrong"] = filled({**answers, **wrong})
    kinds = {}
    order = list(notebooks)
    for index in range(submissions):
        kind = order[index % len(order)]
        student = f"{kind}{index // len(order):03d}"
        (folder / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebooks[kind], folder / student / f"{lab}.ipynb")
        kinds[student] = kind
    return kinds


# --------------------------------------------------------------------------- comparing runs
def _gradebook_rows(workspace: Path, lab: str) -> dict[str, Any]:
    from nbgrader.api import Gradebook

    out: dict[str, Any] = {}
    with Gradebook("sqlite:///" + str(workspace / "gradebook.db")) as gb:
        for submission in gb.find_assignment(lab).submissions:
            cells = []
            for notebook in submission.notebooks:
                for g in notebook.grades:
                    cells.append(
                        (notebook.name, g.name, g.auto_score, g.manual_score, g.needs_manual_grade)
                    )
                for c in notebook.comments:
                    cells.append((notebook.name, c.name, c.auto_comment, c.manual_comment))
                cells.append((notebook.name, "late penalty", notebook.late_submission_penalty))
            out[submission.student.id] = {
                "score": submission.score,
                "max_score": submission.max_score,
                "timestamp": str(submission.timestamp),
                "cells": sorted(cells, key=str),
            }
    return out


def _files(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _first_difference(a: bytes, b: bytes, context: int = 60) -> str:
    """Where two byte strings first differ, with a little text on either side of it."""
    at = next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )
    start = max(0, at - context)

    def excerpt(data: bytes) -> str:
        return repr(data[start : at + context].decode("utf-8", "replace"))

    return f"at byte {at:,}: {excerpt(a)} vs {excerpt(b)}"


def _report_rows(workspace: Path, lab: str) -> list[dict[str, str]]:
    with (workspace / "reports" / f"{lab}.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def compare_workspaces(first: Path, second: Path, lab: str) -> list[str]:
    """What differs between two graded workspaces of the same batch (empty: nothing).

    Compared: the per-student report (all columns but the seconds), ``grades.csv`` byte for
    byte, the gradebook (every submission's score and, per cell, the automatic and manual
    score, comment and late penalty), and, byte for byte, every feedback page, graded
    notebook (with its outputs), verdict and submitted file.
    """
    from tinyml_course.grading.workspace import private_dir

    diffs = []
    if _report_rows(first, lab) != _report_rows(second, lab):
        diffs.append(f"reports/{lab}.csv differs (beyond the seconds)")
    if (first / "grades.csv").read_bytes() != (second / "grades.csv").read_bytes():
        diffs.append("grades.csv differs")
    a, b = _gradebook_rows(first, lab), _gradebook_rows(second, lab)
    if set(a) != set(b):
        diffs.append(f"gradebook students differ: {sorted(set(a) ^ set(b))}")
    for student in sorted(set(a) & set(b)):
        if a[student] != b[student]:
            diffs.append(f"gradebook entry of {student} differs")
    for name, sub in (
        ("feedback", Path("feedback")),
        ("autograded", Path("autograded")),
        ("submitted", Path("submitted")),
        ("verdicts", private_dir(Path(".")) / "verdicts" / lab),
    ):
        fa, fb = _files(first / sub), _files(second / sub)
        if set(fa) != set(fb):
            diffs.append(f"{name}: different files {sorted(set(fa) ^ set(fb))[:5]}")
        for rel in sorted(set(fa) & set(fb)):
            if fa[rel] != fb[rel]:
                diffs.append(f"{name}/{rel} differs {_first_difference(fa[rel], fb[rel])}")
    return diffs


# --------------------------------------------------------------------------- the benchmark
def _split(report: Any, probe: dict[str, float], n: int) -> dict[str, float]:
    """Mean seconds per submission, per phase (see the module docstring)."""
    p = report.phases

    def get(name: str) -> float:
        return p.get(name, 0.0) / n

    tf = min(probe.get("cells", 0.0), get("cells"))
    nbgrader = get("autograde") - get("kernel_start") - get("cells") - get("kernel_shutdown")
    accounted = get("setup") + get("autograde") + get("collect") + get("feedback") + get("cleanup")
    busy = report.jobs * report.grading_seconds / n
    return {
        "grader: scratch course and files": get("setup")
        + max(0.0, get("worker_total") - accounted),
        "grader: kernel start (sandbox, ipykernel)": get("kernel_start"),
        "lab: import tensorflow (probe kernel)": tf,
        "lab: the notebook's own code": get("cells") - tf,
        "grader: kernel shutdown": get("kernel_shutdown"),
        "grader: nbgrader (sanitise, hidden tests, grades)": nbgrader,
        "grader: feedback page": get("feedback"),
        "grader: results back, scratch removed": get("collect") + get("cleanup"),
        "grader: recording (gradebook, files; client)": get("record"),
        "engine: idle or in transit, per worker slot": max(0.0, busy - get("worker_total")),
    }


def run_bench(
    lab: str = "lab00_budget",
    *,
    submissions: int = 24,
    jobs: Sequence[int] = (1, 2),
    workspace: Path | str | None = None,
    scheduler: str | None = None,
    sandbox: bool = True,
    echo: bool = False,
) -> dict[str, Any]:
    """Grade the same batch once per ``jobs`` value; return throughput, split and identity.

    Parameters
    ----------
    lab : str
        The lab to grade.
    submissions : int
        Students in the batch, the kinds (solution, blank, wrong answer) in turn; at least 2.
    jobs : sequence of int
        The ``--jobs`` values to compare (the first is the baseline of the speed-up).
    workspace : path, optional
        Where the batch and one workspace per run go (default: a temporary folder, removed).
    scheduler : str, optional
        Bench an existing Dask cluster instead of local workers.
    sandbox : bool
        Grade in the sandbox (default).
    echo : bool
        Print progress.

    Returns
    -------
    dict
        ``runs`` (per jobs value: seconds, grading seconds, submissions/min, speed-up,
        per-phase split), ``probe`` (a bare kernel: start, TensorFlow import, graceful and
        immediate shutdown), ``identical`` and ``differences``, ``submissions``, ``cpus``.
    """
    from tinyml_course.grading.batch import autograde_batch
    from tinyml_course.grading.engine import Engine
    from tinyml_course.grading.releases import generate_assignment
    from tinyml_course.grading.worker import probe_kernel
    from tinyml_course.grading.workspace import course_config, private_dir

    if not jobs or any(isinstance(j, bool) or not isinstance(j, int) or j < 1 for j in jobs):
        raise ValueError(f"jobs must be positive integers; got {list(jobs)!r}.")
    if isinstance(submissions, bool) or not isinstance(submissions, int) or submissions < 2:
        raise ValueError(
            f"submissions must be an integer of at least 2 (a mix of kinds); got {submissions!r}."
        )
    owned = workspace is None
    root = Path(tempfile.mkdtemp(prefix="tinyml-grading-bench-")) if owned else Path(workspace)
    root = root.expanduser().resolve()
    try:
        if root.exists() and not owned:
            for name in ("batch", "warm", *(f"jobs{j}" for j in jobs)):
                shutil.rmtree(root / name, ignore_errors=True)
        release = generate_assignment(lab, root / "warm")
        batch = root / "batch"
        kinds = build_batch(lab, batch, submissions, release)
        n = len(kinds)
        if echo:
            print(f"bench: {n} submissions of {lab} in {batch}", flush=True)
        # The solution's hidden results, cached as in real use (graded once per lab version).
        warm_batch = root / "warm-batch"
        shutil.rmtree(warm_batch, ignore_errors=True)
        (warm_batch / "blank").mkdir(parents=True)
        shutil.copy(batch / "blank000" / f"{lab}.ipynb", warm_batch / "blank")
        autograde_batch(
            lab, warm_batch, workspace=root / "warm", jobs=1, scheduler=scheduler, sandbox=sandbox
        )
        config = course_config(root / "warm", sandbox=sandbox)
        with Engine(jobs=1, scheduler=scheduler) as engine:
            probes = {}
            for mode in ("graceful", "immediate", "immediate"):
                config.SandboxedExecute.shutdown_kernel = mode
                future = engine.client.submit(probe_kernel, config, pure=False)
                probes[mode] = future.result()
        probe = probes["immediate"]
        runs = []
        for j in jobs:
            ws = root / f"jobs{j}"
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(private_dir(root / "warm") / "expected", private_dir(ws) / "expected")
            if echo:
                print(f"bench: --jobs {j} ...", flush=True)
            start = time.perf_counter()
            report = autograde_batch(
                lab,
                batch,
                workspace=ws,
                jobs=j,
                scheduler=scheduler,
                sandbox=sandbox,
                force=True,
                echo=echo,
            )
            # A solution run (when the library changed since the warm-up) is not grading.
            seconds = time.perf_counter() - start - report.solution_seconds
            bad = [r.student for r in report.results if r.status not in ("full", "partial", "zero")]
            if bad:
                raise GradingError(f"bench --jobs {j}: not graded as expected: {bad}")
            runs.append(
                {
                    "jobs": j,
                    "engine": report.engine,
                    "seconds": seconds,
                    "grading_seconds": report.grading_seconds,
                    "per_minute": n / seconds * 60,
                    "solution_seconds": report.solution_seconds,
                    "split": _split(report, probe, n),
                    "scores": {r.student: r.score for r in report.results},
                }
            )
        base = runs[0]["seconds"]
        for run in runs:
            run["speedup"] = base / run["seconds"]
        differences = []
        for run in runs[1:]:
            for diff in compare_workspaces(
                root / f"jobs{jobs[0]}", root / f"jobs{run['jobs']}", lab
            ):
                differences.append(f"--jobs {jobs[0]} vs {run['jobs']}: {diff}")
        result = {
            "lab": lab,
            "submissions": n,
            "kinds": sorted(set(kinds.values())),
            "cpus": os.cpu_count(),
            "sandbox": sandbox,
            "probe": {
                "kernel_start": probe.get("kernel_start", 0.0),
                "import_tensorflow": probe.get("cells", 0.0),
                "shutdown_graceful": probes["graceful"].get("kernel_shutdown", 0.0),
                "shutdown_immediate": probe.get("kernel_shutdown", 0.0),
            },
            "runs": runs,
            "identical": not differences,
            "differences": differences,
            "projection": project_class(runs),
        }
        _record(result)
        if not owned:
            (root / "bench.json").write_text(json.dumps(result, indent=1))
        return result
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def project_class(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Hours for 300 students x 7 labs on 8 and 32 cores, at the best measured rate per core.

    An estimate: it assumes one grading job per core and the per-core rate of the fastest run
    here (so the overhead of running jobs side by side is included), the same lab throughout,
    and no network or scheduler cost beyond what the run measured.
    """
    best = max(runs, key=lambda r: r["per_minute"] / r["jobs"])
    per_core = best["per_minute"] / best["jobs"]
    return {
        "submissions": CLASS_SUBMISSIONS,
        "per_core_per_minute": per_core,
        "from_jobs": best["jobs"],
        "hours": {c: CLASS_SUBMISSIONS / (per_core * c) / 60 for c in PROJECTED_CORES},
    }


def _record(result: dict[str, Any]) -> None:
    """The benchmark's figures in the results report (``results/figures/grading_throughput.json``)."""
    from tinyml_course.results import clear_figures, record_figure

    clear_figures(FIGURES)
    record_figure(FIGURES, "submissions", result["submissions"])
    for run in result["runs"]:
        record_figure(FIGURES, f"jobs{run['jobs']}_submissions_per_minute", run["per_minute"])
        record_figure(FIGURES, f"jobs{run['jobs']}_speedup", run["speedup"])
    record_figure(FIGURES, "results_identical", result["identical"])
    for cores, hours in result["projection"]["hours"].items():
        record_figure(FIGURES, f"projected_hours_300x7_{cores}_cores", hours)


def format_bench(result: dict[str, Any]) -> str:
    """The benchmark as text: throughput per jobs value, identity, per-phase split."""
    runs = result["runs"]
    lines = [
        f"grading benchmark: {result['lab']}, {result['submissions']} submissions "
        f"({', '.join(result['kinds'])} in turn), "
        f"{'sandboxed' if result['sandbox'] else 'unsandboxed'}, {result['cpus']} CPU(s)",
        "",
        f"{'jobs':>4}  {'whole run':>10}  {'grading':>8}  {'subm./min':>9}  {'speed-up':>8}  engine",
    ]
    for run in runs:
        lines.append(
            f"{run['jobs']:>4}  {run['seconds']:>8.1f} s  {run['grading_seconds']:>6.1f} s  "
            f"{run['per_minute']:>9.1f}  {run['speedup']:>7.2f}x  {run['engine']}"
        )
    lines.append("")
    if result["identical"]:
        lines.append(
            "results identical across runs: scores, per-cell grades, feedback pages, graded "
            "notebooks, verdicts, grades.csv and the report (but its seconds)"
        )
    else:
        lines.append("RESULTS DIFFER:")
        lines += [f"  {d}" for d in result["differences"][:20]]
    lines += [
        "",
        "mean seconds per submission" + "".join(f"  {'jobs ' + str(r['jobs']):>8}" for r in runs),
    ]
    for phase in runs[0]["split"]:
        lines.append(f"  {phase:<52}" + "".join(f"  {r['split'][phase]:>8.2f}" for r in runs))
    for label, prefix in (("the grader's share", "grader"), ("the lab's share", "lab")):
        lines.append(
            f"  {label + ' (total)':<52}"
            + "".join(
                f"  {sum(v for k, v in r['split'].items() if k.startswith(prefix)):>8.2f}"
                for r in runs
            )
        )
    probe = result["probe"]
    lines += [
        "",
        f"a bare sandboxed kernel: start {probe['kernel_start']:.2f} s, import tensorflow "
        f"{probe['import_tensorflow']:.2f} s; shutdown graceful {probe['shutdown_graceful']:.2f} s "
        f"vs immediate {probe['shutdown_immediate']:.2f} s (what the grader now does)",
    ]
    projection = result["projection"]
    lines += [
        "",
        f"projected, {projection['submissions']:,} submissions (300 students x 7 labs of this lab's "
        f"cost) at {projection['per_core_per_minute']:.1f} submissions/min per core (the --jobs "
        f"{projection['from_jobs']} run), one job per core: ESTIMATE",
    ]
    for cores, hours in projection["hours"].items():
        lines.append(f"  {cores:>2} cores: {hours:.1f} h")
    return "\n".join(lines)
