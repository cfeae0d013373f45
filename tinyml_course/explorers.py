"""Interactive explorers: move a slider, see a trade-off.

Three explorers built on ipywidgets and matplotlib, used by the topic notebooks:

* :func:`quantization_explorer`: bit width, per-tensor vs per-channel, symmetric vs
  asymmetric; the weight histogram with the quantization grid, the error histogram and
  the mean squared / maximum error.
* :func:`pruning_explorer`: a target sparsity; the magnitude mask (which weights are
  kept) and the accuracy read from a pre-computed sparsity/accuracy curve.
* :func:`early_exit_explorer`: a confidence threshold; accuracy vs average MACs and the
  fraction of samples leaving at each exit.

Each returns an :class:`Explorer`. Make the call the last expression of a cell (or pass
the result to ``display``): in JupyterLab it shows as a widget whose plot updates live;
without a widget front end (headless execution by ``tinyml-course run`` or nbgrader,
which set ``TINYML_COURSE_HEADLESS=1`` / ``NBGRADER_EXECUTION``, or outside an IPython
kernel) it shows a static figure of its current state instead. ``explorer.update(...)``
changes the state from code, ``explorer.state`` and ``explorer.summary`` read it back,
and ``explorer.figure`` is the matplotlib figure of the current state.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Explorer",
    "QuantizedWeights",
    "quantization_explorer",
    "pruning_explorer",
    "early_exit_explorer",
    "has_widget_frontend",
]


# --------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------


def has_widget_frontend() -> bool:
    """Whether explorers can show live widgets here.

    False when ``TINYML_COURSE_HEADLESS`` is set to anything but ``""``/``"0"`` (the course
    runner sets it), when ``NBGRADER_EXECUTION`` is set (autograding), or when the code
    is not running inside an IPython kernel (plain Python, pytest, a terminal IPython).

    Returns
    -------
    bool
        True inside a Jupyter kernel that is not marked headless.
    """
    if os.environ.get("TINYML_COURSE_HEADLESS", "") not in ("", "0"):
        return False
    if os.environ.get("NBGRADER_EXECUTION"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the course stack
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


# --------------------------------------------------------------------------------------
# The explorer object
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Control:
    """One control: its name, label, kind and allowed values."""

    name: str
    label: str
    kind: str  # "int", "float" or "choice"
    default: Any
    low: float = 0.0
    high: float = 1.0
    step: float = 1.0
    options: tuple[Any, ...] = ()

    def validate(self, value: Any) -> Any:
        if self.kind == "choice":
            if value not in self.options:
                raise ValueError(
                    f"{self.name}={value!r} is not one of {list(self.options)}; pass one of those."
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(
                f"{self.name}={value!r} must be a number between {self.low} and {self.high}."
            )
        if self.kind == "int" and float(value) != int(value):
            raise ValueError(
                f"{self.name}={value!r} must be a whole number between {self.low} and {self.high}."
            )
        if not self.low <= float(value) <= self.high:
            raise ValueError(
                f"{self.name}={value!r} is out of range; pass a value between {self.low} and {self.high}."
            )
        return int(value) if self.kind == "int" else float(value)


class Explorer:
    """A small interactive view of a trade-off: controls, a summary line and a plot.

    Created by :func:`quantization_explorer`, :func:`pruning_explorer` and
    :func:`early_exit_explorer`; not meant to be built directly.

    Attributes
    ----------
    title : str
        What the explorer shows.
    state : dict
        The current value of every control.
    summary : str
        One line with the numbers of the current state.
    figure : matplotlib.figure.Figure
        The plot of the current state.
    """

    def __init__(
        self,
        title: str,
        controls: Sequence[_Control],
        draw: Callable[[dict[str, Any]], tuple[Any, str]],
    ) -> None:
        self.title = title
        self._controls = {c.name: c for c in controls}
        self._draw = draw
        self.state: dict[str, Any] = {c.name: c.default for c in controls}
        self.figure, self.summary = self._draw(dict(self.state))
        self._png: bytes | None = None
        self._widget: Any = None
        self._image: Any = None
        self._html: Any = None
        self._inputs: dict[str, Any] = {}
        self._syncing = False

    # -- state ---------------------------------------------------------------------
    def update(self, **changes: Any) -> Explorer:
        """Set one or more controls and redraw (the widget follows, if shown).

        Parameters
        ----------
        **changes
            Control names and their new values, e.g. ``update(bits=4)``.

        Returns
        -------
        Explorer
            Itself, so ``explorer.update(bits=4).summary`` reads naturally.

        Raises
        ------
        KeyError
            If a name is not one of the explorer's controls.
        ValueError, TypeError
            If a value is outside the control's range or options.
        """
        new_state = dict(self.state)
        for name, value in changes.items():
            if name not in self._controls:
                raise KeyError(
                    f"{name!r} is not a control of this explorer; use one of {sorted(self._controls)}."
                )
            new_state[name] = self._controls[name].validate(value)
        self.state = new_state
        old = self.figure
        self.figure, self.summary = self._draw(dict(self.state))
        self._png = None
        del old
        if self._image is not None:
            self._image.value = self.png()
            self._html.value = _html_summary(self.summary)
            self._syncing = True  # an update from code moves the controls too, without a redraw
            try:
                for name, box in self._inputs.items():
                    if box.value != self.state[name]:
                        box.value = self.state[name]
            finally:
                self._syncing = False
        return self

    def png(self) -> bytes:
        """The current plot as PNG bytes (rendered once per state)."""
        if self._png is None:
            buffer = io.BytesIO()
            self.figure.savefig(buffer, format="png", dpi=90)
            self._png = buffer.getvalue()
        return self._png

    # -- display -------------------------------------------------------------------
    @property
    def widget(self) -> Any:
        """The ipywidgets view (built on first use): controls, summary and plot."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self) -> Any:
        import ipywidgets as widgets

        inputs = []
        for control in self._controls.values():
            common = {
                "description": control.label,
                "value": self.state[control.name],
                "style": {"description_width": "initial"},
            }
            if control.kind == "int":
                box = widgets.IntSlider(
                    min=int(control.low),
                    max=int(control.high),
                    step=int(control.step),
                    continuous_update=False,
                    **common,
                )
            elif control.kind == "float":
                box = widgets.FloatSlider(
                    min=control.low,
                    max=control.high,
                    step=control.step,
                    continuous_update=False,
                    readout_format=".2f",
                    **common,
                )
            else:
                box = widgets.ToggleButtons(options=list(control.options), **common)
            box.add_class(f"tinyml-control-{control.name}")
            box.observe(self._on_change(control.name), names="value")
            inputs.append(box)
            self._inputs[control.name] = box
        self._html = widgets.HTML(value=_html_summary(self.summary))
        self._html.add_class("tinyml-explorer-summary")
        self._image = widgets.Image(value=self.png(), format="png")
        self._image.add_class("tinyml-explorer-plot")
        view = widgets.VBox(
            [widgets.HTML(f"<b>{self.title}</b>"), *inputs, self._html, self._image]
        )
        view.add_class("tinyml-explorer")
        return view

    def _on_change(self, name: str) -> Callable[[dict[str, Any]], None]:
        def handler(change: dict[str, Any]) -> None:
            if not self._syncing:
                self.update(**{name: change["new"]})

        return handler

    def _ipython_display_(self) -> None:
        from IPython.display import Image, display

        if has_widget_frontend():
            display(self.widget)
        else:
            display(Image(data=self.png(), format="png"))
            print(self.summary)

    def __repr__(self) -> str:
        controls = ", ".join(f"{k}={v!r}" for k, v in self.state.items())
        return f"<{type(self).__name__} {self.title!r}: {controls}; {self.summary}>"


def _html_summary(text: str) -> str:
    import html

    return f"<code>{html.escape(text)}</code>"


def _new_figure(width: float, height: float, columns: int) -> tuple[Any, Any]:
    """A pyplot-free figure (no global state, never auto-shown twice)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, columns)
    return figure, axes


# --------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------


def _as_weights(weights: Any, name: str = "weights") -> np.ndarray:
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a numeric array (for example layer.get_weights()[0]); got {type(weights).__name__}."
        ) from err
    if array.size < 2:
        raise ValueError(
            f"{name} has {array.size} element(s); pass a layer's weight array with at least 2 values."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"{name} contains NaN or infinite values; pass the finite weights of a trained layer."
        )
    return array


# --------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuantizedWeights:
    """The result of quantizing an array to integers and back.

    Attributes
    ----------
    q : numpy.ndarray
        The integer codes (int64), same shape as the weights.
    scale, zero_point : numpy.ndarray
        One value per tensor (shape ``(1,)``) or per output channel (last axis).
    qmin, qmax : int
        The integer range used.
    dequantized : numpy.ndarray
        ``(q - zero_point) * scale``: the values the model computes with.
    error : numpy.ndarray
        ``dequantized - weights``.
    """

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int
    dequantized: np.ndarray
    error: np.ndarray

    @property
    def mse(self) -> float:
        """Mean squared error of the dequantized weights."""
        return float(np.mean(self.error**2))

    @property
    def max_error(self) -> float:
        """Largest absolute error."""
        return float(np.max(np.abs(self.error)))


def _quantize(
    weights: np.ndarray, bits: int, per_channel: bool, symmetric: bool
) -> QuantizedWeights:
    """Quantize with the course's own math (:mod:`tinyml_course.quantization`) and back.

    ``real = (q - zero_point) * scale``. Symmetric: zero point 0 over the narrow range
    ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` with ``scale = max|w| / qmax`` (TFLite's int8
    weights); asymmetric: ``[-2^(b-1), 2^(b-1) - 1]`` fitted to ``[min(w, 0), max(w, 0)]``.
    Per channel: one scale and zero point per index of the last axis.
    """
    from tinyml_course.quantization import choose_qparams

    w = np.asarray(weights, dtype=np.float64)
    axis = -1 if per_channel and w.ndim >= 2 else None
    params = choose_qparams(w, bits=bits, symmetric=symmetric, axis=axis)
    q = params.quantize(w)
    dequantized = params.dequantize(q).astype(np.float64)
    return QuantizedWeights(
        q=q.astype(np.int64),
        scale=np.atleast_1d(params.scale).astype(np.float64).reshape(-1),
        zero_point=np.atleast_1d(params.zero_point).astype(np.int64).reshape(-1),
        qmin=int(params.qmin),
        qmax=int(params.qmax),
        dequantized=dequantized,
        error=dequantized - w,
    )


def quantization_explorer(weights: np.ndarray) -> Explorer:
    """Explore how bit width and the quantization scheme change a layer's weight error.

    Controls: ``bits`` (2-8), ``granularity`` (``"per-tensor"`` or ``"per-channel"``, the
    channels being the last axis, the output channels of a Keras kernel) and ``scheme``
    (``"symmetric"`` or ``"asymmetric"``). The plot shows the weight histogram with the
    quantization grid (the values ``(q - zero_point) * scale`` can take; per channel, the
    grid of the widest channel), the histogram of the error ``dequantized - weights``, and
    the mean squared and maximum error.

    Parameters
    ----------
    weights : numpy.ndarray
        A weight array, e.g. ``model.layers[0].get_weights()[0]``; at least 2 finite values.

    Returns
    -------
    Explorer
        A widget in JupyterLab, a static figure of the 8-bit symmetric per-channel state
        when headless.

    Raises
    ------
    TypeError, ValueError
        If ``weights`` is not a finite numeric array with at least 2 values.

    Examples
    --------
    >>> explorer = quantization_explorer(np.random.default_rng(0).normal(size=(3, 3, 1, 8)))
    >>> explorer.update(bits=4, scheme="asymmetric").state["bits"]
    4
    """
    w = _as_weights(weights)

    def draw(state: dict[str, Any]) -> tuple[Any, str]:
        bits, per_channel = state["bits"], state["granularity"] == "per-channel"
        symmetric = state["scheme"] == "symmetric"
        result = _quantize(w, bits, per_channel, symmetric)
        figure, (ax_w, ax_e) = _new_figure(10, 3.6, 2)
        ax_w.hist(w.ravel(), bins=80, color="tab:blue", alpha=0.8)
        channel = int(np.argmax(result.scale)) if result.scale.size > 1 else 0
        scale, zp = result.scale[channel], result.zero_point[channel]
        grid = (np.arange(result.qmin, result.qmax + 1) - zp) * scale
        levels = result.qmax - result.qmin + 1
        # Few levels: full-height lines. Many: a rug of ticks under the bars, so both stay readable.
        top = 1.0 if levels <= 32 else 0.06
        ax_w.vlines(
            grid,
            0,
            top,
            transform=ax_w.get_xaxis_transform(),
            colors="tab:red",
            alpha=0.9 if levels <= 32 else 0.6,
            linewidth=0.8,
            label="quantization grid",
        )
        ax_w.legend(loc="upper right", fontsize="small")
        which = (
            f"channel {channel}, the widest" if result.scale.size > 1 else "one grid for the tensor"
        )
        ax_w.set(
            title=f"weights and the {levels}-level grid ({which})",
            xlabel="weight value",
            ylabel="count",
        )
        ax_e.hist(result.error.ravel(), bins=80, color="tab:orange")
        # Rounding never moves a weight by more than half a step (the widest channel's step).
        ax_e.axvline(-scale / 2, color="tab:red", linestyle="--", linewidth=1, label="± scale / 2")
        ax_e.axvline(scale / 2, color="tab:red", linestyle="--", linewidth=1)
        ax_e.legend(loc="upper right", fontsize="small")
        ax_e.set(title="error = dequantized - weight", xlabel="error", ylabel="count")
        figure.suptitle(
            f"{bits}-bit {state['scheme']} {state['granularity']}: MSE {result.mse:.3g}, max |error| {result.max_error:.3g}"
        )
        summary = f"bits={bits} {state['scheme']} {state['granularity']}: mean squared error {result.mse:.4g}, max |error| {result.max_error:.4g}"
        return figure, summary

    controls = [
        _Control("bits", "bit width", "int", 8, low=2, high=8, step=1),
        _Control(
            "granularity",
            "granularity",
            "choice",
            "per-channel",
            options=("per-tensor", "per-channel"),
        ),
        _Control("scheme", "scheme", "choice", "symmetric", options=("symmetric", "asymmetric")),
    ]
    return Explorer("Quantization explorer", controls, draw)


# --------------------------------------------------------------------------------------
# Pruning
# --------------------------------------------------------------------------------------


def _as_curve(
    sparsities: Sequence[float], accuracies: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(sparsities, dtype=np.float64).ravel()
    a = np.asarray(accuracies, dtype=np.float64).ravel()
    if s.size < 2 or s.size != a.size:
        raise ValueError(
            f"sparsities ({s.size} values) and accuracies ({a.size} values) must be the same length, "
            "at least 2: one accuracy measured at each sparsity."
        )
    if not (np.all(np.isfinite(s)) and np.all((s >= 0) & (s < 1))):
        raise ValueError(
            f"sparsities={s.tolist()} must be fractions in [0, 1) (0.8 means 80% zeros)."
        )
    if not (np.all(np.isfinite(a)) and np.all((a >= 0) & (a <= 1))):
        raise ValueError(
            f"accuracies={a.tolist()} must be fractions between 0 and 1 (0.9, not 90)."
        )
    order = np.argsort(s)
    s, a = s[order], a[order]
    if np.any(np.diff(s) == 0):
        raise ValueError(
            f"sparsities={s.tolist()} contains repeated values; measure each sparsity once."
        )
    return s, a


def _as_2d(w: np.ndarray) -> np.ndarray:
    """A kernel as (inputs, outputs) for display: all axes but the last are flattened."""
    if w.ndim == 1:
        return w.reshape(1, -1)
    return w.reshape(-1, w.shape[-1])


def pruning_explorer(
    weights: np.ndarray, sparsities: Sequence[float], accuracies: Sequence[float]
) -> Explorer:
    """Explore magnitude pruning: which weights a target sparsity keeps, and what it costs.

    The ``sparsity`` slider (within the measured range) sets the fraction of weights with
    the smallest magnitude that are removed. The plot shows the mask (kept weights bright,
    the kernel drawn as inputs x output channels), the magnitude histogram split into kept
    and pruned, and the pre-computed accuracy curve with the current point marked (linearly
    interpolated between the measured sparsities).

    Parameters
    ----------
    weights : numpy.ndarray
        The weights to prune, e.g. a Dense or Conv2D kernel.
    sparsities : sequence of float
        Sparsities (fractions in [0, 1]) at which the accuracy was measured; at least 2,
        all different.
    accuracies : sequence of float
        The measured accuracy (fraction in [0, 1]) at each sparsity.

    Returns
    -------
    Explorer
        A widget in JupyterLab, a static figure when headless (at the middle of the
        measured range, rounded to the slider step).

    Raises
    ------
    TypeError, ValueError
        If the weights are not a finite array or the curve is malformed.

    Examples
    --------
    >>> w = np.random.default_rng(0).normal(size=(16, 8))
    >>> pruning_explorer(w, [0.0, 0.5, 0.9], [0.9, 0.89, 0.8]).update(sparsity=0.5).summary[:13]
    'sparsity 0.50'
    """
    from tinyml_course.pruning import magnitude_mask

    w = _as_weights(weights)
    s, a = _as_curve(sparsities, accuracies)
    low, high = float(s[0]), float(s[-1])
    step = 0.01
    default = float(np.clip(round((low + high) / 2 / step) * step, low, high))

    def draw(state: dict[str, Any]) -> tuple[Any, str]:
        sparsity = state["sparsity"]
        mask = magnitude_mask(w, sparsity)
        accuracy = float(np.interp(sparsity, s, a))
        measured = bool(np.any(np.isclose(s, sparsity)))
        figure, (ax_m, ax_h, ax_c) = _new_figure(12, 3.6, 3)
        ax_m.imshow(
            _as_2d(mask).astype(float),
            cmap="gray",
            vmin=0,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
        )
        ax_m.set(
            title=f"kept weights (white): {int(mask.sum()):,} of {mask.size:,}",
            xlabel="output channel",
            ylabel="input (flattened)",
        )
        magnitude = np.abs(w).ravel()
        bins = np.linspace(0, magnitude.max(), 60)
        ax_h.hist(magnitude[mask.ravel()], bins=bins, color="tab:blue", label="kept")
        ax_h.hist(magnitude[~mask.ravel()], bins=bins, color="tab:gray", label="pruned")
        ax_h.set(title="|weight|: kept vs pruned", xlabel="|weight|", ylabel="count")
        ax_h.legend()
        ax_c.plot(s, a, "o-", color="tab:blue", label="measured")
        ax_c.plot([sparsity], [accuracy], "*", color="tab:red", markersize=16, label="current")
        ax_c.set(title="accuracy vs sparsity", xlabel="sparsity", ylabel="accuracy")
        ax_c.legend()
        how = "measured" if measured else "interpolated"
        figure.suptitle(
            f"sparsity {sparsity:.2f}: {int((~mask).sum()):,} weights pruned, accuracy {accuracy:.4f} ({how})"
        )
        summary = f"sparsity {sparsity:.2f}: kept {int(mask.sum()):,} of {mask.size:,} weights, accuracy {accuracy:.4f} ({how})"
        return figure, summary

    controls = [
        _Control("sparsity", "target sparsity", "float", default, low=low, high=high, step=step)
    ]
    return Explorer("Pruning explorer", controls, draw)


# --------------------------------------------------------------------------------------
# Early exits
# --------------------------------------------------------------------------------------


def _as_exits(
    exit_probabilities: Sequence[np.ndarray], labels: np.ndarray, exit_macs: Sequence[int]
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    if isinstance(exit_probabilities, np.ndarray) and exit_probabilities.ndim == 2:
        raise ValueError(
            "exit_probabilities must be a list with one (samples, classes) array per exit, not a single array."
        )
    probs = [np.asarray(p, dtype=np.float64) for p in exit_probabilities]
    if len(probs) < 2:
        raise ValueError(
            f"exit_probabilities has {len(probs)} exit(s); pass one (samples, classes) array of softmax "
            "outputs per exit, at least two exits."
        )
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D array of integer class indices; got shape {y.shape}, dtype {y.dtype} (use y.argmax(-1) for one-hot labels)."
        )
    for i, p in enumerate(probs):
        if p.ndim != 2 or p.shape[0] != y.size:
            raise ValueError(
                f"exit_probabilities[{i}] has shape {p.shape}; expected ({y.size}, classes), one row per label."
            )
        if not (np.all(np.isfinite(p)) and p.min() >= 0 and p.max() <= 1 + 1e-6):
            raise ValueError(
                f"exit_probabilities[{i}] has values outside [0, 1]; pass softmax probabilities, not logits."
            )
        if y.min() < 0 or y.max() >= p.shape[1]:
            raise ValueError(
                f"labels range over [{y.min()}, {y.max()}] but exit_probabilities[{i}] has {p.shape[1]} classes."
            )
    macs = np.asarray(exit_macs)
    if macs.shape != (len(probs),) or not np.issubdtype(macs.dtype, np.number) or np.any(macs <= 0):
        raise ValueError(
            f"exit_macs={list(np.ravel(macs))} must hold one positive MAC count per exit ({len(probs)} exits)."
        )
    if np.any(np.diff(macs) < 0):
        raise ValueError(
            f"exit_macs={macs.tolist()} must not decrease: each is the total cost of reaching that exit, earlier blocks included."
        )
    return probs, y, macs.astype(np.float64)


def early_exit_explorer(
    exit_probabilities: Sequence[np.ndarray], labels: np.ndarray, exit_macs: Sequence[int]
) -> Explorer:
    """Explore the confidence threshold of an early-exit network.

    A sample leaves at the first exit whose largest softmax probability reaches the
    threshold; the last exit takes every sample still left (the course's rule,
    :func:`tinyml_course.early_exit.evaluate_policy`). The plot shows accuracy vs average
    MACs over all thresholds with the current one marked, and the fraction of samples
    leaving at each exit.

    Parameters
    ----------
    exit_probabilities : sequence of numpy.ndarray
        One ``(samples, classes)`` array of softmax probabilities (rows summing to 1) per
        exit, in network order; at least two exits.
    labels : numpy.ndarray
        Integer class of each sample, shape ``(samples,)``.
    exit_macs : sequence of int
        MACs a sample costs when it leaves at each exit (cumulative: earlier blocks
        included), non-decreasing.

    Returns
    -------
    Explorer
        A widget in JupyterLab, a static figure at threshold 0.9 when headless.

    Raises
    ------
    ValueError
        If the shapes disagree, the probabilities are not in [0, 1], the labels are not
        integer classes, or the MACs are not positive and non-decreasing.

    Examples
    --------
    >>> p = np.array([[0.95, 0.05], [0.6, 0.4]])  # 2 samples, 2 classes
    >>> explorer = early_exit_explorer([p, p], np.array([0, 1]), [100, 300])
    >>> explorer.summary.split(":")[0]
    'threshold 0.90'
    """
    from tinyml_course.early_exit import evaluate_policy

    probs, y, macs = _as_exits(exit_probabilities, labels, exit_macs)
    thresholds = np.linspace(0.0, 1.0, 101)
    curve = [evaluate_policy(probs, y, macs, t) for t in thresholds]
    curve_macs = np.array([c.average_macs for c in curve])
    curve_acc = np.array([c.accuracy for c in curve])

    def draw(state: dict[str, Any]) -> tuple[Any, str]:
        point = evaluate_policy(probs, y, macs, state["threshold"])
        figure, (ax_c, ax_f) = _new_figure(10, 3.6, 2)
        ax_c.plot(curve_macs, curve_acc, "-", color="tab:blue", label="thresholds 0 to 1")
        ax_c.plot(
            [point.average_macs],
            [point.accuracy],
            "*",
            color="tab:red",
            markersize=16,
            label=f"threshold {point.threshold:.2f}",
        )
        ax_c.axvline(
            macs[-1], color="tab:gray", linestyle=":", label="every sample to the last exit"
        )
        ax_c.set(
            title="accuracy vs average MACs", xlabel="average MACs per sample", ylabel="accuracy"
        )
        ax_c.xaxis.set_major_formatter("{x:,.0f}")
        ax_c.legend(fontsize="small")
        labels_x = [f"exit {i + 1}\n{int(m):,} MACs" for i, m in enumerate(macs)]
        bars = ax_f.bar(labels_x, point.exit_fractions, color="tab:green")
        ax_f.bar_label(bars, labels=[f"{f:.0%}" for f in point.exit_fractions])
        ax_f.set(title="fraction of samples leaving at each exit", ylabel="fraction", ylim=(0, 1.1))
        figure.suptitle(
            f"threshold {point.threshold:.2f}: accuracy {point.accuracy:.4f}, average MACs {point.average_macs:,.0f} ({point.average_macs / macs[-1]:.0%} of the full network)"
        )
        fractions = ", ".join(f"{f:.1%}" for f in point.exit_fractions)
        summary = f"threshold {point.threshold:.2f}: accuracy {point.accuracy:.4f}, average MACs {point.average_macs:,.0f}, leaving at each exit: {fractions}"
        return figure, summary

    controls = [
        _Control("threshold", "confidence threshold", "float", 0.9, low=0.0, high=1.0, step=0.01)
    ]
    return Explorer("Early-exit explorer", controls, draw)
