"""The live progress view with runs side by side: one row per run in flight, each with its own
phase (read from its progress.json) and elapsed time; a finished run leaves the view."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

from rich.console import Console

from llenergymeasure import StudyConfig
from llenergymeasure.cli.run_progress import LiveProgress
from llenergymeasure.config.user import UserConfig
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study.planning import plan_study, resolve_gaps


def _text(progress: LiveProgress) -> str:
    console = Console(file=StringIO(), width=200)
    console.print(progress._render())
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_one_row_per_run_in_flight(tmp_path: Path) -> None:
    study = StudyConfig(
        name="p",
        base={"model": "synthetic/tiny-llama"},
        sweep={"batch_size": [1, 2]},
        execution={"n_cycles": 1, "concurrent_runs": 2},
    )
    plan = plan_study(study, resolve_gaps(study, UserConfig(), True), None)
    progress = LiveProgress(Console(file=StringIO()), ["batch_size"], verbosity="quiet")
    progress.on_start(tmp_path, plan, plan)
    dirs = []
    for k, run in enumerate(plan, start=1):
        d = tmp_path / run.run_id
        d.mkdir()
        (d / "progress.json").write_text(json.dumps({"phase": f"phase{k}"}))
        dirs.append(d)
        progress.on_run_start(run, k, len(plan), d)
    text = _text(progress)
    assert "run 1/2" in text and "run 2/2" in text
    assert "phase1" in text and "phase2" in text
    progress.on_run_end(plan[0], RunOutcome(status="failed", run_dir=dirs[0], message="x"), None)
    text = _text(progress)
    assert "run 1/2" not in text and "run 2/2" in text and "ETA" in text
    progress.on_run_end(plan[1], RunOutcome(status="failed", run_dir=dirs[1], message="x"), None)
    assert "preparing" in _text(progress) and progress.finished == 2
    progress.on_gap(30, "config")
    assert "thermal gap (config)" in _text(progress)
