"""Knowledge distillation (Hinton, Vinyals and Dean 2015): a small student learns from a big teacher.

The teacher's logits :math:`z^t` and the student's :math:`z^s` are softened with a
temperature :math:`T`:

.. math:: p_i(z; T) = \\frac{\\exp(z_i / T)}{\\sum_j \\exp(z_j / T)}

and the student minimises

.. math:: L = \\alpha\\, \\mathrm{CE}(y, p(z^s; 1))
          + (1 - \\alpha)\\, T^2\\, \\mathrm{KL}\\big(p(z^t; T)\\,\\|\\,p(z^s; T)\\big)

The :math:`T^2` keeps the soft term's gradients on the same scale as the hard term's
when :math:`T` changes. Without labels (``alpha = 0``, or data with no ``y``) only the
soft term remains: the teacher labels the data.

:func:`softmax_with_temperature` and :func:`distillation_loss` are NumPy references;
:class:`Distiller` is the trainable Keras model (after the Keras example of Kenneth
Borup) that uses the same formula in TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyml_course._setup import get_keras


def _check_temperature(temperature: float) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise TypeError(f"temperature must be a positive number; got {temperature!r}.") from None
    if not value > 0 or not np.isfinite(value):
        raise ValueError(
            f"temperature={temperature!r} must be a positive, finite number (1 is the plain softmax; 2-10 soften it)."
        )
    return value


def _check_alpha(alpha: float) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise TypeError(f"alpha must be a number in [0, 1]; got {alpha!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"alpha={alpha!r} must be in [0, 1]: the weight of the hard-label loss (1 - alpha weights the teacher's)."
        )
    return value


def softmax_with_temperature(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` along the last axis (numerically stable).

    Parameters
    ----------
    logits : array-like
        ``(..., classes)`` raw scores.
    temperature : float
        ``T > 0``; larger values give softer (flatter) distributions.

    Returns
    -------
    np.ndarray
        float64 probabilities, summing to 1 along the last axis.

    Examples
    --------
    >>> softmax_with_temperature(np.array([2.0, 0.0]), 1.0).round(3)
    array([0.881, 0.119])
    >>> softmax_with_temperature(np.array([2.0, 0.0]), 4.0).round(3)
    array([0.622, 0.378])
    """
    t = _check_temperature(temperature)
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0 or z.shape[-1] == 0:
        raise ValueError(
            f"logits must have a class axis (shape (..., classes)); got shape {z.shape}."
        )
    z = z / t
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def distillation_loss(
    student_logits: np.ndarray,
    teacher_logits: np.ndarray,
    labels: np.ndarray | None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.1,
) -> float:
    """Mean distillation loss of a batch (NumPy reference).

    ``alpha * CE(labels, softmax(student)) + (1 - alpha) * T**2 * KL(p_teacher_T || p_student_T)``,
    averaged over the batch (natural logarithms).

    Parameters
    ----------
    student_logits, teacher_logits : array-like
        ``(N, classes)`` logits of the same batch.
    labels : array-like of int, or None
        ``(N,)`` true classes. ``None`` means unlabelled data: only the soft term is used
        (with weight 1).
    temperature : float
        Softening temperature ``T``.
    alpha : float
        Weight of the hard-label term, in ``[0, 1]``.

    Returns
    -------
    float

    Examples
    --------
    >>> z = np.array([[1.0, 0.0]])
    >>> distillation_loss(z, z, None, temperature=2.0)
    0.0
    """
    t = _check_temperature(temperature)
    a = _check_alpha(alpha)
    s = np.asarray(student_logits, dtype=np.float64)
    te = np.asarray(teacher_logits, dtype=np.float64)
    if s.ndim != 2 or s.shape != te.shape:
        raise ValueError(
            f"student_logits {s.shape} and teacher_logits {te.shape} must both be (N, classes) with the same shape."
        )
    p_t = softmax_with_temperature(te, t)
    log_p_s = np.log(np.clip(softmax_with_temperature(s, t), 1e-12, None))
    log_p_t = np.log(np.clip(p_t, 1e-12, None))
    soft = float(np.mean(np.sum(p_t * (log_p_t - log_p_s), axis=-1))) * t * t
    if labels is None:
        return soft
    y = np.asarray(labels).reshape(-1)
    if len(y) != len(s):
        raise ValueError(f"labels has {len(y)} entries but the logits have {len(s)} rows.")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= s.shape[1]:
        raise ValueError(f"labels must be integer classes in [0, {s.shape[1] - 1}]; got {y[:5]}...")
    hard = float(
        -np.mean(
            np.log(np.clip(softmax_with_temperature(s, 1.0), 1e-12, None))[np.arange(len(y)), y]
        )
    )
    return a * hard + (1 - a) * soft


keras = get_keras()


class Distiller(keras.Model):
    """Train ``student`` to match ``teacher`` (soft targets) and the labels (hard targets).

    Parameters
    ----------
    student : keras.Model
        The model being trained; outputs logits.
    teacher : keras.Model
        A trained model with the same number of outputs (logits); it is not updated.

    After ``compile(optimizer, metrics=[...], alpha=..., temperature=...)``, ``fit`` takes
    ``(x, y)`` batches (both terms of the loss) or ``x`` alone (unlabelled data: the soft
    term only). ``evaluate`` scores the student against the labels. Reported in the logs:
    ``loss``, ``student_loss`` (hard labels) and ``distillation_loss`` (soft, times T**2).

    Examples
    --------
    >>> distiller = Distiller(student, teacher)  # doctest: +SKIP
    >>> distiller.compile(keras.optimizers.Adam(), metrics=["accuracy"], alpha=0.1, temperature=4)  # doctest: +SKIP
    >>> distiller.fit(x_train, y_train, epochs=3)  # doctest: +SKIP
    """

    def __init__(self, student: Any, teacher: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, model in (("student", student), ("teacher", teacher)):
            if not isinstance(model, keras.Model):
                raise TypeError(
                    f"{name} must be a tf-keras Model (from tinyml_course import keras); got {type(model).__name__}."
                )
        s_out, t_out = student.output_shape, teacher.output_shape
        if s_out[-1] != t_out[-1]:
            raise ValueError(
                f"student outputs {s_out[-1]} classes but teacher outputs {t_out[-1]}; they must match."
            )
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = 0.1
        self.temperature = 4.0

    def compile(  # type: ignore[override]
        self,
        optimizer: Any = "adam",
        metrics: Sequence[Any] | None = None,
        *,
        alpha: float = 0.1,
        temperature: float = 4.0,
        **kwargs: Any,
    ) -> None:
        """Configure training: the optimizer, student metrics, ``alpha`` and ``temperature``."""
        self.alpha = _check_alpha(alpha)
        self.temperature = _check_temperature(temperature)
        super().compile(optimizer=optimizer, metrics=list(metrics or []), **kwargs)
        self.hard_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.kl = keras.losses.KLDivergence()
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distill_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    def call(self, inputs: Any, training: bool = False) -> Any:
        """The student's logits."""
        return self.student(inputs, training=training)

    def compute_losses(
        self, y: Any, student_logits: Any, teacher_logits: Any
    ) -> tuple[Any, Any, Any]:
        """``(total, hard, soft)`` losses of a batch in TensorFlow; ``y=None`` for unlabelled data."""
        import tensorflow as tf

        t = self.temperature
        soft = self.kl(
            tf.nn.softmax(teacher_logits / t, axis=-1), tf.nn.softmax(student_logits / t, axis=-1)
        ) * (t * t)
        if y is None:
            return soft, tf.constant(0.0), soft
        hard = self.hard_loss_fn(y, student_logits)
        return self.alpha * hard + (1.0 - self.alpha) * soft, hard, soft

    def train_step(self, data: Any) -> dict[str, Any]:
        import tensorflow as tf

        x, y = (
            (data[0], data[1])
            if isinstance(data, tuple) and len(data) > 1
            else (data[0] if isinstance(data, tuple) else data, None)
        )
        teacher_logits = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student(x, training=True)
            total, hard, soft = self.compute_losses(y, student_logits, teacher_logits)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables, strict=True))
        self.loss_tracker.update_state(total)
        self.distill_loss_tracker.update_state(soft)
        if y is not None:
            self.student_loss_tracker.update_state(hard)
            self.compiled_metrics.update_state(y, student_logits)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data: Any) -> dict[str, Any]:
        x, y = data[0], data[1]
        student_logits = self.student(x, training=False)
        self.student_loss_tracker.update_state(self.hard_loss_fn(y, student_logits))
        self.compiled_metrics.update_state(y, student_logits)
        return {
            m.name: m.result()
            for m in self.metrics
            if m.name != "distillation_loss" and m.name != "loss"
        }

    @property
    def metrics(self) -> list[Any]:
        trackers = [
            t
            for t in (
                getattr(self, n, None)
                for n in ("loss_tracker", "student_loss_tracker", "distill_loss_tracker")
            )
            if t is not None
        ]
        return trackers + list(super().metrics)


__all__: Sequence[str] = ("Distiller", "distillation_loss", "softmax_with_temperature")
