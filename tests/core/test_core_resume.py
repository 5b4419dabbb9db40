"""Which runs `llem run --resume` skips: a completed manifest entry counts as done only when its
result.json is there and reads back. Fast unit tests of the decision (no experiment runs); the
end-to-end resume on the CPU is in tests/test_study_resume.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure import StudyConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore
from llenergymeasure.study.planning import PlannedRun
from llenergymeasure.study.runner import StudyOptions, StudyRunner
from tests.builders import make_unmetered_result


def _study() -> StudyConfig:
    return StudyConfig(
        name="r",
        base={"model": "synthetic/tiny-llama"},
        sweep={"batch_size": [1, 2, 4]},
        execution={"n_cycles": 2, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    )


def result_json(run: PlannedRun) -> str:
    return make_unmetered_result(run.config, experiment_id=run.run_id).model_dump_json()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[StudyRunner, ManifestStore, list[PlannedRun]]:
    options = StudyOptions(results_dir=tmp_path, no_gaps=True)
    runner = StudyRunner(_study(), options, user_config=UserConfig())
    plan = runner.plan()
    manifest = Manifest(
        study_name="r",
        study_design_hash=runner.study.study_design_hash,
        n_cycles=2,
        runs=[
            ManifestRun(
                run_id=r.run_id,
                index=r.index,
                config_hash=r.config.config_hash,
                config_index=r.config_index,
                cycle=r.cycle,
                backend=r.config.backend,
            )
            for r in plan
        ],
    )
    return runner, ManifestStore(tmp_path, manifest), plan


def _complete(store: ManifestStore, run: PlannedRun, text: str | None) -> Path:
    folder = store.study_dir / run.run_id
    folder.mkdir()
    if text is not None:
        (folder / "result.json").write_text(text)
    store.transition(run.run_id, "running", run_dir=run.run_id)
    store.transition(run.run_id, "completed")
    return folder


def test_completed_with_a_readable_result_is_skipped(setup) -> None:
    runner, store, plan = setup
    _complete(store, plan[0], result_json(plan[0]))
    assert runner._already_done(store, plan[0]) is True


def test_completed_entry_whose_result_json_is_missing_is_rerun(setup) -> None:
    runner, store, plan = setup
    _complete(store, plan[1], None)
    assert store.get(plan[1].run_id).status == "completed"
    assert runner._already_done(store, plan[1]) is False


@pytest.mark.parametrize(
    "text",
    ["", "{not json", '{"schema_version": "1.0"}', "[]"],
    ids=["empty", "truncated", "missing-fields", "not-an-object"],
)
def test_completed_entry_whose_result_json_is_corrupt_is_rerun(setup, text: str) -> None:
    runner, store, plan = setup
    _complete(store, plan[2], text)
    assert runner._already_done(store, plan[2]) is False


def test_entries_that_did_not_complete_are_rerun_even_with_a_result_file(setup) -> None:
    runner, store, plan = setup
    run = plan[3]
    folder = store.study_dir / run.run_id
    folder.mkdir()
    (folder / "result.json").write_text(result_json(run))
    assert runner._already_done(store, run) is False  # pending
    store.transition(run.run_id, "running", run_dir=run.run_id)
    assert runner._already_done(store, run) is False  # left running by a dead controller
    for status in ("failed", "interrupted", "timeout"):
        store.transition(run.run_id, status)  # type: ignore[arg-type]
        assert runner._already_done(store, run) is False, status


def test_completed_entry_without_a_run_dir_is_rerun(setup) -> None:
    runner, store, plan = setup
    store.transition(plan[4].run_id, "completed")  # no run_dir recorded
    assert runner._already_done(store, plan[4]) is False


def _save_study(tmp_path: Path, study: StudyConfig, n_cycles: int) -> Path:
    import yaml

    d = tmp_path / "study"
    d.mkdir()
    (d / "study.yaml").write_text(yaml.safe_dump(study.model_dump(mode="json")))
    (d / "manifest.json").write_text(
        Manifest(
            study_name=study.name, study_design_hash=study.study_design_hash, n_cycles=n_cycles
        ).model_dump_json()
    )
    return d


def test_resume_reads_the_study_and_cycles_from_the_directory(tmp_path: Path) -> None:
    d = _save_study(tmp_path, _study(), n_cycles=4)  # the study file says 2; the manifest 4
    runner = StudyRunner(None, StudyOptions(no_gaps=True), resume_dir=d, user_config=UserConfig())
    assert runner.study.study_design_hash == _study().study_design_hash
    plan = runner.plan()
    assert len(plan) == 3 * 4 and max(r.cycle for r in plan) == 4


def test_resume_refuses_a_directory_without_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no manifest\.json there"):
        StudyRunner(None, resume_dir=tmp_path, user_config=UserConfig())


def test_resume_refuses_a_study_whose_experiments_changed(tmp_path: Path) -> None:
    d = _save_study(tmp_path, _study(), n_cycles=2)
    changed = StudyConfig(
        name="r", base={"model": "synthetic/tiny-llama"}, sweep={"batch_size": [1, 2]}
    )
    with pytest.raises(ConfigError, match="no longer matches this study") as err:
        StudyRunner(changed, resume_dir=d, user_config=UserConfig())
    assert _study().study_design_hash[:12] in str(err.value)
    assert changed.study_design_hash[:12] in str(err.value)
