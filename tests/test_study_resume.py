"""Resume on the CPU with real runs: a completed run whose result.json went missing or is corrupt
is run again in a new attempt folder (a completed run kept intact is covered by the kill-and-resume
test in test_study_runner.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from llenergymeasure import run_study
from llenergymeasure.study.runner import StudyRunner
from tests.helpers import tiny_experiment, user_config_file, write


@pytest.mark.slow
def test_resume_reruns_completed_runs_whose_result_is_missing_or_corrupt(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    study = {
        "name": "resume",
        "base": tiny_experiment(n=2, batch_size=2, max_output_tokens=2),
        "sweep": {"batch_size": [1]},
        "execution": {"n_cycles": 2, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    }
    first = run_study(write(tmp_path / "study.yaml", yaml.safe_dump(study)), user_config_path=uc)
    d = Path(first.study_dir or "")
    runs = json.loads((d / "manifest.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["completed"] * 2
    missing, corrupt = (d / r["run_dir"] / "result.json" for r in runs)
    missing.unlink()
    corrupt.write_text(corrupt.read_text()[:100])  # truncated mid-write

    second = StudyRunner(None, resume_dir=d, user_config_path=uc).run()

    after = {r["run_id"]: r for r in json.loads((d / "manifest.json").read_text())["runs"]}
    missing_id, corrupt_id = (r["run_id"] for r in runs)
    for rid in (missing_id, corrupt_id):
        assert after[rid]["status"] == "completed"
        assert after[rid]["attempts"] == 2 and after[rid]["run_dir"] == f"{rid}_a2"
        assert (d / f"{rid}_a2" / "result.json").is_file()
    assert not missing.exists()  # the first attempt's folder is left as it was
    assert len(corrupt.read_text()) == 100
    assert len(second.runs) == 2 and not second.failures
    assert sorted(r.experiment_id for r in second.runs) == sorted(after)


def test_ctrl_c_before_the_first_run_leaves_a_resumable_study(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """A Ctrl-C after the manifest is written but before a run starts (taking the study lock,
    the environment snapshot) is a StudyInterrupted with the resume command, not a bare
    KeyboardInterrupt; resuming runs every run."""
    from llenergymeasure.errors import StudyInterrupted
    from llenergymeasure.study.observer import NullObserver
    from llenergymeasure.study.runner import StudyOptions

    class CtrlCAtStart(NullObserver):
        def on_start(self, study_dir, plan, to_run):  # type: ignore[no-untyped-def]
            raise KeyboardInterrupt

    uc = user_config_file(tmp_path, shared_model_cache)
    study = {
        "name": "early-ctrl-c",
        "base": tiny_experiment(n=2, batch_size=2, max_output_tokens=2),
        "execution": {"n_cycles": 1, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    }
    from llenergymeasure.config.study import StudyConfig

    config = StudyConfig.from_dict(study)
    runner = StudyRunner(
        config, options=StudyOptions(), user_config_path=uc, observer=CtrlCAtStart()
    )
    with pytest.raises(StudyInterrupted) as stopped:
        runner.run()
    d = runner.study_dir
    assert d is not None
    assert stopped.value.exit_code == 130
    assert f"llem run --resume {d}" in str(stopped.value)
    runs = json.loads((d / "manifest.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["pending"]

    resumed = StudyRunner(None, resume_dir=d, user_config_path=uc).run()
    assert len(resumed.runs) == 1 and not resumed.failures
    after = json.loads((d / "manifest.json").read_text())["runs"]
    assert [r["status"] for r in after] == ["completed"]
