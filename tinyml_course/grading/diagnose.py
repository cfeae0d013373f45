"""Why a submission lost points, or could not be graded: readable reasons for the report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def notebook_problems(notebook: Path) -> list[str]:
    """Errors in an autograded notebook's answer cells, then why each graded cell lost points."""
    try:
        cells = json.loads(notebook.read_text()).get("cells", [])
    except (OSError, ValueError):
        return []
    return _answer_problems(cells) + _cell_problems(cells)


def describe_error(output: dict[str, Any]) -> str:
    """One line for an error output. A ``KeyboardInterrupt`` there is the grader interrupting
    a cell that ran past the per-cell time limit, so both read as a time-out."""
    name, value = output.get("ename", "error"), str(output.get("evalue", ""))
    if "Timeout" in name or name == "KeyboardInterrupt":
        return "timed out (cell time limit)"
    return f"{name}: {value}".strip().rstrip(":")


def _cell_problems(cells: list[dict]) -> list[str]:
    """Why each graded cell of an autograded notebook lost its points."""
    problems = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if not meta.get("grade") or cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(f"{meta.get('grade_id')}: {describe_error(output)[:200]}")
                break
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = output.get("text", "")
                text = text if isinstance(text, str) else "".join(text)
                problems.append(
                    f"{meta.get('grade_id')}: wrote to stderr ({text.strip().splitlines()[0][:120] if text.strip() else ''})"
                )
                break
    return problems


def _answer_problems(cells: list[dict]) -> list[str]:
    """Errors raised in answer (solution) cells: often the root cause of failing tests."""
    problems = []
    for cell in cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade") or not meta.get("solution") or cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if (
                output.get("output_type") == "error"
                and output.get("ename") != "NotImplementedError"
            ):
                problems.append(f"in answer {meta.get('grade_id')}: {describe_error(output)[:160]}")
                break
    return problems


def edited_locked_cells(release: Path, submitted: Path) -> list[str]:
    """Locked cells of the release that the submission edited (nbgrader restores them)."""
    try:
        original = json.loads(release.read_text())
        handed_in = json.loads(submitted.read_text())
    except (OSError, ValueError):
        return []

    def cells(nb: dict, *, only_locked: bool) -> dict[str, str]:
        found = {}
        for cell in nb.get("cells", []):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade_id") and (meta.get("locked") or not only_locked):
                source = cell.get("source", "")
                found[meta["grade_id"]] = source if isinstance(source, str) else "".join(source)
        return found

    theirs = cells(handed_in, only_locked=False)
    notes = []
    for grade_id, source in cells(original, only_locked=True).items():
        if grade_id in theirs and theirs[grade_id].strip() != source.strip():
            notes.append(f"locked cell {grade_id} was edited: restored from the source")
    return notes


_KNOWN_FAILURES = {
    "add_missing_grade_cells": "deleted cells could not be put back",
    "DeadKernelError": "the kernel died while running it (os._exit, a crash, or the machine ran out of memory)",
    "UnresponsiveKernelError": "the kernel stopped responding and could not be interrupted",
    "ValidationError": "its nbgrader cell metadata is corrupted (cells copied or ids edited)",
    "Inconsistent checksums": "a locked cell could not be restored",
}


def failure_reason(log: str) -> str:
    """The most telling line of a failed nbgrader run."""
    for key, text in _KNOWN_FAILURES.items():
        if key in log:
            return text
    errors = [
        line.strip()
        for line in log.splitlines()
        if re.match(r"^\s*[\w.]+(Error|Exception): ", line) and "NbGraderException" not in line
    ]
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return (errors[-1] if errors else lines[-1] if lines else "unknown error")[:200]
