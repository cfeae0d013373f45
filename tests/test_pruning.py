"""Unit tests of tinyml_course.pruning: masks, filter ranking, structured pruning, tfmot helpers."""

from __future__ import annotations

import numpy as np
import pytest

import tinyml_course  # noqa: F401  (Keras 2 before TensorFlow)
from tinyml_course import pruning


# --------------------------------------------------------------------------- masks
def test_magnitude_mask_drops_exactly_the_smallest_magnitudes() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 30))
    mask = pruning.magnitude_mask(w, 0.8)
    assert mask.shape == w.shape and mask.dtype == bool
    assert mask.sum() == round(0.2 * w.size)
    assert np.abs(w[mask]).min() > np.abs(w[~mask]).max()


def test_magnitude_mask_zero_sparsity_keeps_everything() -> None:
    w = np.arange(-5.0, 5.0)
    assert pruning.magnitude_mask(w, 0.0).all()


def test_magnitude_mask_ties_give_exact_count() -> None:
    w = np.ones(10)
    assert pruning.magnitude_mask(w, 0.3).sum() == 7


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_magnitude_mask_rejects_bad_sparsity(bad: float) -> None:
    with pytest.raises(ValueError, match="sparsity"):
        pruning.magnitude_mask(np.ones(4), bad)


def test_magnitude_mask_rejects_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        pruning.magnitude_mask(np.zeros((0, 3)), 0.5)


def test_sparsity_of_counts_zeros() -> None:
    assert pruning.sparsity_of(np.array([0.0, 2.0, 0.0, 0.0])) == 0.75


# --------------------------------------------------------------------------- filters
def test_l1_filter_norms_match_a_loop() -> None:
    rng = np.random.default_rng(1)
    k = rng.normal(size=(3, 3, 2, 5))
    expected = [
        sum(abs(k[i, j, c, f]) for i in range(3) for j in range(3) for c in range(2))
        for f in range(5)
    ]
    np.testing.assert_allclose(pruning.l1_filter_norms(k), expected)


def test_filters_to_keep_picks_the_largest_and_sorts() -> None:
    k = np.zeros((1, 1, 1, 4))
    k[..., :] = [0.5, -3.0, 0.1, 2.0]
    np.testing.assert_array_equal(pruning.filters_to_keep(k, 2), [1, 3])
    np.testing.assert_array_equal(pruning.filters_to_keep(k, 0.75), [0, 1, 3])


@pytest.mark.parametrize("keep", [0, 5, 0.0, 1.5, "half"])
def test_filters_to_keep_rejects_bad_keep(keep) -> None:
    with pytest.raises((ValueError, TypeError), match="keep"):
        pruning.filters_to_keep(np.ones((3, 3, 1, 4)), keep)


def _small_cnn(seed: int = 0):
    from tinyml_course import keras
    from tinyml_course.models import build_baseline_cnn

    keras.utils.set_random_seed(seed)
    return build_baseline_cnn(width=4)


def test_structured_prune_is_lossless_when_removed_filters_are_dead() -> None:
    """Filters whose weights and bias are zero output relu(0) = 0; removing them changes nothing."""
    model = _small_cnn()
    plan = {"conv1": [1, 3], "conv2": [0, 2, 5, 7], "dense1": list(range(0, 16, 2))}
    for name, dead in plan.items():
        kernel, bias = model.get_layer(name).get_weights()
        kernel[..., dead] = 0.0
        bias[dead] = 0.0
        model.get_layer(name).set_weights([kernel, bias])
    keep = {
        name: model.get_layer(name).get_weights()[0].shape[-1] - len(dead)
        for name, dead in plan.items()
    }
    small = pruning.structured_prune(model, keep)
    assert small.get_layer("conv1").filters == 2
    assert small.get_layer("conv2").get_weights()[0].shape == (3, 3, 2, 4)
    assert small.get_layer("dense1").get_weights()[0].shape == (5 * 5 * 4, 8)
    assert small.get_layer("logits").get_weights()[0].shape == (8, 10)
    x = np.random.default_rng(0).random((8, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(
        small.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def test_structured_prune_cuts_params_and_macs() -> None:
    from tinyml_course.profiling import profile_model

    model = _small_cnn()
    small = pruning.structured_prune(model, {"conv1": 0.5, "conv2": 0.5, "dense1": 0.5})
    before, after = profile_model(model), profile_model(small)
    assert after.params < before.params / 2
    assert after.macs < before.macs / 2
    assert small.name.endswith("_structured")


def test_structured_prune_rejects_output_layer_and_unknown_names() -> None:
    model = _small_cnn()
    with pytest.raises(ValueError, match="output layer"):
        pruning.structured_prune(model, {"logits": 0.5})
    with pytest.raises(ValueError, match="not in the model"):
        pruning.structured_prune(model, {"conv9": 0.5})


# --------------------------------------------------------------------------- size
def test_gzip_size_is_repeatable_and_rewards_zeros() -> None:
    rng = np.random.default_rng(0)
    dense = rng.normal(size=10_000).astype(np.float32)
    sparse = dense * pruning.magnitude_mask(dense, 0.8)
    assert pruning.gzip_size(dense) == pruning.gzip_size(dense.tobytes())
    assert pruning.gzip_size(sparse) < pruning.gzip_size(dense) / 3
    with pytest.raises(TypeError, match="bytes"):
        pruning.gzip_size("model.tflite")


# --------------------------------------------------------------------------- tfmot
def _random_data(n: int = 256):
    rng = np.random.default_rng(0)
    x = rng.random((n, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return x, y


def test_prune_low_magnitude_reaches_target_and_strips() -> None:
    from tinyml_course.models import compile_classifier

    x, y = _random_data()
    wrapped = pruning.prune_low_magnitude(_small_cnn(), 0.75, end_step=8, frequency=2)
    compile_classifier(wrapped)
    wrapped.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=pruning.pruning_callbacks())
    stripped = pruning.strip_pruning(wrapped)
    assert all(type(layer).__name__ != "PruneLowMagnitude" for layer in stripped.layers)
    sparsity = pruning.model_sparsity(stripped)
    assert abs(sparsity["total"] - 0.75) < 0.01
    assert abs(sparsity["dense1"] - 0.75) < 0.01


def test_prune_low_magnitude_validates_schedule() -> None:
    with pytest.raises(ValueError, match="end_step"):
        pruning.prune_low_magnitude(_small_cnn(), 0.5, end_step=0)
    with pytest.raises(ValueError, match="target_sparsity"):
        pruning.prune_low_magnitude(_small_cnn(), 1.2, end_step=10)


def test_cluster_weights_leaves_k_values_per_kernel() -> None:
    from tinyml_course.models import compile_classifier

    x, y = _random_data(128)
    clustered = pruning.cluster_weights(_small_cnn(), 4, init="linear")
    compile_classifier(clustered)
    clustered.fit(x, y, epochs=1, batch_size=32, verbose=0)
    stripped = pruning.strip_clustering(clustered)
    counts = pruning.unique_weight_counts(stripped)
    assert set(counts) == {"conv1", "conv2", "dense1", "logits"}
    assert all(1 < c <= 4 for c in counts.values())


def test_cluster_weights_validates() -> None:
    with pytest.raises(ValueError, match="n_clusters"):
        pruning.cluster_weights(_small_cnn(), 1)
    with pytest.raises(ValueError, match="init"):
        pruning.cluster_weights(_small_cnn(), 8, init="kmeans")


def test_prune_low_magnitude_per_layer_targets() -> None:
    from tinyml_course.models import compile_classifier

    x, y = _random_data()
    wrapped = pruning.prune_low_magnitude(
        _small_cnn(), {"conv2": 0.5, "dense1": 0.9}, end_step=8, frequency=2
    )
    compile_classifier(wrapped)
    wrapped.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=pruning.pruning_callbacks())
    sparsity = pruning.model_sparsity(pruning.strip_pruning(wrapped))
    assert abs(sparsity["dense1"] - 0.9) < 0.01
    assert abs(sparsity["conv2"] - 0.5) < 0.01
    assert sparsity["conv1"] < 0.1 and sparsity["logits"] < 0.1
    with pytest.raises(ValueError, match="not in the model"):
        pruning.prune_low_magnitude(_small_cnn(), {"dense9": 0.5}, end_step=8)
