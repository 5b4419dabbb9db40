"""A study folder as the study runner leaves it, built from the real models, and the damages a
disk, a sync or a hand edit do to its files.

``build_study`` writes study.yaml, manifest.json and one run folder per run (request.json,
result.json, progress.json, process.json) for a 2-config x 2-cycle study of the current code, so
its design hash and run ids are what ``llem run --resume`` plans. ``FakeExecutor`` stands in for
the local runner when a test resumes such a study: it writes a result.json for the run it is given
(no model, no child process).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llenergymeasure.cli import app
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.energy.types import EnergyMeasurement
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.results.layout import (
    ERROR_FILE,
    MANIFEST_FILE,
    PROCESS_FILE,
    PROGRESS_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    STUDY_FILE,
    STUDY_RESULT_FILE,
)
from llenergymeasure.results.loading import load_study_dir
from llenergymeasure.results.models import ExperimentResult, LoadRecord, ModelRecord, WarmupRecord
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study import runner as runner_module
from llenergymeasure.study.manifest import Manifest, ManifestRun
from llenergymeasure.study.planning import PlannedRun
from llenergymeasure.study.runner import StudyOptions, StudyRunner

STUDY = {
    "name": "damaged",
    "base": {"model": "synthetic/tiny-llama", "n": 4, "max_output_tokens": 4},
    "sweep": {"batch_size": [1, 2]},
    "execution": {"n_cycles": 2, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
}

DAMAGES = ("empty", "truncated", "not_json", "schema_version", "wrong_type")


def result_json(run: PlannedRun, tokens_per_s: float = 10.0) -> str:
    return ExperimentResult(
        llenergymeasure_version="0",
        experiment_id=run.run_id,
        config=run.config,
        config_hash=run.config.config_hash,
        environment=EnvironmentSnapshot(),
        started_at="2026-12-01T10:00:00+00:00",
        ended_at="2026-12-01T10:00:01+00:00",
        model=ModelRecord(id=run.config.model),
        load=LoadRecord(duration_s=1.0),
        warmup=WarmupRecord(mode="fixed", runs=1),
        energy=EnergyMeasurement(meter="null", available=False),
        n_requests=4,
        input_tokens=16,
        output_tokens=16,
        duration_s=1.6,
        output_tokens_per_s=tokens_per_s,
        requests_per_s=2.5,
    ).model_dump_json(indent=2)


def plan_of(study_dir: Path) -> list[PlannedRun]:
    study = StudyConfig.from_yaml(study_dir / STUDY_FILE)
    runner = StudyRunner(
        study, StudyOptions(results_dir=study_dir.parent, no_gaps=True), user_config=UserConfig()
    )
    return runner.plan()


def build_study(
    root: Path, failed: int | None = None, unfinished: int | None = None
) -> tuple[Path, list[PlannedRun]]:
    """A study under ``root`` whose runs completed, except run number ``failed`` (1-based), if
    given, which failed in phase load with an error.json instead of a result, and run number
    ``unfinished``, left running by a controller that died (no result, no error)."""
    study_dir = root / "damaged_20261201-100000"
    study_dir.mkdir(parents=True)
    (study_dir / STUDY_FILE).write_text(yaml.safe_dump(STUDY, sort_keys=False))
    plan = plan_of(study_dir)
    runs = []
    for run in plan:
        folder = study_dir / run.run_id
        folder.mkdir()
        (folder / REQUEST_FILE).write_text(
            json.dumps({"config": run.config.model_dump(mode="json")})
        )
        (folder / PROGRESS_FILE).write_text(json.dumps({"phase": "done"}))
        (folder / PROCESS_FILE).write_text(json.dumps({"pid": 1, "start_ticks": 1, "host": "x"}))
        entry = ManifestRun(
            run_id=run.run_id,
            index=run.index,
            config_hash=run.config.config_hash,
            config_index=run.config_index,
            cycle=run.cycle,
            backend=run.config.backend,
            status="completed",
            attempts=1,
            run_dir=run.run_id,
        )
        if run.index == unfinished:
            entry.status = "running"
        elif run.index == failed:
            (folder / ERROR_FILE).write_text(
                json.dumps({"phase": "load", "error_type": "OSError", "message": "no weights here"})
            )
            entry.status, entry.phase, entry.message = "failed", "load", "no weights here"
        else:
            (folder / RESULT_FILE).write_text(result_json(run, 10.0 + run.index))
        runs.append(entry)
    manifest = Manifest(
        study_name=STUDY["name"],
        study_design_hash=StudyConfig.from_yaml(study_dir / STUDY_FILE).study_design_hash,
        n_cycles=2,
        runs=runs,
    )
    (study_dir / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2))
    return study_dir, plan


def damage(path: Path, how: str) -> str:
    """Damage ``path`` in place as ``how`` says (one of ``DAMAGES``); returns the text before
    (a binary file: only empty, truncated and not_json)."""
    if path.suffix == ".parquet":
        raw = path.read_bytes()
        path.write_bytes({"empty": b"", "truncated": raw[: len(raw) // 2]}.get(how, b"junk"))
        return ""
    before = path.read_text()
    if how == "empty":
        path.write_text("")
    elif how == "truncated":
        path.write_text(before[: len(before) // 2])
    elif how == "not_json":
        path.write_text("\x00\x01PK\x03\x04 binary junk {[")
    elif how == "schema_version":
        if path.suffix == ".yaml":
            path.write_text("schema_version: '99.0'\n" + before)
        else:
            data = json.loads(before)
            data["schema_version"] = "99.0"
            path.write_text(json.dumps(data))
    elif how == "wrong_type":
        if path.suffix == ".yaml":
            path.write_text("name: [1, 2]\nbase: 5\n")
        else:
            data = json.loads(before)
            key = next(k for k in ("runs", "config", "phase", "message", "pid") if k in data)
            data[key] = {"unexpected": [1]} if key != "runs" else "not a list"
            path.write_text(json.dumps(data))
    else:
        raise ValueError(how)
    return before


class FakeExecutor:
    """Writes the run's result.json (numbers made up, never a measurement) and completes it."""

    def __init__(self, plan: list[PlannedRun]) -> None:
        self.by_id = {r.run_id: r for r in plan}
        self.ran: list[Path] = []

    def run(self, request: object, run_dir: Path, timeout_s: float | None = None) -> RunOutcome:
        run = self.by_id[re.sub(r"_a\d+$", "", run_dir.name)]
        (run_dir / RESULT_FILE).write_text(result_json(run, 99.0))
        self.ran.append(run_dir)
        return RunOutcome(status="completed", run_dir=run_dir, result_path=run_dir / RESULT_FILE)


def invoke(command: str, study_dir: Path, user_config: Path):
    args = {
        "status": ["status", str(study_dir)],
        "results show": ["results", "show", str(study_dir)],
        "report": ["report", str(study_dir)],
        "resume": ["run", "--resume", str(study_dir), "--yes"],
    }[command]
    return CliRunner().invoke(app, args, env={"LLEM_CONFIG": str(user_config), "COLUMNS": "200"})


def make_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ended: bool = True):
    """A study of 4 runs (run 2 failed) and a user config; ``ended``: study_result.json and the
    exports written, else run 3 left running by a dead controller. ``executor_for`` is patched
    to a ``FakeExecutor`` (returned), so a resume measures nothing for real."""
    study_dir, plan = build_study(tmp_path / "results", failed=2, unfinished=None if ended else 3)
    if ended:  # the aggregate and the exports, as a finished study has them
        from llenergymeasure.results.export import write_exports

        loaded = load_study_dir(study_dir)
        (study_dir / STUDY_RESULT_FILE).write_text(loaded.model_dump_json())
        write_exports(loaded, study_dir)
    user = tmp_path / "user.yaml"
    user.write_text(
        f"output:\n  results_dir: {tmp_path / 'results'}\n  model_cache_dir: {tmp_path / 'm'}\n"
        "measurement:\n  energy_backend: none\n"
    )
    executor = FakeExecutor(plan)
    monkeypatch.setattr(runner_module, "executor_for", lambda resolved, cache: executor)
    return study_dir, plan, user, executor


def path_of(study_dir: Path, plan: list[PlannedRun], name: str) -> Path:
    """``name`` with RUN, FAILED and LEFT standing for runs 1, 2 and 3's folders."""
    for alias, k in (("RUN", 0), ("FAILED", 1), ("LEFT", 2)):
        name = name.replace(alias, plan[k].run_id)
    return study_dir / name


def results_of(study_dir: Path) -> dict[str, bytes]:
    """Every run folder's result.json, byte for byte."""
    return {
        str(p.relative_to(study_dir)): p.read_bytes() for p in study_dir.glob(f"*/{RESULT_FILE}")
    }
