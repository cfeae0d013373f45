"""Put back the cells a submission deleted, before nbgrader sanitises it.

nbgrader restores deleted *test* cells only (``OverwriteCells.add_missing_cells``), and fails
on the whole notebook when the cell before a deleted test cell is gone too (an answer deleted
with its test). :class:`RestoreDeletedCells` runs first, as one of nbgrader's sanitize
preprocessors (``nbgrader_config.py``): every nbgrader cell of the release that the submission
lacks is put back in place (answers blank, so their tests score 0), so the rest of the
notebook is graded. The submitted file itself is left as the student handed it in.
"""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

from nbgrader.preprocessors import NbGraderPreprocessor


def _grade_id(cell: Any) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def restore_cells(original: Any, nb: Any) -> list[str]:
    """Insert the cells of ``original`` (the release) missing from ``nb``, in place, in order.

    Returns
    -------
    list of str
        One note per restored cell, e.g. ``"answer cell q3_answer was deleted: restored blank"``.
    """
    present = {_grade_id(c) for c in nb.cells} - {None}
    ids = {c.get("id") for c in nb.cells}
    notes: list[str] = []
    previous: str | None = None
    for cell in original.cells:
        gid = _grade_id(cell)
        if gid is None:
            continue
        if gid not in present:
            index = 0
            if previous is not None:
                index = next(i for i, c in enumerate(nb.cells) if _grade_id(c) == previous) + 1
            restored = copy.deepcopy(cell)
            if restored.get("id") in ids:
                restored["id"] = uuid.uuid4().hex[:8]
            ids.add(restored.get("id"))
            nb.cells.insert(index, restored)
            present.add(gid)
            meta = cell.metadata["nbgrader"]
            if meta.get("solution") and not meta.get("locked"):
                notes.append(f"answer cell {gid} was deleted: restored blank")
            else:
                notes.append(f"locked cell {gid} was deleted: restored from the release")
        previous = gid
    return notes


def deleted_cells(release: Path, submitted: Path) -> list[str]:
    """What :class:`RestoreDeletedCells` will put back into ``submitted`` (nothing is written)."""
    import nbformat

    try:
        nb = nbformat.read(submitted, as_version=4)
        return restore_cells(nbformat.read(release, as_version=4), nb)
    except Exception:  # not readable: nbgrader reports it
        return []


class RestoreDeletedCells(NbGraderPreprocessor):
    """nbgrader sanitize preprocessor: put back the release's cells a submission deleted."""

    def preprocess(self, nb: Any, resources: Any) -> tuple[Any, Any]:
        import nbformat

        cd = self.config.CourseDirectory
        info = resources.get("nbgrader", {})
        release = (
            Path(cd.root) / cd.release_directory / info["assignment"] / f"{info['notebook']}.ipynb"
        )
        if release.is_file():
            try:
                restore_cells(nbformat.read(release, as_version=4), nb)
            except StopIteration:  # leave the repair to nbgrader
                pass
        return nb, resources
