"""nbgrader configuration of the TinyML course (nbgrader 0.9).

The single source of every exercise is ``solutions/<lab>/<lab>.ipynb``; the student
version ``exercises/<lab>/`` is generated from it. Everything nbgrader writes while
grading (submissions, autograded copies, feedback, the SQLite gradebook) lives under
``results/grading/`` (git ignores it; ``$TINYML_COURSE_RESULTS/grading/`` when that is
set), never in the source tree.

Use it through ``tinyml-course grade ...`` (see docs/grading.md), which also handles
zips, bad files and the per-student report. Plain nbgrader works too, from the
repository root with the environment's ``bin/`` on PATH (nbgrader runs ``alembic``)::

    nbgrader generate_assignment lab00_budget --force
    nbgrader autograde lab00_budget
"""

import os

from tinyml_course.paths import results_dir

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

_ROOT = os.path.dirname(os.path.abspath(__file__))
# The course's output folder: results/, or $TINYML_COURSE_RESULTS (a read-only checkout).
_WORK = os.path.join(results_dir(), "grading")
os.makedirs(_WORK, exist_ok=True)  # SQLite cannot create the gradebook in a missing folder

# --- Folders: sources and releases in the repository, grading work under results/grading/.
c.CourseDirectory.course_id = "tinyml-course"
c.CourseDirectory.root = _ROOT
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.submitted_directory = os.path.join(_WORK, "submitted")
c.CourseDirectory.autograded_directory = os.path.join(_WORK, "autograded")
c.CourseDirectory.feedback_directory = os.path.join(_WORK, "feedback")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_WORK, "gradebook.db")
c.CourseDirectory.ignore = [
    ".ipynb_checkpoints",
    "*.pyc",
    "__pycache__",
    "feedback",
    "*.tflite",
    "*.h5",
]

c.CsvExportPlugin.to = os.path.join(_WORK, "grades.csv")  # `nbgrader export`, not into the repo

# --- Student version: answers become `raise NotImplementedError()`; hidden tests removed.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
c.ClearSolutions.enforce_metadata = True

# --- Autograding.
# Per-cell time limit: graded cells train for seconds; an endless loop is interrupted
# after this and scores 0 for that cell only.
c.Execute.timeout = 180
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 120
# Keep the kernel's own start-up warnings (e.g. "running over TCP") off the grader's terminal.
c.Execute.extra_arguments = ["--IPKernelApp.log_level=ERROR"]
# Run each submission's kernel in the grading sandbox (bubblewrap: no network, no view of
# solutions/, the gradebook or other students; its processes die with it) and under limits
# (address space: a cell that allocates far too much raises MemoryError and scores 0; CPU
# time, file size, processes). Then decide the hidden tests outside the kernel, against the
# solution's results, and run the tamper scan. Same list as nbgrader's default, with Execute
# replaced by SandboxedExecute and DecideHiddenTests after it. See docs/grading.md.
c.Autograde.autograde_preprocessors = [
    "tinyml_course.grading.sandbox.SandboxedExecute",
    "tinyml_course.grading.verdict.DecideHiddenTests",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.SandboxedExecute.sandbox = True
c.SandboxedExecute.memory_limit_mb = 6144
# Put back test cells a student deleted (edited locked cells are always restored), and,
# before that, every other cell of the release a student deleted (answers come back blank):
# nbgrader alone fails on the whole notebook when an answer was deleted with its test.
# Same list as nbgrader's default, with RestoreDeletedCells before OverwriteCells.
c.OverwriteCells.add_missing_cells = True
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "tinyml_course.grading.restore.RestoreDeletedCells",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Second guard against log noise: a test cell that writes to stderr scores 0, so drop
# stderr output that is only TensorFlow / absl / XLA / CUDA / XNNPACK / protobuf chatter.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = (
    r"(?m)^(?:"
    r"[IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\]"  # absl / glog C++ lines: W0000 00:00:... file.cc:12]
    r"|\d{4}-\d\d-\d\d [\d:.]+: [IWE] "  # TensorFlow C++ lines: 2026-01-01 00:00:00.0: I tensorflow/...
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|\[libprotobuf WARNING"
    r"|.*(?:cuda|cuDNN|cuFFT|cuBLAS|TensorRT|oneDNN|XNNPACK|computation placer|rebuild TensorFlow)"
    r")"
)
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100
