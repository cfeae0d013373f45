"""Architecture search: the space, the masked supernet against extracted models, costs, search."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tinyml_course.search import (
    ArchConfig,
    Budget,
    Measurement,
    SearchSpace,
    Supernet,
    build_subnet,
    centre_crop,
    config_features,
    config_macs,
    crossover,
    evaluate_subnet,
    evolution_step,
    evolutionary_search,
    extract,
    fit_cost_predictor,
    measure_configs,
    mutate,
    pareto_front,
    random_search,
    resize_images,
    train_supernet,
    within_budget,
)

SPACE = SearchSpace()


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable toy images: the class sets which quadrant is bright."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = rng.random((n, 28, 28, 1)).astype(np.float32) * 0.3
    for i, label in enumerate(y):
        r, c = divmod(int(label), 4)
        x[i, 7 * r : 7 * r + 7, 7 * c : 7 * c + 7] += 0.7
    return x, y


@pytest.fixture(scope="module")
def trained() -> Supernet:
    x, y = _images(1024)
    net = Supernet(SPACE, seed=0)
    train_supernet(
        net,
        x,
        y,
        epochs=3,
        batch_size=64,
        warmup=0.25,
        random_subnets=1,
        distill=False,
        learning_rate=1e-2,
        progress=False,
    )
    return net


# --------------------------------------------------------------------------- space
def test_space_size_extremes_and_sampling_stay_inside() -> None:
    choices = SPACE.choices()
    assert SPACE.size == np.prod([len(v) for v in choices.values()])
    rng = np.random.default_rng(0)
    seen = {SPACE.sample(rng) for _ in range(300)}
    assert all(SPACE.contains(c) for c in seen) and len(seen) > 250
    for gene, options in choices.items():  # every choice of every gene gets drawn
        assert {c.genes()[gene] for c in seen} == set(options)
    assert (
        config_macs(SPACE.min_config) < config_macs(SPACE.sample(1)) < config_macs(SPACE.max_config)
    )


def test_genes_round_trip_and_bad_configs_are_named() -> None:
    config = SPACE.sample(3)
    assert ArchConfig.from_genes(config.genes()) == config
    bad = replace(config, resolution=27)
    with pytest.raises(ValueError, match="resolution=27 is not one of"):
        SPACE.validate(bad)
    with pytest.raises(ValueError, match="one value per stage"):
        ArchConfig(28, 8, (1, 1), (8, 16, 24), (3, 3, 3))
    with pytest.raises(ValueError, match="odd"):
        SearchSpace(kernels=(3, 4))


def test_centre_crop_takes_the_middle_taps() -> None:
    kernel = np.arange(5 * 5 * 2).reshape(5, 5, 2)
    assert np.array_equal(centre_crop(kernel, 3), kernel[1:4, 1:4])
    assert np.array_equal(centre_crop(kernel, 5), kernel)
    with pytest.raises(ValueError, match="even number"):
        centre_crop(kernel, 2)


# --------------------------------------------------------------------------- supernet
def test_supernet_training_teaches_the_largest_and_the_smallest(trained: Supernet) -> None:
    x, y = _images(512, seed=1)
    big = evaluate_subnet(trained, SPACE.max_config, x, y)
    small = evaluate_subnet(trained, SPACE.min_config, x, y)
    assert big > 0.5 and small > 0.2, (big, small)  # chance is 0.1


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_extracted_model_computes_what_the_masked_supernet_computes(
    trained: Supernet, seed: int
) -> None:
    x, _ = _images(64, seed=5)
    config = SPACE.sample(seed) if seed else SPACE.min_config
    model = extract(trained, config)
    assert model.input_shape[1:] == (config.resolution, config.resolution, 1)
    expected = trained.logits(x, config)
    got = model.predict(resize_images(x, config.resolution), verbose=0)
    np.testing.assert_allclose(got, expected, atol=2e-4, rtol=1e-4)


def test_sub_networks_share_the_first_channels_and_the_centre_taps(trained: Supernet) -> None:
    config = replace(SPACE.max_config, kernels=(3, 5, 3), widths=(8, 32, 24))
    model = extract(trained, config)
    dw = model.get_layer("s0b0_dw").get_weights()[0]
    big_dw = trained.blocks[0][0]["dw"]["kernel"].numpy()
    # the folded kernel is the centre crop, scaled per channel by the normalisation
    ratio = dw / centre_crop(big_dw, 3)[:, :, : dw.shape[2], :]
    assert np.allclose(ratio, ratio[0, 0], rtol=1e-4)
    assert model.get_layer("s1b0_pw").get_weights()[0].shape == (1, 1, 8, 32)
    assert model.get_layer("logits").get_weights()[0].shape == (24, 10)


def test_logits_need_calibration_and_matching_configs() -> None:
    net = Supernet(SPACE, seed=1)
    with pytest.raises(RuntimeError, match="calibration"):
        net.logits(np.zeros((2, 28, 28, 1), np.float32), SPACE.min_config)
    with pytest.raises(ValueError, match="not in the search space"):
        net.encode(replace(SPACE.min_config, stem_width=9))


# --------------------------------------------------------------------------- cost
def test_macs_match_the_profiler_on_the_keras_model() -> None:
    from tinyml_course.profiling import profile_model

    for seed in range(4):
        config = SPACE.sample(seed)
        assert config_macs(config) == profile_model(build_subnet(config, SPACE)).macs, str(config)


@pytest.fixture(scope="module")
def measurements(trained: Supernet) -> list[Measurement]:
    x, _ = _images(64, seed=7)
    configs = [SPACE.min_config, SPACE.max_config] + [SPACE.sample(s) for s in range(10, 17)]
    return measure_configs([extract(trained, c) for c in configs], x, configs=configs)


def test_measured_costs_follow_the_analytic_sizes(measurements: list[Measurement]) -> None:
    for m in measurements:
        f = config_features(m.config)
        # flash: the int8 weights and int32 biases are in the file, plus bookkeeping
        assert (
            f["weight_bytes"] + 4 * f["bias_count"] < m.flash_bytes < 3 * f["weight_bytes"] + 20_000
        )
        # RAM: the arena holds at least the activations alive at the worst operator
        assert f["activation_peak"] <= m.arena_bytes < 2 * f["activation_peak"] + 20_000
        assert m.macs == config_macs(m.config)
    assert measurements[0].flash_bytes < measurements[1].flash_bytes
    assert measurements[0].arena_bytes < measurements[1].arena_bytes


def test_the_predictor_fits_and_checks_itself_on_held_out_networks(
    measurements: list[Measurement],
) -> None:
    predictor = fit_cost_predictor(measurements[:6])
    checked = predictor.checked(measurements[6:])
    flash, arena = checked.errors(measurements[6:])
    assert checked.flash_error == pytest.approx(np.abs(flash).max())
    assert checked.flash_error < 0.02  # flash is nearly exact: weights are most of the file
    assert checked.arena_error < 0.35
    with pytest.raises(ValueError, match="at least 3"):
        fit_cost_predictor(measurements[:2])


def test_budget_from_a_board_and_the_check() -> None:
    budget = Budget.from_device("Arduino Nano 33 BLE Sense", flash_fraction=0.5, ram_fraction=0.25)
    assert budget == Budget(1024 * 1024 // 2, 256 * 1024 // 4)
    assert within_budget(budget.flash_bytes, budget.arena_bytes, budget)
    assert not within_budget(budget.flash_bytes + 1, 0, budget)
    assert budget.shrunk(0.5) == Budget(budget.flash_bytes // 2, budget.arena_bytes // 2)
    with pytest.raises(ValueError, match="between 0"):
        Budget.from_device("Arduino Nano 33 BLE Sense", ram_fraction=2)
    with pytest.raises(TypeError, match="must be a Budget"):
        within_budget(1, 1, (10, 10))


# --------------------------------------------------------------------------- search
def test_mutation_and_crossover_stay_in_the_space_and_mix_the_parents() -> None:
    rng = np.random.default_rng(0)
    a, b = SPACE.min_config, SPACE.max_config
    children = [crossover(a, b, rng, space=SPACE) for _ in range(50)]
    for child in children:
        assert all(child.genes()[g] in (a.genes()[g], b.genes()[g]) for g in child.genes())
    assert len(set(children)) > 40
    mutants = [mutate(a, SPACE, rng, probability=1.0) for _ in range(30)]
    assert all(SPACE.contains(m) for m in mutants) and len(set(mutants)) > 20
    assert mutate(a, SPACE, rng, probability=0.0) == a


def test_evolution_step_keeps_the_fittest_and_adds_feasible_new_children() -> None:
    rng = np.random.default_rng(1)
    population = [SPACE.sample(rng) for _ in range(10)]
    fitness = [float(config_macs(c)) for c in population]
    limit = int(np.median([config_macs(c) for c in population])) * 3

    def feasible(c: ArchConfig) -> bool:
        return config_macs(c) <= limit

    out = evolution_step(population, fitness, SPACE, rng, parents=3, feasible=feasible)
    order = np.argsort(fitness)[::-1]
    assert out[:3] == [population[i] for i in order[:3]]
    assert len(out) == 10 and len(set(out)) == 10
    assert all(feasible(c) for c in out[3:])
    with pytest.raises(ValueError, match="parents must be at most"):
        evolution_step(population, fitness, SPACE, rng, parents=11)


def test_evolution_beats_random_search_on_a_known_landscape() -> None:
    # Fitness: closeness to a target network; feasibility: a MAC limit the target meets.
    target = ArchConfig(24, 12, (2, 3, 1), (12, 32, 24), (5, 3, 5))

    def fitness(c: ArchConfig) -> float:
        return float(sum(c.genes()[g] == v for g, v in target.genes().items()))

    def feasible(c: ArchConfig) -> bool:
        return config_macs(c) <= config_macs(target) * 1.5

    evo = [
        evolutionary_search(
            SPACE, fitness, population=12, generations=8, parents=4, feasible=feasible, seed=s
        )
        for s in range(3)
    ]
    rnd = [
        random_search(SPACE, fitness, samples=len(e.configs), feasible=feasible, seed=s)
        for s, e in enumerate(evo)
    ]
    assert all(feasible(c) for e in evo for c in e.configs)
    assert np.mean([e.best_score for e in evo]) > np.mean([r.best_score for r in rnd])
    assert all(np.all(np.diff(e.best_so_far()) >= 0) for e in evo)


def test_pareto_front_keeps_exactly_the_undominated() -> None:
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.random(200), rng.random(200)])  # accuracy (max), bytes (min)
    front = set(pareto_front(points, [True, False]).tolist())
    for i, p in enumerate(points):
        dominated = any(
            q[0] >= p[0] and q[1] <= p[1] and (q[0] > p[0] or q[1] < p[1]) for q in points
        )
        assert (i in front) == (not dominated)
    with pytest.raises(ValueError, match="one maximize flag"):
        pareto_front(points, [True])
