"""Parallel autograding on Dask: the same results as the serial grader, nothing lost, resumable.

The slow tests start a real Dask scheduler and two ``dask worker`` processes on the loopback,
as separate machines would run them, and grade lab00 there and serially; they kill a worker
in the middle of a batch, kill a worker every time it takes one student, let one submission
run past its time limit, and interrupt a batch with Ctrl-C and run it again.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from distributed.diagnostics.plugin import WorkerPlugin  # the grading extra (instructor install)
from grading_helpers import answer_sources, filled, released

from tinyml_course.paths import repo_root

ROOT = repo_root()
LAB = "lab00_budget"


def _write_batch(folder: Path, notebooks: dict[str, nbformat.NotebookNode]) -> Path:
    for student, nb in notebooks.items():
        (folder / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / student / f"{LAB}.ipynb")
    return folder


@pytest.fixture(scope="module")
def lab00(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The release, the solution's answers and the expected hidden results, computed once."""
    from tinyml_course.grading import autograde

    warm = tmp_path_factory.mktemp("warm")
    release = released(LAB, warm / "ws")
    batch = _write_batch(warm / "batch", {"blank": release})
    autograde(LAB, batch, workspace=warm / "ws", feedback=False)
    wrong = json.loads((ROOT / "tests" / "grading" / "wrong_answers" / f"{LAB}.json").read_text())
    return {
        "release": release,
        "answers": answer_sources(LAB),
        "wrong": wrong,
        "expected": warm / "ws" / "private" / "expected",
    }


def _workspace(lab00: dict, path: Path) -> Path:
    """A fresh workspace that already holds the solution's hidden results (as after a first batch)."""
    shutil.copytree(lab00["expected"], path / "private" / "expected")
    return path


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[dict]:
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, as separate programs."""
    from distributed import Client

    scheduler_file = tmp_path / "scheduler.json"
    log = (tmp_path / "cluster.log").open("wb")
    common = {"stdout": log, "stderr": log, "start_new_session": True, "cwd": tmp_path}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"]
            + ["--port", "0", "--no-dashboard", "--scheduler-file", str(scheduler_file)],
            **common,
        )
    ]
    deadline = time.monotonic() + 60
    while not scheduler_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    for name in ("w1", "w2"):
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker"]
                + ["--scheduler-file", str(scheduler_file), "--nthreads", "1", "--name", name]
                + ["--memory-limit", "0", "--no-dashboard"],
                **common,
            )
        )
    address = json.loads(scheduler_file.read_text())["address"]
    client = Client(address, timeout="30s", set_as_default=False)
    client.wait_for_workers(2, timeout=120)
    try:
        yield {"address": address, "client": client}
    finally:
        client.close()
        for process in reversed(processes):
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except OSError:
                pass
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


# --------------------------------------------------------------------------- fast
def test_grade_command_has_the_parallel_options(capsys: pytest.CaptureFixture[str]) -> None:
    from tinyml_course.cli import main

    with pytest.raises(SystemExit) as done:
        main(["grade", "autograde", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for option in ("--jobs", "--scheduler", "--force", "--submission-timeout"):
        assert option in text
    with pytest.raises(SystemExit) as done:
        main(["grade", "autograde", LAB, "x", "--jobs", "0"])
    assert done.value.code == 2 and "positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as done:
        main(["bench", "--help"])
    assert done.value.code == 0 and "--grading N" in capsys.readouterr().out
    assert main(["bench", "--grading", "1"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_submission_files_are_what_nbgrader_gets(tmp_path: Path) -> None:
    from tinyml_course.grading.submissions import collect, place, submission_files

    (tmp_path / "in" / "alice" / LAB).mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "in" / "alice" / LAB / f"{LAB}.ipynb")
    (tmp_path / "in" / "alice" / LAB / "data.csv").write_text("1,2\n")
    (tmp_path / "in" / "alice" / LAB / ".ipynb_checkpoints").mkdir()
    (tmp_path / "in" / "alice" / LAB / "secret").symlink_to("/etc/hostname")
    (tmp_path / "in" / "bob").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "in" / "bob" / "mine (1).ipynb")
    subs = {s.student: s for s in collect(LAB, tmp_path / "in")}
    assert sorted(submission_files(subs["alice"], LAB)) == ["data.csv", f"{LAB}.ipynb"]
    assert sorted(submission_files(subs["bob"], LAB)) == [f"{LAB}.ipynb"]
    place(subs["alice"], LAB, tmp_path / "ws")
    placed = sorted(p.name for p in (tmp_path / "ws" / "submitted" / "alice" / LAB).iterdir())
    assert placed == ["data.csv", f"{LAB}.ipynb"], "symlinks and checkpoints stay behind"


def test_alembic_version_is_read_in_process_and_matches_nbgrader() -> None:
    import nbgrader.api

    from tinyml_course.grading.workspace import _alembic_head_in_process, nbgrader_environment

    original = nbgrader.api.get_alembic_version
    with nbgrader_environment():
        fast = nbgrader.api.get_alembic_version
        assert getattr(fast, "in_process", False)
        if not getattr(original, "in_process", False):
            assert fast() == original()
    _alembic_head_in_process()
    assert nbgrader.api.get_alembic_version is fast, "patched once"


def _ok_or_die(item: str) -> dict:
    """Run on a worker: die with it, ask to be retried, or answer."""
    if item == "dies":
        os._exit(1)
    return {"item": item, "hung": item == "hangs", "pid": os.getpid()}


def _workers_import_this_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's worker processes (started from here) can import this test module."""
    path = [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(path))


def test_engine_retries_a_dead_worker_and_a_hung_task_once_then_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tinyml_course.grading.engine import Engine

    _workers_import_this_module(monkeypatch)
    seen = []
    with Engine(jobs=2) as engine:
        engine.ready()
        assert engine.describe() == "2 local workers" and engine.slots() == 2
        outcomes = engine.map(
            _ok_or_die,
            ["ok", "dies", "hangs", "ok too"],
            retry=lambda value: "ran past its limit" if value["hung"] else "",
            on_outcome=lambda outcome: seen.append(outcome.item),
        )
    by_item = {o.item: o for o in outcomes}
    assert [o.item for o in outcomes] == ["ok", "dies", "hangs", "ok too"], "in the given order"
    assert sorted(seen) == sorted(by_item)
    # (A result still on a worker that dies before it is fetched is graded again: never lost.)
    for item in ("ok", "ok too"):
        assert by_item[item].error == "" and by_item[item].value["item"] == item
    assert by_item["dies"].value is None and by_item["dies"].attempts == 2
    assert "worker died" in by_item["dies"].error
    assert by_item["hangs"].attempts == 2 and by_item["hangs"].error.startswith(
        "ran past its limit"
    )
    assert by_item["hangs"].value["hung"], "the value of the last attempt is kept"


# --------------------------------------------------------------------------- slow: real batches
def _kill_a_busy_worker(address: str, stop: threading.Event, killed: list[str]) -> None:
    """Wait until a worker has been grading for a moment, then SIGKILL its process."""
    from distributed import Client

    with Client(address, timeout="30s", set_as_default=False) as client:
        while not stop.is_set():
            busy = [
                worker
                for worker, keys in client.processing().items()
                if any(str(k).startswith("grade_submission-") for k in keys)
            ]
            if busy:
                time.sleep(2.0)  # its kernel is running
                pids = client.run(os.getpid, workers=busy[:1])
                for worker, pid in pids.items():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(worker)
                return
            time.sleep(0.2)


@pytest.mark.slow
def test_parallel_on_a_cluster_equals_serial_even_when_a_worker_dies(
    lab00: dict, cluster: dict, tmp_path: Path
) -> None:
    from tinyml_course.grading import autograde, generate_feedback
    from tinyml_course.grading.batch import autograde_batch
    from tinyml_course.grading.bench import compare_workspaces

    release, answers = lab00["release"], lab00["answers"]
    batch = _write_batch(
        tmp_path / "batch",
        {
            "solution": filled(release, answers),
            "blank": release,
            "wrong": filled(release, {**answers, **lab00["wrong"]}),
        },
    )
    serial = _workspace(lab00, tmp_path / "serial")
    parallel = _workspace(lab00, tmp_path / "parallel")
    first = {r.student: r for r in autograde(LAB, batch, workspace=serial, jobs=1)}
    assert [first[s].status for s in ("blank", "solution", "wrong")] == ["zero", "full", "partial"]

    report = autograde_batch(LAB, batch, workspace=parallel, scheduler=cluster["address"])
    assert report.engine.startswith("2 workers at tcp://127.0.0.1:"), report.engine
    assert sorted(report.graded) == ["blank", "solution", "wrong"]
    assert compare_workspaces(serial, parallel, LAB) == []

    # The worker's feedback pages are what nbgrader makes from this gradebook.
    pages = {p: p.read_bytes() for p in sorted((parallel / "feedback").rglob("*.html"))}
    assert len(pages) == 3
    generate_feedback(LAB, workspace=parallel)
    assert {p: p.read_bytes() for p in pages} == pages

    # Again on the cluster (--force), killing a worker while it grades: nothing lost, same bytes.
    stop, killed = threading.Event(), []
    killer = threading.Thread(
        target=_kill_a_busy_worker, args=(cluster["address"], stop, killed), daemon=True
    )
    killer.start()
    try:
        again = autograde_batch(
            LAB, batch, workspace=parallel, scheduler=cluster["address"], force=True
        )
    finally:
        stop.set()
        killer.join(timeout=60)
    assert killed, "no worker was killed (the batch finished first?)"
    assert sorted(again.graded) == ["blank", "solution", "wrong"]
    assert compare_workspaces(serial, parallel, LAB) == []

    # And once more without --force: everything is already graded, nothing is sent anywhere.
    rerun = autograde_batch(LAB, batch, workspace=parallel, scheduler=cluster["address"])
    assert rerun.graded == [] and sorted(rerun.skipped) == ["blank", "solution", "wrong"]
    assert compare_workspaces(serial, parallel, LAB) == []


class _KillWorkerGrading(WorkerPlugin):
    """A Dask worker plugin: the worker dies whenever it starts grading ``student``."""

    name = "kill-worker-grading"

    def __init__(self, student: str) -> None:
        self.student = student

    def transition(self, key: object, start: str, finish: str, **kwargs: object) -> None:
        if finish == "executing" and f"grade_submission-{self.student}-" in str(key):
            os._exit(1)


@pytest.mark.slow
def test_a_dead_worker_and_a_hung_submission_are_retried_once_then_reported(
    lab00: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinyml_course.grading.batch import autograde_batch, format_summary
    from tinyml_course.grading.engine import Engine

    release = lab00["release"]
    batch = _write_batch(
        tmp_path / "batch",
        {
            "honest": release,
            "doomed": release,
            "stuck": filled(release, {"q1_answer": "while True:\n    pass\n"}),
        },
    )
    workspace = _workspace(lab00, tmp_path / "ws")
    _workers_import_this_module(monkeypatch)
    # The local cluster: its scheduler fails a task whose worker died (no retry of its own).
    with Engine(jobs=2) as engine:
        engine.ready()
        engine.client.register_plugin(_KillWorkerGrading("doomed"))
        report = autograde_batch(
            LAB,
            batch,
            workspace=workspace,
            scheduler=engine.client,
            timeout=120,  # per cell: the loop is stopped by the submission's limit, not by this
            # A blank lab00 takes 10-15 s on a slow 2-core machine, twice that next to a second
            # test: the limit stops the loop, never the honest submission.
            submission_timeout=60,
            feedback=False,
        )
    results = {r.student: r for r in report.results}
    summary = format_summary(report)
    assert results["honest"].status == "zero", summary
    for student, why in (("doomed", "worker died"), ("stuck", "time limit")):
        assert results[student].status == "error", summary
        assert why in results[student].reason and "retried once" in results[student].reason
    assert {"doomed", "stuck"} <= set(report.retried), summary
    assert "1 zero" in summary and "2 error" in summary and "retried once: " in summary
    rows = {r["student_id"]: r for r in csv.DictReader((workspace / "grades.csv").open())}
    assert set(rows) == {"honest", "doomed", "stuck"}, "nobody silently lost"
    assert (workspace / "submitted" / "stuck" / LAB / f"{LAB}.ipynb").is_file()
    assert not (workspace / "private" / "graded" / LAB / "stuck.json").exists(), (
        "an unfinished submission is graded again next time"
    )


@pytest.mark.slow
def test_an_interrupted_batch_is_consistent_and_resumes(lab00: dict, tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    from tinyml_course.grading.batch import autograde_batch

    students = [f"s{i}" for i in range(5)]
    batch = _write_batch(tmp_path / "batch", dict.fromkeys(students, lab00["release"]))
    workspace = _workspace(lab00, tmp_path / "ws")
    markers = workspace / "private" / "graded" / LAB
    command = [str(Path(sys.executable).with_name("tinyml-course")), "grade", "autograde", LAB]
    process = subprocess.Popen(
        [*command, str(batch), "--workspace", str(workspace), "--jobs", "1", "--no-feedback"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As from a terminal: a shell that starts this test run in the background (`.ci/run &`)
        # leaves SIGINT ignored, every child inherits that, and Python then keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    seen = 0
    while time.monotonic() < deadline and process.poll() is None:
        seen = len(list(markers.glob("*.json")))
        if seen >= 2:
            break
        time.sleep(0.1)
    running = process.poll() is None
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert running, f"the batch ended before Ctrl-C (markers seen while it ran: {seen})\n{out}{err}"
    assert process.returncode == 130, f"Ctrl-C after {seen} recorded submissions\n{out}{err}"
    assert "interrupted" in err and "run the same command again" in err, err
    done = sorted(p.stem for p in markers.glob("*.json"))
    assert 2 <= len(done) < len(students), done

    # Consistent: every submission in the gradebook is whole, and matches its record.
    with Gradebook("sqlite:///" + str(workspace / "gradebook.db")) as gb:
        recorded = {s.student.id: s for s in gb.find_assignment(LAB).submissions}
        assert sorted(recorded) == done
        for student, submission in recorded.items():
            grades = [g for nb in submission.notebooks for g in nb.grades]
            assert grades and all(g.auto_score is not None for g in grades), student
            assert submission.score == 0

    # Again: only the rest is graded.
    report = autograde_batch(LAB, batch, workspace=workspace, jobs=1, feedback=False)
    assert sorted(report.skipped) == done
    assert sorted(report.graded) == sorted(set(students) - set(done))
    assert [r.status for r in report.results] == ["zero"] * len(students)
    rows = list(csv.DictReader((workspace / "grades.csv").open()))
    assert sorted(r["student_id"] for r in rows) == students
