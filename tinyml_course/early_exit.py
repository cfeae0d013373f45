"""Early exits and cascades: stop computing as soon as a prediction is confident enough.

A *multi-exit* network (BranchyNet, Teerapittayanon et al. 2016; Scardapane et al. 2020)
is a backbone cut into blocks with a small classifier (an *exit*) after each block. At
inference, sample by sample, block ``k`` runs, exit ``k`` predicts, and an *exit rule*
decides whether to stop there or to run block ``k + 1``. Easy samples leave early, so the
*average* cost falls while the hard samples still get the whole network.

Exit rules, for the softmax ``p`` of an exit and a threshold ``t``:

* **confidence**: leave when ``max_i p_i >= t``;
* **entropy**: leave when ``H(p) = -sum_i p_i log p_i <= t`` (in nats; ``log C`` is the
  entropy of a uniform guess over ``C`` classes).

The last exit always answers. A sample that leaves at exit ``k`` paid for blocks
``1..k`` and exits ``1..k`` (every earlier exit was computed and rejected), which is
:attr:`MultiExitNetwork.exit_macs`. A *cascade* (a tiny model gating a bigger one) is the
same policy with two exits whose costs are ``small`` and ``small + large``
(:func:`cascade_costs`).

Deployment: :func:`split_stages` cuts the network into one Keras model per block (stage
``k`` maps the previous block's feature map to ``[exit k logits, block k features]``),
:func:`convert_stages` makes each an int8 ``.tflite``, and :class:`StagedRunner` runs them
sample by sample with the exit rule in the loop, so later stages really only run when
needed. A single-stage runner runs the full network through the same loop, for a fair
latency comparison.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyml_course.quantization import dequantize, quantize

RULES = ("confidence", "entropy")


# --------------------------------------------------------------------------- exit rules
def softmax(logits: Any) -> np.ndarray:
    """Row-wise softmax of logits ``(N, C)`` (numerically stable: the max is subtracted first).

    >>> softmax(np.array([[0.0, 0.0]]))
    array([[0.5, 0.5]])
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, C) with C >= 2; got shape {z.shape}.")
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_probabilities(name: str, p: Any) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 1:
        p = p[None]
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, C) with C >= 2 classes; got shape {p.shape}.")
    if np.any(p < -1e-6) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError(
            f"{name} must hold probabilities (non-negative rows summing to 1); "
            "apply softmax() to logits first."
        )
    return p


def max_confidence(probabilities: Any) -> np.ndarray:
    """The confidence of each prediction: ``max_i p_i`` for every row of ``(N, C)`` probabilities."""
    return _check_probabilities("probabilities", probabilities).max(axis=1)


def entropy(probabilities: Any) -> np.ndarray:
    """Shannon entropy ``H(p) = -sum_i p_i ln p_i`` (nats) of each row of ``(N, C)`` probabilities.

    ``0 ln 0`` counts as 0. A one-hot row has entropy 0, a uniform one ``ln C``.

    >>> float(entropy(np.array([[0.5, 0.5]]))[0]).__round__(4)
    0.6931
    """
    p = _check_probabilities("probabilities", probabilities)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


def should_exit(probabilities: Any, threshold: float, rule: str = "confidence") -> np.ndarray:
    """Boolean mask: which rows of one exit's probabilities leave under ``rule`` and ``threshold``."""
    _check_rule(rule)
    if rule == "confidence":
        return max_confidence(probabilities) >= threshold
    return entropy(probabilities) <= threshold


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule={rule!r}; choose one of {RULES}.")


def _check_exits(exit_probabilities: Sequence[Any]) -> list[np.ndarray]:
    if isinstance(exit_probabilities, np.ndarray) and exit_probabilities.ndim == 3:
        exit_probabilities = list(exit_probabilities)
    if not isinstance(exit_probabilities, (list, tuple)) or len(exit_probabilities) < 2:
        raise ValueError(
            "exit_probabilities must be a list with one (N, C) array per exit and at least two exits; "
            f"got {type(exit_probabilities).__name__} of length {len(exit_probabilities) if hasattr(exit_probabilities, '__len__') else '?'}."
        )
    arrays = [
        _check_probabilities(f"exit_probabilities[{k}]", p)
        for k, p in enumerate(exit_probabilities)
    ]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"every exit must give the same (N, C) shape; got {[a.shape for a in arrays]}."
        )
    return arrays


# --------------------------------------------------------------------------- policies
def exit_indices(
    exit_probabilities: Sequence[Any], threshold: float, rule: str = "confidence"
) -> np.ndarray:
    """The exit each sample leaves at: the first exit whose rule fires, else the last.

    Parameters
    ----------
    exit_probabilities : list of (N, C) arrays
        Softmax outputs of every exit, in network order.
    threshold : float
        Confidence threshold (leave when ``max p >= threshold``) or entropy threshold
        (leave when ``H(p) <= threshold``), depending on ``rule``.
    rule : {"confidence", "entropy"}

    Returns
    -------
    numpy.ndarray of int, shape (N,)
    """
    arrays = _check_exits(exit_probabilities)
    _check_rule(rule)
    n = arrays[0].shape[0]
    chosen = np.full(n, len(arrays) - 1, dtype=np.int64)
    undecided = np.ones(n, dtype=bool)
    for k, p in enumerate(arrays[:-1]):
        leave = undecided & should_exit(p, threshold, rule)
        chosen[leave] = k
        undecided &= ~leave
    return chosen


@dataclass(frozen=True)
class PolicyResult:
    """What an exit policy achieves on a labelled set.

    Attributes
    ----------
    threshold : float
    rule : str
    accuracy : float
        Top-1 accuracy of the answers given at the chosen exits.
    average_macs : float
        Mean MACs paid per sample.
    exit_fractions : numpy.ndarray
        Fraction of samples leaving at each exit (sums to 1).
    """

    threshold: float
    rule: str
    accuracy: float
    average_macs: float
    exit_fractions: np.ndarray = field(repr=False)

    def __str__(self) -> str:
        fractions = ", ".join(f"{f:.1%}" for f in self.exit_fractions)
        return (
            f"{self.rule} threshold {self.threshold:.4g}: accuracy {self.accuracy:.4f}, "
            f"average MACs {self.average_macs:,.0f}, exits [{fractions}]"
        )


def _check_costs(exit_macs: Sequence[float], num_exits: int) -> np.ndarray:
    costs = np.asarray(exit_macs, dtype=np.float64).reshape(-1)
    if costs.shape != (num_exits,) or np.any(costs < 0):
        raise ValueError(
            f"exit_macs must hold one non-negative cost per exit ({num_exits}); got {list(costs)}. "
            "Use the cumulative MACs to reach each exit (MultiExitNetwork.exit_macs)."
        )
    return costs


def expected_macs(exit_fractions: Sequence[float], exit_macs: Sequence[float]) -> float:
    """Average cost of a policy: ``sum_k f_k * MACs_k`` for exit fractions ``f`` (summing to 1).

    >>> expected_macs([0.5, 0.5], [100, 300])
    200.0
    """
    fractions = np.asarray(exit_fractions, dtype=np.float64).reshape(-1)
    if np.any(fractions < 0) or not np.isclose(fractions.sum(), 1.0, atol=1e-6):
        raise ValueError(
            f"exit_fractions must be non-negative and sum to 1; got {list(fractions)}."
        )
    costs = _check_costs(exit_macs, len(fractions))
    return float(fractions @ costs)


def evaluate_policy(
    exit_probabilities: Sequence[Any],
    labels: Any,
    exit_macs: Sequence[float],
    threshold: float,
    rule: str = "confidence",
) -> PolicyResult:
    """Accuracy, average MACs and exit fractions of one threshold.

    Parameters
    ----------
    exit_probabilities : list of (N, C) arrays
        Softmax outputs of every exit.
    labels : array of int, shape (N,)
    exit_macs : sequence of numbers
        Cumulative MACs a sample has paid when it leaves at each exit.
    threshold : float
    rule : {"confidence", "entropy"}

    Examples
    --------
    >>> p = [np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([[0.2, 0.8], [0.1, 0.9]])]
    >>> r = evaluate_policy(p, np.array([0, 1]), [10, 30], 0.8)
    >>> r.accuracy, r.average_macs
    (1.0, 20.0)
    """
    arrays = _check_exits(exit_probabilities)
    y = np.asarray(labels).reshape(-1)
    if len(y) != arrays[0].shape[0]:
        raise ValueError(
            f"labels has {len(y)} entries but the exits give {arrays[0].shape[0]} samples."
        )
    costs = _check_costs(exit_macs, len(arrays))
    chosen = exit_indices(arrays, threshold, rule)
    stacked = np.stack([a.argmax(axis=1) for a in arrays])  # (exits, N)
    predictions = stacked[chosen, np.arange(len(y))]
    fractions = np.bincount(chosen, minlength=len(arrays)) / max(len(y), 1)
    return PolicyResult(
        threshold=float(threshold),
        rule=rule,
        accuracy=float(np.mean(predictions == y)),
        average_macs=float(costs[chosen].mean()),
        exit_fractions=fractions,
    )


def default_thresholds(
    rule: str = "confidence", num_classes: int = 10, points: int = 41
) -> np.ndarray:
    """A threshold grid that spans a rule's range from "everyone leaves first" to "nobody does"."""
    _check_rule(rule)
    if rule == "confidence":
        # dense near 1, where the interesting trade-offs are
        return np.unique(
            np.concatenate(
                [np.linspace(0.3, 0.9, points // 2), 1 - np.logspace(-1, -4, points - points // 2)]
            )
        )
    return np.unique(np.concatenate([np.logspace(-4, 0, points - 1), [np.log(num_classes)]]))


def sweep_thresholds(
    exit_probabilities: Sequence[Any],
    labels: Any,
    exit_macs: Sequence[float],
    thresholds: Sequence[float] | None = None,
    rule: str = "confidence",
) -> list[PolicyResult]:
    """:func:`evaluate_policy` at every threshold (a default grid when ``thresholds`` is None)."""
    arrays = _check_exits(exit_probabilities)
    if thresholds is None:
        thresholds = default_thresholds(rule, arrays[0].shape[1])
    return [evaluate_policy(arrays, labels, exit_macs, float(t), rule) for t in thresholds]


def choose_operating_point(results: Sequence[PolicyResult], min_accuracy: float) -> PolicyResult:
    """The cheapest policy (lowest average MACs) whose accuracy is at least ``min_accuracy``.

    Pick it on a validation split, then report the chosen threshold's result on the test set.

    Raises
    ------
    ValueError
        If no policy reaches ``min_accuracy``.
    """
    if not results:
        raise ValueError("results is empty; pass the output of sweep_thresholds().")
    feasible = [r for r in results if r.accuracy >= min_accuracy]
    if not feasible:
        best = max(r.accuracy for r in results)
        raise ValueError(
            f"no threshold reaches min_accuracy={min_accuracy:.4f} (best is {best:.4f}); "
            "lower the target or sweep thresholds closer to 'nobody leaves early'."
        )
    return min(feasible, key=lambda r: (r.average_macs, -r.accuracy))


def apply_temperature(probabilities: Any, temperature: float) -> np.ndarray:
    """Softmax outputs rescaled by a temperature: ``softmax(log(p) / T)``.

    ``log(p)`` equals the logits up to a constant per sample, which softmax ignores, so
    the probabilities are enough. ``T > 1`` softens them, ``T < 1`` sharpens them; the
    predicted class never changes.

    >>> apply_temperature(np.array([[0.8, 0.2]]), 2.0).round(3)
    array([[0.667, 0.333]])
    """
    p = _check_probabilities("probabilities", probabilities)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number; got {temperature!r}.")
    return softmax(np.log(np.clip(p, 1e-12, 1.0)) / float(temperature))


def fit_temperature(probabilities: Any, labels: Any) -> float:
    """The temperature that makes one exit's confidences honest on held-out data.

    Temperature scaling (Guo et al. 2017): the ``T`` that minimises the negative log
    likelihood of the true labels under :func:`apply_temperature`, searched on a
    logarithmic grid from 0.05 to 20 and refined around the best point. Fit it on a
    validation split, never on the test set.
    """
    p = _check_probabilities("probabilities", probabilities)
    y = np.asarray(labels).reshape(-1)
    if len(y) != len(p):
        raise ValueError(f"labels has {len(y)} entries but probabilities has {len(p)} rows.")
    log_p = np.log(np.clip(p, 1e-12, 1.0))

    def nll(t: float) -> float:
        z = log_p / t
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))).mean())

    grid = np.logspace(np.log10(0.05), np.log10(20.0), 61)
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = np.linspace(best / 1.15, best * 1.15, 41)
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def bootstrap_interval(
    correct: Any,
    reference_correct: Any | None = None,
    *,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """A percentile bootstrap interval of an accuracy, or of an accuracy difference.

    Parameters
    ----------
    correct : array of bool, shape (N,)
        Whether each sample was classified right.
    reference_correct : array of bool, shape (N,), optional
        The same for another classifier on the **same** samples: the interval is then of
        ``accuracy - reference accuracy``, resampling the pairs together.
    resamples, level, seed
        Number of bootstrap resamples, the interval's coverage, the random seed.

    Returns
    -------
    (low, high) : tuple of float

    Examples
    --------
    >>> low, high = bootstrap_interval(np.arange(1000) % 10 != 0)
    >>> bool(low < 0.9 < high)
    True
    """
    a = np.asarray(correct, dtype=np.float64).reshape(-1)
    if reference_correct is not None:
        b = np.asarray(reference_correct, dtype=np.float64).reshape(-1)
        if b.shape != a.shape:
            raise ValueError(
                f"reference_correct has {b.size} entries but correct has {a.size}; "
                "both must describe the same samples."
            )
        a = a - b
    if a.size == 0:
        raise ValueError("correct is empty.")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1; got {level!r}.")
    rng = np.random.default_rng(seed)
    means = np.array([a[rng.integers(0, a.size, a.size)].mean() for _ in range(int(resamples))])
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def cascade_costs(small_macs: float, large_macs: float) -> list[float]:
    """Costs of a two-model cascade: the small model alone, or the small then the large one.

    >>> cascade_costs(1_000, 50_000)
    [1000.0, 51000.0]
    """
    if small_macs < 0 or large_macs < 0:
        raise ValueError(
            f"MACs must be non-negative; got small_macs={small_macs}, large_macs={large_macs}."
        )
    return [float(small_macs), float(small_macs + large_macs)]


# --------------------------------------------------------------------------- the network
@dataclass
class MultiExitNetwork:
    """A backbone cut into blocks, with one exit classifier after each block.

    Attributes
    ----------
    blocks : list of keras.Sequential
        Backbone blocks in order; block ``k`` maps block ``k-1``'s features to its own.
    heads : list of keras.Sequential
        Exit classifiers (logits); head ``k`` reads block ``k``'s features.
    model : keras.Model
        The joint model: image -> ``[logits of exit 1, ..., logits of the final exit]``,
        trained with one weighted loss per exit.
    """

    blocks: list[Any]
    heads: list[Any]
    model: Any

    @property
    def num_exits(self) -> int:
        return len(self.heads)

    @property
    def block_macs(self) -> list[int]:
        """MACs of each backbone block."""
        from tinyml_course.profiling import layer_macs

        return [sum(layer_macs(layer) for layer in block.layers) for block in self.blocks]

    @property
    def head_macs(self) -> list[int]:
        """MACs of each exit classifier."""
        from tinyml_course.profiling import layer_macs

        return [sum(layer_macs(layer) for layer in head.layers) for head in self.heads]

    @property
    def exit_macs(self) -> list[int]:
        """Cumulative MACs paid by a sample leaving at each exit (blocks and exits up to it)."""
        costs, total = [], 0
        for block, head in zip(self.block_macs, self.head_macs, strict=True):
            total += block + head
            costs.append(total)
        return costs

    @property
    def full_macs(self) -> int:
        """MACs of the plain network: every block and the final exit only."""
        return sum(self.block_macs) + self.head_macs[-1]


def build_multi_exit_cnn(
    input_shape: tuple[int, int, int] = (28, 28, 1),
    num_classes: int = 10,
    *,
    widths: Sequence[int] = (8, 16, 64),
    dropout: float = 0.3,
    name: str = "multi_exit_cnn",
) -> MultiExitNetwork:
    """A three-block CNN with an exit after each block, the late block carrying most MACs.

    * block 1: ``Conv2D(widths[0], 3) -> MaxPool``; exit 1: ``MaxPool -> Flatten -> Dense``.
    * block 2: ``Conv2D(widths[1], 3) -> MaxPool``; exit 2: ``Flatten -> Dense``.
    * block 3: ``Conv2D(widths[2], 3) -> Conv2D(widths[2], 3) -> MaxPool``; final exit:
      ``Flatten -> Dense(2 * widths[2], relu) -> Dense``.

    Real early-exit designs put cheap exits on a backbone whose late layers are the
    expensive ones, so leaving early saves most of the work.

    Parameters
    ----------
    input_shape : (height, width, channels)
    num_classes : int
    widths : three ints
        Filters of blocks 1, 2 and 3.

    Returns
    -------
    MultiExitNetwork
        Built and uncompiled; compile ``.model`` with :func:`compile_multi_exit`.
    """
    from tinyml_course._setup import get_keras

    if len(input_shape) != 3 or any(int(d) <= 0 for d in input_shape):
        raise ValueError(f"input_shape must be (height, width, channels); got {input_shape}.")
    if min(input_shape[:2]) < 8:
        raise ValueError(
            f"input_shape {input_shape} is too small for three poolings; use at least 8x8."
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2; got {num_classes}.")
    widths = tuple(int(w) for w in widths)
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(
            f"widths must be three positive ints (filters of blocks 1-3); got {widths}."
        )
    keras = get_keras()
    layers = keras.layers
    w1, w2, w3 = widths
    blocks = [
        keras.Sequential(
            [
                layers.Conv2D(w1, 3, padding="same", activation="relu", name="b1_conv"),
                layers.MaxPooling2D(name="b1_pool"),
            ],
            name="block1",
        ),
        keras.Sequential(
            [
                layers.Conv2D(w2, 3, padding="same", activation="relu", name="b2_conv"),
                layers.MaxPooling2D(name="b2_pool"),
            ],
            name="block2",
        ),
        keras.Sequential(
            [
                layers.Conv2D(w3, 3, padding="same", activation="relu", name="b3_conv1"),
                layers.Conv2D(w3, 3, padding="same", activation="relu", name="b3_conv2"),
                layers.MaxPooling2D(name="b3_pool"),
            ],
            name="block3",
        ),
    ]
    heads = [
        keras.Sequential(
            [
                layers.MaxPooling2D(name="e1_pool"),
                layers.Flatten(name="e1_flat"),
                layers.Dense(num_classes, name="e1_logits"),
            ],
            name="exit1",
        ),
        keras.Sequential(
            [layers.Flatten(name="e2_flat"), layers.Dense(num_classes, name="e2_logits")],
            name="exit2",
        ),
        keras.Sequential(
            [
                layers.Flatten(name="e3_flat"),
                layers.Dropout(dropout, name="e3_dropout"),
                layers.Dense(2 * w3, activation="relu", name="e3_dense"),
                layers.Dropout(dropout, name="e3_dropout2"),
                layers.Dense(num_classes, name="e3_logits"),
            ],
            name="final",
        ),
    ]
    inputs = keras.Input(shape=tuple(int(d) for d in input_shape), name="image")
    features, outputs = inputs, []
    for block, head in zip(blocks, heads, strict=True):
        features = block(features)
        outputs.append(head(features))
    model = keras.Model(inputs, outputs, name=name)
    return MultiExitNetwork(blocks=blocks, heads=heads, model=model)


def compile_multi_exit(
    network: MultiExitNetwork,
    *,
    loss_weights: Sequence[float] | None = None,
    learning_rate: Any = 2e-3,
) -> Any:
    """Compile the joint model: one cross-entropy per exit, summed with ``loss_weights``.

    The total loss is ``L = sum_k w_k CE(y, softmax(z_k))``; by default every exit weighs
    ``0.3`` and the final one ``1.0``.

    Parameters
    ----------
    network : MultiExitNetwork
    loss_weights : sequence of float, optional
        One weight ``w_k`` per exit.
    learning_rate : float or keras.optimizers.schedules.LearningRateSchedule
        Adam's learning rate (a schedule such as ``CosineDecay`` works too).

    Returns
    -------
    keras.Model
        The compiled ``network.model``.
    """
    from tinyml_course._setup import get_keras

    if not isinstance(network, MultiExitNetwork):
        raise TypeError(
            f"network must be a MultiExitNetwork (from build_multi_exit_cnn); got {type(network).__name__}."
        )
    k = network.num_exits
    weights = [0.3] * (k - 1) + [1.0] if loss_weights is None else [float(w) for w in loss_weights]
    if len(weights) != k or min(weights) < 0 or max(weights) == 0:
        raise ValueError(
            f"loss_weights must be {k} non-negative numbers, not all zero; got {loss_weights}."
        )
    keras = get_keras()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    network.model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=[loss] * k,
        loss_weights=weights,
        metrics=["accuracy"],
    )
    return network.model


def exit_probabilities(
    network: MultiExitNetwork, x: Any, *, batch_size: int = 512
) -> list[np.ndarray]:
    """Softmax outputs of every exit for inputs ``x`` (one ``(N, C)`` array per exit)."""
    logits = network.model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    return [softmax(z) for z in logits]


# --------------------------------------------------------------------------- stages
def split_stages(network: MultiExitNetwork) -> list[Any]:
    """One Keras model per block, sharing the trained weights.

    Stage ``k`` (not the last) maps block ``k-1``'s feature map (the image for ``k = 1``)
    to ``[exit k logits, block k features]``; the last stage returns only the final logits.
    """
    from tinyml_course._setup import get_keras

    if not isinstance(network, MultiExitNetwork):
        raise TypeError(f"network must be a MultiExitNetwork; got {type(network).__name__}.")
    keras = get_keras()
    stages = []
    shape = tuple(int(d) for d in network.model.inputs[0].shape[1:])
    for k, (block, head) in enumerate(zip(network.blocks, network.heads, strict=True)):
        inputs = keras.Input(shape=shape, name="image" if k == 0 else f"features{k}")
        features = block(inputs)
        logits = head(features)
        last = k == network.num_exits - 1
        stages.append(
            keras.Model(inputs, logits if last else [logits, features], name=f"stage{k + 1}")
        )
        shape = tuple(int(d) for d in features.shape[1:])
    return stages


def full_network(network: MultiExitNetwork) -> Any:
    """The plain network without early exits: every block, then the final exit."""
    from tinyml_course._setup import get_keras

    keras = get_keras()
    inputs = keras.Input(
        shape=tuple(int(d) for d in network.model.inputs[0].shape[1:]), name="image"
    )
    features = inputs
    for block in network.blocks:
        features = block(features)
    return keras.Model(inputs, network.heads[-1](features), name="full_network")


def convert_stages(
    stages: Sequence[Any], representative_images: Any, *, samples: int = 200
) -> list[bytes]:
    """Full-integer (int8) ``.tflite`` of every stage.

    Stage ``k`` is calibrated on the feature maps that the float stages ``1..k-1`` produce
    from ``representative_images``, i.e. on the inputs it will really see.
    """
    from tinyml_course.tflite import convert_to_tflite

    if not stages:
        raise ValueError("stages is empty; pass split_stages(network).")
    data = np.asarray(representative_images, np.float32)[:samples]
    if len(data) == 0:
        raise ValueError("representative_images is empty; pass a few hundred training inputs.")
    converted = []
    for k, stage in enumerate(stages):
        converted.append(
            convert_to_tflite(
                stage, "int8", representative_data=data, representative_samples=samples
            )
        )
        if k < len(stages) - 1:
            data = stage.predict(data, verbose=0)[1]
    return converted


@dataclass
class _Stage:
    interpreter: Any
    input_index: int
    input_scale: float
    input_zero_point: int
    logits_index: int
    logits_scale: float
    logits_zero_point: int
    features_index: int | None
    features_scale: float
    features_zero_point: int


def _load_stage(model_content: bytes, last: bool, reference_kernels: bool) -> _Stage:
    from tinyml_course.tflite import TFLiteModel

    model = TFLiteModel(model_content, num_threads=1, reference_kernels=reference_kernels)
    interpreter = model.interpreter
    runner = interpreter.get_signature_runner()
    inputs = list(runner.get_input_details().values())
    outputs = runner.get_output_details()
    if len(inputs) != 1 or len(outputs) != (1 if last else 2):
        raise ValueError(
            f"a {'last' if last else 'middle'} stage needs 1 input and {1 if last else 2} outputs; got "
            f"{len(inputs)} and {len(outputs)}. Build the stages with split_stages()."
        )
    if last:
        logits = next(iter(outputs.values()))
        feats = None
    else:
        # the features output is the 4-D one, the logits the 2-D one
        ranked = sorted(outputs.values(), key=lambda d: len(d["shape"]))
        logits, feats = ranked[0], ranked[1]
    for detail in [inputs[0], logits] + ([feats] if feats else []):
        if detail["dtype"] != np.int8:
            raise ValueError(
                "stages must be full-integer int8 models; convert them with convert_stages()."
            )
    return _Stage(
        interpreter,
        int(inputs[0]["index"]),
        float(inputs[0]["quantization"][0]),
        int(inputs[0]["quantization"][1]),
        int(logits["index"]),
        float(logits["quantization"][0]),
        int(logits["quantization"][1]),
        None if feats is None else int(feats["index"]),
        0.0 if feats is None else float(feats["quantization"][0]),
        0 if feats is None else int(feats["quantization"][1]),
    )


@dataclass(frozen=True)
class StagedResult:
    """Outcome of running a staged model sample by sample.

    Attributes
    ----------
    accuracy : float
    average_macs : float
    exit_fractions : numpy.ndarray
    exits : numpy.ndarray
        The exit each sample left at.
    predictions : numpy.ndarray
    latencies_ms : numpy.ndarray
        Wall-clock time of each sample (input quantization, every stage run, the exit rule).
    """

    accuracy: float
    average_macs: float
    exit_fractions: np.ndarray = field(repr=False)
    exits: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    latencies_ms: np.ndarray = field(repr=False)

    @property
    def mean_latency_ms(self) -> float:
        return float(self.latencies_ms.mean())

    @property
    def median_latency_ms(self) -> float:
        return float(np.median(self.latencies_ms))


class StagedRunner:
    """Run int8 stages one sample at a time, stopping at the first exit whose rule fires.

    Parameters
    ----------
    stages : list of bytes
        int8 ``.tflite`` stages from :func:`convert_stages` (one stage: a plain network
        that always runs to its end).
    exit_macs : sequence of numbers
        Cumulative MACs of leaving at each stage's exit.
    threshold : float
    rule : {"confidence", "entropy"}
    reference_kernels : bool
        Use LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``), the plain loops
        the microcontroller runtime also runs, whose time grows with the MACs as on an MCU.
        By default LiteRT's optimized kernels (XNNPACK) run.

    Between stages the int8 feature map is handed over directly when both stages use the
    same quantization, and requantized (``q' = round((q - zp) * s / s') + zp'``) otherwise.
    Every interpreter is single-threaded, like a microcontroller.
    """

    def __init__(
        self,
        stages: Sequence[bytes],
        exit_macs: Sequence[float],
        threshold: float = 1.0,
        rule: str = "confidence",
        *,
        reference_kernels: bool = False,
    ) -> None:
        if not stages:
            raise ValueError("stages is empty; pass the int8 stages from convert_stages().")
        _check_rule(rule)
        self._stages = [
            _load_stage(s, k == len(stages) - 1, reference_kernels) for k, s in enumerate(stages)
        ]
        self.exit_macs = _check_costs(exit_macs, len(stages))
        self.threshold = float(threshold)
        self.rule = rule

    def _leave(self, logits: np.ndarray) -> bool:
        z = logits - logits.max()
        p = np.exp(z)
        p /= p.sum()
        if self.rule == "confidence":
            return bool(p.max() >= self.threshold)
        nz = p[p > 0]
        return bool(-(nz * np.log(nz)).sum() <= self.threshold)

    def run_one(self, image: np.ndarray) -> tuple[int, int]:
        """Classify one float image ``(H, W, C)``; return ``(predicted class, exit index)``."""
        first = self._stages[0]
        q = quantize(image, first.input_scale, first.input_zero_point, compute_dtype=np.float32)[
            None
        ]
        last = len(self._stages) - 1
        for k, stage in enumerate(self._stages):
            stage.interpreter.set_tensor(stage.input_index, q)
            stage.interpreter.invoke()
            raw = stage.interpreter.get_tensor(stage.logits_index)[0]
            logits = dequantize(raw, stage.logits_scale, stage.logits_zero_point)
            if k == last or self._leave(logits):
                return int(np.argmax(logits)), k
            q = stage.interpreter.get_tensor(stage.features_index)
            nxt = self._stages[k + 1]
            if (
                nxt.input_scale != stage.features_scale
                or nxt.input_zero_point != stage.features_zero_point
            ):
                real = dequantize(q, stage.features_scale, stage.features_zero_point)
                q = quantize(real, nxt.input_scale, nxt.input_zero_point, compute_dtype=np.float32)
        raise AssertionError("unreachable")  # pragma: no cover

    def evaluate(self, x: Any, y: Any, *, warmup: int = 20) -> StagedResult:
        """Run every sample of ``x`` alone, timing each; compare with labels ``y``."""
        x = np.asarray(x, np.float32)
        y = np.asarray(y).reshape(-1)
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"x and y must be non-empty and equally long; got {len(x)} and {len(y)}."
            )
        for image in x[:warmup]:
            self.run_one(image)
        predictions = np.empty(len(x), np.int64)
        exits = np.empty(len(x), np.int64)
        times = np.empty(len(x))
        for i, image in enumerate(x):
            start = time.perf_counter()
            predictions[i], exits[i] = self.run_one(image)
            times[i] = (time.perf_counter() - start) * 1000
        fractions = np.bincount(exits, minlength=len(self._stages)) / len(x)
        return StagedResult(
            accuracy=float(np.mean(predictions == y)),
            average_macs=float(self.exit_macs[exits].mean()),
            exit_fractions=fractions,
            exits=exits,
            predictions=predictions,
            latencies_ms=times,
        )
