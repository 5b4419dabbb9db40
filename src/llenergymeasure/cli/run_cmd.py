"""``llem run``: dry-run plan, single experiment, or a study with a live progress view."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from llenergymeasure.config.experiment import BACKENDS, ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.validate import load_config_file
from llenergymeasure.errors import ConfigError, StudyInterrupted
from llenergymeasure.results.models import ExperimentResult, StudyResult
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study.planning import PlannedRun


def _fmt(value: float | None, digits: int = 4, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.1f}"
    elif abs(value) >= 1:
        text = f"{value:.{max(1, digits - 2)}f}"
    else:
        text = f"{value:.{digits}g}"
    return f"{text}{unit}"


def _config_fields(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config's dotted fields; only its own backend's section (``pytorch.*`` for PyTorch)."""
    own = {k: v for k, v in cfg.hashable_dict().items() if k not in BACKENDS or k == cfg.backend}
    return _flatten(own)


def _varying_fields(configs: list[ExperimentConfig]) -> list[str]:
    """Dotted fields whose value differs between the study's experiments (computed once).

    A backend section's field is compared only among the experiments of that backend, which are
    the only ones that have it: in a PyTorch + vLLM study ``vllm.max_num_seqs`` is a distinguishing
    field when the vLLM experiments differ in it, never because the PyTorch ones lack it.
    """
    if len(configs) <= 1:
        return []
    flat = [_config_fields(c) for c in configs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({json.dumps(f[k], sort_keys=True) for f in flat if k in f}) > 1]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _distinguish(cfg: ExperimentConfig, fields: list[str]) -> str:
    if not fields:
        return cfg.label()
    flat = _config_fields(cfg)
    return ", ".join(f"{k}={flat[k]}" for k in fields if k in flat)


class LiveProgress:
    """The study observer behind the CLI's live view (run k of N, phase, elapsed, ETA)."""

    def __init__(self, console: Console, fields: list[str], verbosity: str = "normal"):
        self.console = console
        self.fields = fields
        #: ui.verbosity: quiet = failures and the final table only; verbose = also each run's folder
        self.verbosity = verbosity
        self.live: Live | None = None
        self.total = 0
        self.position = 0
        self.run: PlannedRun | None = None
        self.run_dir: Path | None = None
        self.run_started = 0.0
        self.study_started = time.monotonic()
        self.durations: list[float] = []
        self.gap_until: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # observer hooks
    def on_start(self, study_dir: Path, plan: list[PlannedRun], to_run: list[PlannedRun]) -> None:
        self.total = len(to_run)
        skipped = len(plan) - len(to_run)
        self.console.print(f"study directory: [bold]{escape(str(study_dir))}[/]")
        if skipped:
            self.console.print(f"resuming: {skipped} completed run(s) kept, {len(to_run)} to run")
        if self.verbosity == "quiet":
            return
        self.live = Live(self._render(), console=self.console, refresh_per_second=2, transient=True)
        self.live.start()
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()

    def on_gap(self, seconds: float, kind: str) -> None:
        self.gap_until = time.monotonic() + seconds
        self.gap_kind = kind

    def on_run_start(self, run: PlannedRun, position: int, total: int, run_dir: Path) -> None:
        self.gap_until = None
        self.run, self.position, self.total, self.run_dir = run, position, total, run_dir
        self.run_started = time.monotonic()
        if self.verbosity == "verbose":
            self.console.print(
                f"→ run {position}/{total} cycle {run.cycle}: "
                + escape(f"{_distinguish(run.config, self.fields)}  [{run_dir}]")
            )

    def on_run_end(
        self, run: PlannedRun, outcome: RunOutcome, result: ExperimentResult | None
    ) -> None:
        self.durations.append(time.monotonic() - self.run_started)
        if outcome.status == "completed" and result is not None:
            if self.verbosity == "quiet":
                return
            self.console.print(
                f"[green]✓[/] {run.run_id}  {escape(_distinguish(run.config, self.fields))}  "
                f"{_fmt(result.energy_per_output_token_j, unit=' J/tok')}  "
                f"{_fmt(result.output_tokens_per_s, unit=' tok/s')}"
            )
        else:
            first = (outcome.message or "").splitlines()[0] if outcome.message else ""
            where = f" in {outcome.phase}" if outcome.phase else ""
            self.console.print(
                "[red]✗[/] " + escape(f"{run.run_id}  {outcome.status}{where}: {first}")
            )
            if self.verbosity == "verbose" and outcome.error_path is not None:
                self.console.print(escape(f"   details: {outcome.error_path}"))

    def stop(self) -> None:
        self._stop.set()
        if self.live is not None:
            self.live.stop()

    def _phase(self) -> str:
        if self.run_dir is None:
            return "starting"
        try:
            data = json.loads((self.run_dir / "progress.json").read_text())
            return data.get("phase", "?") + (f" {data['detail']}" if data.get("detail") else "")
        except (OSError, ValueError):
            return "starting"

    def _render(self) -> Table:
        t = Table.grid(padding=(0, 2))
        now = time.monotonic()
        if self.gap_until is not None and now < self.gap_until:
            t.add_row(
                f"thermal gap ({getattr(self, 'gap_kind', '')}): {self.gap_until - now:.0f} s left"
            )
            return t
        if self.run is None:
            t.add_row("preparing…")
            return t
        elapsed = now - self.run_started
        eta = ""
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            eta = f"  ETA ~{mean * (self.total - self.position + 1) - elapsed:.0f} s"
        t.add_row(
            f"run {self.position}/{self.total}",
            f"cycle {self.run.cycle}",
            escape(_distinguish(self.run.config, self.fields)),
            f"[cyan]{escape(self._phase())}[/]",
            f"{elapsed:.0f} s{eta}",
        )
        return t

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            if self.live is not None:
                self.live.update(self._render())


def _hms(seconds: float) -> str:
    s = round(seconds)
    return (
        f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
    )


def print_dry_run(
    console: Console,
    study: StudyConfig,
    runner_opt: str | None,
    cycles: int | None,
    no_gaps: bool,
    results_dir: Path | None,
) -> None:
    from llenergymeasure.study.planning import estimate_duration_s
    from llenergymeasure.study.runner import StudyRunner

    sr = StudyRunner(
        study, runner=runner_opt, n_cycles=cycles, no_gaps=no_gaps, results_dir=results_dir
    )
    runners = sr.resolve()
    configs = study.expand()
    fields = _varying_fields(configs)
    table = Table(title=escape(f"study {study.name!r}: {len(configs)} experiment(s)"))
    table.add_column("#", justify="right")
    table.add_column("config hash")
    table.add_column("model")
    table.add_column("backend")
    table.add_column("runner (source)")
    table.add_column("distinguishing fields" if fields else "label")
    for i, cfg in enumerate(configs, start=1):
        r = runners[cfg.backend]
        table.add_row(
            str(i),
            cfg.short_hash,
            escape(cfg.model),
            cfg.backend,
            escape(f"{r.describe()} ({r.source})"),
            escape(_distinguish(cfg, fields)),
        )
    console.print(table)
    expansion = study.expand_report()
    for p in expansion.invalid:
        console.print(f"[yellow]invalid sweep point, skipped:[/] {escape(p.describe())}")
    for d in expansion.duplicates:
        console.print(f"[yellow]duplicate:[/] {escape(d)}")
    plan = sr.plan()
    gaps_total, _ = estimate_duration_s(plan)
    # An idle baseline is measured once and then read from the per-GPU cache, unless its TTL is 0.
    uncached = sum(
        r.config.baseline.duration_s
        for r in plan
        if r.config.baseline.enabled and r.config.baseline.cache_ttl_s == 0
    )
    cached = [
        c.baseline.duration_s for c in configs if c.baseline.enabled and c.baseline.cache_ttl_s > 0
    ]
    baseline_s = uncached + max(cached, default=0.0)
    console.print(
        f"plan: {len(plan)} run(s) = {len(configs)} config(s) x {plan[-1].cycle if plan else 0} "
        f"cycle(s), order {study.execution.cycle_order}; gaps: config {sr.gaps.config_gap_s:g} s "
        f"({sr.gaps.config_gap_source}), cycle {sr.gaps.cycle_gap_s:g} s ({sr.gaps.cycle_gap_source})"
    )
    console.print(
        f"estimated duration: {_hms(gaps_total + baseline_s)} of thermal gaps and idle baselines "
        f"plus {len(plan)} x the experiment's own "
        "time (engine start, load, warmup, window), which depends on the model and hardware"
    )
    if len(plan) <= 200:
        order = Table(title="run order")
        for col in ("run", "cycle", "gap before", "experiment"):
            order.add_column(col)
        for planned in plan:
            order.add_row(
                planned.run_id,
                str(planned.cycle),
                f"{planned.gap_before_s:g} s {planned.gap_kind}" if planned.gap_before_s else "—",
                escape(_distinguish(planned.config, fields)),
            )
        console.print(order)
    console.print(f"study design hash: {study.study_design_hash}")


def print_experiment_summary(
    console: Console, result: ExperimentResult, result_path: Path | None
) -> None:
    t = Table(
        title=escape(f"{result.config.label()}  ({result.config_hash[:8]})"), show_header=False
    )
    t.add_column("metric")
    t.add_column("value", justify="right")
    e = result.energy
    t.add_row(
        "energy (raw)",
        _fmt(result.total_energy_j, unit=" J")
        if e.available
        else escape(f"— ({e.unavailable_reason})"),
    )
    above = _fmt(result.total_energy_above_idle_j, unit=" J")
    if result.total_energy_above_idle_se_j is not None:
        above += f" ± {_fmt(result.total_energy_above_idle_se_j, unit=' J')} (SE)"
    t.add_row("energy above resident idle", above)
    t.add_row("energy per output token", _fmt(result.energy_per_output_token_j, unit=" J"))
    t.add_row("energy per token (in + out)", _fmt(result.energy_per_total_token_j, unit=" J"))
    if result.energy_quantisation_bound_rel is not None:
        t.add_row("quantisation bound", f"± {result.energy_quantisation_bound_rel * 100:.2f} %")
    t.add_row(
        "valid",
        "yes" if result.valid else escape(f"no: {', '.join(result.failed_gates)}"),
    )
    t.add_row("energy per request", _fmt(result.energy_per_request_j, unit=" J"))
    t.add_row("output tokens/s", _fmt(result.output_tokens_per_s))
    t.add_row("tokens in / out", f"{result.input_tokens:,} / {result.output_tokens:,}")
    t.add_row(
        "TTFT mean / p99",
        f"{_fmt(result.ttft_ms.mean_ms if result.ttft_ms else None, unit=' ms')} / {_fmt(result.ttft_ms.p99_ms if result.ttft_ms else None, unit=' ms')}",
    )
    t.add_row(
        "ITL mean / p99",
        f"{_fmt(result.itl_ms.mean_ms if result.itl_ms else None, unit=' ms')} / {_fmt(result.itl_ms.p99_ms if result.itl_ms else None, unit=' ms')}",
    )
    t.add_row("measured window", _fmt(result.duration_s, unit=" s"))
    t.add_row("model load", _fmt(result.load.duration_s, unit=" s"))
    t.add_row(
        "meter",
        escape(
            f"{e.meter}"
            + (f" (sensor period {e.sensor_period_s * 1000:.0f} ms)" if e.sensor_period_s else "")
        ),
    )
    t.add_row(
        "runner",
        escape(
            f"{result.runner.kind}"
            + (f":{result.runner.image}" if result.runner.image else "")
            + f" ({result.runner.source})"
        ),
    )
    console.print(t)
    for w in result.warnings:
        console.print(f"[yellow]warning[/] {escape(f'[{w.code}] {w.message}')}")
    if result_path is not None:
        console.print(f"result: [bold]{escape(str(result_path))}[/]")
        report = result_path.parent.parent / "report.html"
        if report.exists():
            console.print(f"report: [bold]{escape(str(report))}[/]")


def print_study_summary(console: Console, study_result: StudyResult) -> None:
    t = Table(title=escape(f"study {study_result.name!r}: mean ± 95 % CI over cycles"))
    for col in (
        "config",
        "backend",
        "n",
        "J/out-token",
        "J/out-token above idle",
        "tok/s",
        "TTFT ms",
        "ITL ms",
    ):
        t.add_column(col)

    def ci(s: Any) -> str:
        if s is None or s.mean is None:
            return "—"
        return _fmt(s.mean) + (
            f" ± {_fmt(s.ci95_half_width)}" if s.ci95_half_width is not None else ""
        )

    configs = [s.config for s in study_result.summaries]
    fields = _varying_fields(configs)
    for s in study_result.summaries:
        m = s.metrics
        t.add_row(
            escape(_distinguish(s.config, fields)),
            s.backend,
            f"{s.n_completed - s.n_invalid}"
            + (f" (+{s.n_invalid} invalid)" if s.n_invalid else "")
            + (f" (+{s.n_failed} failed)" if s.n_failed else ""),
            ci(m.get("energy_per_output_token_j")),
            ci(m.get("energy_per_output_token_above_idle_j")),
            ci(m.get("output_tokens_per_s")),
            ci(m.get("ttft_mean_ms")),
            ci(m.get("itl_mean_ms")),
        )
    console.print(t)
    for s in study_result.summaries:  # e.g. cycles_disagree: J/token CV across cycles too high
        for w in s.warnings:
            console.print(f"[yellow]{escape(w.code)}[/] {escape(s.label)}: {escape(w.message)}")
    for f in study_result.failures:
        first = f.message.splitlines()[0] if f.message else ""
        phase = f", phase {f.phase}" if f.phase else ""
        details = f"\n   details: {f.error_file}" if f.error_file else ""
        console.print(
            "[red]failed[/] " + escape(f"{f.run_id} ({f.status}{phase}): {first}{details}")
        )
    for p in study_result.invalid_points:
        console.print(f"[yellow]not run[/] {escape(p)}")
    warned = sum(1 for r in study_result.runs if r.warnings)
    if warned:
        console.print(
            f"[yellow]{warned} run(s) carry validity warnings[/] (see each result.json / the report)"
        )
    if study_result.study_dir:
        console.print(f"study directory: [bold]{escape(str(study_result.study_dir))}[/]")
        report = Path(study_result.study_dir) / "report.html"
        if report.exists():
            console.print(f"report: [bold]{escape(str(report))}[/]")


def invalid_runs_line(study_result: StudyResult) -> str | None:
    """What ``--strict`` fails the study on: the runs that failed a validity gate, or None."""
    invalid = [r for r in study_result.runs if not r.valid]
    if not invalid:
        return None
    listed = "; ".join(f"{r.experiment_id} ({', '.join(r.failed_gates)})" for r in invalid)
    return f"{len(invalid)} run(s) failed a validity gate: {listed}"


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
        f"run {len(plan)} experiments ({_hms(gaps)} of thermal gaps, plus the experiments)? [Y/n] "
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
    from llenergymeasure.study.runner import StudyRunner

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
    if dry_run:
        if study is None:
            study = StudyConfig.from_yaml(resume / "study.yaml")  # type: ignore[operator]
        print_dry_run(console, study, runner, cycles, no_gaps, results_dir)
        return 0
    fields = _varying_fields(study.expand()) if study is not None else []
    progress = LiveProgress(console, fields)
    sr = StudyRunner(
        study,
        runner=runner,
        results_dir=results_dir,
        n_cycles=cycles,
        no_gaps=no_gaps or is_experiment,
        fail_fast=fail_fast,
        resume_dir=resume,
        source_path=file,
        observer=progress,
        detach=detach,
    )
    if any(r.kind == "slurm" for r in sr.resolve().values()):
        from llenergymeasure.cli.slurm_cmd import SlurmProgress

        sr.observer = progress = SlurmProgress(console)  # type: ignore[assignment]
    elif detach:
        raise ConfigError(
            "--detach needs the slurm runner (--runner slurm); runs here cannot detach"
        )
    if not fields and isinstance(progress, LiveProgress):
        progress.fields = _varying_fields(sr.study.expand())
    progress.verbosity = verbosity or sr.user_config.ui.verbosity  # -q/-v override ui.verbosity
    if not _confirmed(console, sr, assume_yes):
        console.print("nothing run")
        return 0
    from llenergymeasure.runners.slurm import StudyDetached

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
            (p for p in path.iterdir() if p.is_dir() and (p / "result.json").exists()), None
        )
        if as_json:
            from llenergymeasure.cli.json_out import print_experiment_json

            print_experiment_json(run, folder / "result.json" if folder else None)
            return strict_code
        print_experiment_summary(console, run, folder / "result.json" if folder else None)
        return strict_code
    if as_json:
        from llenergymeasure.cli.json_out import print_study_json

        print_study_json(result)
    else:
        print_study_summary(console, result)
    return 1 if result.failures else strict_code
