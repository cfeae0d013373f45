"""Helper library of the TinyML course.

Importing this package configures the environment for the course stack *before*
TensorFlow loads: it selects the Keras 2 API (``TF_USE_LEGACY_KERAS=1``, the only
API that TensorFlow Model Optimization supports) and silences TensorFlow's C++ and
Python logging, so notebook output and graded cells stay clean.

Get Keras the one course way::

    from tinyml_course import keras        # the tf-keras (Keras 2) API

The sub-modules (``datasets``, ``profiling``, ``tflite``, ``micro``, ``deploy``,
``results``...) are imported on first use, so ``import tinyml_course`` itself is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tinyml_course._setup import configure_environment

configure_environment()

__version__ = "0.1.0"

_SUBMODULES = {
    "checks",
    "datasets",
    "deploy",
    "devices",
    "distillation",
    "early_exit",
    "explorers",
    "grading",
    "lab",
    "mask",
    "micro",
    "models",
    "paths",
    "patches",
    "profiling",
    "pruning",
    "quantization",
    "results",
    "runner",
    "search",
    "tflite",
}

if TYPE_CHECKING:  # pragma: no cover
    import tf_keras as keras  # noqa: F401


def __getattr__(name: str) -> Any:
    if name == "keras":
        from tinyml_course._setup import get_keras

        return get_keras()
    if name in _SUBMODULES:
        return importlib.import_module(f"tinyml_course.{name}")
    raise AttributeError(f"module 'tinyml_course' has no attribute {name!r}")


__all__ = ["keras", "configure_environment", "__version__", *sorted(_SUBMODULES)]
