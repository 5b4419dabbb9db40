"""The report renders in a real browser (headless Chromium), offline.

Skipped where Chromium is not installed (``apt-get install -y chromium``); with
``LLEM_REQUIRE_CHROMIUM=1`` (set by CI, whose ``.ci/run`` installs Debian's chromium) a missing
browser or Pillow is a failure instead, so the render check cannot silently drop out of CI. The
same check by hand is ``scripts/render_report.sh STUDY_DIR``.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from report_builders import build_study_dir

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


def test_script_refuses_a_dir_without_report(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert "no report at" in done.stderr
