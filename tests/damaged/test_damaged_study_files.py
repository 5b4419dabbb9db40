"""Every file of a study folder that llem reads back, damaged five ways (empty, cut short, not
JSON/YAML, another schema version, a field of the wrong type), through the real CLI where a user
meets it: never a traceback, a clean error (2: the folder cannot be used) naming the file and what
to do, or the file skipped with its reason; and never a completed result changed or removed."""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure.results.layout import (
    ERROR_FILE,
    MANIFEST_FILE,
    PROCESS_FILE,
    PROGRESS_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    RESULTS_PARQUET,
    STUDY_FILE,
    STUDY_RESULT_FILE,
    SUMMARY_FILE,
)
from tests.damaged.study_builder import DAMAGES, damage, invoke, make_study, path_of, results_of

#: file (relative to the study dir; RUN = the first run's folder, FAILED = the failed run's,
#: LEFT = the folder of the run a dead controller left running)
FILES = (
    MANIFEST_FILE,
    STUDY_FILE,
    STUDY_RESULT_FILE,
    RESULTS_PARQUET,
    SUMMARY_FILE,
    f"RUN/{RESULT_FILE}",
    f"FAILED/{ERROR_FILE}",
    f"RUN/{REQUEST_FILE}",
    f"FAILED/{REQUEST_FILE}",
    f"LEFT/{PROGRESS_FILE}",
    f"LEFT/{PROCESS_FILE}",
)
#: the files that exist only once a study has ended (the fixture writes them for these cases;
#: otherwise the loaders read the manifest and the run folders, as after an interrupted study)
AT_THE_END = (STUDY_RESULT_FILE, RESULTS_PARQUET, SUMMARY_FILE)
#: damages of a file that is not JSON/YAML: the rest need the file's shape
BINARY_DAMAGES = ("empty", "truncated", "not_json")
COMMANDS = ("status", "results show", "report", "resume")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", FILES)
def test_a_damaged_file_never_ends_in_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, how: str, command: str
):
    if name in (RESULTS_PARQUET, SUMMARY_FILE) and how not in BINARY_DAMAGES:
        pytest.skip("a Parquet or CSV file has no schema_version or field to damage as JSON")
    study_dir, plan, user, _ = make_study(tmp_path, monkeypatch, ended=name in AT_THE_END)
    target = path_of(study_dir, plan, name)
    damage(target, how)
    before = results_of(study_dir)
    res = invoke(command, study_dir, user)
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{command} with {name} {how}: {type(res.exception).__name__}: {res.exception}\n"
        f"{res.output}"
    )
    assert "Traceback" not in res.output
    assert res.exit_code in (0, 1, 2), res.output
    if res.exit_code == 2:  # the folder cannot be used: the error names the file and a way on
        assert target.name in res.output, res.output
        ways = ("Restore it", "Restore either", "restore it", "llem run", "the version that")
        assert any(way in res.output for way in ways), res.output
    after = results_of(study_dir)
    for path, content in before.items():  # no result changed or removed
        assert after.get(path) == content, f"{path} changed by {command}"


#: (file, command, study ended) -> the line the user is shown instead of a traceback or a refusal
SKIPPED = [
    (STUDY_RESULT_FILE, "report", True, "study_result.json skipped: "),
    (MANIFEST_FILE, "report", False, "manifest.json skipped: "),
    (f"RUN/{RESULT_FILE}", "report", False, f"/{RESULT_FILE} skipped: "),
    (MANIFEST_FILE, "status", False, "manifest.json was damaged ("),
    (MANIFEST_FILE, "resume", False, "manifest.json was damaged ("),
    (f"RUN/{RESULT_FILE}", "resume", True, "kept as it is, the run is measured again"),
]


@pytest.mark.parametrize("how", ("empty", "truncated", "not_json", "wrong_type"))
@pytest.mark.parametrize(("name", "command", "ended", "line"), SKIPPED)
def test_a_damaged_file_the_study_can_do_without_is_skipped_with_its_reason(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    command: str,
    ended: bool,
    line: str,
    how: str,
) -> None:
    study_dir, plan, user, _ = make_study(tmp_path, monkeypatch, ended=ended)
    damage(path_of(study_dir, plan, name), how)
    res = invoke(command, study_dir, user)
    assert res.exit_code == 0, res.output
    assert line in res.output, res.output
    reason = {
        "empty": "the file is empty",
        "truncated": "cut short",
        "not_json": "not valid JSON",
        "wrong_type": "wrong type",
    }[how]
    assert reason in res.output, res.output


def test_results_show_reads_a_study_whose_manifest_is_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study_dir, plan, user, _ = make_study(tmp_path, monkeypatch, ended=False)
    damage(study_dir / MANIFEST_FILE, "truncated")
    res = invoke("results show", study_dir, user)
    assert res.exit_code == 0, res.output
    assert "cannot be read" not in res.output
    assert plan[1].run_id in res.output  # the failed run, read from its folder


@pytest.mark.parametrize("how", ("empty", "not_json", "wrong_type"))
def test_resume_with_a_damaged_study_yaml_says_how_to_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    study_dir, _, user, executor = make_study(tmp_path, monkeypatch, ended=False)
    damage(study_dir / STUDY_FILE, how)
    res = invoke("resume", study_dir, user)
    assert res.exit_code == 2, res.output
    assert "study.yaml cannot be read" in res.output
    assert "resume with the original study file: `llem run ORIGINAL.yaml --resume" in res.output
    assert executor.ran == []


@pytest.mark.parametrize("how", BINARY_DAMAGES)
def test_a_damaged_results_parquet_is_read_from_the_runs_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    study_dir, plan, user, _ = make_study(tmp_path, monkeypatch, ended=True)
    damage(study_dir / RESULTS_PARQUET, how)
    res = invoke("results show", study_dir, user)
    assert res.exit_code == 0, res.output
    assert f"skipped {study_dir / RESULTS_PARQUET}" in res.output.replace("\n", " ")
    assert "read from the runs' result.json" in res.output
    assert plan[1].run_id in res.output  # the failed run, from the manifest
