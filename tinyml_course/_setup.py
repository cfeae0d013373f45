"""Environment set-up that must happen before TensorFlow is imported."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from types import ModuleType


class KerasSetupError(RuntimeError):
    """TensorFlow was imported with Keras 3 before the course could select Keras 2."""


_RESTART_HINT = (
    "TensorFlow was already imported with Keras 3 active, before tinyml_course could "
    "select the Keras 2 API that TensorFlow Model Optimization needs. Restart the kernel "
    "(Kernel > Restart Kernel) and make `import tinyml_course` (or "
    "`os.environ['TF_USE_LEGACY_KERAS'] = '1'`) the first import of the notebook."
)


def configure_environment() -> None:
    """Select the Keras 2 API and quiet TensorFlow's logging.

    Safe to call many times. It must run before ``tensorflow`` is first imported to
    have full effect; :func:`get_keras` checks that it did.
    """
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "3")
    # Keep CPU threads within a laptop's means and results repeatable.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="tensorflow")
    warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow_model_optimization")
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed.*")
    warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "tensorflow" in sys.modules:
        _quiet_loaded_tensorflow()


def _quiet_loaded_tensorflow() -> None:
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    tf = sys.modules.get("tensorflow")
    if tf is not None and hasattr(tf, "get_logger"):
        tf.get_logger().setLevel(logging.ERROR)


def _keras3_active() -> bool:
    """True when TensorFlow is loaded and ``tf.keras`` resolves to Keras 3."""
    if "tensorflow" not in sys.modules:
        return False
    tf = sys.modules["tensorflow"]
    try:
        version = tf.keras.__version__  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - a half-imported TensorFlow
        return False
    return str(version).startswith("3")


def get_keras() -> ModuleType:
    """Return the tf-keras (Keras 2) module the whole course uses.

    Raises
    ------
    KerasSetupError
        If TensorFlow was imported with Keras 3 active before the course set up
        the environment; the message says to restart the kernel.
    """
    configure_environment()
    if _keras3_active():
        raise KerasSetupError(_RESTART_HINT)
    if "tensorflow" not in sys.modules:
        from tinyml_course._quiet import quiet_stderr

        # Some C++ lines (CUDA probing, absl pre-init) ignore TF_CPP_MIN_LOG_LEVEL: keep them
        # out of the notebook, where graded cells must not write to stderr.
        with quiet_stderr():
            import tensorflow as tf  # noqa: F401  (loads with the settings above)
            import tf_keras
    import tf_keras

    _quiet_loaded_tensorflow()
    return tf_keras


def check_keras_setup() -> None:
    """Raise :class:`KerasSetupError` if TensorFlow is running Keras 3."""
    if _keras3_active():
        raise KerasSetupError(_RESTART_HINT)
