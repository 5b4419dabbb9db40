"""``llem run``: dry-run plan, single experiment, or a study with a live progress view.

The pieces live beside it: ``run_progress.py`` (live view), ``run_summary.py`` (final tables),
``dry_run.py`` (``--dry-run``), ``run_fields.py`` (labels and number formats), ``json_out.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from llenergymeasure.cli.dry_run import print_dry_run
from llenergymeasure.cli.plan_notes import host_gpus, plan_notes
from llenergymeasure.cli.run_fields import hms
from llenergymeasure.cli.run_progress import LiveProgress
from llenergymeasure.cli.run_summary import (
    invalid_runs_line,
    print_experiment_summary,
    print_study_summary,
)
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.labels import varying_fields
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.validate import load_config_file
from llenergymeasure.errors import ConfigError, StudyInterrupted
from llenergymeasure.results.layout import RESULT_FILE, STUDY_FILE


def _confirmed(console: Console, sr: Any, assume_yes: bool) -> bool:
    """ui.prompt: ask before a study of several runs, when a person is at the terminal."""
    at_terminal = sys.stdin.isatty() and sys.stdout.isatty()
    if assume_yes or not sr.user_config.ui.prompt or not at_terminal:
        return True
    plan = sr.plan()
    if len(plan) <= 1:
        return True
    gaps = sum(r.gap_before_s for r in plan)
    answer = console.input(
        f"run {len(plan)} experiments ({hms(gaps)} of thermal gaps, plus the experiments)? [Y/n] "
    )
    return answer.strip().lower() in ("", "y", "yes")


def run_command(
    *,
    file: Path | None,
    dry_run: bool,
    runner: str | None,
    cycles: int | None,
    no_gaps: bool,
    resume: Path | None,
    fail_fast: bool,
    results_dir: Path | None,
    console: Console,
    assume_yes: bool = False,
    detach: bool = False,
    verbosity: str | None = None,
    as_json: bool = False,
    strict: bool = False,
) -> int:
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    if as_json:  # stdout carries the JSON summary alone; progress and questions go to stderr
        console = Console(stderr=True)

    if file is None and resume is None:
        raise ConfigError("give an experiment or study YAML file (llem run FILE), or --resume DIR")
    is_experiment = False
    study: StudyConfig | None = None
    if file is not None:
        loaded = load_config_file(file)
        if isinstance(loaded, ExperimentConfig):
            is_experiment = True
            study = StudyConfig.from_experiment(loaded, n_cycles=cycles or 1)
        else:
            study = loaded
    # An experiment file is one config: its cycles run back to back, and the record says why.
    zero_gaps = no_gaps or is_experiment
    no_gaps_reason = (
        None
        if no_gaps or not is_experiment
        else "experiment file (one config: no gaps between its cycles)"
    )
    if dry_run:
        if study is None:
            study = StudyConfig.from_yaml(resume / STUDY_FILE)  # type: ignore[operator]
        return print_dry_run(
            console,
            study,
            runner,
            cycles,
            zero_gaps,
            results_dir,
            as_json=as_json,
            resume_dir=resume,
            no_gaps_reason=no_gaps_reason,
        )
    fields = varying_fields(study.expand()) if study is not None else []
    progress = LiveProgress(console, fields)
    sr = StudyRunner(
        study,
        StudyOptions(
            runner=runner,
            results_dir=results_dir,
            n_cycles=cycles,
            no_gaps=zero_gaps,
            no_gaps_reason=no_gaps_reason,
            fail_fast=fail_fast,
            detach=detach,
        ),
        resume_dir=resume,
        source_path=file,
        observer=progress,
    )
    for line in sr.recovery_notes:  # resume: a damaged manifest rebuilt, damaged results
        console.print(f"[yellow]recovered:[/] {escape(line)}", soft_wrap=True)
    runners = sr.resolve()
    energy_backend = sr.user_config.measurement.energy_backend
    for line in plan_notes(sr.study.expand(), runners, runner, host_gpus(), energy_backend):
        console.print(f"[yellow]note:[/] {escape(line)}", soft_wrap=True)
    if any(r.kind == "slurm" for r in runners.values()):
        from llenergymeasure.cli.slurm_cmd import SlurmProgress

        sr.observer = progress = SlurmProgress(console)  # type: ignore[assignment]
    elif detach:
        raise ConfigError(
            "--detach needs the slurm runner (--runner slurm); runs here cannot detach"
        )
    if not fields and isinstance(progress, LiveProgress):
        progress.fields = varying_fields(sr.study.expand())
    progress.verbosity = verbosity or sr.user_config.ui.verbosity  # -q/-v override ui.verbosity
    if not _confirmed(console, sr, assume_yes):
        console.print("nothing run")
        return 0
    from llenergymeasure.runners.slurm.driver import StudyDetached

    try:
        result = sr.run()
    except StudyDetached as exc:
        progress.stop()
        console.print(escape(str(exc)))
        return 0
    except StudyInterrupted as exc:
        progress.stop()
        # soft_wrap: the resume command stays one line, whatever the terminal width
        console.print(escape(str(exc)), style="yellow", soft_wrap=True)
        return exc.exit_code  # 130 for Ctrl-C, 143 for SIGTERM
    finally:
        progress.stop()
    strict_failure = invalid_runs_line(result) if strict else None
    strict_code = 1 if strict_failure else 0
    if strict_failure:
        console.print(f"[red]--strict:[/] {escape(strict_failure)}")
    if is_experiment and len(result.runs) == 1 and not result.failures:
        run = result.runs[0]
        path = Path(result.study_dir or ".")
        folder = next(
            (p for p in path.iterdir() if p.is_dir() and (p / RESULT_FILE).exists()), None
        )
        if as_json:
            from llenergymeasure.cli.json_out import print_experiment_json

            print_experiment_json(run, folder / RESULT_FILE if folder else None)
            return strict_code
        print_experiment_summary(console, run, folder / RESULT_FILE if folder else None)
        return strict_code
    if as_json:
        from llenergymeasure.cli.json_out import print_study_json

        print_study_json(result)
    else:
        print_study_summary(console, result)
    return 1 if result.failures else strict_code
