"""Issue 29 item 7: messages and records that were wrong for a new user."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llenergymeasure import StudyConfig
from llenergymeasure.cli import app
from llenergymeasure.cli.results_cmd import missing_results_dir
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.study.manifest import Manifest, ManifestRun
from llenergymeasure.study.planning import resolve_gaps
from llenergymeasure.study.runner import StudyOptions, StudyRunner
from tests.core.test_core_resume import result_json
from tests.helpers import write

ENV = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def test_status_of_a_folder_that_is_no_study_says_so(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["status", str(tmp_path)], env=ENV)
    assert res.exit_code == 2
    assert "not a study directory (no manifest.json there)" in res.output
    assert "--resume" not in res.output


def test_an_experiment_with_a_missing_input_is_called_an_experiment(tmp_path: Path) -> None:
    cfg = ExperimentConfig(model=str(tmp_path / "no-such-model"))
    with pytest.raises(ConfigError) as err:
        StudyRunner(StudyConfig.from_experiment(cfg), user_config=UserConfig())
    assert "the experiment names local inputs" in str(err.value)
    assert "the study names" not in str(err.value)


def test_a_single_run_records_no_gap_without_claiming_no_gaps_was_passed() -> None:
    one = StudyConfig.from_experiment(ExperimentConfig(model="synthetic/tiny-llama"))
    gaps = resolve_gaps(one, None, no_gaps=True)
    assert gaps.config_gap_source == gaps.cycle_gap_source == "single run (no gap to leave)"
    assert resolve_gaps(one, None, no_gaps=True, n_cycles=3).config_gap_source == "--no-gaps"


def test_an_experiment_file_over_several_cycles_names_why_it_has_no_gaps(tmp_path: Path) -> None:
    """`llem run experiment.yaml --cycles 2` zeroes the gaps (one config); the record says the
    experiment file did, not `--no-gaps`, which nobody passed."""
    f = write(tmp_path / "e.yaml", "model: synthetic/tiny-llama\n")
    uc = write(tmp_path / "uc.yaml", f"output:\n  results_dir: {tmp_path / 'r'}\n")
    res = CliRunner().invoke(
        app, ["run", str(f), "--cycles", "2", "--dry-run", "--json"], env={"LLEM_CONFIG": str(uc)}
    )
    assert res.exit_code == 0, res.output
    assert "experiment file (one config: no gaps between its cycles)" in res.output, res.output
    assert "--no-gaps" not in res.output


def test_a_misspelled_sweep_axis_is_one_error_with_a_line(tmp_path: Path) -> None:
    f = write(
        tmp_path / "s.yaml",
        "name: s\nbase:\n  model: synthetic/tiny-llama\nsweep:\n  batch_sise: [1, 2, 4]\n",
    )
    with pytest.raises(ConfigError) as err:
        StudyConfig.from_yaml(f)
    text = str(err.value)
    assert f"{f}:4: sweep: sweep.batch_sise:" in text, text
    assert text.count("batch_sise") == 2 and "did you mean `batch_size`" in text, text
    assert "accepted fields here" not in text


def test_points_failing_alike_are_named_once(tmp_path: Path) -> None:
    f = write(
        tmp_path / "s.yaml",
        "name: s\nbase:\n  model: synthetic/tiny-llama\n  dataset: {input_tokenz: 8}\n"
        "sweep:\n  batch_size: [1, 2, 4]\n",
    )
    with pytest.raises(ConfigError) as err:
        StudyConfig.from_yaml(f)
    text = str(err.value)
    assert text.count("input_tokenz") == 1, text
    assert "points 0-2 [batch_size=1, 2, 4]" in text, text


def test_the_missing_results_dir_message_names_the_folder_looked_at(tmp_path: Path) -> None:
    text = missing_results_dir("./results", "/home/u/.config/llenergymeasure/config.yaml")
    assert f"no results folder at {Path('results').absolute()}" in text
    assert "/home/u/.config/llenergymeasure/config.yaml" in text
    assert "taken from the current folder" in text
    text = missing_results_dir(str(tmp_path / "r"), None)
    assert "(the default)" in text and "current folder" not in text


def test_a_resumed_study_keeps_its_first_start(tmp_path: Path) -> None:
    study = StudyConfig(
        name="r",
        base={"model": "synthetic/tiny-llama"},
        sweep={"batch_size": [1, 2]},
        execution={"n_cycles": 1, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    )
    options = StudyOptions(results_dir=tmp_path, no_gaps=True)
    plan = StudyRunner(study, options, user_config=UserConfig()).plan()
    d = tmp_path / "study"
    d.mkdir()
    (d / "study.yaml").write_text(yaml.safe_dump(study.model_dump(mode="json")))
    runs = []
    for r in plan:
        (d / r.run_id).mkdir()
        (d / r.run_id / "result.json").write_text(result_json(r))
        runs.append(
            ManifestRun(
                run_id=r.run_id,
                index=r.index,
                config_hash=r.config.config_hash,
                config_index=r.config_index,
                cycle=r.cycle,
                backend=r.config.backend,
                status="completed",
                run_dir=r.run_id,
            )
        )
    first_start = "2026-01-02T03:04:05+00:00"
    manifest = Manifest(
        study_name="r",
        study_design_hash=study.study_design_hash,
        n_cycles=1,
        created_at=first_start,
        runs=runs,
    )
    (d / "manifest.json").write_text(manifest.model_dump_json())
    result = StudyRunner(None, options, resume_dir=d, user_config=UserConfig()).run()
    assert result.started_at == first_start  # was the time of the resume
    written = json.loads((d / "study_result.json").read_text())
    assert written["started_at"] == first_start
