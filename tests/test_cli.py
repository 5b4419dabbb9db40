from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from llenergymeasure import __version__
from llenergymeasure.cli import app
from tests.helpers import write

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_dry_run_examples_print_hashes_and_runners() -> None:
    res = runner.invoke(
        app, ["run", str(EXAMPLES / "study.yaml"), "--dry-run"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    assert "6 experiment(s)" in res.output and "18 run(s)" in res.output
    assert "local (default)" in res.output and "study design hash:" in res.output
    # 6 configs x 3 cycles interleaved: 2 cycle gaps of 120 s + 15 config gaps of 30 s = 690 s,
    # plus one 15 s idle baseline (then cached)
    assert "estimated duration: 11m45s" in res.output
    res = runner.invoke(
        app, ["run", str(EXAMPLES / "experiment.yaml"), "--dry-run"], env={"COLUMNS": "200"}
    )
    assert res.exit_code == 0, res.output
    assert "1 experiment(s)" in res.output


def test_dry_run_shows_runner_source_from_env(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["run", str(EXAMPLES / "experiment.yaml"), "--dry-run", "--runner", "local"],
        env={"COLUMNS": "200", "LLEM_RUNNER_PYTORCH": "docker:custom/img"},
    )
    # the image is not built here: the dry run says the run would be refused, and exits as it would
    assert res.exit_code == 1, res.output
    assert "docker:custom/img (env:LLEM_RUNNER_PYTORCH)" in res.output
    out = " ".join(res.output.split())
    assert "--runner local is not used for pytorch: environment variable LLEM_RUNNER_PYTORCH" in out
    assert "the run would be refused:" in out and "custom/img" in out


def test_dry_run_lists_invalid_sweep_points(tmp_path: Path) -> None:
    f = write(tmp_path / "s.yaml", "base: {model: m}\nsweep: {batch_size: [1, 0]}\n")
    res = runner.invoke(app, ["run", str(f), "--dry-run"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "invalid sweep point, skipped" in res.output and "batch_size=0" in res.output


def test_bad_input_exits_2_with_field_path(tmp_path: Path) -> None:
    f = write(tmp_path / "e.yaml", "model: m\nbatch_sise: 4\n")
    res = runner.invoke(app, ["run", str(f), "--dry-run"], env={"COLUMNS": "200"})
    assert res.exit_code == 2
    assert "batch_sise: unknown field (did you mean `batch_size`?)" in res.output
    res = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["run"])
    assert res.exit_code == 2 and "--resume" in res.output


def test_multi_backend_without_docker_exits_2(tmp_path: Path) -> None:
    f = write(
        tmp_path / "s.yaml",
        "base: {model: m}\nexperiments: [{backend: pytorch}, {backend: vllm}]\n",
    )
    res = runner.invoke(app, ["run", str(f), "--dry-run"], env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "must run in Docker" in res.output.replace("\n", " ")


def test_config_command_shows_sources_environment_and_meters(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.yaml",
        "runners: {vllm: docker}\nmeasurement: {carbon_intensity_gco2_kwh: 123}\n",
    )
    res = runner.invoke(
        app,
        ["config"],
        env={"COLUMNS": "250", "LLEM_CONFIG": str(cfg), "LLEM_RUNNER_TENSORRT": "local"},
    )
    assert res.exit_code == 0, res.output
    out = res.output
    assert str(cfg) in out
    assert "docker:llenergymeasure:vllm" in out and "user_config:" in out
    assert "env:LLEM_RUNNER_TENSORRT" in out and "default" in out
    assert "123" in out and "environment" in out
    assert "energy meters" in out and "nvml" in out


def test_config_command_bad_user_config_exits_2(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "runner: {vllm: docker}\n")
    res = runner.invoke(app, ["config"], env={"COLUMNS": "250", "LLEM_CONFIG": str(cfg)})
    assert res.exit_code == 2 and "runner: unknown field (did you mean `runners`?)" in res.output


def test_report_command_regenerates_a_study_report(tmp_path: Path) -> None:
    import shutil

    src = Path(__file__).resolve().parent / "report" / "fixtures" / "study"
    study = tmp_path / "study"
    shutil.copytree(src, study)
    res = runner.invoke(app, ["report", str(study)], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert (study / "report.html").exists() and (study / "results.parquet").exists()
    assert str(study / "report.html") in res.output.replace("\n", "")
    res = runner.invoke(app, ["report", str(tmp_path / "nope")], env={"COLUMNS": "250"})
    assert res.exit_code == 2 and "nope" in res.output
