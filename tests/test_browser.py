"""The course in a real browser: JupyterLab driven by Debian's Chromium through Playwright.

For notebook 00, every course notebook that shows an explorer (02 quantization, 05 early
exits, ...) and a small notebook showing all three explorers, the test opens the notebook in JupyterLab, runs all cells with JupyterLab's
own Run All command, waits for the kernel to go idle, checks that no cell shows an error,
then moves each explorer's slider (keyboard on the slider handle, as a user would) and
checks that the explorer's numbers and plot changed. Screenshots and timings (``<notebook>.json``) go to
``results/browser/`` (ignored by git).

Set-up installs Debian's ``chromium`` with apt-get when ``/usr/bin/chromium`` is missing;
the test skips, saying why, only where that is impossible. No browser is downloaded.

Run it alone (it executes notebooks, so hold the CPU lock)::

    flock /tmp/tinyml-cpu.lock .venv/bin/pytest -m browser tests/test_browser.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM_ARGS,
    copy_notebook,
    ensure_chromium,
    explorer_notebook,
    jupyter_lab,
    open_notebook,
    run_all_cells,
    wait_until,
)

from tinyml_course.paths import repo_root, results_dir

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = repo_root()


def _notebooks() -> list[tuple[str, bool]]:
    """(stem, shows an explorer?): notebook 00, every course notebook whose code calls an
    explorer (02 quantization, 05 early exits, ...), and the small all-explorers notebook."""
    found = [("00_tinyml_budget", False)]
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if path.stem != "00_tinyml_budget" and "_explorer(" in code:
            found.append((path.stem, True))
    return [*found, ("explorers", True)]


NOTEBOOKS = _notebooks()


@pytest.fixture(scope="module")
def screenshots() -> Path:
    folder = results_dir() / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> Path:
    path, reason = ensure_chromium()
    if path is None:
        pytest.skip(f"no Chromium for the browser test: {reason}")
    return path


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Copies of the notebooks (running them must not write next to the sources)."""
    folder = tmp_path_factory.mktemp("lab")
    for stem, _ in NOTEBOOKS:
        source = ROOT / "notebooks" / f"{stem}.ipynb"
        if source.exists():
            copy_notebook(source, folder / "notebooks")
    explorer_notebook(folder / "notebooks" / "explorers.ipynb")
    return folder


@pytest.fixture(scope="module")
def lab(workspace, chromium, tmp_path_factory):
    state = tmp_path_factory.mktemp("lab-state")
    # The kernels' figures and models go to a private results folder, not the course report.
    with jupyter_lab(
        workspace, state, env={"TINYML_COURSE_RESULTS": str(state / "results")}
    ) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium):
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright Python package is not installed"
    )
    with sync_api.sync_playwright() as playwright:
        chromium_browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS, timeout=120_000
        )
        try:
            yield chromium_browser
        finally:
            chromium_browser.close()


def _record(screenshots: Path, stem: str, entry: dict[str, Any]) -> None:
    """Timings and explorer moves of one notebook (one file each: xdist workers run in parallel)."""
    (screenshots / f"{stem}.json").write_text(json.dumps(entry, indent=2, sort_keys=True))


def _move_slider(page: Any, explorer: Any) -> str:
    """Move the explorer's first slider three steps left; returns how it was moved."""
    handle = explorer.locator(".noUi-handle").first
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowLeft")
    return "keyboard"


def _drag_slider(page: Any, explorer: Any) -> str:
    """Fallback: drag the slider handle to the left with the mouse."""
    handle = explorer.locator(".noUi-handle").first
    box = handle.bounding_box()
    track = explorer.locator(".noUi-base").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.3, box["y"] + box["height"] / 2, steps=10)
    page.mouse.up()
    return "mouse"


def _wait_settled(summary: Any, plot: Any, quiet: float = 2.0, timeout: float = 60) -> None:
    """Wait until an explorer's numbers and plot have not changed for ``quiet`` seconds."""
    seen: list[tuple[float, tuple[str, str | None]]] = []

    def settled() -> bool:
        now = (summary.inner_text(), plot.get_attribute("src"))
        if not seen or seen[-1][1] != now:
            seen.append((time.monotonic(), now))
        return time.monotonic() - seen[-1][0] >= quiet

    wait_until(settled, timeout, "the explorer to settle", poll=0.5)


def _check_explorers(page: Any, stem: str, screenshots: Path) -> list[dict[str, str]]:
    explorers = page.locator(".tinyml-explorer")

    def rendered() -> int:
        return explorers.count()

    try:
        wait_until(rendered, 60, "an explorer widget to render")
    except TimeoutError:
        broken = page.locator("text=/Error displaying widget|Loading widget/").all_inner_texts()
        pytest.fail(
            f"{stem}: no explorer widget rendered in JupyterLab (widget messages: {broken})"
        )
    moves = []
    for i in range(explorers.count()):
        explorer = explorers.nth(i)
        explorer.scroll_into_view_if_needed()
        summary = explorer.locator(".tinyml-explorer-summary")
        plot = explorer.locator(".tinyml-explorer-plot")
        before, before_plot = summary.inner_text(), plot.get_attribute("src")
        explorer.screenshot(path=str(screenshots / f"{stem}_explorer{i + 1}_before.png"))
        how = _move_slider(page, explorer)
        try:
            wait_until(
                lambda summary=summary, before=before: summary.inner_text() != before,
                30,
                "the explorer to update",
                poll=0.5,
            )
        except TimeoutError:
            how = _drag_slider(page, explorer)
            wait_until(
                lambda summary=summary, before=before: summary.inner_text() != before,
                30,
                f"{stem} explorer {i + 1} to update after moving its slider",
                poll=0.5,
            )
        # The plot is redrawn by the kernel after the numbers; wait for it too, then for the
        # explorer to settle (each key press is one update; the kernel works through them).
        wait_until(
            lambda plot=plot, before_plot=before_plot: plot.get_attribute("src") != before_plot,
            30,
            f"{stem} explorer {i + 1} plot to be redrawn",
            poll=0.5,
        )
        _wait_settled(summary, plot)
        after = summary.inner_text()
        explorer.screenshot(path=str(screenshots / f"{stem}_explorer{i + 1}_after.png"))
        assert after != before
        moves.append({"before": before, "after": after, "moved_with": how})
    return moves


@pytest.mark.parametrize(("stem", "has_explorer"), NOTEBOOKS, ids=[stem for stem, _ in NOTEBOOKS])
def test_notebook_in_jupyterlab(
    stem: str, has_explorer: bool, lab, browser, screenshots: Path
) -> None:
    relative = f"notebooks/{stem}.ipynb"
    if not (lab.root / relative).exists():
        pytest.skip(f"{relative} is not in the course yet")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    start = time.monotonic()
    try:
        open_notebook(page, lab, relative)
        opened = time.monotonic()
        state = run_all_cells(page, relative)
        ran = time.monotonic()
        page.screenshot(path=str(screenshots / f"{stem}_after_run_all.png"))
        errors = [f"cell {c['index']}: {e}" for c in state["cells"] for e in c["errors"]]
        assert not errors, f"{relative} shows error outputs in JupyterLab: {errors}"
        not_run = [c["index"] for c in state["cells"] if c["source"] and not c["count"]]
        assert not not_run, f"{relative}: cells {not_run} never ran"
        moves = _check_explorers(page, stem, screenshots) if has_explorer else []
        page.screenshot(path=str(screenshots / f"{stem}_final.png"))
        _record(
            screenshots,
            stem,
            {
                "open_seconds": round(opened - start, 1),
                "run_all_seconds": round(ran - opened, 1),
                "total_seconds": round(time.monotonic() - start, 1),
                "code_cells": len(state["cells"]),
                "cells_with_stderr": [c["index"] for c in state["cells"] if c["stderr"]],
                "explorer_moves": moves,
                "page_errors": page_errors[:5],
            },
        )
    except Exception:
        page.screenshot(path=str(screenshots / f"{stem}_failure.png"))
        raise
    finally:
        context.close()
        lab.shutdown_kernels()
