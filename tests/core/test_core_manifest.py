"""The manifest's state transitions, field by field (what resume and `llem status` read)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore


def _store(tmp_path: Path) -> ManifestStore:
    runs = [
        ManifestRun(
            run_id=f"00{k}", index=k, config_hash="c", config_index=0, cycle=k, backend="pytorch"
        )
        for k in (1, 2, 3)
    ]
    store = ManifestStore(
        tmp_path, Manifest(study_name="s", study_design_hash="h", n_cycles=3, runs=runs)
    )
    store.save()
    return store


def test_a_new_attempt_clears_the_last_attempts_fields(tmp_path: Path) -> None:
    store = _store(tmp_path)
    run = store.transition("001", "running", run_dir="001")
    assert (run.attempts, run.status, run.run_dir) == (1, "running", "001")
    assert run.started_at and run.ended_at is None
    run = store.transition("001", "failed", message="boom", phase="load", job_id="7", node="n1")
    assert run.ended_at and (run.message, run.phase, run.job_id, run.node) == (
        "boom",
        "load",
        "7",
        "n1",
    )
    started_first = run.started_at
    run = store.transition("001", "running", run_dir="001_a2")
    assert run.attempts == 2 and run.started_at and run.started_at >= started_first
    assert (run.ended_at, run.message, run.phase, run.job_id, run.node) == (None,) * 5
    assert (run.scheduler_state, run.submitted_at, run.exit_code) == (None, None, None)
    assert [(h["status"], h["attempt"]) for h in run.history] == [
        ("running", 1),
        ("failed", 1),
        ("running", 2),
    ]
    on_disk = json.loads((tmp_path / "manifest.json").read_text())["runs"][0]
    assert on_disk["attempts"] == 2 and on_disk["status"] == "running"


def test_queued_then_running_is_one_attempt(tmp_path: Path) -> None:
    store = _store(tmp_path)
    run = store.transition("002", "queued", note="sbatch 41", job_id="41")
    assert (run.attempts, run.started_at, run.job_id) == (1, None, "41")
    assert run.history[-1]["note"] == "sbatch 41"
    run = store.transition("002", "running")
    assert run.attempts == 1 and run.started_at and run.job_id == "41"  # same attempt
    assert "note" not in run.history[-1]
    run = store.transition("002", "completed")
    assert run.ended_at and run.status == "completed"


def test_counts_controller_and_dump(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.transition("001", "running")
    store.transition("001", "completed")
    store.transition("002", "running")
    assert store.manifest.counts() == {"completed": 1, "running": 1, "pending": 1}
    store.claim_controller()
    controller = json.loads((tmp_path / "manifest.json").read_text())["controller"]
    assert controller["pid"] == os.getpid() and controller["host"] == socket.gethostname()
    assert controller["since"]
