"""Early exits: exit rules, policies and their cost, the multi-exit network, int8 stages."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_course import early_exit as ee


def three_exits() -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    """Four samples, three exits, worked out by hand below."""
    probs = [
        np.array([[0.95, 0.05], [0.60, 0.40], [0.55, 0.45], [0.80, 0.20]]),
        np.array([[0.50, 0.50], [0.10, 0.90], [0.70, 0.30], [0.10, 0.90]]),
        np.array([[0.99, 0.01], [0.20, 0.80], [0.30, 0.70], [0.10, 0.90]]),
    ]
    labels = np.array([0, 1, 1, 1])
    return probs, labels, [100, 400, 2_000]


# --------------------------------------------------------------------------- rules
def test_softmax_rows_sum_to_one_and_survive_large_logits() -> None:
    p = ee.softmax(np.array([[1000.0, 0.0], [0.0, 0.0], [1.0, 2.0]]))
    assert np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(p[0], [1.0, 0.0]) and np.allclose(p[1], [0.5, 0.5])
    assert np.isclose(p[2, 1], np.e / (np.e + 1))


def test_entropy_of_known_distributions() -> None:
    h = ee.entropy(np.array([[0.25] * 4, [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]))
    assert np.allclose(h, [np.log(4), 0.0, np.log(2)])
    assert not np.any(np.isnan(h))


def test_max_confidence_and_should_exit() -> None:
    p = np.array([[0.7, 0.3], [0.5, 0.5]])
    assert np.allclose(ee.max_confidence(p), [0.7, 0.5])
    assert ee.should_exit(p, 0.7).tolist() == [True, False]  # >= leaves
    assert ee.should_exit(p, np.log(2) - 1e-9, rule="entropy").tolist() == [True, False]


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.array([0.5, 0.6]), "sum"),
        (np.array([[1.0]]), "C >= 2"),
        (np.array([[-0.5, 1.5]]), "softmax"),
    ],
)
def test_rules_refuse_non_probabilities(bad, words) -> None:
    with pytest.raises(ValueError, match=words):
        ee.entropy(bad)


def test_unknown_rule_is_named() -> None:
    with pytest.raises(ValueError, match="rule='margin'"):
        ee.should_exit(np.array([[0.5, 0.5]]), 0.5, rule="margin")


# --------------------------------------------------------------------------- policies
def test_exit_indices_by_hand() -> None:
    probs, _, _ = three_exits()
    assert ee.exit_indices(probs, 0.8).tolist() == [0, 1, 2, 0]
    assert ee.exit_indices(probs, 0.0).tolist() == [0, 0, 0, 0]
    assert ee.exit_indices(probs, 1.01).tolist() == [2, 2, 2, 2]
    # entropy 0.1 nats: only the 0.95 and 0.90 rows are sure enough
    assert ee.exit_indices(probs, 0.35, rule="entropy").tolist() == [0, 1, 2, 1]


def test_evaluate_policy_by_hand() -> None:
    probs, labels, macs = three_exits()
    result = ee.evaluate_policy(probs, labels, macs, 0.8)
    # exits [0, 1, 2, 0]: predictions [0, 1, 1, 0] vs labels [0, 1, 1, 1]
    assert result.accuracy == pytest.approx(0.75)
    assert result.average_macs == pytest.approx((100 + 400 + 2_000 + 100) / 4)
    assert result.exit_fractions.tolist() == [0.5, 0.25, 0.25]
    assert "0.8" in str(result)


def test_expected_macs_matches_policy_average() -> None:
    probs, labels, macs = three_exits()
    result = ee.evaluate_policy(probs, labels, macs, 0.8)
    assert ee.expected_macs(result.exit_fractions, macs) == pytest.approx(result.average_macs)
    with pytest.raises(ValueError, match="sum to 1"):
        ee.expected_macs([0.5, 0.6], [1, 2])
    with pytest.raises(ValueError, match="one non-negative cost per exit"):
        ee.expected_macs([0.5, 0.5], [1, 2, 3])


def test_sweep_spans_cheap_to_full_and_choose_is_cheapest_feasible() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 500)
    # exit 0 right 60% of the time with varied confidence, the last exit always right
    early = rng.dirichlet(np.ones(5), 500)
    right = rng.random(500) < 0.6
    early[right] = 0.1 * early[right]
    early[right, labels[right]] += 0.9
    late = np.full((500, 5), 0.01)
    late[np.arange(500), labels] = 0.96
    results = ee.sweep_thresholds([early, late], labels, [10, 100], np.linspace(0, 1.0, 51))
    macs = [r.average_macs for r in results]
    assert macs[0] == pytest.approx(10) and macs[-1] == pytest.approx(100)
    assert all(
        a <= b + 1e-9 for a, b in zip(macs, macs[1:], strict=False)
    )  # monotone in the threshold
    chosen = ee.choose_operating_point(results, 0.95)
    assert chosen.accuracy >= 0.95
    assert chosen.average_macs == min(r.average_macs for r in results if r.accuracy >= 0.95)
    assert chosen.average_macs < 100  # some samples do leave early
    with pytest.raises(ValueError, match="no threshold reaches"):
        ee.choose_operating_point(results, 1.01)


def test_default_thresholds_cover_both_ends() -> None:
    conf = ee.default_thresholds("confidence")
    assert conf.min() <= 0.3 and conf.max() >= 0.999 and np.all(np.diff(conf) > 0)
    ent = ee.default_thresholds("entropy", num_classes=10)
    assert ent.min() <= 1e-3 and np.isclose(ent.max(), np.log(10))


def test_cascade_costs() -> None:
    assert ee.cascade_costs(1_000, 50_000) == [1_000.0, 51_000.0]
    with pytest.raises(ValueError, match="non-negative"):
        ee.cascade_costs(-1, 5)


def test_policy_inputs_are_validated() -> None:
    probs, labels, macs = three_exits()
    with pytest.raises(ValueError, match="at least two exits"):
        ee.exit_indices(probs[:1], 0.5)
    with pytest.raises(ValueError, match="same"):
        ee.exit_indices([probs[0], probs[1][:3]], 0.5)
    with pytest.raises(ValueError, match="labels has 3"):
        ee.evaluate_policy(probs, labels[:3], macs, 0.5)
    with pytest.raises(ValueError, match="exit_macs"):
        ee.evaluate_policy(probs, labels, macs[:2], 0.5)


# --------------------------------------------------------------------------- network
@pytest.fixture(scope="module")
def network() -> ee.MultiExitNetwork:
    from tinyml_course.models import set_seed

    set_seed(0)
    return ee.build_multi_exit_cnn(widths=(4, 8, 16))


def test_network_costs_follow_the_formula(network) -> None:
    from tinyml_course.profiling import conv2d_macs, dense_macs

    # pooling compares, it does not multiply: its operations are not MACs
    b1 = conv2d_macs(3, 1, 4, 28)
    b2 = conv2d_macs(3, 4, 8, 14)
    b3 = conv2d_macs(3, 8, 16, 7) + conv2d_macs(3, 16, 16, 7)
    h1 = dense_macs(7 * 7 * 4, 10)
    h2 = dense_macs(7 * 7 * 8, 10)
    h3 = dense_macs(3 * 3 * 16, 32) + dense_macs(32, 10)
    assert network.block_macs == [b1, b2, b3]
    assert network.head_macs == [h1, h2, h3]
    assert network.exit_macs == [b1 + h1, b1 + h1 + b2 + h2, b1 + h1 + b2 + h2 + b3 + h3]
    assert network.full_macs == b1 + b2 + b3 + h3
    assert len(network.model.outputs) == 3


def test_builder_validates_arguments() -> None:
    with pytest.raises(ValueError, match="widths"):
        ee.build_multi_exit_cnn(widths=(8, 16))
    with pytest.raises(ValueError, match="num_classes"):
        ee.build_multi_exit_cnn(num_classes=1)
    with pytest.raises(TypeError, match="MultiExitNetwork"):
        ee.compile_multi_exit("model")  # type: ignore[arg-type]


def test_stages_compose_to_the_joint_model(network) -> None:
    x = np.random.default_rng(1).random((6, 28, 28, 1)).astype(np.float32)
    joint = network.model.predict(x, verbose=0)
    stages = ee.split_stages(network)
    assert len(stages) == 3
    z1, f1 = stages[0].predict(x, verbose=0)
    z2, f2 = stages[1].predict(f1, verbose=0)
    z3 = stages[2].predict(f2, verbose=0)
    for got, expected in zip((z1, z2, z3), joint, strict=True):
        assert np.allclose(got, expected, atol=1e-5)
    assert np.allclose(ee.full_network(network).predict(x, verbose=0), joint[-1], atol=1e-5)


def test_staged_runner_follows_the_rule_and_matches_float(network) -> None:
    from tinyml_course.tflite import convert_to_tflite

    rng = np.random.default_rng(2)
    x = rng.random((40, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 40)
    stages = ee.convert_stages(ee.split_stages(network), x, samples=40)
    assert len(stages) == 3 and all(s[4:8] == b"TFL3" for s in stages)

    everyone_first = ee.StagedRunner(stages, network.exit_macs, threshold=0.0).evaluate(
        x, y, warmup=2
    )
    assert everyone_first.exits.tolist() == [0] * 40
    assert everyone_first.average_macs == network.exit_macs[0]
    nobody_early = ee.StagedRunner(stages, network.exit_macs, threshold=1.01).evaluate(
        x, y, warmup=2
    )
    assert nobody_early.exits.tolist() == [2] * 40
    assert nobody_early.exit_fractions.tolist() == [0.0, 0.0, 1.0]
    assert len(nobody_early.latencies_ms) == 40 and nobody_early.mean_latency_ms > 0

    # the int8 stages run end to end agree with the float network (and with the int8 full network)
    float_predictions = network.model.predict(x, verbose=0)[-1].argmax(1)
    assert np.mean(nobody_early.predictions == float_predictions) >= 0.9
    full = convert_to_tflite(ee.full_network(network), "int8", representative_data=x)
    plain = ee.StagedRunner([full], [network.full_macs], reference_kernels=True).evaluate(
        x, y, warmup=2
    )
    assert plain.exits.tolist() == [0] * 40
    assert np.mean(plain.predictions == nobody_early.predictions) >= 0.9

    middle = ee.StagedRunner(stages, network.exit_macs, threshold=0.15).evaluate(x, y, warmup=2)
    assert middle.average_macs == pytest.approx(
        np.asarray(network.exit_macs, float)[middle.exits].mean()
    )


def test_staged_runner_refuses_float_stages(network) -> None:
    from tinyml_course.tflite import convert_to_tflite

    float_stage = convert_to_tflite(ee.split_stages(network)[-1], "float")
    with pytest.raises(ValueError, match="int8"):
        ee.StagedRunner([float_stage], [1])
    with pytest.raises(ValueError, match="stages is empty"):
        ee.StagedRunner([], [])


# --------------------------------------------------------------------------- calibration and noise
def test_fit_temperature_recovers_the_temperature_labels_were_drawn_with() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(20000, 5))
    true_t = 2.5  # the labels follow softmax(logits / 2.5): the raw softmax is overconfident
    p_true = ee.softmax(logits / true_t)
    labels = np.array([rng.choice(5, p=row) for row in p_true])
    fitted = ee.fit_temperature(ee.softmax(logits), labels)
    assert fitted == pytest.approx(true_t, rel=0.08)
    scaled = ee.apply_temperature(ee.softmax(logits), fitted)
    assert np.array_equal(scaled.argmax(1), logits.argmax(1))
    assert np.allclose(scaled, p_true, atol=0.03)


def test_apply_temperature_validates() -> None:
    with pytest.raises(ValueError, match="temperature"):
        ee.apply_temperature(np.array([[0.5, 0.5]]), 0.0)
    with pytest.raises(ValueError, match="labels"):
        ee.fit_temperature(np.array([[0.5, 0.5]]), np.array([0, 1]))


def test_bootstrap_interval_pairs_the_samples() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(2000) < 0.85
    b = a.copy()
    b[:10] = ~b[:10]  # the two classifiers differ on 10 of 2,000 samples only
    low, high = ee.bootstrap_interval(a, b)
    assert low <= (a.mean() - b.mean()) <= high
    unpaired = ee.bootstrap_interval(a)
    # paired differences are far less noisy than one accuracy alone
    assert high - low < (unpaired[1] - unpaired[0]) / 3
    with pytest.raises(ValueError, match="same samples"):
        ee.bootstrap_interval(a, b[:-1])
