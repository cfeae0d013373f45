"""Hidden tests decided outside the student's kernel.

A hidden test cell only *computes* the student's results on inputs the student has not seen
and hands each one to :func:`tinyml_course.checks.hidden`, which emits it as data. Nothing in
the kernel decides: the student's code runs there and could patch any check. After the
notebook has run, :class:`DecideHiddenTests` (an nbgrader preprocessor, outside the sandbox)
compares every emitted result with the value the *solution* emitted under the same name
(:func:`expected_results`, computed once per lab version by running the source notebook in
the same sandbox, cached in the workspace's ``private/`` folder, which no sandbox sees). A
test cell whose results are missing, repeated, unexpected or different gets an error output,
so nbgrader scores it 0. The same preprocessor runs the tamper scan
(:mod:`tinyml_course.grading.tamper`) and zeroes the tests a finding could have influenced.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Unicode

from tinyml_course.checks import HIDDEN_MIME
from tinyml_course.grading.tamper import scan_cells
from tinyml_course.grading.workspace import GradingError, tail
from tinyml_course.paths import PACKAGE_DIR

Records = dict[str, dict[str, dict[str, Any]]]  # grade_id -> name -> payload


def _meta(cell: Any) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _is_test(cell: Any) -> bool:
    return (
        cell.get("cell_type") == "code"
        and bool(_meta(cell).get("grade"))
        and not _meta(cell).get("solution")
    )


def _is_answer(cell: Any) -> bool:
    return bool(_meta(cell).get("solution")) and not _meta(cell).get("grade")


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def cell_records(cell: Any) -> list[dict[str, Any]]:
    """The hidden results a cell emitted, in order (malformed ones as ``{"name": None}``)."""
    found = []
    for output in cell.get("outputs", []):
        data = (
            output.get("data", {})
            if output.get("output_type") in ("display_data", "execute_result")
            else {}
        )
        if HIDDEN_MIME in data:
            payload = data[HIDDEN_MIME]
            found.append(
                payload
                if isinstance(payload, dict) and isinstance(payload.get("name"), str)
                else {"name": None}
            )
    return found


def _strip_records(cell: Any) -> None:
    cell["outputs"] = [
        o for o in cell.get("outputs", []) if HIDDEN_MIME not in (o.get("data", {}) or {})
    ]


# --------------------------------------------------------------------------- comparing one result
def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"array", "dtype", "shape"}:
        try:
            return np.asarray(value["array"], dtype=value["dtype"]).reshape(value["shape"])
        except (TypeError, ValueError):
            return value
    if isinstance(value, dict) and set(value) == {"float"}:
        return float(value["float"]) if value["float"] in ("nan", "inf", "-inf") else value
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _same(expected: Any, got: Any, rtol: float, atol: float) -> str | None:
    """None when ``got`` matches ``expected``; else a short reason that reveals no expected value."""
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        try:
            exp, have = np.asarray(expected), np.asarray(got)
        except (TypeError, ValueError):
            return "not an array"
        if exp.shape != have.shape:
            return f"shape {have.shape} is not the expected shape {exp.shape}"
        if exp.dtype.kind in "biu" and have.dtype.kind in "biuf":
            bad = int(np.count_nonzero(exp != have))
        elif exp.dtype.kind in "fc" and have.dtype.kind in "biufc":
            bad = int(
                np.count_nonzero(~np.isclose(have, exp, rtol=rtol, atol=atol, equal_nan=True))
            )
        else:
            bad = int(np.count_nonzero(exp.astype(str) != have.astype(str)))
        return f"{bad} of {exp.size} values differ" if bad else None
    if isinstance(expected, bool) or isinstance(got, bool):
        return None if type(expected) is type(got) and expected == got else "a different value"
    if _number(expected):
        if not _number(got):
            return f"a {type(got).__name__}, not a number"
        if isinstance(expected, (int, np.integer)) and isinstance(got, (int, np.integer)):
            return None if int(expected) == int(got) else "a different value"
        ok = np.isclose(float(got), float(expected), rtol=rtol, atol=atol, equal_nan=True)
        return None if ok else "a different value"
    if isinstance(expected, list):
        if not isinstance(got, list) or len(got) != len(expected):
            return "a different number of items" if isinstance(got, list) else "not a list"
        for e, g in zip(expected, got, strict=True):
            why = _same(e, g, rtol, atol)
            if why:
                return why
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return "different keys" if isinstance(got, dict) else "not a dict"
        for key in expected:
            why = _same(expected[key], got[key], rtol, atol)
            if why:
                return why
        return None
    return None if expected == got else "a different value"


def compare(expected: dict[str, Any], got: dict[str, Any]) -> str | None:
    """Decide one hidden result with the solution's rule; None when it passes.

    Parameters
    ----------
    expected : dict
        The solution's payload (value, tolerances, bounds).
    got : dict
        The student's payload (only its value is used).

    Examples
    --------
    >>> compare({"value": 3, "rtol": 0, "atol": 0, "at_most": None, "at_least": None}, {"value": 4})
    'a different value'
    """
    value = _decode(got.get("value"))
    low, high = expected.get("at_least"), expected.get("at_most")
    if low is not None or high is not None:
        if not _number(value):
            return f"a {type(value).__name__}, not a number"
        if low is not None and not float(value) >= low:
            return f"{value:g} is below {low:g}"
        if high is not None and not float(value) <= high:
            return f"{value:g} is over {high:g}"
        return None
    return _same(
        _decode(expected.get("value")),
        value,
        float(expected.get("rtol", 1e-6)),
        float(expected.get("atol", 0.0)),
    )


# --------------------------------------------------------------------------- the solution's results
def _fingerprint(source_notebook: Path) -> str:
    """Changes when the lab's source or the course library changes."""
    digest = hashlib.sha256(Path(source_notebook).read_bytes())
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def expected_path(private_dir: Path, lab: str) -> Path:
    """Where the expected results of ``lab`` are cached."""
    return Path(private_dir) / "expected" / f"{lab}.json"


def verdict_path(private_dir: Path, lab: str, student: str) -> Path:
    """Where :class:`DecideHiddenTests` writes one student's verdict."""
    return Path(private_dir) / "verdicts" / lab / f"{student}.json"


def expected_results(
    source_notebook: Path, private_dir: Path, *, config: Any = None, force: bool = False
) -> Records:
    """The solution's hidden results for every test cell, computed once per lab version.

    The source notebook runs in the grading sandbox, under the same limits and with the same
    ``NBGRADER_EXECUTION`` quick path as a student's notebook.

    Parameters
    ----------
    source_notebook : Path
        ``<source>/<lab>/<lab>.ipynb`` (answers and hidden tests).
    private_dir : Path
        The workspace's private folder (the cache goes to ``expected/<lab>.json``).
    config : traitlets Config, optional
        nbgrader configuration (sandbox on/off, limits, time-outs).
    force : bool
        Recompute even if the cache matches.

    Raises
    ------
    GradingError
        If the solution fails or a test cell of it records no hidden result.
    """
    import nbformat

    from tinyml_course.grading.sandbox import SandboxedExecute, autograde_environment
    from tinyml_course.grading.workspace import rmtree

    source_notebook = Path(source_notebook)
    lab = source_notebook.stem
    cache = expected_path(private_dir, lab)
    key = _fingerprint(source_notebook)
    if cache.is_file() and not force:
        stored = json.loads(cache.read_text())
        if stored.get("fingerprint") == key:
            return stored["records"]
    nb = nbformat.read(source_notebook, as_version=4)
    work = Path(private_dir) / "solution-run" / lab
    rmtree(work)
    work.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source_notebook.parent, work)
    try:
        executor = SandboxedExecute(config=config) if config is not None else SandboxedExecute()
        with autograde_environment():
            nb, _ = executor.preprocess(nb, {"metadata": {"path": str(work)}})
    except Exception as err:
        raise GradingError(f"the solution of {lab} could not run in the grader: {err}") from err
    finally:
        rmtree(work)
    records: Records = {}
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors and cell.get("cell_type") == "code":
            where = _meta(cell).get("grade_id", "a cell")
            raise GradingError(
                f"the solution of {lab} fails in {where} under the grader: "
                f"{errors[0].get('ename')}: {errors[0].get('evalue')}\n"
                + tail("\n".join(errors[0].get("traceback", [])), 8)
            )
        if not _is_test(cell):
            continue
        grade_id = _meta(cell)["grade_id"]
        found: dict[str, dict[str, Any]] = {}
        for payload in cell_records(cell):
            if payload["name"] is None or payload["name"] in found:
                raise GradingError(
                    f"{lab} {grade_id}: hidden result {payload['name']!r} recorded twice or malformed."
                )
            if compare(payload, payload) is not None:
                raise GradingError(
                    f"{lab} {grade_id}: the solution's own {payload['name']!r} is outside its bounds."
                )
            found[payload["name"]] = payload
        if not found:
            raise GradingError(
                f"{lab} test cell {grade_id} records no hidden result: in its hidden tests, hand the "
                "student's results to tinyml_course.checks.hidden(name, value) so the grader can decide them."
            )
        records[grade_id] = found
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"fingerprint": key, "records": records}))
    return records


# --------------------------------------------------------------------------- deciding a submission
def _fail(cell: Any, ename: str, lines: Iterable[str]) -> None:
    import nbformat

    lines = list(lines)
    cell["outputs"].append(
        nbformat.v4.new_output(
            "error",
            ename=ename,
            evalue="; ".join(lines),
            traceback=[f"{ename}: {line}" for line in lines],
        )
    )


def decide(nb: Any, source: Any, expected: Records, forbidden: list[str]) -> dict[str, Any]:
    """Decide the hidden tests of an executed notebook and apply the tamper scan, in place.

    Returns the verdict: ``{"hidden": {grade_id: [reasons]}, "flags": [one line per tamper
    finding], "zeroed": [grade_ids of the test cells the findings zeroed]}``.
    """
    trusted_sources = {
        _meta(c).get("grade_id"): _source(c).strip()
        for c in source.cells
        if _meta(c).get("locked") and _meta(c).get("grade_id")
    }
    hidden_failures: dict[str, list[str]] = {}
    code_cells: list[tuple[int, Any]] = [
        (i, c) for i, c in enumerate(nb.cells) if c.get("cell_type") == "code"
    ]
    for _, cell in code_cells:
        grade_id = _meta(cell).get("grade_id")
        emitted = cell_records(cell)
        _strip_records(cell)
        if not _is_test(cell) or grade_id not in trusted_sources:
            continue
        wanted = expected.get(grade_id, {})
        reasons = []
        names = [p["name"] for p in emitted]
        for name, payload in wanted.items():
            got = [p for p in emitted if p["name"] == name]
            if not got:
                reasons.append(f"hidden test {name!r} produced no result")
            elif len(got) > 1:
                reasons.append(f"hidden test {name!r} reported {len(got)} results")
            else:
                why = compare(payload, got[0])
                if why:
                    reasons.append(f"hidden test {name!r}: {why}")
        for name in sorted({n for n in names if n not in wanted}, key=str):
            reasons.append(f"unexpected hidden result {name!r} (not from this lab's tests)")
        if reasons:
            hidden_failures[grade_id] = reasons
            if not any(o.get("output_type") == "error" for o in cell["outputs"]):
                _fail(cell, "HiddenTestFailed", reasons)
    cells = [
        (
            _source(c),
            bool(_meta(c).get("locked"))
            and trusted_sources.get(_meta(c).get("grade_id")) == _source(c).strip(),
        )
        for _, c in code_cells
    ]
    findings = scan_cells(cells, forbidden)
    flagged: dict[int, list[str]] = {}
    for finding in findings:
        start = code_cells[finding.cell][0]
        for index in range(start + 1, len(nb.cells)):
            if finding.kind == "forbidden" and _is_answer(nb.cells[index]):
                break
            if _is_test(nb.cells[index]):
                flagged.setdefault(index, []).append(
                    f"{finding.message} (cell {start + 1}, line {finding.line})"
                )
    for index, messages in sorted(flagged.items()):
        _fail(nb.cells[index], "FlaggedSubmission", messages)
    zeroed = [_meta(nb.cells[index])["grade_id"] for index in sorted(flagged)]
    return {
        "hidden": hidden_failures,
        "flags": [f"cell {code_cells[f.cell][0] + 1} line {f.line}: {f.message}" for f in findings],
        "zeroed": zeroed,
    }


def forbidden_calls(source: Any) -> list[str]:
    """The reference functions a lab's answers may not use (its source notebook's metadata)."""
    return list(source.metadata.get("tinyml_course", {}).get("forbidden", []))


class DecideHiddenTests(NbGraderPreprocessor):
    """nbgrader preprocessor: decide hidden tests outside the kernel, scan for tampering."""

    private_dir = Unicode(
        "",
        help="The workspace's private folder: expected results, verdicts (default <results>/grading/private).",
    ).tag(config=True)

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        import nbformat

        from tinyml_course.grading import workspace

        info = resources.get("nbgrader", {})
        lab, student, name = info.get("assignment"), info.get("student"), info.get("notebook")
        cd = self.config.CourseDirectory
        source_path = Path(cd.root) / cd.source_directory / lab / f"{name}.ipynb"
        private = (
            Path(self.private_dir)
            if self.private_dir
            else workspace.private_dir(workspace.default_workspace())
        )
        source = nbformat.read(source_path, as_version=4)
        expected = expected_results(source_path, private, config=self.config)
        verdict = decide(nb, source, expected, forbidden_calls(source))
        out = verdict_path(private, lab, student)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(verdict, indent=1))
        return nb, resources
