"""A new user's first hour (issue 29 items 3, 4, 5): the plan says what will surprise, the dry
run refuses what the run would, a CPU machine gets a study and a user config that fit it, and a
log without a terminal shows where a run is."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from llenergymeasure.cli import app
from llenergymeasure.cli.init_cmd import Detected, render
from llenergymeasure.cli.plan_notes import plan_notes
from llenergymeasure.cli.run_progress import LiveProgress
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.validate import load_config_file
from llenergymeasure.models.presets import gpu_sized, preset_parameters
from llenergymeasure.results.layout import PROGRESS_FILE
from llenergymeasure.runners.resolution import cli_runner_overrides, resolve_runners
from tests.helpers import tiny_experiment, user_config_file, write
from tests.test_hardening_filesystem import (  # noqa: F401  (read_only_dir is a fixture)
    _mount_tmpfs,
    _umount,
    read_only_dir,
)

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WIDE = {"COLUMNS": "300"}


def _study(tmp_path: Path, **base: object) -> Path:
    import yaml

    data = {
        "name": "t",
        "base": tiny_experiment(**base),
        "sweep": {"batch_size": [1]},
        "execution": {"n_cycles": 1, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    }
    return write(tmp_path / "study.yaml", yaml.safe_dump(data))


# -- item 3: the first run fits the machine ------------------------------------------------------


def test_the_quick_start_study_fits_a_cpu_and_the_gpu_study_says_it_is_one() -> None:
    cpu = load_config_file(EXAMPLES / "study-cpu.yaml")
    assert isinstance(cpu, StudyConfig)
    assert all(gpu_sized(c.model) is None for c in cpu.expand())
    gpu = load_config_file(EXAMPLES / "study.yaml")
    assert isinstance(gpu, StudyConfig) and all(gpu_sized(c.model) for c in gpu.expand())
    assert "GPU study" in (EXAMPLES / "study.yaml").read_text()
    readme = (EXAMPLES.parent / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "examples/study-cpu.yaml" in quick and "no energy" in quick


def test_preset_sizes() -> None:
    assert preset_parameters("llama-1b") == pytest.approx(1.1e9, rel=0.01)
    assert preset_parameters("llama-8b") == pytest.approx(8.0e9, rel=0.01)
    assert gpu_sized("synthetic/tiny-llama") is None and gpu_sized("org/hub-model") is None


def _resolved(backend: str = "pytorch", **kw: object) -> dict:
    return resolve_runners([backend], **kw)  # type: ignore[arg-type]


def test_plan_warns_of_a_gpu_sized_model_on_a_machine_without_a_gpu() -> None:
    big = [ExperimentConfig(model="synthetic/llama-1b")]
    notes = plan_notes(big, _resolved(environ={}), None, gpu_count=0, energy_backend="auto")
    assert any("synthetic/llama-1b (1.1 B parameters) is sized for a GPU" in n for n in notes)
    assert any("records no energy" in n for n in notes)
    assert plan_notes(big, _resolved(environ={}), None, gpu_count=1, energy_backend="auto") == []
    tiny = [ExperimentConfig(model="synthetic/tiny-llama")]
    notes = plan_notes(tiny, _resolved(environ={}), None, gpu_count=0, energy_backend="auto")
    assert not any("sized for a GPU" in n for n in notes)


def test_dry_run_of_the_gpu_study_on_a_cpu_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("llenergymeasure.cli.dry_run.host_gpus", lambda: 0)
    res = runner.invoke(app, ["run", str(EXAMPLES / "study.yaml"), "--dry-run"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "sized for a GPU and this machine has none" in res.output
    assert "examples/study-cpu.yaml" in res.output and "records no energy" in res.output


def test_llem_config_says_a_cpu_run_records_no_energy(monkeypatch: pytest.MonkeyPatch) -> None:
    import llenergymeasure.cli.config_cmd as config_cmd

    real = config_cmd.capture_environment

    def no_gpu(**kw: object) -> object:
        snap = real(**{**kw, "probe_gpus": False})  # type: ignore[arg-type]
        snap.gpus = []
        return snap

    monkeypatch.setattr(config_cmd, "capture_environment", no_gpu)
    res = runner.invoke(app, ["config"], env=WIDE)
    assert res.exit_code == 0, res.output
    assert "runs on this machine record no energy" in res.output


def test_init_without_a_gpu_writes_short_gaps() -> None:
    cpu = render(Detected(gpus=[], gpu_problem="NVML not found"))
    assert "config_gap_seconds: 5" in cpu and "cycle_gap_seconds: 10" in cpu
    gpu = render(Detected(gpus=["0: NVIDIA H200, 143771 MiB, power limit 700 W"]))
    assert "config_gap_seconds: 60" in gpu and "cycle_gap_seconds: 300" in gpu


def test_without_a_terminal_progress_prints_one_line_per_phase(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    assert not console.is_terminal
    progress = LiveProgress(console, [])
    run_dir = tmp_path / "001"
    run_dir.mkdir()
    run = SimpleNamespace(
        run_id="001_c1_pytorch_abc",
        cycle=1,
        config=ExperimentConfig(model="synthetic/tiny-llama"),
    )
    progress.total = 1
    progress.on_run_start(run, 1, 1, run_dir)  # type: ignore[arg-type]
    for phase, detail in [("load", None), ("load", None), ("warmup", "1/2"), ("measure", "pass 1")]:
        (run_dir / PROGRESS_FILE).write_text(json.dumps({"phase": phase, "detail": detail}))
        progress.log_phases()
    progress.on_gap(5, "config")
    lines = [line.strip() for line in out.getvalue().splitlines()]
    assert lines[0].startswith("→ run 1/1 cycle 1")
    phases = [line for line in lines if line.startswith("run 1/1 001_c1_pytorch_abc:")]
    assert [p.split(": ", 1)[1].rsplit(" (", 1)[0] for p in phases] == [
        "load",
        "warmup 1/2",
        "measure pass 1",
    ]
    assert lines[-1] == "thermal gap (config): 5 s"


# -- item 4: --runner that loses says so -----------------------------------------------------------


def test_runner_that_loses_to_the_user_config_says_which_source_won(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "runners: {pytorch: local}\n")
    res = runner.invoke(
        app,
        ["run", str(EXAMPLES / "experiment.yaml"), "--dry-run", "--runner", "docker"],
        env={**WIDE, "LLEM_CONFIG": str(cfg)},
    )
    assert res.exit_code == 0, res.output
    out = " ".join(res.output.split())
    assert (
        f"--runner docker is not used for pytorch: runners.pytorch in the user config {cfg} "
        "takes precedence and gives local"
    ) in out
    assert "LLEM_RUNNER_PYTORCH=docker" in out and "remove `runners.pytorch`" in out


def test_runner_that_loses_to_an_env_var_names_it() -> None:
    lines = cli_runner_overrides(
        _resolved(environ={"LLEM_RUNNER_PYTORCH": "local"}, cli_runner="docker"), "docker"
    )
    assert lines == [
        "--runner docker is not used for pytorch: environment variable LLEM_RUNNER_PYTORCH "
        "takes precedence and gives local; unset LLEM_RUNNER_PYTORCH to let --runner choose"
    ]
    # the same runner either way, or --runner not given: nothing to say
    same = _resolved(environ={"LLEM_RUNNER_PYTORCH": "local"}, cli_runner="local")
    assert cli_runner_overrides(same, "local") == []
    assert cli_runner_overrides(_resolved(environ={}), None) == []


# -- item 5: the dry run refuses what the run would ----------------------------------------------


def test_dry_run_refuses_a_docker_image_that_is_not_here(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["run", str(EXAMPLES / "experiment.yaml"), "--dry-run", "--results-dir", str(tmp_path)],
        env={**WIDE, "LLEM_RUNNER_PYTORCH": "docker:llem-test/no-such-image:0"},
    )
    assert res.exit_code == 1, res.output
    out = " ".join(res.output.split())
    assert "docker:llem-test/no-such-image:0 (env:LLEM_RUNNER_PYTORCH)" in out  # the plan
    assert "the run would be refused:" in out
    assert "no-such-image" in out.split("the run would be refused:", 1)[1]


def test_dry_run_json_prints_the_plan_on_stdout(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        ["run", str(EXAMPLES / "study-cpu.yaml"), "--dry-run", "--json"],
        env={**WIDE, "LLEM_CONFIG": str(user_config_file(tmp_path, tmp_path / "cache"))},
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["study"] == "tiny-cpu-sweep" and len(data["configs"]) == 2
    assert len(data["runs"]) == 4 and data["would_be_refused"] == []
    assert data["configs"][0]["runner"] == "local" and data["gaps"]["config_gap_s"] == 2


def test_dry_run_refuses_a_read_only_results_dir_with_74(
    tmp_path: Path,
    read_only_dir: Path,  # noqa: F811
) -> None:
    f = _study(tmp_path)
    res = runner.invoke(
        app, ["run", str(f), "--dry-run", "--results-dir", str(read_only_dir)], env=WIDE
    )
    assert res.exit_code == 74, res.output
    out = " ".join(res.output.split())
    assert "the run would be refused" in out and "Read-only file system" in out
    assert str(read_only_dir) in out and list(read_only_dir.iterdir()) == []


def test_status_reads_a_read_only_study_dir(tmp_path: Path, shared_model_cache: Path) -> None:
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    where = tmp_path / "ro"
    _mount_tmpfs(where, "size=4m")
    try:
        f = _study(tmp_path)
        sr = StudyRunner(
            StudyConfig.from_yaml(f),
            StudyOptions(results_dir=where),
            user_config_path=user_config_file(tmp_path, shared_model_cache),
            source_path=f,
        )
        d = where / "t_status"
        d.mkdir()
        sr._start_manifest(d, sr.plan())
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)
        res = runner.invoke(app, ["status", str(d)], env=WIDE)
        assert res.exit_code == 0, res.output
        assert "pending 1" in res.output
    finally:
        _umount(where)


def test_the_cpu_quick_start_study_runs_and_logs_without_a_terminal(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """The Quick start's study, verbatim, as CI or a SLURM log runs it (stdout not a terminal):
    the plan says no energy is recorded, each run logs its phases, the summary says it again."""
    import os
    import sys

    env = {
        **os.environ,
        "LLEM_CONFIG": str(user_config_file(tmp_path, shared_model_cache)),
        "COLUMNS": "200",
    }
    env.pop("LLEM_RUNNER_PYTORCH", None)
    res = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "run", str(EXAMPLES / "study-cpu.yaml"), "--yes"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stdout + res.stderr
    from llenergymeasure.cli.plan_notes import host_gpus

    if host_gpus() == 0:  # the plan's note (the tests' user config says energy_backend none)
        assert "energy_backend is none: no energy is recorded" in out
    assert "→ run 1/4 cycle 1: batch_size=1" in out and "→ run 4/4 cycle 2: batch_size=4" in out
    assert "thermal gap (config): 2 s" in out and "thermal gap (cycle): 5 s" in out
    assert ": measure" in out  # a phase line of the measured window
    assert "no energy recorded in any run" in out
