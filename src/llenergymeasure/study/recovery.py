"""On ``--resume``: runs a dead controller left ``running`` (or ``interrupted``).

Two things can be true of such a run, and both are checked before anything starts:

- its experiment process still runs (the controller was killed, the experiment was not: another
  machine's controller, or an engine that ignored its parent's death). Its ``process.json`` names
  its pid and start time; a second attempt beside it would share its GPUs, so resume refuses;
- it finished: the harness wrote a complete ``result.json`` but the controller died before the
  manifest said so. A result that validates, belongs to this run (its id) and to this config (its
  hash) is adopted as completed, not measured again. A partial or invalid one is left where it is,
  named in the run's ``set_aside`` list, and the run is rerun in a new attempt folder.
"""

from __future__ import annotations

import json
from pathlib import Path

from llenergymeasure._proc import recorded_process_alive
from llenergymeasure.errors import RunnerError
from llenergymeasure.results.layout import PROCESS_FILE, RESULT_FILE
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.study.manifest import ManifestRun, ManifestStore
from llenergymeasure.timestamps import utc_now

UNFINISHED = ("running", "interrupted")


def _unfinished(store: ManifestStore) -> list[tuple[ManifestRun, Path]]:
    return [
        (entry, store.study_dir / entry.run_dir)
        for entry in store.manifest.runs
        if entry.status in UNFINISHED and entry.run_dir
    ]


def refuse_if_still_running(store: ManifestStore) -> None:
    """Raise ``RunnerError`` naming every unfinished run whose experiment process is alive."""
    alive: list[str] = []
    for entry, run_dir in _unfinished(store):
        try:
            record = json.loads((run_dir / PROCESS_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and recorded_process_alive(record):
            alive.append(f"{entry.run_id}: process {record['pid']} writing to {run_dir}")
    if alive:
        raise RunnerError(
            f"--resume {store.study_dir}: an experiment of this study is still running, so a "
            "new attempt would measure beside it on the same GPUs:\n  "
            + "\n  ".join(alive)
            + "\nWait for it to end, or stop it (kill PID), then resume again"
        )


def _result_problem(entry: ManifestRun, path: Path) -> str | None:
    """Why ``path`` is not this run's complete result (None when it is)."""
    try:
        result = ExperimentResult.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"not a valid result ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    if result.experiment_id != entry.run_id:
        return f"it is the result of run {result.experiment_id}, not {entry.run_id}"
    if result.config_hash != entry.config_hash:
        return (
            f"its config hash {result.config_hash[:12]} is not this run's {entry.config_hash[:12]}"
        )
    return None


def adopt_finished_results(store: ManifestStore) -> list[str]:
    """Mark unfinished runs whose latest attempt holds their complete result as completed.

    Returns the adopted run ids. Invalid results are named in ``set_aside`` (the run stays
    unfinished and is rerun in a new attempt folder).
    """
    adopted: list[str] = []
    for entry, run_dir in _unfinished(store):
        path = run_dir / RESULT_FILE
        if not path.exists():
            continue
        problem = _result_problem(entry, path)
        relative = f"{entry.run_dir}/{RESULT_FILE}"
        if problem is None:
            store.transition(
                entry.run_id,
                "completed",
                note="adopted on resume: the harness had written result.json, the manifest "
                "had not recorded it",
                message=None,
                phase=None,
            )
            adopted.append(entry.run_id)
        elif relative not in entry.set_aside:
            entry.set_aside.append(relative)
            entry.history.append(
                {
                    "status": entry.status,
                    "time": utc_now(),
                    "attempt": entry.attempts,
                    "note": f"set aside {relative}: {problem}",
                }
            )
            store.save()
    return adopted
