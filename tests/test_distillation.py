"""Unit tests of tinyml_course.distillation: softened softmax, the loss, and the Distiller."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml_course  # noqa: F401  (Keras 2 before TensorFlow)
from tinyml_course.distillation import Distiller, distillation_loss, softmax_with_temperature


def test_softmax_with_temperature_one_is_the_softmax() -> None:
    z = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 5.0]])
    e = np.exp(z)
    np.testing.assert_allclose(softmax_with_temperature(z, 1.0), e / e.sum(axis=1, keepdims=True))


def test_softmax_with_temperature_softens_and_is_stable() -> None:
    z = np.array([1000.0, 990.0, 980.0])
    p1, p5 = softmax_with_temperature(z, 1.0), softmax_with_temperature(z, 5.0)
    assert np.isfinite(p1).all() and np.isclose(p5.sum(), 1.0)

    def entropy(p):
        return -np.sum(p * np.log(p + 1e-300))

    assert entropy(p5) > entropy(p1)
    assert p5.argmax() == p1.argmax() == 0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf")])
def test_softmax_with_temperature_rejects_bad_temperature(bad: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        softmax_with_temperature(np.ones(3), bad)


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(6, 5)) * 3, rng.normal(size=(6, 5)) * 3, rng.integers(0, 5, 6)


def test_distillation_loss_matches_keras_losses() -> None:
    """Independent computation with Keras' own KL divergence and cross-entropy."""
    from tinyml_course import keras

    s, t, y = _batch()
    T, alpha = 3.0, 0.3
    kl = keras.losses.KLDivergence()(
        softmax_with_temperature(t, T), softmax_with_temperature(s, T)
    ).numpy()
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, s).numpy()
    expected = alpha * ce + (1 - alpha) * T * T * kl
    assert np.isclose(distillation_loss(s, t, y, temperature=T, alpha=alpha), expected, rtol=1e-4)


def test_distillation_loss_special_cases() -> None:
    s, t, y = _batch(1)
    assert distillation_loss(t, t, None, temperature=4.0) == pytest.approx(0.0, abs=1e-12)
    # Without labels only the soft term remains, whatever alpha says.
    assert distillation_loss(s, t, None, temperature=2.0, alpha=0.9) == pytest.approx(
        distillation_loss(s, t, y, temperature=2.0, alpha=0.0)
    )
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, t, y, alpha=1.5)
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(s, t, y[:3])


def _models(seed: int = 0):
    from tinyml_course import keras

    keras.utils.set_random_seed(seed)

    def mlp(units: int, name: str):
        return keras.Sequential(
            [
                keras.Input((4,)),
                keras.layers.Dense(units, activation="relu"),
                keras.layers.Dense(3),
            ],
            name=name,
        )

    return mlp(8, "student"), mlp(32, "teacher")


def test_distiller_losses_match_the_numpy_reference() -> None:
    from tinyml_course import keras

    student, teacher = _models()
    distiller = Distiller(student, teacher)
    distiller.compile(keras.optimizers.Adam(), metrics=["accuracy"], alpha=0.25, temperature=3.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    s, t = student(x).numpy(), teacher(x).numpy()
    total, _, soft = distiller.compute_losses(y, s, t)
    assert np.isclose(
        float(total), distillation_loss(s, t, y, temperature=3.0, alpha=0.25), rtol=1e-4
    )
    assert np.isclose(float(soft), distillation_loss(s, t, None, temperature=3.0), rtol=1e-4)


def test_distiller_trains_the_student_towards_the_teacher_only() -> None:
    from tinyml_course import keras

    student, teacher = _models(1)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = teacher.predict(x, verbose=0).argmax(1)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    distiller = Distiller(student, teacher)
    distiller.compile(keras.optimizers.Adam(0.01), metrics=["accuracy"], alpha=0.0, temperature=2.0)
    before = distillation_loss(
        student.predict(x, verbose=0), teacher.predict(x, verbose=0), None, temperature=2.0
    )
    history = distiller.fit(x, epochs=15, batch_size=32, verbose=0)  # unlabelled: x only
    after = distillation_loss(
        student.predict(x, verbose=0), teacher.predict(x, verbose=0), None, temperature=2.0
    )
    assert after < before / 2
    assert "distillation_loss" in history.history
    for old, new in zip(teacher_weights, teacher.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    result = distiller.evaluate(x, y, verbose=0, return_dict=True)
    assert result["accuracy"] > 0.8


def test_distiller_checks_its_models() -> None:
    from tinyml_course import keras

    student, _ = _models()
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    with pytest.raises(ValueError, match="classes"):
        Distiller(student, other)
    with pytest.raises(TypeError, match="teacher"):
        Distiller(student, "teacher.keras")
    with pytest.raises(ValueError, match="temperature"):
        Distiller(student, student).compile("adam", temperature=0)
