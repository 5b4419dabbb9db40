"""Loading a study directory back into a StudyResult: as written, rebuilt, stale, broken."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from llenergymeasure import StudyResult
from llenergymeasure.results.loading import StudyDirError, load_study_dir, run_folders
from llenergymeasure.results.stats import summarise


def _ids(study: StudyResult) -> list[str]:
    return sorted(r.experiment_id for r in study.runs)


def test_round_trip_of_the_real_fixture(fixture_study: Path) -> None:
    study = StudyResult.from_directory(str(fixture_study))
    stored = StudyResult.model_validate_json((fixture_study / "study_result.json").read_text())
    assert study.study_dir == str(fixture_study)  # where it is now, not where it was written
    assert study.model_dump(exclude={"study_dir"}) == stored.model_dump(exclude={"study_dir"})
    assert study.name == "report-fixture"
    assert len(study.runs) == 4 and len(study.summaries) == 2 and not study.failures


def test_rebuilt_without_study_result_json_matches_the_aggregate(fixture_study: Path) -> None:
    stored = load_study_dir(fixture_study)
    (fixture_study / "study_result.json").unlink()
    rebuilt = load_study_dir(fixture_study)
    assert rebuilt.name == stored.name
    assert rebuilt.study_design_hash == stored.study_design_hash
    assert [r.model_dump() for r in sorted(rebuilt.runs, key=lambda r: r.experiment_id)] == [
        r.model_dump() for r in sorted(stored.runs, key=lambda r: r.experiment_id)
    ]

    # the stored aggregate predates schema 1.2: compare the metrics it has (renamed on load)
    def common(summaries: list, keys: set[str]) -> list[dict]:
        dumps = [s.model_dump() for s in summaries]
        for d in dumps:
            d["metrics"] = {k: v for k, v in d["metrics"].items() if k in keys}
        return dumps

    keys = {k for s in stored.summaries for k in s.metrics}
    assert common(rebuilt.summaries, keys) == common(stored.summaries, keys)
    assert rebuilt.measurement_protocol["n_cycles"] == 2
    assert rebuilt.measurement_protocol["cycle_order"] == "interleaved"
    assert not rebuilt.interrupted and not rebuilt.failures


def test_rebuilt_failures_come_from_error_json(
    study_builder: Callable[..., tuple[Path, StudyResult]],
) -> None:
    study_dir, original = study_builder(write_aggregate=False)
    study = load_study_dir(study_dir)
    assert _ids(study) == _ids(original)
    assert len(study.failures) == 1
    f = study.failures[0]
    assert (f.run_id, f.cycle, f.status, f.phase, f.error_type) == (
        original.failures[0].run_id,
        1,
        "failed",
        "load",
        "OutOfMemoryError",
    )
    assert "out of memory" in f.message
    assert f.error_file is not None and f.error_file.endswith("error.json")
    assert [s.n_failed for s in study.summaries] == [0, 0, 0, 1]
    assert [s.model_dump() for s in study.summaries] == [
        s.model_dump() for s in summarise(original.runs, original.failures)
    ]


def test_pending_runs_mark_the_study_interrupted(
    study_builder: Callable[..., tuple[Path, StudyResult]],
) -> None:
    study_dir, _ = study_builder(write_aggregate=False, pending_runs=2, fail_run=None)
    study = load_study_dir(study_dir)
    assert study.interrupted
    assert len(study.runs) == 6


def test_stale_aggregate_after_a_resume_is_rebuilt(
    study_builder: Callable[..., tuple[Path, StudyResult]],
) -> None:
    study_dir, original = study_builder()
    # The aggregate as written before the last run finished (e.g. a resume stopped early).
    stale = original.model_copy(
        update={"runs": original.runs[:-1], "measurement_protocol": {"marker": 1}}
    )
    (study_dir / "study_result.json").write_text(stale.model_dump_json())
    study = load_study_dir(study_dir)
    assert _ids(study) == _ids(original)
    assert study.measurement_protocol == {"marker": 1}  # kept from the aggregate
    assert sum(s.n_completed for s in study.summaries) == len(original.runs)


def test_without_manifest_the_latest_attempt_folder_wins(
    study_builder: Callable[..., tuple[Path, StudyResult]],
) -> None:
    study_dir, original = study_builder(write_aggregate=False)
    (study_dir / "manifest.json").unlink()
    failed = original.failures[0].run_id
    # A retry of the failed run succeeded in a second attempt folder.
    donor = next(r for r in original.runs if r.config_hash == original.failures[0].config_hash)
    retry = donor.model_copy(update={"experiment_id": failed})
    (study_dir / f"{failed}_a2").mkdir()
    (study_dir / f"{failed}_a2" / "result.json").write_text(retry.model_dump_json())
    assert run_folders(study_dir)[failed].name == f"{failed}_a2"
    study = load_study_dir(study_dir)
    assert failed in _ids(study) and not study.failures
    assert study.name == "synthetic-sweep"  # from study.yaml


def test_failure_without_manifest_takes_its_config_hash_from_request_json(
    study_builder: Callable[..., tuple[Path, StudyResult]],
) -> None:
    study_dir, original = study_builder(write_aggregate=False)
    (study_dir / "manifest.json").unlink()
    study = load_study_dir(study_dir)
    assert study.failures[0].config_hash == original.failures[0].config_hash


def test_unreadable_result_becomes_a_failure(fixture_study: Path) -> None:
    (fixture_study / "study_result.json").unlink()
    (fixture_study / "003_c2_pytorch_ea12ce53" / "result.json").write_text("{not json")
    study = load_study_dir(fixture_study)
    assert len(study.runs) == 3
    assert [f.run_id for f in study.failures] == ["003_c2_pytorch_ea12ce53"]
    assert study.failures[0].phase == "result" and "unreadable" in study.failures[0].message
    assert study.failures[0].config_hash.startswith("ea12ce53")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(StudyDirError, match="does not exist"):
        load_study_dir(tmp_path / "nope")


def test_a_file_is_not_a_study_dir(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{}")
    with pytest.raises(StudyDirError, match="is a file"):
        load_study_dir(f)


def test_an_empty_dir_is_not_a_study_dir(tmp_path: Path) -> None:
    with pytest.raises(StudyDirError, match="not a study directory"):
        load_study_dir(tmp_path)


def test_corrupt_study_result_is_skipped_and_the_study_rebuilt(fixture_study: Path) -> None:
    (fixture_study / "study_result.json").write_text('{"name": 3}')
    notes: list[str] = []
    study = load_study_dir(fixture_study, notes)
    assert len(notes) == 1
    assert notes[0].startswith(
        "study_result.json skipped: a field has the wrong type or is missing"
    )
    assert "name: Input should be a valid string" in notes[0]
    assert len(study.runs) == 4 and not study.failures  # from the manifest and the run folders


def test_unknown_schema_major_is_refused(fixture_study: Path) -> None:
    data = json.loads((fixture_study / "study_result.json").read_text())
    data["schema_version"] = "9.0"
    (fixture_study / "study_result.json").write_text(json.dumps(data))
    with pytest.raises(StudyDirError, match=r"schema_version '9\.0'"):
        load_study_dir(fixture_study)


def test_moved_directory_still_loads(fixture_study: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(fixture_study, moved)
    (moved / "study_result.json").unlink()
    assert load_study_dir(moved).study_dir == str(moved)
