"""Hardware-aware architecture search on a once-for-all supernet.

A **supernet** (Cai et al. 2020, *Once-for-All*) holds the weights of the largest network of a
search space; every smaller network of the space (fewer blocks, fewer channels, smaller
kernels, a lower input resolution) reuses a part of them: the first channels of each layer and
the centre of each kernel. Trained once (the **sandwich rule**: the largest, the smallest and a
few random sub-networks at every step, the small ones distilled from the largest), it gives
every sub-network an accuracy without retraining, so a search can try hundreds of them against a
microcontroller's budget (Lin et al. 2020, *MCUNet*) and keep the best that fits.

The search space (:class:`SearchSpace`, :class:`ArchConfig`): an input resolution, a stride-1
3x3 stem convolution of elastic width, then stages of depthwise-separable blocks (depthwise
``k x k`` then pointwise 1x1, each with ReLU); the first block of a stage halves the resolution,
the later ones add their input back (a residual), so dropping them leaves the identity. Each stage
has an elastic depth, width and kernel size. A global average pooling and a dense layer classify.

One function per idea:

* the space and its configurations: :class:`SearchSpace` (``sample``, ``contains``,
  ``validate``), :class:`ArchConfig`, :func:`centre_crop`;
* the supernet: :class:`Supernet` (shared max-size weights; a masked forward pass that runs any
  sub-network), :func:`train_supernet` (sandwich rule, in-place distillation),
  :func:`evaluate_subnet`;
* sub-networks as standalone Keras models: :func:`build_subnet` (fresh weights),
  :func:`subnet_weights` and :func:`extract` (the supernet's weights, copied);
* cost: :func:`config_macs`, :func:`config_features` (analytic), :func:`measure_configs` (int8
  ``.tflite`` bytes and tflite-micro's measured arena), :class:`CostPredictor` with
  :func:`fit_cost_predictor`, :class:`Budget` and :func:`within_budget`;
* search: :func:`mutate`, :func:`crossover`, :func:`evolution_step`, :func:`random_search`,
  :func:`evolutionary_search` and :func:`pareto_front`.

Examples
--------
>>> space = SearchSpace()
>>> config = space.sample(np.random.default_rng(0))
>>> space.contains(config), config_macs(space.min_config) < config_macs(space.max_config)
(True, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

import tinyml_course  # noqa: F401  (configures Keras 2 before TensorFlow loads)
from tinyml_course.patches import _check_int

_CLASSES = 10
_EPSILON = 1e-3


# --------------------------------------------------------------------------- validation
def _check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number; got {value!r} ({type(value).__name__}).")
    if not low <= float(value) <= high:
        raise ValueError(f"{name} must be between {low} and {high}; got {value}.")
    return float(value)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(_check_int("seed", seed))


# --------------------------------------------------------------------------- the search space
@dataclass(frozen=True)
class ArchConfig:
    """One network of the search space.

    Parameters
    ----------
    resolution : int
        Input side in pixels (the 28 x 28 image is resized to it).
    stem_width : int
        Output channels of the 3x3 stem convolution.
    depths, widths, kernels : tuple of int
        Per stage: blocks, channels of every block's pointwise output, depthwise kernel size.

    Examples
    --------
    >>> str(ArchConfig(24, 8, (1, 2, 1), (8, 16, 24), (3, 5, 3)))
    'r24 s8 d1-2-1 w8-16-24 k3-5-3'
    """

    resolution: int
    stem_width: int
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    kernels: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("depths", "widths", "kernels"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)):
                raise TypeError(f"{name} must be a tuple with one int per stage; got {value!r}.")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if not len(self.depths) == len(self.widths) == len(self.kernels) >= 1:
            raise ValueError(
                "depths, widths and kernels need one value per stage each; got "
                f"{len(self.depths)}, {len(self.widths)} and {len(self.kernels)} values."
            )

    def __str__(self) -> str:
        def join(values: tuple[int, ...]) -> str:
            return "-".join(str(v) for v in values)

        return (
            f"r{self.resolution} s{self.stem_width} d{join(self.depths)} "
            f"w{join(self.widths)} k{join(self.kernels)}"
        )

    def genes(self) -> dict[str, int]:
        """The configuration as named genes (what mutation and crossover act on)."""
        out = {"resolution": self.resolution, "stem_width": self.stem_width}
        for s, (d, w, k) in enumerate(zip(self.depths, self.widths, self.kernels, strict=True)):
            out[f"depth{s}"], out[f"width{s}"], out[f"kernel{s}"] = d, w, k
        return out

    @classmethod
    def from_genes(cls, genes: dict[str, int]) -> ArchConfig:
        """Inverse of :meth:`genes`."""
        stages = sum(1 for key in genes if key.startswith("depth"))
        return cls(
            genes["resolution"],
            genes["stem_width"],
            tuple(genes[f"depth{s}"] for s in range(stages)),
            tuple(genes[f"width{s}"] for s in range(stages)),
            tuple(genes[f"kernel{s}"] for s in range(stages)),
        )


@dataclass(frozen=True)
class SearchSpace:
    """The choices of every elastic dimension (all values sorted ascending).

    Parameters
    ----------
    resolutions, stem_widths, depths, kernels : tuple of int
        The choices shared by every stage (``depths``, ``kernels``) or of the whole network.
    widths : tuple of tuple of int
        Each stage's channel choices; its length is the number of stages.

    Examples
    --------
    >>> SearchSpace().size
    52488
    """

    resolutions: tuple[int, ...] = (20, 24, 28)
    stem_widths: tuple[int, ...] = (8, 12, 16)
    depths: tuple[int, ...] = (1, 2, 3)
    widths: tuple[tuple[int, ...], ...] = ((8, 12, 16), (16, 24, 32), (24, 32, 48))
    kernels: tuple[int, ...] = (3, 5)

    def __post_init__(self) -> None:
        for name in ("resolutions", "stem_widths", "depths", "kernels"):
            values = tuple(getattr(self, name))
            if not values or any(isinstance(v, bool) or int(v) < 1 for v in values):
                raise ValueError(
                    f"{name} must be a non-empty tuple of positive ints; got {values!r}."
                )
            object.__setattr__(self, name, tuple(sorted(int(v) for v in values)))
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd (a centre to crop around); got {self.kernels}.")
        widths = tuple(tuple(sorted(int(v) for v in stage)) for stage in self.widths)
        if not widths or any(not stage or stage[0] < 1 for stage in widths):
            raise ValueError(
                f"widths needs a non-empty tuple of positive ints per stage; got {self.widths!r}."
            )
        object.__setattr__(self, "widths", widths)

    @property
    def stages(self) -> int:
        return len(self.widths)

    @property
    def max_config(self) -> ArchConfig:
        """The largest network: every choice at its maximum."""
        n = self.stages
        return ArchConfig(
            self.resolutions[-1],
            self.stem_widths[-1],
            (self.depths[-1],) * n,
            tuple(w[-1] for w in self.widths),
            (self.kernels[-1],) * n,
        )

    @property
    def min_config(self) -> ArchConfig:
        """The smallest network: every choice at its minimum."""
        n = self.stages
        return ArchConfig(
            self.resolutions[0],
            self.stem_widths[0],
            (self.depths[0],) * n,
            tuple(w[0] for w in self.widths),
            (self.kernels[0],) * n,
        )

    @property
    def size(self) -> int:
        """How many networks the space holds."""
        per_stage = math.prod(len(self.depths) * len(w) * len(self.kernels) for w in self.widths)
        return len(self.resolutions) * len(self.stem_widths) * per_stage

    def choices(self) -> dict[str, tuple[int, ...]]:
        """Each gene's choices (the keys of :meth:`ArchConfig.genes`)."""
        out: dict[str, tuple[int, ...]] = {
            "resolution": self.resolutions,
            "stem_width": self.stem_widths,
        }
        for s, widths in enumerate(self.widths):
            out[f"depth{s}"], out[f"width{s}"], out[f"kernel{s}"] = (
                self.depths,
                widths,
                self.kernels,
            )
        return out

    def sample(self, rng: int | np.random.Generator = 0) -> ArchConfig:
        """A uniformly random network of the space (``rng``: a seed or a NumPy generator)."""
        rng = _rng(rng)
        return ArchConfig.from_genes(
            {gene: int(rng.choice(options)) for gene, options in self.choices().items()}
        )

    def problems(self, config: Any) -> list[str]:
        """Why ``config`` is not in the space (an empty list when it is)."""
        if not isinstance(config, ArchConfig):
            return [f"expected an ArchConfig, got {type(config).__name__}"]
        if len(config.depths) != self.stages:
            return [f"the space has {self.stages} stages; the config has {len(config.depths)}"]
        out = []
        for gene, value in config.genes().items():
            options = self.choices()[gene]
            if value not in options:
                out.append(f"{gene}={value} is not one of {list(options)}")
        return out

    def contains(self, config: Any) -> bool:
        """True when ``config`` is a network of this space."""
        return not self.problems(config)

    def validate(self, config: Any, name: str = "config") -> ArchConfig:
        """Return ``config`` if it is in the space; else raise ``ValueError`` saying what is not."""
        problems = self.problems(config)
        if problems:
            raise ValueError(
                f"{name} is not in the search space: {'; '.join(problems)}. "
                "Pick values from SearchSpace.choices() (or sample one with space.sample(rng))."
            )
        return config


def centre_crop(kernel: np.ndarray, size: int) -> np.ndarray:
    """The central ``size x size`` taps of a ``(K, K, ...)`` kernel (OFA's elastic kernel size).

    Examples
    --------
    >>> centre_crop(np.arange(25).reshape(5, 5), 3)
    array([[ 6,  7,  8],
           [11, 12, 13],
           [16, 17, 18]])
    """
    kernel = np.asarray(kernel)
    big = kernel.shape[0]
    size = _check_int("size", size, minimum=1)
    if kernel.ndim < 2 or kernel.shape[1] != big:
        raise ValueError(f"kernel must be square in its first two axes; got shape {kernel.shape}.")
    if size > big or (big - size) % 2:
        raise ValueError(
            f"size must be at most the kernel's {big} and differ from it by an even number "
            f"(so there is a centre); got {size}."
        )
    start = (big - size) // 2
    return kernel[start : start + size, start : start + size]


# --------------------------------------------------------------------------- the supernet
def resize_images(x: np.ndarray, resolution: int) -> np.ndarray:
    """Float images ``(N, H, W, 1)`` resized (bilinear) to ``resolution`` pixels per side."""
    import tensorflow as tf

    resolution = _check_int("resolution", resolution, minimum=1)
    x = np.asarray(x, np.float32)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, channels); got shape {x.shape}.")
    if x.shape[1:3] == (resolution, resolution):
        return x
    return tf.image.resize(x, (resolution, resolution)).numpy()


class Supernet:
    """The shared weights of every network of a :class:`SearchSpace`, and a pass that runs any one.

    Every layer holds the weights of its largest version. A sub-network takes the first
    channels of each layer and the centre of each kernel. The forward pass computes the largest
    network with **masks**: channels a sub-network does not have are zeroed after each
    activation, kernel taps outside its centre are zeroed, and residual blocks it does not have
    are gated off (they leave the identity). One traced TensorFlow graph runs every sub-network.

    Every convolution is followed by batch normalization. Training normalizes with each batch's
    statistics; a sub-network's own statistics differ from the largest network's, so before it
    is evaluated they are **recalibrated** (as OFA does): measured on ``calibration`` images, a
    fixed sample of the training data. :func:`extract` folds them into the convolutions, and
    the standalone model's logits equal :meth:`logits`.

    Parameters
    ----------
    space : SearchSpace
        The search space.
    seed : int
        Seeds the initial weights.
    """

    def __init__(self, space: SearchSpace | None = None, *, seed: int = 0) -> None:
        import tensorflow as tf

        self.space = space if space is not None else SearchSpace()
        seed = _check_int("seed", seed)
        init = np.random.default_rng(seed)
        big = self.space.max_config
        kmax = self.space.kernels[-1]

        def he(shape: tuple[int, ...], fan_in: int, name: str) -> Any:
            values = init.normal(0.0, math.sqrt(2.0 / fan_in), shape).astype(np.float32)
            return tf.Variable(values, name=name)

        def norm(n: int, name: str) -> tuple[Any, Any]:
            return (
                tf.Variable(np.ones(n, np.float32), name=f"{name}_gamma"),
                tf.Variable(np.zeros(n, np.float32), name=f"{name}_beta"),
            )

        self.stem = {"kernel": he((3, 3, 1, big.stem_width), 9, "stem_kernel")}
        self.stem["gamma"], self.stem["beta"] = norm(big.stem_width, "stem")
        self.blocks: list[list[dict[str, dict[str, Any]]]] = []
        c_in = big.stem_width
        for s, width in enumerate(big.widths):
            stage = []
            for b in range(big.depths[s]):
                cin = c_in if b == 0 else width
                dw = {"kernel": he((kmax, kmax, cin, 1), 9, f"s{s}b{b}_dw_kernel")}
                dw["gamma"], dw["beta"] = norm(cin, f"s{s}b{b}_dw")
                pw = {"kernel": he((1, 1, cin, width), cin, f"s{s}b{b}_pw_kernel")}
                pw["gamma"], pw["beta"] = norm(width, f"s{s}b{b}_pw")
                stage.append({"dw": dw, "pw": pw})
            self.blocks.append(stage)
            c_in = width
        # Not zeros: a zero head passes no gradient to the layers before it.
        self.head_kernel = he((c_in, _CLASSES), c_in, "head_kernel")
        self.head_bias = tf.Variable(np.zeros(_CLASSES, np.float32), name="head_bias")
        # A normalization of the pooled features: without it the classifier would see features
        # whose scale changes with the depth and width of the sub-network (folded away by extract).
        self.head_gamma, self.head_beta = norm(c_in, "head")
        self.calibration: np.ndarray | None = None
        self._evaluate = tf.function(self._calibrated_forward, reduce_retracing=True)
        self._statistics = tf.function(self._forward_statistics, reduce_retracing=True)

    def _convolutions(self) -> list[dict[str, Any]]:
        out = [self.stem]
        for stage in self.blocks:
            for block in stage:
                out += [block["dw"], block["pw"]]
        return out

    @property
    def variables(self) -> list[Any]:
        """Every shared weight (what training updates)."""
        out = []
        for conv in self._convolutions():
            out += [conv["kernel"], conv["gamma"], conv["beta"]]
        return out + [self.head_gamma, self.head_beta, self.head_kernel, self.head_bias]

    def set_calibration(self, x: np.ndarray) -> None:
        """The images whose statistics recalibrate batch normalization for every sub-network."""
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or len(x) < 2:
            raise ValueError(f"x must hold at least 2 images (N, 28, 28, 1); got shape {x.shape}.")
        self.calibration = x

    def encode(self, config: ArchConfig) -> tuple[Any, ...]:
        """The masks that select ``config`` in the forward pass (fixed shapes, one graph)."""
        self.space.validate(config)
        big = self.space.max_config
        kmax = self.space.kernels[-1]

        def channels(n: int, total: int) -> np.ndarray:
            return (np.arange(total) < n).astype(np.float32)

        kernel_masks, width_masks, gates = [], [], []
        for s in range(self.space.stages):
            taps = np.zeros((kmax, kmax, 1, 1), np.float32)
            start = (kmax - config.kernels[s]) // 2
            taps[start : start + config.kernels[s], start : start + config.kernels[s]] = 1.0
            kernel_masks.append(taps)
            width_masks.append(channels(config.widths[s], big.widths[s]))
            gates.append(channels(config.depths[s], big.depths[s]))
        return (
            np.int32(config.resolution),
            channels(config.stem_width, big.stem_width),
            tuple(width_masks),
            tuple(kernel_masks),
            tuple(gates),
        )

    def _masked_forward(
        self, x: Any, encoding: tuple[Any, ...], statistics: Sequence[tuple[Any, Any]] | None = None
    ) -> tuple[Any, list[tuple[Any, Any]]]:
        """Logits, and the (mean, variance) each batch normalization used.

        With ``statistics`` None, each batch normalization uses the batch's own (training).
        """
        import tensorflow as tf

        resolution, stem_mask, width_masks, kernel_masks, gates = encoding
        used: list[tuple[Any, Any]] = []

        def normalize(z: Any, conv: dict[str, Any], mask: Any) -> Any:
            if statistics is None:
                mean, variance = tf.nn.moments(z, axes=(0, 1, 2))
            else:
                mean, variance = statistics[len(used)]
            used.append((mean, variance))
            z = tf.nn.batch_normalization(z, mean, variance, conv["beta"], conv["gamma"], _EPSILON)
            return tf.nn.relu(z) * mask

        x = tf.image.resize(x, tf.stack([resolution, resolution]))
        h = normalize(tf.nn.conv2d(x, self.stem["kernel"], 1, "SAME"), self.stem, stem_mask)
        in_mask = stem_mask
        for s, stage in enumerate(self.blocks):
            for b, block in enumerate(stage):
                strides = (1, 2, 2, 1) if b == 0 else (1, 1, 1, 1)
                kernel = block["dw"]["kernel"] * kernel_masks[s]
                t = tf.nn.depthwise_conv2d(h, kernel, strides, "SAME")
                t = normalize(t, block["dw"], in_mask if b == 0 else width_masks[s])
                t = tf.nn.conv2d(t, block["pw"]["kernel"], 1, "SAME")
                t = normalize(t, block["pw"], width_masks[s])
                h = t if b == 0 else h + gates[s][b] * t
            in_mask = width_masks[s]
        pooled = tf.reduce_mean(h, axis=(1, 2))
        if statistics is None:
            mean, variance = tf.nn.moments(pooled, axes=(0,))
        else:
            mean, variance = statistics[len(used)]
        used.append((mean, variance))
        pooled = (
            tf.nn.batch_normalization(
                pooled, mean, variance, self.head_beta, self.head_gamma, _EPSILON
            )
            * in_mask
        )
        return tf.matmul(pooled, self.head_kernel) + self.head_bias, used

    def _forward_statistics(
        self, calibration: Any, encoding: tuple[Any, ...]
    ) -> list[tuple[Any, Any]]:
        return self._masked_forward(calibration, encoding)[1]

    def _calibrated_forward(self, calibration: Any, x: Any, encoding: tuple[Any, ...]) -> Any:
        statistics = self._masked_forward(calibration, encoding)[1]
        return self._masked_forward(x, encoding, statistics)[0]

    def _require_calibration(self) -> np.ndarray:
        if self.calibration is None:
            raise RuntimeError(
                "this supernet has no calibration images; train it with train_supernet, or call "
                "supernet.set_calibration(x_train[:500])."
            )
        return self.calibration

    def statistics(self, config: ArchConfig) -> list[tuple[np.ndarray, np.ndarray]]:
        """The recalibrated (mean, variance) of every batch normalization, for ``config``."""
        import tensorflow as tf

        calibration = tf.constant(self._require_calibration())
        stats = self._statistics(calibration, self.encode(config))
        return [(m.numpy(), v.numpy()) for m, v in stats]

    def logits(self, x: np.ndarray, config: ArchConfig, *, batch_size: int = 1000) -> np.ndarray:
        """The sub-network's logits for float 28 x 28 images ``(N, 28, 28, 1)`` in [0, 1]."""
        import tensorflow as tf

        encoding = self.encode(config)
        calibration = tf.constant(self._require_calibration())
        batch_size = _check_int("batch_size", batch_size, minimum=1)
        x = np.asarray(x, np.float32)
        out = [
            self._evaluate(calibration, tf.constant(x[i : i + batch_size]), encoding).numpy()
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, _CLASSES), np.float32)


def evaluate_subnet(supernet: Supernet, config: ArchConfig, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a sub-network with the supernet's weights, no retraining.

    Examples
    --------
    >>> evaluate_subnet(net, net.space.min_config, x_val, y_val)  # doctest: +SKIP
    0.81
    """
    y = np.asarray(y)
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(
            f"x and y must be non-empty and as long as each other; got {len(x)} and {len(y)}."
        )
    return float(np.mean(supernet.logits(x, config).argmax(1) == y))


@dataclass
class TrainingLog:
    """What :func:`train_supernet` did: steps, seconds and the loss of each step."""

    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)


def train_supernet(
    supernet: Supernet,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epochs: float = 4.0,
    batch_size: int = 128,
    random_subnets: int = 2,
    learning_rate: float = 3e-3,
    distill: bool = True,
    warmup: float = 0.0,
    seed: int = 0,
    calibration: int = 500,
    progress: bool = True,
) -> TrainingLog:
    """Train every sub-network at once with the sandwich rule (Yu & Huang 2019; Cai et al. 2020).

    At each step, the largest network, the smallest and ``random_subnets`` random ones run on the
    same batch, and one optimizer step follows the sum of their losses: the largest learns from
    the labels; with ``distill`` the others learn from the largest network's softened predictions
    (in-place distillation), else from the labels.

    Parameters
    ----------
    supernet : Supernet
    x, y : np.ndarray
        Float images ``(N, 28, 28, 1)`` in [0, 1] and integer labels.
    epochs : float
        Passes over the data (each step uses one batch for all the sub-networks).
    batch_size, random_subnets : int
    learning_rate : float
        Adam's initial rate, with a cosine decay to zero.
    distill : bool
        In-place distillation from the largest network.
    warmup : float
        The fraction of the steps, first, in which only the largest network trains (OFA trains
        the full network before it shrinks it: the sub-networks then start from useful weights,
        and learn from a teacher that knows something).
    seed : int
        Seeds the batches and the random sub-networks.
    calibration : int
        When the supernet has no calibration images yet, this many random training images
        become them (:meth:`Supernet.set_calibration`).
    progress : bool
        Show a progress bar.

    Returns
    -------
    TrainingLog
    """
    import tensorflow as tf
    from tqdm.auto import tqdm

    from tinyml_course import keras

    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or len(x) != len(y) or len(y) == 0:
        raise ValueError(
            f"x must be (N, 28, 28, 1) images with one label each in y; got {x.shape} and {y.shape}."
        )
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs <= 0:
        raise ValueError(f"epochs must be a positive number; got {epochs!r}.")
    batch_size = _check_int("batch_size", batch_size, minimum=1)
    random_subnets = _check_int("random_subnets", random_subnets)
    warmup = _check_fraction("warmup", warmup)
    rng = np.random.default_rng(_check_int("seed", seed))
    per_epoch = max(1, len(x) // batch_size)
    steps = max(1, int(round(epochs * per_epoch)))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    optimizer = keras.optimizers.Adam(schedule)
    variables = supernet.variables
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def step(xb: Any, yb: Any, encodings: tuple[Any, ...]) -> Any:
        with tf.GradientTape() as tape:
            teacher_logits = supernet._masked_forward(xb, encodings[0])[0]
            loss = ce(yb, teacher_logits)
            soft = tf.stop_gradient(tf.nn.softmax(teacher_logits))
            for encoding in encodings[1:]:
                logits = supernet._masked_forward(xb, encoding)[0]
                if distill:
                    loss += tf.reduce_mean(
                        tf.nn.softmax_cross_entropy_with_logits(labels=soft, logits=logits)
                    )
                else:
                    loss += ce(yb, logits)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    space = supernet.space
    if supernet.calibration is None:
        supernet.set_calibration(x[rng.choice(len(x), min(len(x), calibration), replace=False)])
    start = time.perf_counter()
    losses: list[float] = []
    order = rng.permutation(len(x))
    cursor = 0
    bar = tqdm(range(steps), desc="supernet (sandwich rule)", disable=not progress, leave=False)
    for i in bar:
        if cursor + batch_size > len(x):
            order, cursor = rng.permutation(len(x)), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        configs = [space.max_config]
        if i >= warmup * steps:
            configs += [space.min_config] + [space.sample(rng) for _ in range(random_subnets)]
        loss = step(
            tf.constant(x[idx]), tf.constant(y[idx]), tuple(supernet.encode(c) for c in configs)
        )
        losses.append(float(loss))
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    return TrainingLog(steps, time.perf_counter() - start, losses)


# --------------------------------------------------------------------------- standalone sub-networks
def build_subnet(
    config: ArchConfig,
    space: SearchSpace | None = None,
    *,
    batch_norm: bool = False,
    name: str = "subnet",
) -> Any:
    """A standalone Keras model of ``config`` with fresh weights (input: ``resolution`` pixels).

    Its weighted layers are, in order: ``stem``; per stage ``s`` and block ``b``: ``s{s}b{b}_dw``
    and ``s{s}b{b}_pw`` (and ``s{s}b{b}_add`` for a residual block); ``logits``. With
    ``batch_norm`` each convolution is followed by a batch normalization (for training from
    scratch; the converter folds it), else the convolutions have biases (:func:`extract` folds the
    supernet's normalization into them).

    Examples
    --------
    >>> model = build_subnet(SearchSpace().min_config)  # doctest: +SKIP
    """
    from tinyml_course import keras

    space = space if space is not None else SearchSpace()
    space.validate(config)
    L = keras.layers

    def conv(layer: Any, h: Any) -> Any:
        h = layer(h)
        if batch_norm:
            # momentum 0.9: the moving statistics settle within the few hundred steps a brief training has
            h = L.BatchNormalization(momentum=0.9, name=f"{layer.name}_bn")(h)
        return L.ReLU(name=f"{layer.name}_relu")(h)

    inputs = keras.Input((config.resolution, config.resolution, 1), name="image")
    h = conv(
        L.Conv2D(config.stem_width, 3, padding="same", use_bias=not batch_norm, name="stem"), inputs
    )
    for s in range(len(config.depths)):
        for b in range(config.depths[s]):
            t = conv(
                L.DepthwiseConv2D(
                    config.kernels[s],
                    strides=2 if b == 0 else 1,
                    padding="same",
                    use_bias=not batch_norm,
                    name=f"s{s}b{b}_dw",
                ),
                h,
            )
            t = conv(L.Conv2D(config.widths[s], 1, use_bias=not batch_norm, name=f"s{s}b{b}_pw"), t)
            h = t if b == 0 else L.Add(name=f"s{s}b{b}_add")([h, t])
    h = L.GlobalAveragePooling2D(name="pool")(h)
    outputs = L.Dense(_CLASSES, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def subnet_weights(supernet: Supernet, config: ArchConfig) -> dict[str, list[np.ndarray]]:
    """The supernet's weights for ``config``: layer name -> ``[kernel, bias]``.

    The first ``c`` channels of every layer and the centre ``k x k`` of every depthwise kernel,
    with each batch normalization (its recalibrated statistics, :meth:`Supernet.statistics`)
    folded into the convolution before it: ``kernel * g`` and ``beta - mean * g`` with
    ``g = gamma / sqrt(variance + eps)``; the normalization of the pooled features is folded
    into the dense layer after it (``g * kernel`` and ``bias + (beta - mean * g) @ kernel``).
    """
    statistics = iter(supernet.statistics(config))

    def fold(
        conv: dict[str, Any], kernel: np.ndarray, channels: int, *, depthwise: bool
    ) -> list[np.ndarray]:
        mean, variance = next(statistics)
        gamma = conv["gamma"].numpy()[:channels]
        beta = conv["beta"].numpy()[:channels]
        g = gamma / np.sqrt(variance[:channels] + _EPSILON)
        scale = g[:, None] if depthwise else g  # a depthwise kernel is (k, k, channels, 1)
        return [
            (kernel * scale).astype(np.float32),
            (beta - mean[:channels] * g).astype(np.float32),
        ]

    out = {
        "stem": fold(
            supernet.stem,
            supernet.stem["kernel"].numpy()[..., : config.stem_width],
            config.stem_width,
            depthwise=False,
        )
    }
    c_in = config.stem_width
    for s, stage in enumerate(supernet.blocks):
        width, kernel = config.widths[s], config.kernels[s]
        for b, block in enumerate(stage):
            cin = c_in if b == 0 else width
            dw = fold(
                block["dw"],
                centre_crop(block["dw"]["kernel"].numpy(), kernel)[:, :, :cin, :],
                cin,
                depthwise=True,
            )
            pw = fold(
                block["pw"],
                block["pw"]["kernel"].numpy()[:, :, :cin, :width],
                width,
                depthwise=False,
            )
            if b < config.depths[s]:
                out[f"s{s}b{b}_dw"], out[f"s{s}b{b}_pw"] = dw, pw
        c_in = width
    mean, variance = next(
        statistics
    )  # the pooled features' normalization, folded into the dense layer
    g = supernet.head_gamma.numpy()[:c_in] / np.sqrt(variance[:c_in] + _EPSILON)
    shift = supernet.head_beta.numpy()[:c_in] - mean[:c_in] * g
    kernel = supernet.head_kernel.numpy()[:c_in]
    out["logits"] = [
        (g[:, None] * kernel).astype(np.float32),
        (supernet.head_bias.numpy() + shift @ kernel).astype(np.float32),
    ]
    return out


def extract(supernet: Supernet, config: ArchConfig, *, name: str = "subnet") -> Any:
    """A standalone Keras model of ``config`` holding copies of the supernet's weights.

    Its logits on ``resize_images(x, config.resolution)`` equal ``supernet.logits(x, config)``.

    Examples
    --------
    >>> model = extract(net, net.space.min_config)  # doctest: +SKIP
    """
    model = build_subnet(config, supernet.space, name=name)
    for layer_name, weights in subnet_weights(supernet, config).items():
        model.get_layer(layer_name).set_weights(weights)
    return model


# --------------------------------------------------------------------------- cost
def _layers(config: ArchConfig) -> list[tuple[str, int, int, int, int, int]]:
    """(kind, kernel, in side, out side, in channels, out channels) of each weighted layer."""
    out = [("conv", 3, config.resolution, config.resolution, 1, config.stem_width)]
    side, c_in = config.resolution, config.stem_width
    for s in range(len(config.depths)):
        for b in range(config.depths[s]):
            out_side = -(-side // 2) if b == 0 else side
            cin = c_in if b == 0 else config.widths[s]
            out.append(("depthwise", config.kernels[s], side, out_side, cin, cin))
            out.append(("conv", 1, out_side, out_side, cin, config.widths[s]))
            side = out_side
        c_in = config.widths[s]
    out.append(("dense", 1, 1, 1, c_in, _CLASSES))
    return out


def config_macs(config: ArchConfig) -> int:
    """Multiply-accumulates of one inference of ``config`` (convolutions and the dense layer).

    Examples
    --------
    >>> config_macs(ArchConfig(20, 8, (1, 1, 1), (8, 16, 24), (3, 3, 3)))
    52392
    """
    total = 0
    for kind, k, _side, out_side, cin, cout in _layers(config):
        per_position = k * k * cout * (1 if kind == "depthwise" else cin)
        total += out_side * out_side * per_position
    return total


def config_features(config: ArchConfig) -> dict[str, int]:
    """Analytic sizes of ``config`` as an int8 model (what the cost predictor reads).

    ``weight_bytes`` (int8 weights), ``bias_count``, ``channels`` (output channels of every
    weighted layer: each has its own quantization scale), ``operators`` (in the ``.tflite``) and
    ``activation_peak`` (int8 bytes alive at the worst operator, executed layer by layer: the
    operator's inputs and output, plus a residual block's input, which its add still needs).
    """
    weights = biases = channels = 0
    for kind, k, _side, _out, cin, cout in _layers(config):
        weights += k * k * cout * (1 if kind == "depthwise" else cin)
        biases += cout
        channels += cout
    r = config.resolution
    live = [r * r + r * r * config.stem_width]
    side, c_in = r, config.stem_width
    operators = 1
    for s in range(len(config.depths)):
        w = config.widths[s]
        for b in range(config.depths[s]):
            if b == 0:
                out_side = -(-side // 2)
                live.append(side * side * c_in + out_side * out_side * c_in)
                live.append(out_side * out_side * (c_in + w))
                operators += 2
                side = out_side
            else:
                a = side * side * w
                live += [
                    2 * a,
                    3 * a,
                    3 * a,
                ]  # depthwise, pointwise, add (the block input stays alive)
                operators += 3
        c_in = w
    live += [side * side * c_in + c_in, c_in + _CLASSES]
    operators += 2  # the average pooling (MEAN) and the dense layer
    return {
        "weight_bytes": weights,
        "bias_count": biases,
        "channels": channels,
        "operators": operators,
        "activation_peak": max(live),
    }


@dataclass(frozen=True)
class Measurement:
    """A network measured as a microcontroller would hold it.

    ``flash_bytes``: the int8 ``.tflite``'s size; ``arena_bytes``: tflite-micro's tensor arena
    after one inference (measured, or estimated where tflite-micro is missing, see
    :func:`tinyml_course.micro.measure_arena`); ``macs``: counted on the Keras model by
    :func:`tinyml_course.profiling.profile_model`.
    """

    config: ArchConfig | None
    flash_bytes: int
    arena_bytes: int
    macs: int
    tflite: bytes = field(repr=False, default=b"")


def measure_configs(
    models: Sequence[Any],
    representative_data: np.ndarray,
    *,
    configs: Sequence[ArchConfig | None] | None = None,
) -> list[Measurement]:
    """Convert Keras models to int8 ``.tflite`` and measure each (arenas in one child process).

    Parameters
    ----------
    models : sequence of keras.Model
        Built models (for example from :func:`extract`).
    representative_data : np.ndarray
        Float images at full size ``(N, 28, 28, 1)`` to calibrate the int8 ranges; each model
        gets them resized to its own input.
    configs : sequence of ArchConfig, optional
        Recorded in the measurements.
    """
    from tinyml_course.patches import measure_arenas
    from tinyml_course.profiling import profile_model
    from tinyml_course.tflite import convert_to_tflite

    configs = list(configs) if configs is not None else [None] * len(models)
    if len(configs) != len(models):
        raise ValueError(
            f"configs must have one entry per model; got {len(configs)} for {len(models)} models."
        )
    representative_data = np.asarray(representative_data, np.float32)
    contents = []
    for model in models:
        side = int(model.input_shape[1])
        contents.append(
            convert_to_tflite(
                model, "int8", representative_data=resize_images(representative_data, side)
            )
        )
    arenas = measure_arenas(contents)
    return [
        Measurement(config, len(content), int(arena), int(profile_model(model).macs), content)
        for model, config, content, arena in zip(models, configs, contents, arenas, strict=True)
    ]


@dataclass(frozen=True)
class CostPredictor:
    """Predicts a network's int8 ``.tflite`` bytes and tflite-micro arena from its configuration.

    ``flash = weight_bytes + 4 * bias_count + flash_coef . [1, channels, operators]`` and
    ``arena = activation_peak + arena_coef . [1, channels, operators]``: the analytic sizes of
    :func:`config_features` plus a fitted overhead (tensor and operator bookkeeping, per-channel
    quantization parameters). ``flash_error`` and ``arena_error`` are the largest relative
    errors seen where it was checked (0 until :meth:`checked` says otherwise).
    """

    flash_coef: tuple[float, float, float]
    arena_coef: tuple[float, float, float]
    flash_error: float = 0.0
    arena_error: float = 0.0

    def predict(self, config: ArchConfig) -> tuple[int, int]:
        """(flash bytes, arena bytes) predicted for ``config``."""
        f = config_features(config)
        extra = np.array([1.0, f["channels"], f["operators"]])
        flash = f["weight_bytes"] + 4 * f["bias_count"] + float(np.dot(self.flash_coef, extra))
        arena = f["activation_peak"] + float(np.dot(self.arena_coef, extra))
        return int(round(flash)), int(round(arena))

    def errors(self, measurements: Sequence[Measurement]) -> tuple[np.ndarray, np.ndarray]:
        """Relative errors (predicted / measured - 1) of flash and arena on measured networks."""
        pairs = [(self.predict(m.config), m) for m in measurements if m.config is not None]
        flash = np.array([p[0] / m.flash_bytes - 1 for p, m in pairs])
        arena = np.array([p[1] / m.arena_bytes - 1 for p, m in pairs])
        return flash, arena

    def checked(self, measurements: Sequence[Measurement]) -> CostPredictor:
        """This predictor with its largest relative errors on ``measurements`` recorded."""
        flash, arena = self.errors(measurements)
        return replace(
            self, flash_error=float(np.abs(flash).max()), arena_error=float(np.abs(arena).max())
        )


def fit_cost_predictor(measurements: Sequence[Measurement]) -> CostPredictor:
    """Fit the overheads of a :class:`CostPredictor` to measured networks (least squares).

    Raises
    ------
    ValueError
        With fewer than 3 measured configurations (three coefficients per target).
    """
    rows, flash_rest, arena_rest = [], [], []
    for m in measurements:
        if m.config is None:
            continue
        f = config_features(m.config)
        rows.append([1.0, f["channels"], f["operators"]])
        flash_rest.append(m.flash_bytes - f["weight_bytes"] - 4 * f["bias_count"])
        arena_rest.append(m.arena_bytes - f["activation_peak"])
    if len(rows) < 3:
        raise ValueError(
            f"measurements must hold at least 3 networks with their configs; got {len(rows)}. "
            "Measure more sampled configurations with measure_configs(..., configs=...)."
        )
    a = np.array(rows)
    flash_coef = np.linalg.lstsq(a, np.array(flash_rest, float), rcond=None)[0]
    arena_coef = np.linalg.lstsq(a, np.array(arena_rest, float), rcond=None)[0]
    return CostPredictor(tuple(map(float, flash_coef)), tuple(map(float, arena_coef)))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Budget:
    """What a network may use on the device: flash (``.tflite`` bytes) and RAM (arena bytes)."""

    flash_bytes: int
    arena_bytes: int

    def __post_init__(self) -> None:
        _check_int("flash_bytes", self.flash_bytes, minimum=1)
        _check_int("arena_bytes", self.arena_bytes, minimum=1)

    @classmethod
    def from_device(
        cls, device: Any, *, flash_fraction: float = 1.0, ram_fraction: float = 1.0
    ) -> Budget:
        """A share of a catalogued board: ``flash_fraction`` of its flash and ``ram_fraction`` of
        its usable RAM (the rest is the application's).

        Examples
        --------
        >>> Budget.from_device("Nano 33", flash_fraction=1 / 64, ram_fraction=1 / 16)
        Budget(flash_bytes=16384, arena_bytes=16384)
        """
        from tinyml_course.devices import get_device

        board = get_device(device)
        flash_fraction = _check_fraction("flash_fraction", flash_fraction)
        ram_fraction = _check_fraction("ram_fraction", ram_fraction)
        return cls(
            int(board.flash_bytes * flash_fraction), int(board.usable_ram_bytes * ram_fraction)
        )

    def shrunk(self, fraction: float) -> Budget:
        """This budget less a safety margin of ``fraction`` (for predicted, not measured, costs)."""
        keep = 1.0 - _check_fraction("fraction", fraction)
        return Budget(max(1, int(self.flash_bytes * keep)), max(1, int(self.arena_bytes * keep)))


def within_budget(flash_bytes: int, arena_bytes: int, budget: Budget) -> bool:
    """True when both costs are at most the budget's.

    Examples
    --------
    >>> within_budget(12_000, 9_000, Budget(16_384, 8_192))
    False
    """
    flash_bytes = _check_int("flash_bytes", flash_bytes)
    arena_bytes = _check_int("arena_bytes", arena_bytes)
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget; got {type(budget).__name__}.")
    return flash_bytes <= budget.flash_bytes and arena_bytes <= budget.arena_bytes


# --------------------------------------------------------------------------- search
def mutate(
    config: ArchConfig,
    space: SearchSpace,
    rng: int | np.random.Generator,
    *,
    probability: float = 0.2,
) -> ArchConfig:
    """Resample each gene of ``config`` from its choices with ``probability`` (Real et al. 2019).

    Examples
    --------
    >>> space = SearchSpace()
    >>> mutate(space.max_config, space, 0, probability=0.0) == space.max_config
    True
    """
    space.validate(config)
    rng = _rng(rng)
    probability = _check_fraction("probability", probability)
    choices = space.choices()
    genes = config.genes()
    for gene in genes:
        if rng.random() < probability:
            genes[gene] = int(rng.choice(choices[gene]))
    return ArchConfig.from_genes(genes)


def crossover(
    a: ArchConfig,
    b: ArchConfig,
    rng: int | np.random.Generator,
    *,
    space: SearchSpace | None = None,
) -> ArchConfig:
    """A child whose every gene comes from ``a`` or ``b`` at random (uniform crossover).

    Examples
    --------
    >>> space = SearchSpace()
    >>> crossover(space.min_config, space.min_config, 0) == space.min_config
    True
    """
    if space is not None:
        space.validate(a, "a")
        space.validate(b, "b")
    rng = _rng(rng)
    ga, gb = a.genes(), b.genes()
    if set(ga) != set(gb):
        raise ValueError(f"a and b must have the same stages; got {a} and {b}.")
    return ArchConfig.from_genes({g: ga[g] if rng.random() < 0.5 else gb[g] for g in ga})


def evolution_step(
    population: Sequence[ArchConfig],
    fitness: Sequence[float],
    space: SearchSpace,
    rng: int | np.random.Generator,
    *,
    parents: int,
    mutation_probability: float = 0.2,
    feasible: Callable[[ArchConfig], bool] | None = None,
    max_tries: int = 1000,
) -> list[ArchConfig]:
    """One generation: keep the ``parents`` fittest, fill up with mutated crossovers of them.

    Children are crossovers of two random parents, then mutated; children that are not
    ``feasible`` (over budget) or repeat a member are drawn again.

    Returns
    -------
    list of ArchConfig
        The parents (fittest first), then the children: as many as ``population``.

    Raises
    ------
    RuntimeError
        If ``max_tries`` draws do not give enough distinct feasible children.
    """
    population = list(population)
    if len(fitness) != len(population) or not population:
        raise ValueError(
            f"fitness must give one score per member of a non-empty population; got {len(fitness)} "
            f"scores for {len(population)} members."
        )
    parents = _check_int("parents", parents, minimum=1)
    if parents > len(population):
        raise ValueError(
            f"parents must be at most the population size {len(population)}; got {parents}."
        )
    rng = _rng(rng)
    order = sorted(range(len(population)), key=lambda i: -float(fitness[i]))
    elite = [population[i] for i in order[:parents]]
    out = list(elite)
    tries = 0
    while len(out) < len(population):
        tries += 1
        if tries > max_tries:
            raise RuntimeError(
                f"{max_tries} tries gave only {len(out) - parents} feasible new children; "
                "loosen the budget or raise max_tries."
            )
        i, j = rng.integers(parents, size=2)
        child = mutate(
            crossover(elite[i], elite[j], rng), space, rng, probability=mutation_probability
        )
        if child in out or (feasible is not None and not feasible(child)):
            continue
        out.append(child)
    return out


@dataclass(frozen=True)
class SearchResult:
    """Every network a search evaluated, in order, with its fitness (accuracy)."""

    configs: list[ArchConfig]
    scores: list[float]

    @property
    def best(self) -> ArchConfig:
        return self.configs[int(np.argmax(self.scores))]

    @property
    def best_score(self) -> float:
        return float(np.max(self.scores))

    def best_so_far(self) -> np.ndarray:
        """The best score after each evaluation (the search's progress curve)."""
        return np.maximum.accumulate(np.asarray(self.scores, float))


def _feasible_sample(
    space: SearchSpace,
    rng: np.random.Generator,
    feasible: Callable[[ArchConfig], bool] | None,
    max_tries: int,
) -> ArchConfig:
    for _ in range(max_tries):
        config = space.sample(rng)
        if feasible is None or feasible(config):
            return config
    raise RuntimeError(f"no feasible network in {max_tries} random samples; loosen the budget.")


def random_search(
    space: SearchSpace,
    fitness: Callable[[ArchConfig], float],
    *,
    samples: int,
    feasible: Callable[[ArchConfig], bool] | None = None,
    seed: int = 0,
    max_tries: int = 10_000,
) -> SearchResult:
    """Evaluate ``samples`` random feasible networks (the baseline every search must beat)."""
    samples = _check_int("samples", samples, minimum=1)
    rng = _rng(seed)
    configs: list[ArchConfig] = []
    while len(configs) < samples:
        config = _feasible_sample(space, rng, feasible, max_tries)
        if config not in configs:
            configs.append(config)
    return SearchResult(configs, [float(fitness(c)) for c in configs])


def evolutionary_search(
    space: SearchSpace,
    fitness: Callable[[ArchConfig], float],
    *,
    population: int,
    generations: int,
    parents: int,
    mutation_probability: float = 0.2,
    feasible: Callable[[ArchConfig], bool] | None = None,
    seed: int = 0,
) -> SearchResult:
    """Evolve a population of feasible networks (Real et al. 2019; OFA's and MCUNet's search).

    A random feasible population, then ``generations`` of :func:`evolution_step`. Each network
    is evaluated once (scores are cached); the result lists every evaluation in order.
    """
    population = _check_int("population", population, minimum=2)
    generations = _check_int("generations", generations)
    rng = _rng(seed)
    cache: dict[ArchConfig, float] = {}
    configs: list[ArchConfig] = []
    scores: list[float] = []

    def score(config: ArchConfig) -> float:
        if config not in cache:
            cache[config] = float(fitness(config))
            configs.append(config)
            scores.append(cache[config])
        return cache[config]

    members: list[ArchConfig] = []
    while len(members) < population:
        config = _feasible_sample(space, rng, feasible, 10_000)
        if config not in members:
            members.append(config)
    for _ in range(generations):
        values = [score(c) for c in members]
        members = evolution_step(
            members,
            values,
            space,
            rng,
            parents=parents,
            mutation_probability=mutation_probability,
            feasible=feasible,
        )
    for c in members:
        score(c)
    return SearchResult(configs, scores)


def pareto_front(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Indices of the points no other point dominates, sorted by the first objective.

    A point dominates another when it is at least as good in every objective and better in
    one; ``maximize[j]`` says whether objective ``j`` is better large (accuracy) or small
    (bytes).

    Examples
    --------
    >>> pareto_front(np.array([[0.9, 10], [0.8, 5], [0.7, 8], [0.9, 12]]), [True, False])
    array([1, 0])
    """
    points = np.asarray(points, float)
    if points.ndim != 2 or points.shape[1] != len(maximize):
        raise ValueError(
            f"points must be (N, objectives) with one maximize flag per objective; got shape "
            f"{points.shape} and {len(maximize)} flags."
        )
    signed = points * np.where(np.asarray(maximize, bool), -1.0, 1.0)  # smaller is better
    keep = []
    for i, p in enumerate(signed):
        dominated = np.any(np.all(signed <= p, axis=1) & np.any(signed < p, axis=1))
        if not dominated:
            keep.append(i)
    keep_arr = np.array(keep, int)
    return keep_arr[np.argsort(points[keep_arr, 0], kind="stable")]


__all__ = [
    "ArchConfig",
    "Budget",
    "CostPredictor",
    "Measurement",
    "SearchResult",
    "SearchSpace",
    "Supernet",
    "TrainingLog",
    "build_subnet",
    "centre_crop",
    "config_features",
    "config_macs",
    "crossover",
    "evaluate_subnet",
    "evolution_step",
    "evolutionary_search",
    "extract",
    "fit_cost_predictor",
    "measure_configs",
    "mutate",
    "pareto_front",
    "random_search",
    "resize_images",
    "subnet_weights",
    "train_supernet",
    "within_budget",
]
