"""Red team: hostile submissions graded by the real pipeline, sandbox on.

Each submission tries to take points it did not earn or to reach outside its sandbox. Each
must score nothing it did not earn, change nothing outside its sandbox, and be flagged with a
clear reason; the honest submissions graded in the same batch keep their exact scores.
"""

from __future__ import annotations

import hashlib
import socket
import threading
from pathlib import Path

import nbformat
import pytest
from grading_helpers import answer_sources, filled, released

from tinyml_course.paths import repo_root

ROOT = repo_root()
LAB = "lab00_budget"
MARKER = "tinyml-red-team-lingering-7d1c"


def _digest(paths: list[Path]) -> dict[str, str]:
    out = {}
    for base in paths:
        for path in sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _lingering() -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if MARKER in cmdline:
                found.append(f"{proc.name}: {cmdline}")
    return found


def _outputs(workspace: Path, student: str) -> str:
    nb = nbformat.read(workspace / "autograded" / student / LAB / f"{LAB}.ipynb", as_version=4)
    text = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text.append(str(output.get("text", "")) + str(output.get("evalue", "")))
    return "\n".join(text)


class _Listener:
    """A TCP server on the host's loopback that records anyone who connects."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections: list[bytes] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.connections.append(conn.recv(100) or b"(connected)")
                except OSError:
                    self.connections.append(b"(connected)")

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        self.sock.close()


@pytest.mark.slow
def test_red_team_scores_nothing_and_changes_nothing(tmp_path: Path) -> None:
    from tinyml_course.grading import autograde, format_table, sandbox_status
    from tinyml_course.grading.workspace import course_root

    ok, why = sandbox_status()
    assert ok, f"the grading sandbox must work in CI: {why}"
    workspace = tmp_path / "workspace"
    release = released(LAB, workspace)
    answers = answer_sources(LAB)
    wrong_q1 = "def param_bytes(num_params, precision):\n    return 0\n"
    wrong_q2 = answers["q2_answer"].replace("* c_out ", "")
    assert wrong_q2 != answers["q2_answer"]
    gradebook = workspace / "gradebook.db"
    listener = _Listener()
    solution_nb = ROOT / "solutions" / LAB / f"{LAB}.ipynb"
    source_nb = workspace / "source" / LAB / f"{LAB}.ipynb"
    checks_py = course_root() / "tinyml_course" / "checks.py"
    submissions = {
        "honest_full": filled(release, answers),
        "honest_wrong": filled(release, {**answers, "q1_answer": wrong_q1}),
        # Switch the checks off, three ways, behind wrong answers.
        "rebind_checks": filled(
            release,
            {
                **answers,
                "q1_answer": wrong_q1
                + "check_value = check_true = check_value_with_mistakes = lambda *a, **k: None\n"
                + "check_at_most = check_at_least = hidden = lambda *a, **k: None\n",
            },
        ),
        "patch_fail": filled(
            release,
            {
                **answers,
                "q1_answer": "import tinyml_course.checks\n\n"
                "tinyml_course.checks._fail = lambda *a, **k: None\n\n" + wrong_q1,
            },
        ),
        "patch_numpy": filled(
            release,
            {**answers, "q2_answer": "np.isclose = lambda *a, **k: True\n\n\n" + wrong_q2},
        ),
        # A value compared with itself: the reference the test grades against.
        "reference": filled(
            release,
            {
                **answers,
                "q2_answer": "from tinyml_course.profiling import conv2d_macs as _ref\n\n\n"
                "def conv2d_macs(kernel, c_in, c_out, out_h, out_w):\n"
                "    return _ref(kernel, c_in, c_out, (out_h, out_w))\n\n\n"
                + answers["q2_answer"].split("def depthwise_macs")[0].split("\n\n\n", 1)[-1]
                + "def depthwise_macs"
                + answers["q2_answer"].split("def depthwise_macs")[1],
            },
        ),
        # Read the hidden tests and the solutions.
        "reads_solutions": filled(
            release,
            answers,
            extra={
                "setup": "for _p in ("
                + f"{str(solution_nb)!r}, {str(source_nb)!r}, {str(gradebook)!r}):\n"
                "    try:\n"
                "        print('READ', _p, open(_p).read()[:50])\n"
                "    except OSError as _e:\n"
                "        print('BLOCKED', _p, type(_e).__name__)\n"
            },
        ),
        # Write outside its folder: the gradebook, the course's checks, a symlink for the grader.
        "writes_outside": filled(
            release,
            answers,
            extra={
                "setup": "for _p in ("
                + f"{str(gradebook)!r}, {str(checks_py)!r}, '../../honest_full/{LAB}/{LAB}.ipynb'):\n"
                "    try:\n"
                "        with open(_p, 'a') as _f:\n"
                "            _f.write('pwned')\n"
                "        print('WROTE', _p)\n"
                "    except OSError as _e:\n"
                "        print('BLOCKED', _p, type(_e).__name__)\n",
                "q5_accuracy_test": "import os\n"
                f"os.remove('{LAB}.ipynb') if os.path.exists('{LAB}.ipynb') else None\n"
                f"os.symlink({str(gradebook)!r}, '{LAB}.ipynb')\n",
            },
        ),
        # Phone home to a listener on the host's loopback.
        "network": filled(
            release,
            answers,
            extra={
                "setup": "import socket as _s\n"
                "try:\n"
                f"    _c = _s.create_connection(('127.0.0.1', {listener.port}), timeout=3)\n"
                "    _c.sendall(b'leaked')\n"
                "    print('CONNECTED')\n"
                "except OSError as _e:\n"
                "    print('BLOCKED', type(_e).__name__)\n"
            },
        ),
        # Leave a process behind that outlives its grading.
        "lingering": filled(
            release,
            answers,
            extra={
                "setup": "import subprocess as _sp, sys as _sys\n"
                f"_sp.Popen([_sys.executable, '-c', 'import time; time.sleep(900)', '{MARKER}'], start_new_session=True)\n"
                "print('STARTED')\n"
            },
        ),
    }
    batch = tmp_path / "batch"
    for student, nb in submissions.items():
        (batch / student).mkdir(parents=True)
        nbformat.write(nb, batch / student / f"{LAB}.ipynb")

    # The honest pair alone first: the scores they must keep.
    alone = tmp_path / "alone"
    for student in ("honest_full", "honest_wrong"):
        (alone / student).mkdir(parents=True)
        nbformat.write(submissions[student], alone / student / f"{LAB}.ipynb")
    before = {r.student: r for r in autograde(LAB, alone, workspace=workspace, feedback=False)}
    targets = [checks_py, solution_nb, source_nb]  # what the submissions try to read or write
    protected = _digest(targets)

    try:
        # force: grade the honest pair again, beside the hostile submissions.
        results = {
            r.student: r
            for r in autograde(LAB, batch, workspace=workspace, feedback=False, force=True)
        }
    finally:
        listener.close()
    table = format_table(list(results.values()))
    maximum = results["honest_full"].max_score

    # Honest submissions: exactly the scores they get alone.
    for student in ("honest_full", "honest_wrong"):
        assert (results[student].score, results[student].status) == (
            before[student].score,
            before[student].status,
        ), table
        assert results[student].sandboxed
    assert results["honest_full"].score == maximum and 0 < results["honest_wrong"].score < maximum

    # Switching the checks off earns nothing: every test from the tampering cell on scores 0.
    for student, reason in (
        ("rebind_checks", "rebinds `check_value`"),
        ("patch_fail", "patches the module attribute tinyml_course.checks._fail"),
        ("patch_numpy", "patches the module attribute numpy.isclose"),
    ):
        assert results[student].status == "flagged" and reason in results[student].reason, table
    assert results["rebind_checks"].score == 0 and results["patch_fail"].score == 0, table
    q1_points = 2
    assert results["patch_numpy"].score == q1_points, table
    # Calling the reference: that question's tests score 0, the rest is earned.
    q2_points = 4
    assert results["reference"].status == "flagged", table
    assert "uses tinyml_course.profiling.conv2d_macs" in results["reference"].reason, table
    assert results["reference"].score == maximum - q2_points, table

    # The sandbox: nothing read, written, reached or left behind.
    read = _outputs(workspace, "reads_solutions")
    assert "READ" not in read and read.count("BLOCKED") == 3, read
    assert "BEGIN SOLUTION" not in read and "HIDDEN" not in read
    wrote = _outputs(workspace, "writes_outside")
    # The checks and the other student's notebook are out of reach; the gradebook's path is
    # not there at all (an "append" only creates a file in the sandbox's private /tmp).
    assert f"BLOCKED {checks_py}" in wrote and "BLOCKED ../../honest_full" in wrote, wrote
    assert not gradebook.read_bytes().endswith(b"pwned")
    assert _digest(targets) == protected
    assert not (workspace / "autograded" / "writes_outside" / LAB / f"{LAB}.ipynb").is_symlink()
    assert "CONNECTED" not in _outputs(workspace, "network") and listener.connections == []
    assert "STARTED" in _outputs(workspace, "lingering")
    assert _lingering() == [], "a process outlived its grading"
    for student in ("reads_solutions", "writes_outside", "network", "lingering"):
        assert results[student].status == "flagged", table
        assert results[student].sandboxed, table
    assert "names a file outside the submission" in results["reads_solutions"].reason, table
    assert "imports socket" in results["network"].reason, table
    assert "imports subprocess" in results["lingering"].reason, table

    # The gradebook is intact and still holds the honest scores.
    from tinyml_course.grading.batch import _gradebook_score

    assert _gradebook_score(workspace, LAB, "honest_full") == (maximum, maximum)
    assert _gradebook_score(workspace, LAB, "honest_wrong")[0] == before["honest_wrong"].score


@pytest.mark.slow
def test_no_sandbox_grades_the_same_and_says_so(tmp_path: Path) -> None:
    """--no-sandbox: same scores and the same outside decision, every result marked unsandboxed."""
    import csv

    from tinyml_course.grading import autograde, format_table

    workspace = tmp_path / "workspace"
    release = released(LAB, workspace)
    answers = answer_sources(LAB)
    batch = tmp_path / "batch"
    for student, nb in {
        "solution": filled(release, answers),
        "rebind_checks": filled(
            release,
            {
                **answers,
                "q1_answer": "check_value = hidden = lambda *a, **k: None\n" + answers["q1_answer"],
            },
        ),
    }.items():
        (batch / student).mkdir(parents=True)
        nbformat.write(nb, batch / student / f"{LAB}.ipynb")
    results = {
        r.student: r
        for r in autograde(LAB, batch, workspace=workspace, sandbox=False, feedback=False)
    }
    table = format_table(list(results.values()))
    assert results["solution"].status == "full" and not results["solution"].sandboxed, table
    assert "graded without the sandbox" in results["solution"].reason, table
    assert results["rebind_checks"].status == "flagged" and results["rebind_checks"].score == 0, (
        table
    )
    rows = list(csv.DictReader((workspace / "reports" / f"{LAB}.csv").open()))
    assert {row["sandboxed"] for row in rows} == {"no"}
