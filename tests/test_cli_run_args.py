"""``llem run``'s options reach what they steer (``cli/run_cmd.py``): every ``RunArgs`` field
into the ``StudyRunner``, ``-q``/``-v`` over ``ui.verbosity``, ``--detach`` refused off SLURM,
``--json`` keeping stdout for JSON. A real ``StudyRunner`` on a CPU study, nothing measured."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from llenergymeasure.cli import app
from llenergymeasure.cli.run_cmd import RunArgs, _prepare, _report, _runner_for
from llenergymeasure.cli.run_progress import LiveProgress
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.results.models import RunFailure, StudyResult
from tests.builders import make_result
from tests.helpers import tiny_experiment, user_config_file, write


@pytest.fixture
def study_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    user = user_config_file(
        tmp_path / "user", tmp_path / "models", extra="ui: {verbosity: verbose}\n"
    )
    monkeypatch.setenv("LLEM_CONFIG", str(user))
    data = {"name": "args", "base": tiny_experiment(), "sweep": {"batch_size": [1, 2]}}
    return write(tmp_path / "s.yaml", yaml.safe_dump(data))


def test_every_option_reaches_the_study_runner(study_file: Path, tmp_path: Path) -> None:
    args = RunArgs(
        file=study_file,
        runner="local",
        cycles=3,
        fail_fast=True,
        results_dir=tmp_path / "elsewhere",
        detach=True,
    )
    study = StudyConfig.from_yaml(study_file)
    sr = _runner_for(args, study, True, "because", None)
    assert (sr.cli_runner, sr.n_cycles, sr.fail_fast, sr.detach) == ("local", 3, True, True)
    assert sr.results_dir == tmp_path / "elsewhere" and sr.source_path == study_file
    assert (sr.no_gaps, sr.no_gaps_reason) == (True, "because")
    assert len(sr.plan()) == 2 * 3


@pytest.mark.parametrize(("flag", "want"), [("quiet", "quiet"), (None, "verbose")])
def test_quiet_or_verbose_overrides_the_user_config(
    study_file: Path, flag: str | None, want: str
) -> None:
    args = RunArgs(file=study_file, verbosity=flag)
    console = Console(file=io.StringIO())
    sr = _runner_for(args, StudyConfig.from_yaml(study_file), False, None, None)
    progress = _prepare(console, args, sr, LiveProgress(console, []))
    assert progress.verbosity == want  # the user config says verbose
    assert progress.fields  # the sweep's varying field, read from the study once resolved


def test_detach_off_slurm_is_refused_before_anything_runs(study_file: Path) -> None:
    res = CliRunner().invoke(app, ["run", str(study_file), "--detach", "--yes"])
    assert res.exit_code == 2, res.output
    assert "--detach needs the slurm runner (--runner slurm)" in res.output
    assert not list((study_file.parent / "user" / "results").glob("*"))


def test_json_keeps_stdout_for_the_json_alone(study_file: Path) -> None:
    res = CliRunner().invoke(app, ["run", str(study_file), "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    json.loads(res.stdout)  # notes and progress went to stderr


def _study_result(failed: bool, invalid: bool) -> StudyResult:
    ok = make_result(experiment_id="001_c1")
    bad = make_result(experiment_id="002_c1", valid=False, failed_gates=["foreign_process"])
    failures = [RunFailure(run_id="003_c1", config_hash="h", cycle=1, message="boom")]
    return StudyResult(
        llenergymeasure_version="x", name="s", study_design_hash="h", started_at="t0",
        ended_at="t1", runs=[ok, bad] if invalid else [ok], failures=failures if failed else [],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("failed", "invalid", "strict", "code"),
    [
        (False, False, False, 0),
        (True, False, False, 1),  # a run produced no result
        (False, True, False, 0),  # a run failed a validity gate: reported, not an error...
        (False, True, True, 1),  # ...unless --strict
        (True, True, True, 1),
    ],
)
def test_the_exit_code_says_whether_runs_failed(
    failed: bool, invalid: bool, strict: bool, code: int
) -> None:
    out = io.StringIO()
    args = RunArgs(file=None, strict=strict)
    assert (
        _report(Console(file=out, width=200), args, _study_result(failed, invalid), False) == code
    )
    assert ("--strict: 1 run(s) failed a validity gate: 002_c1" in out.getvalue()) == (
        strict and invalid
    )
