"""Keras set-up, data loading with checksums, results recording and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinyml_course import datasets
from tinyml_course.results import clear_figures, load_figures, record_figure, write_report

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
    )


def test_import_selects_keras2_quietly() -> None:
    result = _python(
        "import tinyml_course, os; from tinyml_course import keras; import tensorflow as tf;"
        "print(os.environ['TF_USE_LEGACY_KERAS'], keras.__version__.split('.')[0], tf.keras.__name__.split('.')[0])"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "2", "tf_keras"]
    assert result.stderr == "", f"importing the course wrote to stderr: {result.stderr!r}"


def test_keras3_first_gives_a_restart_message() -> None:
    result = _python(
        "import os; os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
        "import tensorflow as tf; tf.keras.layers\n"
        "import tinyml_course\n"
        "try:\n    tinyml_course.keras\nexcept tinyml_course._setup.KerasSetupError as e:\n    print('ERR', e)\n",
        TF_USE_LEGACY_KERAS="0",
    )
    assert "ERR" in result.stdout and "Restart the kernel" in result.stdout, (
        result.stdout + result.stderr
    )


def test_shipped_subset_is_the_default_and_is_stratified() -> None:
    data = datasets.load_fashion_mnist()
    assert data.source.startswith("shipped subset")
    assert data.x_train.shape == (12_000, 28, 28) and data.x_test.shape == (2_000, 28, 28)
    assert data.x_train.dtype == np.uint8
    assert np.bincount(data.y_train).tolist() == [1_200] * 10
    assert np.bincount(data.y_test).tolist() == [200] * 10


def test_corrupt_and_missing_subset_give_the_fix(tmp_path, monkeypatch) -> None:
    shipped = datasets.datasets_dir()
    (tmp_path / "SHA256SUMS").write_text((shipped / "SHA256SUMS").read_text())
    corrupt = bytearray((shipped / datasets.SUBSET_FILE).read_bytes())
    corrupt[1000] ^= 0xFF
    (tmp_path / datasets.SUBSET_FILE).write_bytes(bytes(corrupt))
    monkeypatch.setenv("TINYML_COURSE_DATA", str(tmp_path))
    with pytest.raises(datasets.DataError, match="corrupt.*git checkout"):
        datasets.load_fashion_mnist("subset")
    (tmp_path / datasets.SUBSET_FILE).unlink()
    with pytest.raises(datasets.DataError, match="missing.*build_fashion_mnist_subset"):
        datasets.load_fashion_mnist("subset")


def test_auto_falls_back_to_the_debian_set_or_says_how_to_get_data(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TINYML_COURSE_DATA", str(tmp_path))
    monkeypatch.setattr(datasets, "KERAS_CACHE_DIR", tmp_path / "no-cache")
    if datasets._has_idx(datasets.DEBIAN_DIR):
        data = datasets.load_fashion_mnist()
        assert data.source.startswith("debian") and data.x_train.shape == (60_000, 28, 28)
    else:
        with pytest.raises(datasets.DataError, match="apt-get install dataset-fashion-mnist"):
            datasets.load_fashion_mnist()
    with pytest.raises(ValueError, match="source="):
        datasets.load_fashion_mnist("internet")


@pytest.mark.skipif(
    not datasets._has_idx(datasets.DEBIAN_DIR),
    reason="Debian package dataset-fashion-mnist not installed",
)
def test_rebuild_script_reproduces_the_shipped_subset(tmp_path) -> None:
    out = tmp_path / datasets.SUBSET_FILE
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "datasets" / "build_fashion_mnist_subset.py"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert datasets.sha256_of(out) == datasets.expected_checksums()[datasets.SUBSET_FILE]


def test_idx_reader_rejects_garbage(tmp_path) -> None:
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x00\x09\x01" + b"\x00" * 8)
    with pytest.raises(datasets.DataError, match="not an unsigned-byte IDX"):
        datasets.read_idx(bad)


def test_to_model_input_scales_and_adds_channel() -> None:
    x = datasets.to_model_input(np.full((2, 28, 28), 255, np.uint8))
    assert x.shape == (2, 28, 28, 1) and x.dtype == np.float32 and x.max() == 1.0
    with pytest.raises(ValueError, match="images must be"):
        datasets.to_model_input(np.zeros((1, 2, 3, 4, 5)))


def test_figures_are_recorded_and_reported(tmp_path) -> None:
    record_figure("00_x", "params", np.int64(1234), root=tmp_path)
    record_figure("00_x", "accuracy", np.float32(0.875), root=tmp_path)
    assert load_figures(root=tmp_path) == {"00_x": {"params": 1234, "accuracy": 0.875}}
    path = write_report({"00_x": {"seconds": 1.5, "ok": True}}, root=tmp_path)
    data = json.loads(path.read_text())
    assert data == {
        "notebooks": {"00_x": {"seconds": 1.5, "ok": True}},
        "figures": {"00_x": {"accuracy": 0.875, "params": 1234}},
    }
    assert "| params | 1,234 |" in (tmp_path / "report.md").read_text()
    with pytest.raises(ValueError, match="finite number"):
        record_figure("00_x", "bad", float("nan"), root=tmp_path)
    with pytest.raises(ValueError, match="notebook="):
        record_figure("../escape", "x", 1, root=tmp_path)
    clear_figures("00_x", root=tmp_path)
    assert load_figures(root=tmp_path) == {}


def test_cli_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tinyml_course", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in ("check", "run", "report", "bench", "lab"):
        assert command in result.stdout


def test_cli_run_reports_a_missing_notebook() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tinyml_course", "run", "notebooks/99_nope.ipynb"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "no such notebook" in result.stderr


def test_running_the_whole_course_starts_a_fresh_report(tmp_path, monkeypatch) -> None:
    from tinyml_course import runner

    monkeypatch.setenv("TINYML_COURSE_RESULTS", str(tmp_path))
    record_figure("99_stale", "old", 1, root=tmp_path)
    write_report({"99_stale": {"seconds": 1.0, "ok": True}}, root=tmp_path)
    monkeypatch.setattr(runner, "course_notebooks", lambda: [])
    assert runner.run_notebooks(None, echo=False) == []
    assert not (tmp_path / "results.json").exists()
    assert load_figures(root=tmp_path) == {}


def test_star_import_and_package_data_exist() -> None:
    """Every name in ``__all__`` resolves, and the package data pyproject names is there."""
    import tinyml_course
    from tinyml_course.paths import PACKAGE_DIR

    for name in tinyml_course.__all__:
        assert getattr(tinyml_course, name) is not None, name
    assert (PACKAGE_DIR / "py.typed").is_file()
