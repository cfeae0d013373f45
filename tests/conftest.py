"""Shared fixtures: a small trained Fashion-MNIST model and its int8 conversion (built once per worker)."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml_course  # noqa: F401  (configures Keras 2 before TensorFlow loads)


@pytest.fixture(scope="session")
def fashion():
    from tinyml_course.datasets import load_fashion_mnist

    return load_fashion_mnist()


@pytest.fixture(scope="session")
def small_model(fashion):
    """A tiny CNN trained for one short epoch (seconds): real weights, real ranges."""
    from tinyml_course.datasets import to_model_input
    from tinyml_course.models import build_baseline_cnn, compile_classifier, set_seed

    set_seed(0)
    model = compile_classifier(build_baseline_cnn(width=4))
    model.fit(
        to_model_input(fashion.x_train[:3000]),
        fashion.y_train[:3000],
        epochs=1,
        batch_size=64,
        verbose=0,
    )
    return model


@pytest.fixture(scope="session")
def small_int8(small_model, fashion):
    from tinyml_course.datasets import to_model_input
    from tinyml_course.tflite import convert_to_tflite

    return convert_to_tflite(
        small_model, "int8", representative_data=to_model_input(fashion.x_train[:200])
    )


@pytest.fixture(scope="session")
def small_float(small_model):
    from tinyml_course.tflite import convert_to_tflite

    return convert_to_tflite(small_model, "float")


@pytest.fixture()
def rng():
    return np.random.default_rng(0)
