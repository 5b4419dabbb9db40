"""``llem run``: dry-run plan, single experiment, or a study with a live progress view.

The pieces live beside it: ``run_progress.py`` (live view), ``run_summary.py`` (final tables),
``dry_run.py`` (``--dry-run``), ``run_fields.py`` (labels and number formats), ``json_out.py``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RunArgs:
    """What ``llem run`` was asked: its file, flags and options."""

    file: Path | None
    dry_run: bool = False
    runner: str | None = None
    cycles: int | None = None
    no_gaps: bool = False
    resume: Path | None = None
    fail_fast: bool = False
    results_dir: Path | None = None
    assume_yes: bool = False
    detach: bool = False
    verbosity: str | None = None
    as_json: bool = False
    strict: bool = False


def _load(args: RunArgs) -> tuple[StudyConfig | None, bool]:
    """(the study to run, None when only --resume names it; whether the file is an experiment)."""
    if args.file is None and args.resume is None:
        raise ConfigError("give an experiment or study YAML file (llem run FILE), or --resume DIR")
    if args.file is None:
        return None, False
    loaded = load_config_file(args.file)
    if isinstance(loaded, ExperimentConfig):
        return StudyConfig.from_experiment(loaded, n_cycles=args.cycles or 1), True
    return loaded, False


def _runner_for(
    args: RunArgs, study: StudyConfig | None, zero_gaps: bool, why: str | None, progress: Any
) -> Any:
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    options = StudyOptions(
        runner=args.runner,
        results_dir=args.results_dir,
        n_cycles=args.cycles,
        no_gaps=zero_gaps,
        no_gaps_reason=why,
        fail_fast=args.fail_fast,
        detach=args.detach,
    )
    return StudyRunner(
        study, options, resume_dir=args.resume, source_path=args.file, observer=progress
    )


def _prepare(console: Console, args: RunArgs, sr: Any, progress: Any) -> Any:
    """Print what resume recovered and the plan's notes, resolve the runners, pick the progress
    view (SLURM's for the slurm runner); returns the view."""
    for line in sr.recovery_notes:  # resume: a damaged manifest rebuilt, damaged results
        console.print(f"[yellow]recovered:[/] {escape(line)}", soft_wrap=True)
    runners = sr.resolve()
    energy_backend = sr.user_config.measurement.energy_backend
    for line in plan_notes(sr.study.expand(), runners, args.runner, host_gpus(), energy_backend):
        console.print(f"[yellow]note:[/] {escape(line)}", soft_wrap=True)
    if any(r.kind == "slurm" for r in runners.values()):
        from llenergymeasure.cli.slurm_cmd import SlurmProgress

        sr.observer = progress = SlurmProgress(console)
    elif args.detach:
        raise ConfigError(
            "--detach needs the slurm runner (--runner slurm); runs here cannot detach"
        )
    if isinstance(progress, LiveProgress) and not progress.fields:
        progress.fields = varying_fields(sr.study.expand())
    progress.verbosity = args.verbosity or sr.user_config.ui.verbosity  # -q/-v over ui.verbosity
    return progress


def _report(console: Console, args: RunArgs, result: Any, is_experiment: bool) -> int:
    """Print the outcome (a single experiment's summary, else the study's) and return the exit
    code: 1 for failed runs, or with --strict for runs that failed a validity gate."""
    strict_failure = invalid_runs_line(result) if args.strict else None
    strict_code = 1 if strict_failure else 0
    if strict_failure:
        console.print(f"[red]--strict:[/] {escape(strict_failure)}")
    if is_experiment and len(result.runs) == 1 and not result.failures:
        run = result.runs[0]
        path = Path(result.study_dir or ".")
        folder = next(
            (p for p in path.iterdir() if p.is_dir() and (p / RESULT_FILE).exists()), None
        )
        if args.as_json:
            from llenergymeasure.cli.json_out import print_experiment_json

            print_experiment_json(run, folder / RESULT_FILE if folder else None)
            return strict_code
        print_experiment_summary(console, run, folder / RESULT_FILE if folder else None)
        return strict_code
    if args.as_json:
        from llenergymeasure.cli.json_out import print_study_json

        print_study_json(result)
    else:
        print_study_summary(console, result)
    return 1 if result.failures else strict_code


def run_command(args: RunArgs, console: Console) -> int:
    """``llem run``: a dry run, or the study run with live progress; returns the exit code."""
    if args.as_json:  # stdout carries the JSON summary alone; progress and questions go to stderr
        console = Console(stderr=True)
    study, is_experiment = _load(args)
    # An experiment file is one config: its cycles run back to back, and the record says why.
    zero_gaps = args.no_gaps or is_experiment
    why = (
        None
        if args.no_gaps or not is_experiment
        else "experiment file (one config: no gaps between its cycles)"
    )
    if args.dry_run:
        if study is None:
            study = StudyConfig.from_yaml(args.resume / STUDY_FILE)  # type: ignore[operator]
        return print_dry_run(
            console,
            study,
            args.runner,
            args.cycles,
            zero_gaps,
            args.results_dir,
            as_json=args.as_json,
            resume_dir=args.resume,
            no_gaps_reason=why,
        )
    progress: Any = LiveProgress(console, varying_fields(study.expand()) if study else [])
    sr = _runner_for(args, study, zero_gaps, why, progress)
    progress = _prepare(console, args, sr, progress)
    if not _confirmed(console, sr, args.assume_yes):
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
    return _report(console, args, result, is_experiment)
