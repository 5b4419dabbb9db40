"""The report renders in a real browser (headless Chromium), offline.

Skipped where Chromium is not installed (``apt-get install -y chromium``); with
``LLEM_REQUIRE_CHROMIUM=1`` (set by CI, whose ``.ci/run`` installs Debian's chromium) a missing
browser or Pillow is a failure instead, so the render check cannot silently drop out of CI. The
same check by hand is ``scripts/render_report.sh STUDY_DIR``.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from report_builders import add_engine_telemetry, build_study_dir

from llenergymeasure.report import generate_report

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_report.sh"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _unavailable(reason: str) -> None:
    if os.environ.get("LLEM_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"LLEM_REQUIRE_CHROMIUM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _pillow_image() -> Any:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as exc:
        _unavailable(f"Pillow is not installed ({exc})")


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    if not any(shutil.which(b) for b in BROWSERS):
        _unavailable("headless Chromium is not installed (apt-get install -y chromium)")
    image = _pillow_image()
    study_dir, study = build_study_dir(tmp_path)
    study, served_run = add_engine_telemetry(study_dir, study)  # a served run's engine panel
    generate_report(study, study_dir)
    out = tmp_path / "shot.png"
    done = subprocess.run(
        ["bash", str(SCRIPT), str(study_dir), str(out), "1200", "1800"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    with image.open(out) as shot:
        assert shot.size == (1200, 1800)
        # Not a blank page: the embedded figures and tables put many distinct colours on it.
        colours = shot.convert("RGB").getcolors(maxcolors=1_000_000)
        assert colours is not None and len(colours) > 200
        # And the top of the page is not all white (the title and the banners are there).
        top = shot.convert("L").crop((0, 0, 1200, 200))
        assert top.getextrema()[0] < 100
    _assert_engine_panel_renders(study_dir, served_run, tmp_path, image)


#: the engine panel's lines (report/engine_panel.py), told apart by which channel dominates
#: (thin antialiased lines over the window's shading never keep their exact colour): running
#: green #2ca02c, waiting red #d62728, KV cache purple #9467bd
ENGINE_LINES: dict[str, Any] = {
    "running": lambda r, g, b: g > r + 50 and g > b + 50,
    "waiting": lambda r, g, b: r > g + 70 and r > b + 70,
    "kv cache": lambda r, g, b: b > g + 40 and r > g + 20,
}


def _assert_engine_panel_renders(study_dir: Path, run_id: str, tmp_path: Path, image: Any) -> None:
    """The served run's figure is in the DOM the browser built, and the browser draws it with the
    engine's running, waiting and KV-cache lines (the figure alone, screenshot by Chromium)."""
    browser = next(b for b in BROWSERS if shutil.which(b))
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            "--dump-dom",
            f"file://{study_dir / 'report.html'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr
    alt = f'alt="power and engine state over time of run {run_id}"'
    found = re.search(
        r"<figure>(?:(?!</figure>).)*?" + re.escape(alt) + r".*?</figure>", dom.stdout, re.S
    )
    assert found is not None, f"no engine telemetry panel for {run_id} in the rendered page"
    page = tmp_path / "panel.html"
    page.write_text(f"<!doctype html><html><body style='margin:0'>{found.group(0)}</body></html>")
    shot_path = tmp_path / "panel.png"
    done = subprocess.run(
        ["bash", str(SCRIPT), str(page), str(shot_path), "900", "700"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with image.open(shot_path) as shot:
        rgb = shot.convert("RGB")
        pixels = [rgb.getpixel((x, y)) for y in range(rgb.height) for x in range(rgb.width)]
    for name, is_line in ENGINE_LINES.items():
        n = sum(1 for p in pixels if is_line(*p))
        assert n > 30, f"the {name} line of the engine panel is not drawn ({n} pixels)"


def test_script_refuses_a_dir_without_report(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "no report at" in done.stderr
