"""Figures recorded by the notebooks, and the results report built from them.

A notebook records each number it states with one call::

    from tinyml_course.results import record_figure
    record_figure("00_tinyml_budget", "baseline_params", profile.params)

Figures land in ``results/figures/<notebook>.json``; :func:`write_report` merges them
with the notebooks' run times into ``results/results.json`` (for tools) and
``results/report.md`` (for people). The JSON shape is a contract::

    {"notebooks": {"<stem>": {"seconds": float, "ok": bool}},
     "figures":   {"<stem>": {"<figure name>": number}}}
"""

from __future__ import annotations

import json
import math
import numbers
import re
from pathlib import Path
from typing import Any

from tinyml_course.paths import results_dir

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _figures_file(notebook: str, root: Path | None = None) -> Path:
    if not isinstance(notebook, str) or not _NAME.match(notebook):
        raise ValueError(
            f"notebook={notebook!r} is not a notebook file stem; pass the notebook's file "
            "name without '.ipynb', for example '00_tinyml_budget'."
        )
    folder = (root or results_dir()) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{notebook}.json"


def record_figure(notebook: str, name: str, value: Any, *, root: Path | None = None) -> Any:
    """Record one measured figure of a notebook and return it unchanged.

    Parameters
    ----------
    notebook : str
        The notebook's file stem, e.g. ``"02_quantization"``.
    name : str
        The figure's name, e.g. ``"int8_accuracy"`` (names are a contract other tools read).
    value : int, float, bool or numpy scalar
        The measured number. NaN and infinity are refused.
    root : Path, optional
        Results folder; defaults to :func:`tinyml_course.paths.results_dir`.

    Returns
    -------
    The value, so ``acc = record_figure(nb, "accuracy", evaluate(...))`` reads naturally.

    Raises
    ------
    ValueError
        If the name is not a simple identifier or the value is not a finite number.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name={name!r} must be a simple identifier such as 'int8_accuracy'.")
    number = _as_number(name, value)
    path = _figures_file(notebook, root)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = number
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    return value


def _as_number(name: str, value: Any) -> int | float:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars and 0-d arrays
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)):
        return float(value)
    raise ValueError(f"figure {name!r}: value {value!r} is not a finite number.")


def clear_figures(notebook: str, *, root: Path | None = None) -> None:
    """Forget a notebook's recorded figures (done before the notebook is re-run)."""
    path = _figures_file(notebook, root)
    if path.exists():
        path.unlink()


def load_figures(*, root: Path | None = None) -> dict[str, dict[str, int | float]]:
    """All recorded figures, by notebook stem."""
    folder = (root or results_dir()) / "figures"
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def write_report(
    notebooks: dict[str, dict[str, Any]] | None = None, *, root: Path | None = None
) -> Path:
    """Write ``results.json`` and ``report.md`` and return the JSON path.

    Parameters
    ----------
    notebooks : dict, optional
        ``{stem: {"seconds": float, "ok": bool}}`` from a run. When omitted, the run
        times of the previous report are kept.
    """
    root = root or results_dir()
    json_path = root / "results.json"
    previous: dict[str, Any] = {}
    if json_path.exists():
        try:
            previous = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            previous = {}
    merged = dict(previous.get("notebooks", {}))
    merged.update(notebooks or {})
    data = {"notebooks": dict(sorted(merged.items())), "figures": load_figures(root=root)}
    json_path.write_text(json.dumps(data, indent=2, sort_keys=False))
    (root / "report.md").write_text(render_markdown(data))
    return json_path


def _fmt(value: int | float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def render_markdown(data: dict[str, Any]) -> str:
    """The results report as Markdown (one table of run times, one per notebook's figures)."""
    lines = [
        "# TinyML course: results report",
        "",
        "Generated by `tinyml-course run`: every number below was measured by the latest run of its notebook.",
        "",
    ]
    lines += ["## Notebook runs", "", "| notebook | ok | seconds |", "|---|---|---:|"]
    for stem, run in data.get("notebooks", {}).items():
        lines.append(
            f"| {stem} | {'yes' if run.get('ok') else 'FAILED'} | {run.get('seconds', 0):.1f} |"
        )
    for stem, figures in data.get("figures", {}).items():
        lines += ["", f"## {stem}", "", "| figure | value |", "|---|---:|"]
        lines += [f"| {name} | {_fmt(value)} |" for name, value in sorted(figures.items())]
    return "\n".join(lines) + "\n"
