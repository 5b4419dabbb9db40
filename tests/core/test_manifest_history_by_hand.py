"""The manifest's history and counts as `llem status` reads them: each transition stamped with its
UTC time and attempt, and one count per status over every run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore


def _store(tmp_path: Path, n: int) -> ManifestStore:
    runs = [
        ManifestRun(
            run_id=f"00{k}", index=k, config_hash="c", config_index=0, cycle=k, backend="pytorch"
        )
        for k in range(1, n + 1)
    ]
    return ManifestStore(
        tmp_path, Manifest(study_name="s", study_design_hash="h", n_cycles=n, runs=runs)
    )


def test_each_transition_is_stamped_with_its_utc_time(tmp_path: Path) -> None:
    store = _store(tmp_path, 1)
    before = dt.datetime.now(dt.timezone.utc)
    run = store.transition("001", "running")
    after = dt.datetime.now(dt.timezone.utc)
    [event] = run.history
    assert set(event) == {"status", "time", "attempt"}
    stamped = dt.datetime.fromisoformat(event["time"])
    assert stamped.utcoffset() == dt.timedelta(0)
    assert before <= stamped <= after


def test_counts_add_up_runs_of_the_same_status(tmp_path: Path) -> None:
    store = _store(tmp_path, 5)
    for run_id, status in (("001", "completed"), ("002", "completed"), ("003", "failed")):
        store.transition(run_id, "running")
        store.transition(run_id, status)  # type: ignore[arg-type]
    assert store.manifest.counts() == {"completed": 2, "failed": 1, "pending": 2}
