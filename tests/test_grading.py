"""The autograding system: every lab is honest, exercises do not drift, bad submissions never break a batch.

Generic over every ``solutions/<lab>/<lab>.ipynb``: a lab added later is picked up here
automatically and must bring ``tests/grading/wrong_answers/<lab>.json`` (answer-cell
grade_id -> source of a plausible wrong answer).
"""

from __future__ import annotations

import copy
import csv
import json
import re
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from grading_helpers import (
    answer_sources,
    filled,
    nbgrader_meta,
    released,
    solution_notebook,
    write_submission,
)

from tinyml_course.paths import repo_root

ROOT = repo_root()
LABS = sorted(
    p.parent.name
    for p in (ROOT / "solutions").glob("*/*.ipynb")
    if p.stem == p.parent.name and re.match(r"^lab\d\d_", p.stem)
)
WRONG = ROOT / "tests" / "grading" / "wrong_answers"
BATCH_TIMEOUT = 45  # seconds per cell in the bad batch: the endless loop costs this, twice


def _wrong_answers(lab: str) -> dict[str, str]:
    path = WRONG / f"{lab}.json"
    assert path.is_file(), (
        f"{lab} has no plausible wrong submission: add {path.relative_to(ROOT)}, a JSON object mapping "
        "answer-cell grade_ids to the source of a plausible wrong answer (it must score strictly between 0 and max)."
    )
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- fast checks
@pytest.mark.parametrize("lab", LABS)
def test_lab_has_plausible_wrong_answers(lab: str) -> None:
    wrong = _wrong_answers(lab)
    answers = answer_sources(lab)
    assert wrong, f"{WRONG / (lab + '.json')} is empty."
    unknown = sorted(set(wrong) - set(answers))
    assert not unknown, (
        f"{lab}: wrong_answers names {unknown}, which are not answer cells; answer cells: {sorted(answers)}"
    )
    same = [k for k, v in wrong.items() if v.strip() == answers[k].strip()]
    assert not same, f"{lab}: the 'wrong' answers {same} are the solution itself."


@pytest.mark.parametrize("lab", LABS)
def test_lab_metadata_follows_the_course_format(lab: str) -> None:
    nb = solution_notebook(lab)
    ids = [nbgrader_meta(c).get("grade_id") for c in nb.cells if nbgrader_meta(c)]
    assert len(ids) == len(set(ids)), (
        f"{lab}: duplicate grade_ids {sorted({i for i in ids if ids.count(i) > 1})}"
    )
    tests = [c for c in nb.cells if nbgrader_meta(c).get("grade")]
    assert tests, f"{lab} has no graded test cell"
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if not meta:
            continue
        assert meta.get("schema_version") == 3, (
            f"{lab}/{meta.get('grade_id')}: nbgrader schema_version must be 3"
        )
        if meta.get("grade"):
            assert cell.cell_type == "code" and meta.get("locked") and not meta.get("solution"), (
                f"{lab}/{meta['grade_id']}: test cells are code, locked, not solution"
            )
            assert float(meta.get("points", 0)) > 0, (
                f"{lab}/{meta['grade_id']}: a test cell needs points > 0"
            )
        elif meta.get("solution") and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, (
                f"{lab}/{meta['grade_id']}: answer cells hold the answer between ### BEGIN SOLUTION and ### END SOLUTION"
            )


def test_collect_reports_missing_and_invalid_notebooks(tmp_path: Path) -> None:
    from tinyml_course.grading import collect

    lab = "lab00_budget"
    write_submission(tmp_path, "nested_ok", lab, "{}")
    (tmp_path / "nested_ok" / f"{lab}.ipynb").unlink()
    nested = tmp_path / "nested_ok" / lab / f"{lab}.ipynb"
    nested.parent.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), nested)
    write_submission(tmp_path, "broken", lab, "{ not json")
    (tmp_path / "empty").mkdir()
    (tmp_path / "__MACOSX").mkdir()
    subs = {s.student: s for s in collect(lab, tmp_path)}
    assert sorted(subs) == ["broken", "empty", "nested_ok"]
    assert subs["nested_ok"].problem == "" and subs["nested_ok"].notebook == nested
    assert subs["broken"].status == "invalid" and "not a valid notebook" in subs["broken"].problem
    assert subs["empty"].status == "missing" and f"{lab}.ipynb" in subs["empty"].problem


def test_unknown_lab_is_a_clear_error(tmp_path: Path) -> None:
    from tinyml_course.grading import GradingError, autograde

    with pytest.raises(GradingError, match="unknown lab"):
        autograde("lab99_nothing", tmp_path, workspace=tmp_path / "ws")


def test_grade_command_lists_labs_and_reports_bad_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tinyml_course.cli import main

    assert main(["grade", "labs"]) == 0
    assert "lab00_budget" in capsys.readouterr().out.split()
    missing = tmp_path / "no_such_folder"
    assert (
        main(
            [
                "grade",
                "autograde",
                "lab00_budget",
                str(missing),
                "--workspace",
                str(tmp_path / "ws"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_zip_of_a_class_folder_is_unwrapped_and_checked(tmp_path: Path) -> None:
    from tinyml_course.grading.submissions import unpack as _unpack
    from tinyml_course.grading.workspace import GradingError

    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("class_of_2026/alice/lab00_budget.ipynb", "{}")
        zf.writestr("class_of_2026/bob/lab00_budget/lab00_budget.ipynb", "{}")
        zf.writestr("__MACOSX/._alice", "")
    folder = _unpack(archive, tmp_path / "scratch", "lab00_budget")
    assert sorted(p.name for p in folder.iterdir()) == ["alice", "bob"]
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../outside.ipynb", "{}")
    with pytest.raises(GradingError, match="outside the archive"):
        _unpack(evil, tmp_path / "scratch2", "lab00_budget")


def _cell(
    grade_id: str, source: str, *, grade: bool = False, solution: bool = False
) -> nbformat.NotebookNode:
    meta = {
        "grade_id": grade_id,
        "locked": not solution,
        "grade": grade,
        "solution": solution,
        "schema_version": 3,
    }
    cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": meta})
    cell.id = grade_id
    return cell


def test_edited_locked_cells_are_named(tmp_path: Path) -> None:
    from tinyml_course.grading.diagnose import edited_locked_cells as _tamper_notes

    release = nbformat.v4.new_notebook(
        cells=[_cell("t1", "check()", grade=True), _cell("t2", "check2()", grade=True)]
    )
    submitted = nbformat.v4.new_notebook(
        cells=[_cell("t1", "pass", grade=True), _cell("t2", "check2()", grade=True)]
    )
    nbformat.write(release, tmp_path / "r.ipynb")
    nbformat.write(submitted, tmp_path / "s.ipynb")
    assert _tamper_notes(tmp_path / "r.ipynb", tmp_path / "s.ipynb") == [
        "locked cell t1 was edited: restored from the source"
    ]


def test_deleted_cells_are_put_back_in_order(tmp_path: Path) -> None:
    from tinyml_course.grading.restore import deleted_cells, restore_cells

    release = nbformat.v4.new_notebook(
        cells=[
            _cell("setup", "import numpy"),
            _cell("a1", "raise NotImplementedError()", solution=True),
            _cell("t1", "check()", grade=True),
            _cell("a2", "raise NotImplementedError()", solution=True),
            _cell("t2", "check2()", grade=True),
        ]
    )
    submitted = nbformat.v4.new_notebook(
        cells=[_cell("a2", "x = 2", solution=True), _cell("t2", "check2()", grade=True)]
    )
    nbformat.write(release, tmp_path / "r.ipynb")
    nbformat.write(submitted, tmp_path / "s.ipynb")
    notes = deleted_cells(tmp_path / "r.ipynb", tmp_path / "s.ipynb")
    assert nbformat.read(tmp_path / "s.ipynb", as_version=4) == submitted, (
        "the file is left as handed in"
    )
    repaired = copy.deepcopy(submitted)
    assert restore_cells(release, repaired) == notes
    assert [c.metadata["nbgrader"]["grade_id"] for c in repaired.cells] == [
        "setup",
        "a1",
        "t1",
        "a2",
        "t2",
    ]
    assert repaired.cells[3].source == "x = 2", "the student's answers are kept"
    assert notes == [
        "locked cell setup was deleted: restored from the release",
        "answer cell a1 was deleted: restored blank",
        "locked cell t1 was deleted: restored from the release",
    ]


# --------------------------------------------------------------------------- slow: nbgrader end to end
@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_exercises_match_solutions(lab: str) -> None:
    from tinyml_course.grading import check_release

    problems = check_release([lab])
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("lab", LABS)
def test_lab_is_honest(lab: str, tmp_path: Path) -> None:
    """Blank release 0, solution full marks, a plausible wrong answer strictly between; max > 0."""
    from tinyml_course.grading import autograde, format_table

    workspace = tmp_path / "workspace"
    release = released(lab, workspace)
    wrong = _wrong_answers(lab)
    answers = answer_sources(lab)
    subs = tmp_path / "submissions"
    write_submission(subs, "blank", lab, release)
    write_submission(subs, "solution", lab, filled(release, answers))
    write_submission(subs, "wrong", lab, filled(release, {**answers, **wrong}))
    results = {r.student: r for r in autograde(lab, subs, workspace=workspace, feedback=False)}
    table = format_table(list(results.values()))
    maximum = results["solution"].max_score
    assert maximum > 0, table
    assert results["blank"].score == 0, f"the blank release of {lab} must score 0:\n{table}"
    assert results["solution"].score == maximum and results["solution"].status == "full", (
        f"the solution of {lab} must score full marks:\n{table}"
    )
    assert 0 < results["wrong"].score < maximum, (
        f"the plausible wrong answer of {lab} must score strictly between 0 and {maximum}:\n{table}"
    )


def _bad_batch(lab: str, release: nbformat.NotebookNode, folder: Path) -> None:
    answers = answer_sources(lab)
    good = filled(release, answers)
    write_submission(folder, "good", lab, good)
    write_submission(folder, "good_too", lab, good)
    write_submission(
        folder,
        "syntax_error",
        lab,
        filled(release, {**answers, "q2_answer": "def conv2d_macs(kernel, c_in\n    return 0\n"}),
    )
    write_submission(
        folder,
        "endless_loop",
        lab,
        filled(release, {**answers, "q1_answer": "while True:\n    pass\n"}),
    )
    hog = "_hog = np.zeros(8 * 2**30, dtype=np.uint8)  # 8 GiB\n" + answers["q1_answer"]
    write_submission(folder, "memory_hog", lab, filled(release, {**answers, "q1_answer": hog}))
    # Wrong answers behind tampered tests: q1's test replaced by `pass`, q3's test cell deleted.
    tampered = filled(
        release,
        {
            **answers,
            "q1_answer": "def param_bytes(num_params, precision):\n    return 0\n",
            "q3_answer": "def peak_activation_bytes(shapes, bytes_per_value):\n    return 0\n",
        },
    )
    for cell in tampered.cells:
        if nbgrader_meta(cell).get("grade_id") == "q1_test":
            cell.source = "pass"
    tampered.cells = [c for c in tampered.cells if nbgrader_meta(c).get("grade_id") != "q3_test"]
    write_submission(folder, "tampered", lab, tampered)
    # An answer deleted together with its test (nbgrader alone fails on the whole notebook), and a setup cell.
    deleter = filled(release, answers)
    deleter.cells = [
        c
        for c in deleter.cells
        if nbgrader_meta(c).get("grade_id") not in ("q3_answer", "q3_test", "q4_boards")
    ]
    write_submission(folder, "deleter", lab, deleter)
    write_submission(folder, "not_json", lab, "this is not a notebook {")
    (folder / "missing").mkdir()
    (folder / "missing" / "notes.txt").write_text("I forgot to attach it")


@pytest.mark.slow
def test_bad_submissions_never_break_the_batch(tmp_path: Path) -> None:
    """lab00: every failure mode is graded or reported with a reason, twice, with identical scores."""
    from tinyml_course.grading import autograde, export_grades, format_table

    lab = "lab00_budget"
    workspace = tmp_path / "workspace"
    release = released(lab, workspace)
    batch = tmp_path / "batch"
    _bad_batch(lab, release, batch)

    first = {
        r.student: r for r in autograde(lab, batch, workspace=workspace, timeout=BATCH_TIMEOUT)
    }
    table = format_table(list(first.values()))
    maximum = first["good"].max_score
    assert maximum > 0
    for student in ("good", "good_too"):
        assert first[student].score == maximum and first[student].status == "full", table
    assert (
        first["syntax_error"].status == "partial" and "SyntaxError" in first["syntax_error"].reason
    ), table
    assert (
        first["endless_loop"].status == "partial" and "timed out" in first["endless_loop"].reason
    ), table
    assert (
        first["memory_hog"].status == "partial" and "MemoryError" in first["memory_hog"].reason
    ), table
    tampered = first["tampered"]
    assert 0 < tampered.score < maximum, table
    assert (
        "q1_test was edited: restored" in tampered.reason
        and "q3_test was deleted: restored" in tampered.reason
    ), table
    assert (
        "q1_test: CheckFailed" in tampered.reason and "q3_test: CheckFailed" in tampered.reason
    ), table
    deleter = first["deleter"]
    assert (
        0 < deleter.score < maximum
        and "q3_test" in deleter.reason
        and "q4_test" not in deleter.reason
    ), table
    assert "answer cell q3_answer was deleted: restored blank" in deleter.reason, table
    assert first["not_json"].status == "invalid" and first["not_json"].score == 0, table
    assert first["missing"].status == "missing" and first["missing"].score == 0, table

    # Feedback for everyone graded, the CSV for everyone (students with no graded submission: 0).
    for student in ("good", "syntax_error", "tampered", "deleter"):
        assert (workspace / "feedback" / student / lab / f"{lab}.html").is_file()
    rows = {
        row["student_id"]: row for row in csv.DictReader(export_grades(workspace=workspace).open())
    }
    assert set(rows) == set(first), rows.keys()
    assert float(rows["good"]["score"]) == maximum and float(rows["not_json"]["score"]) == 0

    # Again, from a zip of the batch without one good student: same scores, nothing lost.
    shutil.rmtree(batch / "good_too")
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(batch.rglob("*")):
            zf.write(path, Path("class_of_2026") / path.relative_to(batch))
    second = {
        r.student: r
        for r in autograde(
            lab, archive, workspace=workspace, timeout=BATCH_TIMEOUT, feedback=False, force=True
        )
    }
    assert set(second) == set(first) - {"good_too"}
    for student, result in second.items():
        assert (result.score, result.status) == (first[student].score, first[student].status), (
            f"{student}: first {first[student]}, second {result}"
        )
    rows = {
        row["student_id"]: row for row in csv.DictReader(export_grades(workspace=workspace).open())
    }
    assert float(rows["good_too"]["score"]) == maximum, (
        "the earlier result of a student not in the second batch was lost"
    )


# --------------------------------------------------------------------------- fast: the pieces
def test_launcher_applies_the_limits() -> None:
    import subprocess
    import sys

    from tinyml_course.grading.sandbox import Limits, launcher_command

    probe = (
        "import resource as r; print(r.getrlimit(r.RLIMIT_AS)[0], r.getrlimit(r.RLIMIT_CPU)[0], "
        "r.getrlimit(r.RLIMIT_FSIZE)[0], r.getrlimit(r.RLIMIT_NPROC)[0])"
    )
    command = launcher_command([sys.executable, "-c", probe], Limits(2048, 77, 3, 999))
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in out] == [2048 * 2**20, 77, 3 * 2**20, 999]
    with pytest.raises(ValueError, match="memory_mb must be an int >= 0"):
        Limits(memory_mb=-1)


def test_graded_outputs_do_not_depend_on_how_prints_arrive(tmp_path: Path) -> None:
    """A kernel's prints reach the grader as one message or several, depending on timing.

    The grader merges them per stream, so the same cell graded twice (or serially and in
    parallel) writes the same outputs; the flush and the pause here force the split.
    """
    from tinyml_course.grading.sandbox import SandboxedExecute

    code = (
        "import sys, time\n"
        "print('one', flush=True); time.sleep(0.3)\n"
        "print('oops', file=sys.stderr, flush=True); time.sleep(0.3)\n"
        "print('two', flush=True); time.sleep(0.3)\n"
        "print('three\\rthree again')"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    executed, _ = SandboxedExecute(sandbox=False).preprocess(
        nb, {"metadata": {"path": str(tmp_path)}}
    )
    streams = [(o["name"], o["text"]) for o in executed.cells[0].outputs]
    assert streams == [("stdout", "one\ntwo\nthree again\n"), ("stderr", "oops\n")]


def test_sandbox_command_shows_only_public_paths(tmp_path: Path) -> None:
    import shutil

    from tinyml_course.grading.sandbox import bwrap_command

    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed")
    command = bwrap_command(["python"], workdir=tmp_path)
    bound = {command[i + 2] for i, a in enumerate(command) if a in ("--ro-bind", "--bind")}
    assert str(ROOT / "solutions") not in bound and str(ROOT / "results") not in bound
    assert str(ROOT) not in bound, "the whole repository must not be visible"
    assert {
        "--unshare-net",
        "--unshare-pid",
        "--unshare-user",
        "--die-with-parent",
        "--clearenv",
    } <= set(command)


def test_sandbox_isolates_a_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside: no solutions, no network, no writes outside its folder, no instructor environment."""
    import socket
    import subprocess
    import sys

    from tinyml_course.grading.sandbox import bwrap_command, sandbox_status

    ok, why = sandbox_status()
    if not ok:
        pytest.skip(why)
    monkeypatch.setenv("INSTRUCTOR_SECRET", "s3cret")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    probe = f"""
import os, socket
from pathlib import Path
print("uid", os.getuid())
print("solutions", Path({str(ROOT / "solutions")!r}).exists())
print("secret", os.environ.get("INSTRUCTOR_SECRET"))
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2); print("net open")
except OSError:
    print("net blocked")
for target in ({str(ROOT / "tinyml_course" / "x.py")!r}, "here.txt"):
    try:
        Path(target).write_text("x"); print("wrote", Path(target).name)
    except OSError:
        print("blocked", Path(target).name)
print("read", Path("mine.txt").name if Path("mine.txt").read_text() == "mine" else "nothing")
"""
    (tmp_path / "mine.txt").write_text("mine")
    try:
        done = subprocess.run(
            bwrap_command([sys.executable, "-c", probe], workdir=tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.close()
    lines = done.stdout.splitlines()
    assert lines == [
        "uid 1000",
        "solutions False",
        "secret None",
        "net blocked",
        "blocked x.py",
        "wrote here.txt",
        "read mine.txt",
    ], done.stdout + done.stderr
    assert not (tmp_path / "here.txt").exists(), "writes stay in the sandbox's private copy"
    assert not (ROOT / "tinyml_course" / "x.py").exists()


def test_autograde_refuses_without_a_sandbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyml_course.grading.sandbox as sandbox
    from tinyml_course.grading import GradingError, autograde

    monkeypatch.setattr(
        sandbox, "sandbox_status", lambda: (False, "no bwrap here; pass --no-sandbox")
    )
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    with pytest.raises(GradingError, match="cannot sandbox the grading kernels: .*--no-sandbox"):
        autograde("lab00_budget", tmp_path / "subs", workspace=tmp_path / "ws")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("check_value = lambda *a, **k: None", "rebinds `check_value`"),
        (
            "import tinyml_course.checks\ntinyml_course.checks._fail = print",
            "patches the module attribute tinyml_course.checks._fail",
        ),
        ("np.allclose = lambda *a: True", "patches the module attribute numpy.allclose"),
        ("import numpy as xp\nsetattr(xp, 'isclose', None)", "calls setattr()"),
        ("import builtins\nbuiltins.print = None", "imports builtins"),
        ("exec('x = 1')", "calls exec()"),
        (
            "import importlib\nm = importlib.import_module('tinyml_course.profiling')",
            "imports importlib",
        ),
        ("!cat /etc/passwd", "calls get_ipython()"),
        (
            "open('../../solutions/lab00_budget/lab00_budget.ipynb')",
            "names a file outside the submission",
        ),
        ("f = check_value.__globals__", "reaches into __globals__"),
        (
            "import IPython\nIPython.get_ipython().set_custom_exc((Exception,), print)",
            "reaches into IPython's set_custom_exc",
        ),
        (
            "from IPython.display import publish_display_data",
            "imports IPython's publish_display_data",
        ),
        (
            "from tinyml_course.profiling import conv2d_macs",
            "uses tinyml_course.profiling.conv2d_macs",
        ),
        (
            "from tinyml_course import profiling as p\nx = p.conv2d_macs(3, 1, 1, 1)",
            "uses tinyml_course.profiling.conv2d_macs",
        ),
        (
            "import tinyml_course.profiling\nx = tinyml_course.profiling.conv2d_macs",
            "uses tinyml_course.profiling.conv2d_macs",
        ),
        ("x = _ref.conv2d_macs", "uses tinyml_course.profiling.conv2d_macs"),
    ],
)
def test_tamper_scan_flags(source: str, message: str) -> None:
    from tinyml_course.grading.tamper import scan_cells

    setup = (
        "import numpy as np\nfrom tinyml_course.checks import check_value\n"
        "from tinyml_course import profiling as _ref",
        True,
    )
    found = scan_cells([setup, (source, False)], ["tinyml_course.profiling.conv2d_macs"])
    assert any(message in f.message for f in found), [f.message for f in found]
    assert all(f.cell == 1 for f in found)


def test_tamper_scan_leaves_honest_code_alone() -> None:
    from tinyml_course.grading.tamper import scan_cells

    setup = (
        "import numpy as np\nfrom tinyml_course import keras\nfrom tinyml_course.checks import check_value",
        True,
    )
    honest = (
        "import numpy as np\nfrom tinyml_course import keras\n\n"
        "def f(x):\n    y = np.asarray(x, dtype=float)\n    model = keras.Sequential()\n"
        "    model.trainable = False\n    return float(np.abs(y).max())\n"
    )
    assert scan_cells([setup, (honest, False)], ["tinyml_course.profiling.conv2d_macs"]) == []


@pytest.mark.parametrize("lab", LABS)
def test_solutions_pass_the_tamper_scan(lab: str) -> None:
    """The scan has no false alarm on the worked solution of any lab."""
    from tinyml_course.grading.tamper import scan_cells
    from tinyml_course.grading.verdict import forbidden_calls

    nb = solution_notebook(lab)
    cells = [
        (c.source, bool(nbgrader_meta(c).get("locked"))) for c in nb.cells if c.cell_type == "code"
    ]
    found = scan_cells(cells, forbidden_calls(nb))
    assert found == [], [f.message for f in found]


@pytest.mark.parametrize("lab", LABS)
def test_lab_names_the_references_answers_may_not_call(lab: str) -> None:
    """Forbidden references exist, are named in the lab's intro, and no locked cell imports one."""
    import importlib

    from tinyml_course.grading.tamper import _bound_names, _is_forbidden
    from tinyml_course.grading.verdict import forbidden_calls

    nb = solution_notebook(lab)
    forbidden = forbidden_calls(nb)
    assert forbidden, (
        f"{lab}: list the references its answers may not call in metadata tinyml_course.forbidden"
    )
    intro = nb.cells[0].source
    assert "Rules of the graded version" in intro, f"{lab}: the intro must state the rules"
    for name in forbidden:
        module, _, attr = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ImportError:
            assert hasattr(importlib.import_module(module), attr), f"{lab}: {name} does not exist"
        assert attr in intro, f"{lab}: the intro does not name the forbidden {name}"
    for cell in nb.cells:
        if cell.cell_type == "code" and nbgrader_meta(cell).get("locked"):
            import ast

            _, aliases = _bound_names(ast.parse(cell.source))
            leaked = [a for a, target in aliases.items() if _is_forbidden(target, forbidden)]
            assert not leaked, (
                f"{lab}/{nbgrader_meta(cell).get('grade_id')} puts references {leaked} in the student's namespace"
            )


@pytest.mark.parametrize(
    ("expected", "got", "why"),
    [
        ({"value": 7}, {"value": 7}, None),
        ({"value": 7}, {"value": 8}, "a different value"),
        ({"value": 1_228_800}, {"value": 1_228_801}, "a different value"),
        ({"value": 0.5, "rtol": 1e-6}, {"value": 0.5000001}, None),
        ({"value": True}, {"value": 1}, "a different value"),
        ({"value": {"array": [1, 2], "dtype": "int8", "shape": [2]}}, {"value": [1, 2]}, None),
        (
            {"value": {"array": [1, 2], "dtype": "int8", "shape": [2]}},
            {"value": [[1, 2]]},
            "shape (1, 2) is not the expected shape (2,)",
        ),
        ({"value": 0, "at_most": 100.0}, {"value": 99}, None),
        ({"value": 0, "at_most": 100.0}, {"value": 101}, "101 is over 100"),
        ({"value": 0, "at_least": 0.75}, {"value": "high"}, "a str, not a number"),
        ({"value": ["a", 2]}, {"value": ["a", 2, 3]}, "a different number of items"),
    ],
)
def test_hidden_results_are_compared_with_the_solutions_rule(
    expected: dict, got: dict, why: str | None
) -> None:
    from tinyml_course.grading.verdict import compare

    assert (
        compare({"rtol": 1e-6, "atol": 0.0, "at_most": None, "at_least": None, **expected}, got)
        == why
    )


def test_decide_fails_missing_repeated_and_unexpected_results() -> None:
    from tinyml_course.checks import HIDDEN_MIME, encode_value
    from tinyml_course.grading.verdict import decide

    def record(name: str, value: object) -> dict:
        return nbformat.v4.new_output(
            "display_data",
            data={HIDDEN_MIME: {"name": name, "value": encode_value(value)}, "text/plain": name},
        )

    source = nbformat.v4.new_notebook(
        cells=[_cell(f"t{i}", f"test {i}", grade=True) for i in range(4)]
    )
    nb = copy.deepcopy(source)
    nb.cells[0].outputs = [record("a", 1)]
    nb.cells[1].outputs = [record("a", 2)]
    nb.cells[2].outputs = [record("a", 1), record("a", 1)]
    nb.cells[3].outputs = [record("a", 1), record("b", 1)]
    expected = {
        f"t{i}": {
            "a": {"name": "a", "value": 1, "rtol": 0, "atol": 0, "at_most": None, "at_least": None}
        }
        for i in range(4)
    }
    verdict = decide(nb, source, expected, [])
    assert verdict["hidden"] == {
        "t1": ["hidden test 'a': a different value"],
        "t2": ["hidden test 'a' reported 2 results"],
        "t3": ["unexpected hidden result 'b' (not from this lab's tests)"],
    }
    assert nb.cells[0].outputs == [], (
        "passing cells keep no error (and the raw results are removed)"
    )
    assert [o.ename for c in nb.cells[1:] for o in c.outputs] == ["HiddenTestFailed"] * 3


@pytest.mark.slow
def test_student_tree_holds_nothing_a_student_should_not_see(tmp_path: Path) -> None:
    from tinyml_course.grading import GradingError, release_student_tree

    tree = release_student_tree(tmp_path / "class", labs=["lab00_budget", "lab01_separable"])
    assert (tree / "exercises" / "lab00_budget" / "lab00_budget.ipynb").is_file()
    assert (tree / "notebooks").is_dir() and (tree / "tinyml_course" / "checks.py").is_file()
    assert not (tree / "solutions").exists() and not (tree / "tests").exists()
    for path in tree.rglob("*"):
        if path.is_file() and path.suffix in (".ipynb", ".py", ".md", ".json"):
            text = path.read_text(errors="replace")
            for secret in ("### BEGIN HIDDEN TESTS", "### BEGIN SOLUTION"):
                assert secret not in text, f"{path}: {secret}"
    with pytest.raises(GradingError, match="not empty"):
        release_student_tree(tree, labs=["lab00_budget"])
    with pytest.raises(GradingError, match="inside the course repository"):
        release_student_tree(ROOT / "solutions" / "copy")
