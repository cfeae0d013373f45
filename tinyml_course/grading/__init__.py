"""Release and autograde the course's exercises with nbgrader, securely and with no JupyterHub.

One module per concern:

* :mod:`~tinyml_course.grading.workspace`: the labs, the grading workspace, nbgrader's config;
* :mod:`~tinyml_course.grading.releases`: ``exercises/`` from the sources, drift checks, the
  student-only tree of a graded class;
* :mod:`~tinyml_course.grading.submissions`: a folder or zip of submissions into nbgrader's layout;
* :mod:`~tinyml_course.grading.sandbox` (and its ``launcher``): every graded kernel in a
  bubblewrap sandbox, under limits;
* :mod:`~tinyml_course.grading.verdict` and :mod:`~tinyml_course.grading.tamper`: hidden tests
  decided outside the student's kernel, and the tamper scan;
* :mod:`~tinyml_course.grading.diagnose`: readable reasons for the report;
* :mod:`~tinyml_course.grading.batch`: the batch (the only writer of the workspace);
  :mod:`~tinyml_course.grading.engine`: Dask, a local cluster or an existing one, that runs
  :mod:`~tinyml_course.grading.worker` (one submission graded in a scratch course, results
  back as data); :mod:`~tinyml_course.grading.bench`: the throughput benchmark;
* :mod:`~tinyml_course.grading.cli`: the ``tinyml-course grade`` command.

The names below are imported on first use, so ``python -m tinyml_course.grading.launcher``
(which starts every graded kernel) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GradingError": "workspace",
    "list_labs": "workspace",
    "course_config": "workspace",
    "generate_assignment": "releases",
    "release": "releases",
    "check_release": "releases",
    "release_student_tree": "releases",
    "collect": "submissions",
    "autograde": "batch",
    "autograde_batch": "batch",
    "BatchReport": "batch",
    "format_summary": "batch",
    "StudentResult": "batch",
    "generate_feedback": "batch",
    "export_grades": "batch",
    "format_table": "batch",
    "sandbox_status": "sandbox",
    "register": "cli",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
