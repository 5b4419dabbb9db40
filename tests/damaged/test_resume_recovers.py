"""``llem run --resume`` and ``llem status`` on a study whose files were damaged: a damaged
manifest is rebuilt from study.yaml and the run folders (the damaged file kept), a run whose
result.json is damaged is measured again in a new attempt folder (the damaged file kept), and what
cannot be recovered is a clean error naming the file and what to do. Through the real CLI; the
one run resume measures is done by ``FakeExecutor`` (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llenergymeasure.cli import app
from llenergymeasure.results.layout import (
    ERROR_FILE,
    MANIFEST_FILE,
    PROCESS_FILE,
    RESULT_FILE,
    STUDY_FILE,
)
from llenergymeasure.study.manifest import read_manifest
from tests.damaged.study_builder import damage, invoke, make_study, path_of, results_of

REBUILDABLE = ("empty", "truncated", "not_json", "wrong_type")


@pytest.mark.parametrize("how", REBUILDABLE)
def test_resume_rebuilds_a_damaged_manifest_from_the_run_folders(study, how: str) -> None:
    study_dir, plan, user, executor = study
    damaged = damage(study_dir / MANIFEST_FILE, how)
    damaged_bytes = (study_dir / MANIFEST_FILE).read_bytes()
    before = results_of(study_dir)
    res = invoke("resume", study_dir, user)
    assert res.exit_code == 0, res.output
    assert "manifest.json was damaged" in res.output and "rebuilt from study.yaml" in res.output
    assert "4 runs, 2 cycle(s)" in res.output and "3 completed, 1 failed" in res.output
    # the damaged file is kept beside the rebuilt one, byte for byte
    (kept,) = study_dir.glob(f"{MANIFEST_FILE}.damaged-*")
    assert kept.read_bytes() == damaged_bytes and damaged  # (the original was valid JSON)
    manifest = read_manifest(study_dir)
    assert [r.run_id for r in manifest.runs] == [r.run_id for r in plan]
    # the three completed runs were adopted, not measured again; the failed one (run 2) was
    # rerun in a new attempt folder, its error.json left where it was
    assert executor.ran == [study_dir / f"{plan[1].run_id}_a2"]
    assert [r.status for r in manifest.runs] == ["completed"] * 4
    assert manifest.runs[1].run_dir == f"{plan[1].run_id}_a2"
    assert (study_dir / plan[1].run_id / ERROR_FILE).exists()
    after = results_of(study_dir)
    assert all(after[p] == content for p, content in before.items())


@pytest.mark.parametrize("how", REBUILDABLE)
def test_status_shows_a_damaged_manifest_rebuilt_and_writes_nothing(study, how: str) -> None:
    study_dir, plan, user, _ = study
    damage(study_dir / MANIFEST_FILE, how)
    damaged_bytes = (study_dir / MANIFEST_FILE).read_bytes()
    res = invoke("status", study_dir, user)
    assert res.exit_code == 0, res.output
    assert "manifest.json was damaged" in res.output
    assert "shown as rebuilt; `llem run --resume" in res.output
    assert plan[0].run_id in res.output
    assert (study_dir / MANIFEST_FILE).read_bytes() == damaged_bytes
    assert not list(study_dir.glob(f"{MANIFEST_FILE}.damaged-*"))


@pytest.mark.parametrize("command", ["status", "resume"])
def test_a_manifest_of_another_schema_version_is_refused_naming_it(study, command: str) -> None:
    study_dir, _, user, executor = study
    damage(study_dir / MANIFEST_FILE, "schema_version")
    res = invoke(command, study_dir, user)
    assert res.exit_code == 2, res.output
    assert "manifest.json: schema_version '99.0'" in res.output
    assert "the llenergymeasure version that wrote it" in res.output
    assert executor.ran == []


@pytest.mark.parametrize("how", REBUILDABLE)
def test_manifest_and_study_yaml_both_damaged_is_a_clean_error(study, how: str) -> None:
    study_dir, _, user, executor = study
    damage(study_dir / MANIFEST_FILE, how)
    damage(study_dir / STUDY_FILE, "not_json")
    res = invoke("resume", study_dir, user)
    assert res.exit_code == 2, res.output
    assert "both manifest.json" in res.output and "study.yaml are damaged" in res.output
    assert "Restore either from a backup" in res.output
    assert executor.ran == []


def test_run_folders_of_no_plan_leave_the_manifest_unrebuilt(study) -> None:
    study_dir, _, user, executor = study
    damage(study_dir / MANIFEST_FILE, "empty")
    (study_dir / "009_c7_pytorch_0123abcd").mkdir()  # a folder no plan of study.yaml has
    res = invoke("resume", study_dir, user)
    assert res.exit_code == 2, res.output
    assert "cannot be rebuilt" in res.output and "009_c7_pytorch_0123abcd" in res.output
    assert executor.ran == []


@pytest.mark.parametrize("how", ("empty", "truncated", "not_json", "schema_version", "wrong_type"))
def test_resume_reruns_a_run_whose_result_is_damaged_and_keeps_the_file(study, how: str) -> None:
    study_dir, plan, user, executor = study
    target = path_of(study_dir, plan, f"RUN/{RESULT_FILE}")
    damage(target, how)
    damaged_bytes = target.read_bytes()
    res = invoke("resume", study_dir, user)
    assert res.exit_code == 0, res.output
    line = f"{plan[0].run_id}: {plan[0].run_id}/{RESULT_FILE}"
    assert line in res.output and "measured again in a new attempt folder" in res.output
    assert target.read_bytes() == damaged_bytes
    assert study_dir / f"{plan[0].run_id}_a2" in executor.ran
    entry = json.loads((study_dir / MANIFEST_FILE).read_text())["runs"][0]
    assert entry["status"] == "completed" and entry["run_dir"] == f"{plan[0].run_id}_a2"
    assert entry["set_aside"] == [f"{plan[0].run_id}/{RESULT_FILE}"]


def test_an_unreadable_manifest_is_an_io_error(study, monkeypatch: pytest.MonkeyPatch) -> None:
    study_dir, _, user, _ = study
    real = Path.read_text

    def denied(self: Path, *args, **kwargs):
        if self.name == MANIFEST_FILE:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    res = invoke("status", study_dir, user)
    assert res.exit_code == 74, res.output
    assert "cannot read the study's manifest" in res.output and MANIFEST_FILE in res.output


@pytest.mark.parametrize("how", ("empty", "truncated", "not_json"))
def test_resume_names_a_damaged_process_record_and_reruns_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    study_dir, plan, user, executor = make_study(tmp_path, monkeypatch, ended=False)
    damage(path_of(study_dir, plan, f"LEFT/{PROCESS_FILE}"), how)
    res = invoke("resume", study_dir, user)
    assert res.exit_code == 0, res.output
    assert f"{plan[2].run_id}/{PROCESS_FILE} skipped (" in res.output
    assert "whether its experiment still runs is unknown" in res.output
    assert study_dir / f"{plan[2].run_id}_a2" in executor.ran


def test_a_manifest_is_rebuilt_with_the_cycles_its_run_folders_show(study) -> None:
    """A study started with ``--cycles 2`` over a one-cycle file: study.yaml says 1, the run
    folders show 2; the rebuilt plan has both cycles (the file's count alone would leave the
    second cycle's folders belonging to no plan)."""
    study_dir, plan, user, executor = study
    text = (study_dir / STUDY_FILE).read_text()
    assert "n_cycles: 2" in text
    (study_dir / STUDY_FILE).write_text(text.replace("n_cycles: 2", "n_cycles: 1"))
    damage(study_dir / MANIFEST_FILE, "empty")
    res = invoke("resume", study_dir, user)
    assert res.exit_code == 0, res.output
    assert "4 runs, 2 cycle(s)" in res.output
    manifest = read_manifest(study_dir)
    assert manifest.n_cycles == 2
    assert [r.run_id for r in manifest.runs] == [r.run_id for r in plan]
    assert executor.ran == [study_dir / f"{plan[1].run_id}_a2"]  # only the failed run again


def test_resume_with_json_keeps_what_it_recovered_off_stdout(study) -> None:
    """``--json``: stdout carries the study's JSON alone; the lines saying what was recovered
    (and the progress) go to stderr."""
    study_dir, plan, user, executor = study
    damage(study_dir / MANIFEST_FILE, "empty")
    res = CliRunner().invoke(
        app,
        ["run", "--resume", str(study_dir), "--yes", "--json"],
        env={"LLEM_CONFIG": str(user), "COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary and "manifest.json was damaged" not in res.stdout
    assert "manifest.json was damaged" in res.stderr
    assert executor.ran == [study_dir / f"{plan[1].run_id}_a2"]
