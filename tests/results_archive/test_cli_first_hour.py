"""Issue 29 items 7, 9 and 10 through ``llem results`` / ``llem status`` over a study directory
written by the report tests' builder (no energy: a CPU study): ``--json`` on show, status and
leaderboard; an empty leaderboard says why; an interrupted run is not counted as failed; a study
without ``results.parquet`` and without results is not "read from parquet"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llenergymeasure.cli import app
from tests.report.report_builders import build_study_dir

duckdb = pytest.importorskip("duckdb")

ENV = {"COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}


def _llem(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=ENV)


@pytest.fixture
def cpu_study(tmp_path: Path) -> Path:
    study_dir, _ = build_study_dir(tmp_path / "root", with_energy=False)
    return study_dir


def test_show_and_status_print_json(cpu_study: Path) -> None:
    res = _llem("results", "show", str(cpu_study), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["study"]["name"] == "synthetic-sweep"
    assert len(data["configs"]) == 4
    assert {c["config_label"] for c in data["configs"]} >= {"tiny-llama/vllm/bs8"}
    assert [r["status"] for r in data["unfinished_runs"]] == ["failed"]
    run_id = "001_c1_pytorch_" + data["configs"][0]["config_hash"][:8]
    res = _llem("results", "show", str(cpu_study / run_id), "--json")
    assert res.exit_code == 0, res.output
    run = json.loads(res.stdout)
    assert (
        run["run_id"] == run_id and run["run"]["config_hash"] == data["configs"][0]["config_hash"]
    )
    res = _llem("status", str(cpu_study), "--json")
    assert res.exit_code == 0, res.output
    status = json.loads(res.stdout)
    assert status["counts"] == {"completed": 7, "failed": 1}
    assert len(status["runs"]) == 8


def test_an_empty_leaderboard_says_why(cpu_study: Path, tmp_path: Path) -> None:
    res = _llem("results", "leaderboard", str(tmp_path / "lb"), "-r", str(cpu_study.parent))
    assert res.exit_code == 0, res.output
    assert "0 entries; 4 configs excluded (no energy measured)" in res.output
    res = _llem(
        "results", "leaderboard", str(tmp_path / "lb"), "-r", str(cpu_study.parent), "--json"
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["leaderboards"][0]["points"] == []
    assert len(data["written"]) == 2


def test_interrupted_runs_are_not_failures_and_no_results_is_not_parquet(tmp_path: Path) -> None:
    study_dir, _ = build_study_dir(tmp_path / "root", with_energy=False, fail_run=None)
    manifest = json.loads((study_dir / "manifest.json").read_text())
    for entry in manifest["runs"]:
        entry["status"] = "pending"
    manifest["runs"][0]["status"] = "interrupted"
    (study_dir / "manifest.json").write_text(json.dumps(manifest))
    res = _llem("results", "list", "-r", str(study_dir.parent), "--json")
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert (row["n_failed"], row["n_interrupted"], row["n_completed"]) == (0, 1, 0)
    assert row["source"] == "none"
    res = _llem("results", "list", "-r", str(study_dir.parent))
    assert "parquet" not in res.stdout and "no result yet" in res.stdout, res.stdout


def test_status_of_a_local_study_has_no_empty_slurm_columns_and_cuts_nothing(
    cpu_study: Path,
) -> None:
    from rich.console import Console

    from llenergymeasure.cli.slurm_cmd import runs_table
    from llenergymeasure.study.manifest import Manifest

    res = CliRunner().invoke(app, ["status", str(cpu_study)], env={**ENV, "COLUMNS": "60"})
    assert res.exit_code == 0, res.output
    assert "SLURM state" not in res.output and "node" not in res.output
    assert "…" not in res.output, res.output  # wrapped, never cut
    manifest = Manifest.model_validate_json((cpu_study / "manifest.json").read_text())
    runs = [r.model_copy(update={"job_id": "123", "node": "gpu01"}) for r in manifest.runs]
    c = Console(record=True, width=200, color_system=None)
    c.print(runs_table(runs, "slurm"))
    text = c.export_text()
    assert "job" in text and "gpu01" in text and "SLURM state" not in text
