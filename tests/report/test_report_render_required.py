"""``LLEM_REQUIRE_CHROMIUM=1`` turns a missing browser into a failure, not a skip (CI sets it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RENDER_TEST = Path(__file__).resolve().parent / "test_report_render.py"


def _run_render_test(tmp_path: Path, require: bool) -> subprocess.CompletedProcess[str]:
    # A PATH holding only the Python interpreter's directory: no chromium can be found.
    env = {k: v for k, v in os.environ.items() if k != "LLEM_REQUIRE_CHROMIUM"}
    env["PATH"] = str(Path(sys.executable).parent)
    if require:
        env["LLEM_REQUIRE_CHROMIUM"] = "1"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rs",
            f"{RENDER_TEST}::test_report_renders_in_headless_chromium",
        ],
        cwd=RENDER_TEST.parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_chromium_skips_by_default(tmp_path: Path) -> None:
    done = _run_render_test(tmp_path, require=False)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 skipped" in done.stdout and "Chromium is not installed" in done.stdout


def test_missing_chromium_fails_when_required(tmp_path: Path) -> None:
    done = _run_render_test(tmp_path, require=True)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 failed" in done.stdout
    assert "LLEM_REQUIRE_CHROMIUM=1 but headless Chromium is not installed" in done.stdout
