"""The explorers: the numbers behind their plots, their controls, and the headless path."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_course import explorers
from tinyml_course.explorers import (
    Explorer,
    _quantize,
    early_exit_explorer,
    pruning_explorer,
    quantization_explorer,
)


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.setenv("TINYML_COURSE_HEADLESS", "1")


def kernel(seed: int = 0) -> np.ndarray:
    """A conv kernel whose output channels have very different ranges."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(3, 3, 4, 8)) * np.geomspace(0.01, 1.0, 8)


# ------------------------------------------------------------------ quantization math
def test_symmetric_quantization_by_hand() -> None:
    # 3 bits symmetric: q in [-3, 3], scale = max|w| / 3 = 2/3; w / scale = [-1.5, 0.75, 3.0].
    # TFLite rounds halves away from zero: q = [-2, 1, 3], so w' = [-4/3, 2/3, 2].
    result = _quantize(np.array([-1.0, 0.5, 2.0]), bits=3, per_channel=False, symmetric=True)
    assert (result.qmin, result.qmax) == (-3, 3)
    np.testing.assert_allclose(result.scale, [2 / 3])
    np.testing.assert_array_equal(result.zero_point, [0])
    np.testing.assert_array_equal(result.q, [-2, 1, 3])
    np.testing.assert_allclose(result.dequantized, [-4 / 3, 2 / 3, 2.0], rtol=1e-6)
    np.testing.assert_allclose(result.error, [-1 / 3, 1 / 6, 0.0], atol=1e-6)
    assert result.max_error == pytest.approx(1 / 3, rel=1e-6)
    assert result.mse == pytest.approx((1 / 9 + 1 / 36) / 3, rel=1e-5)


def test_asymmetric_quantization_by_hand() -> None:
    # 2 bits asymmetric over [0, 3] (0 is included): q in [-2, 1], scale = 3 / 3 = 1,
    # zero_point = round(-2 - 0 / 1) = -2, so 0.0 -> -2, 1.4 -> -1, 3.0 -> 1.
    result = _quantize(np.array([0.0, 1.4, 3.0]), bits=2, per_channel=False, symmetric=False)
    assert (result.qmin, result.qmax) == (-2, 1)
    np.testing.assert_allclose(result.scale, [1.0])
    np.testing.assert_array_equal(result.zero_point, [-2])
    np.testing.assert_array_equal(result.q, [-2, -1, 1])
    np.testing.assert_allclose(result.dequantized, [0.0, 1.0, 3.0], atol=1e-6)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("per_channel", [True, False])
def test_error_is_at_most_half_a_step(symmetric: bool, per_channel: bool) -> None:
    w = kernel()
    result = _quantize(w, bits=4, per_channel=per_channel, symmetric=symmetric)
    assert result.q.min() >= result.qmin and result.q.max() <= result.qmax
    step = result.scale.reshape((1,) * (w.ndim - 1) + (-1,)) if per_channel else result.scale[0]
    assert np.all(np.abs(result.error) <= step / 2 * (1 + 1e-6) + 1e-7)


def test_per_channel_has_one_scale_per_output_channel_and_less_error() -> None:
    w = kernel()
    per_channel = _quantize(w, bits=8, per_channel=True, symmetric=True)
    per_tensor = _quantize(w, bits=8, per_channel=False, symmetric=True)
    assert per_channel.scale.shape == (8,)
    np.testing.assert_allclose(per_channel.scale, np.abs(w).max(axis=(0, 1, 2)) / 127)
    assert per_tensor.scale.shape == (1,)
    assert per_channel.mse < per_tensor.mse
    # Channel 0 is 100x narrower than channel 7: on the shared grid it gets a hundredth of
    # the levels, so its own grid cuts its error by orders of magnitude.
    small_channel = np.mean(per_channel.error[..., 0] ** 2), np.mean(per_tensor.error[..., 0] ** 2)
    assert small_channel[0] < small_channel[1] / 100


def test_error_shrinks_with_bits() -> None:
    w = kernel()
    errors = [_quantize(w, bits=b, per_channel=True, symmetric=True).mse for b in range(2, 9)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:], strict=False))


def test_quantization_explorer_follows_its_controls() -> None:
    explorer = quantization_explorer(kernel())
    assert explorer.state == {"bits": 8, "granularity": "per-channel", "scheme": "symmetric"}
    first = explorer.summary
    explorer.update(bits=3, granularity="per-tensor", scheme="asymmetric")
    expected = _quantize(kernel(), bits=3, per_channel=False, symmetric=False)
    assert f"{expected.mse:.4g}" in explorer.summary and explorer.summary != first
    assert "3-bit asymmetric per-tensor" in explorer.figure.texts[0].get_text()


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"bits": 1}, ValueError, "bits=1"),
        ({"bits": 9}, ValueError, "between 2 and 8"),
        ({"bits": 4.5}, ValueError, "whole number"),
        ({"scheme": "log"}, ValueError, "'symmetric'"),
        ({"granularity": "per-row"}, ValueError, "per-channel"),
        ({"bit_width": 4}, KeyError, "bits"),
    ],
)
def test_bad_control_values_are_refused(changes, error, words) -> None:
    explorer = quantization_explorer(kernel())
    with pytest.raises(error, match=words):
        explorer.update(**changes)
    assert explorer.state["bits"] == 8


@pytest.mark.parametrize(
    ("weights", "words"),
    [
        (np.array([1.0]), "at least 2"),
        (np.array([1.0, np.nan]), "NaN"),
        ("not weights", "numeric array"),
    ],
)
def test_quantization_explorer_checks_weights(weights, words) -> None:
    with pytest.raises((TypeError, ValueError), match=words):
        quantization_explorer(weights)


# ------------------------------------------------------------------ pruning
def test_pruning_explorer_mask_and_interpolated_accuracy() -> None:
    w = np.arange(1, 101, dtype=float).reshape(20, 5) * np.where(np.arange(100) % 2, 1, -1).reshape(
        20, 5
    )
    explorer = pruning_explorer(w, [0.0, 0.5, 0.9], [0.90, 0.88, 0.70])
    assert explorer.state["sparsity"] == pytest.approx(0.45)
    explorer.update(sparsity=0.7)
    # 70 of the 100 weights pruned (the smallest |w|, 1..70); accuracy halfway 0.88 -> 0.70.
    assert "kept 30 of 100 weights" in explorer.summary
    assert "accuracy 0.7900 (interpolated)" in explorer.summary
    explorer.update(sparsity=0.5)
    assert "accuracy 0.8800 (measured)" in explorer.summary
    image = explorer.figure.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.asarray(image) > 0.5, np.abs(w) > 50)


def test_pruning_slider_stays_in_the_measured_range() -> None:
    explorer = pruning_explorer(np.ones((4, 4)), [0.2, 0.8], [0.9, 0.8])
    with pytest.raises(ValueError, match="between 0.2 and 0.8"):
        explorer.update(sparsity=0.9)


@pytest.mark.parametrize(
    ("sparsities", "accuracies", "words"),
    [
        ([0.0, 0.5], [0.9], "same length"),
        ([0.0], [0.9], "at least 2"),
        ([0.0, 1.0], [0.9, 0.1], r"\[0, 1\)"),
        ([0.0, 0.5], [90.0, 80.0], "not 90"),
        ([0.5, 0.5], [0.9, 0.8], "repeated"),
    ],
)
def test_pruning_explorer_checks_its_curve(sparsities, accuracies, words) -> None:
    with pytest.raises(ValueError, match=words):
        pruning_explorer(np.ones((4, 4)), sparsities, accuracies)


# ------------------------------------------------------------------ early exits
def two_exits() -> tuple[list[np.ndarray], np.ndarray, list[int]]:
    first = np.array([[0.95, 0.05], [0.60, 0.40], [0.30, 0.70], [0.55, 0.45]])
    last = np.array([[0.90, 0.10], [0.20, 0.80], [0.10, 0.90], [0.40, 0.60]])
    return [first, last], np.array([0, 1, 1, 1]), [100, 400]


def test_early_exit_explorer_by_hand() -> None:
    explorer = early_exit_explorer(*two_exits())
    # Threshold 0.65: samples 0 and 2 leave early (both right); 1 and 3 go on (both right).
    explorer.update(threshold=0.65)
    assert (
        "accuracy 1.0000, average MACs 250, leaving at each exit: 50.0%, 50.0%" in explorer.summary
    )
    # Threshold 0: everything leaves at the first exit, which gets samples 1 and 3 wrong.
    explorer.update(threshold=0.0)
    assert (
        "accuracy 0.5000, average MACs 100, leaving at each exit: 100.0%, 0.0%" in explorer.summary
    )
    # Threshold 1: nothing is that sure, so every sample pays for the last exit.
    explorer.update(threshold=1.0)
    assert (
        "accuracy 1.0000, average MACs 400, leaving at each exit: 0.0%, 100.0%" in explorer.summary
    )
    bars = [patch.get_height() for patch in explorer.figure.axes[1].patches]
    assert bars == [0.0, 1.0]


def test_early_exit_explorer_follows_the_threshold() -> None:
    explorer = early_exit_explorer(*two_exits())
    assert explorer.state["threshold"] == pytest.approx(0.9)
    assert "leaving at each exit: 25.0%, 75.0%" in explorer.summary
    explorer.update(threshold=0.65)
    assert "accuracy 1.0000, average MACs 250" in explorer.summary
    curve = explorer.figure.axes[0].lines[0]
    assert min(curve.get_xdata()) == 100 and max(curve.get_xdata()) == 400


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda p, y, m: (p, y, [100]), "one positive MAC count per exit"),
        (lambda p, y, m: (p, y, [400, 100]), "must not decrease"),
        (lambda p, y, m: (p, y[:3], m), r"expected \(3, classes\)"),
        (lambda p, y, m: ([p[0] * 10, p[1]], y, m), "not logits"),
        (lambda p, y, m: (p, y + 1, m), "2 classes"),
        (lambda p, y, m: (p, y.astype(float), m), "integer class"),
        (lambda p, y, m: (p[0], y, m), "one \\(samples, classes\\) array per exit"),
        (lambda p, y, m: (p[:1], y, m[:1]), "at least two exits"),
    ],
)
def test_early_exit_explorer_checks_inputs(mutate, words) -> None:
    with pytest.raises(ValueError, match=words):
        early_exit_explorer(*mutate(*two_exits()))


# ------------------------------------------------------------------ display
def test_headless_detection(monkeypatch) -> None:
    assert not explorers.has_widget_frontend()  # TINYML_COURSE_HEADLESS=1 (fixture)
    monkeypatch.delenv("TINYML_COURSE_HEADLESS")
    assert not explorers.has_widget_frontend()  # pytest is no IPython kernel


def test_headless_display_draws_a_static_figure(monkeypatch, capsys) -> None:
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    explorer = quantization_explorer(kernel())
    explorer._ipython_display_()
    (image,) = shown
    assert isinstance(image, IPython.display.Image) and image.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.strip() == explorer.summary


def test_widget_controls_drive_the_plot() -> None:
    import ipywidgets as widgets

    explorer = quantization_explorer(kernel())
    view = explorer.widget
    sliders = [c for c in view.children if isinstance(c, widgets.IntSlider)]
    images = [c for c in view.children if isinstance(c, widgets.Image)]
    assert len(sliders) == 1 and len(images) == 1
    before = images[0].value
    sliders[0].value = 2  # what dragging the slider in JupyterLab does
    assert explorer.state["bits"] == 2
    assert images[0].value != before and images[0].value == explorer.png()
    toggles = [c for c in view.children if isinstance(c, widgets.ToggleButtons)]
    toggles[1].value = "asymmetric"
    assert explorer.state == {"bits": 2, "granularity": "per-channel", "scheme": "asymmetric"}
    explorer.update(bits=6)  # from code: the slider follows
    assert sliders[0].value == 6 and images[0].value == explorer.png()
    assert isinstance(explorer, Explorer) and "asymmetric" in repr(explorer)


@pytest.mark.slow
@pytest.mark.parametrize("headless", [True, False], ids=["headless", "widget"])
def test_in_a_real_kernel(headless, tmp_path, monkeypatch) -> None:
    import nbformat

    from tinyml_course.runner import execute_notebook

    monkeypatch.delenv("TINYML_COURSE_HEADLESS")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import tinyml_course\nimport numpy as np"),
        nbformat.v4.new_code_cell(
            "from tinyml_course.explorers import quantization_explorer\n"
            "quantization_explorer(np.random.default_rng(0).normal(size=(3, 3, 1, 4)))"
        ),
    ]
    source = tmp_path / "explorer.ipynb"
    nbformat.write(nb, source)
    env = {"TINYML_COURSE_HEADLESS": "1"} if headless else {}
    run = execute_notebook(source, timeout=120, save_to=tmp_path / "executed.ipynb", env=env)
    assert run.ok, run.error
    outputs = nbformat.read(tmp_path / "executed.ipynb", as_version=4).cells[1].outputs
    mimes = {mime for out in outputs for mime in out.get("data", {})}
    assert not [out for out in outputs if out.output_type == "error" or out.get("name") == "stderr"]
    if headless:
        assert "image/png" in mimes and "application/vnd.jupyter.widget-view+json" not in mimes
        assert "mean squared error" in "".join(out.get("text", "") for out in outputs)
    else:
        assert "application/vnd.jupyter.widget-view+json" in mimes and "image/png" not in mimes
