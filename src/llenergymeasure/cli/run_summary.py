"""What ``llem run`` prints at the end: one experiment's metrics, a study's table, ``--strict``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.cli.run_fields import fmt
from llenergymeasure.config.labels import distinguish, varying_fields
from llenergymeasure.results.layout import REPORT_FILE
from llenergymeasure.results.models import ExperimentResult, StudyResult
from llenergymeasure.results.serving_models import ServingRecord
from llenergymeasure.results.serving_points import describe_window, run_window, serving_points


def print_experiment_summary(
    console: Console, result: ExperimentResult, result_path: Path | None
) -> None:
    t = Table(
        title=escape(f"{result.config.label()}  ({result.config_hash[:8]})"), show_header=False
    )
    t.add_column("metric", overflow="fold")
    t.add_column("value", justify="right", overflow="fold")
    e = result.energy
    t.add_row(
        "energy (raw)",
        fmt(result.total_energy_j, unit=" J")
        if e.available
        else escape(f"— ({e.unavailable_reason})"),
    )
    above = fmt(result.total_energy_above_idle_j, unit=" J")
    if result.total_energy_above_idle_se_j is not None:
        above += f" ± {fmt(result.total_energy_above_idle_se_j, unit=' J')} (SE)"
    t.add_row("energy above resident idle", above)
    t.add_row("energy per output token", fmt(result.energy_per_output_token_j, unit=" J"))
    t.add_row("energy per token (in + out)", fmt(result.energy_per_total_token_j, unit=" J"))
    if result.energy_quantisation_bound_rel is not None:
        t.add_row("quantisation bound", f"± {result.energy_quantisation_bound_rel * 100:.2f} %")
    t.add_row(
        "valid",
        "yes" if result.valid else escape(f"no: {', '.join(result.failed_gates)}"),
    )
    t.add_row("energy per request", fmt(result.energy_per_request_j, unit=" J"))
    t.add_row(
        "output tokens/s" + (" (whole measured window)" if result.serving is not None else ""),
        fmt(result.output_tokens_per_s),
    )
    t.add_row("tokens in / out", f"{result.input_tokens:,} / {result.output_tokens:,}")
    t.add_row(
        "TTFT mean / p99",
        f"{fmt(result.ttft_ms.mean_ms if result.ttft_ms else None, unit=' ms')} / {fmt(result.ttft_ms.p99_ms if result.ttft_ms else None, unit=' ms')}",
    )
    t.add_row(
        "ITL mean / p99",
        f"{fmt(result.itl_ms.mean_ms if result.itl_ms else None, unit=' ms')} / {fmt(result.itl_ms.p99_ms if result.itl_ms else None, unit=' ms')}",
    )
    t.add_row("measured window", fmt(result.duration_s, unit=" s"))
    t.add_row("model load", fmt(result.load.duration_s, unit=" s"))
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
    if result.serving is not None:
        name, window = run_window(result.serving)
        console.print(
            escape(f"serving {result.serving.load}: {describe_window(name, window)}"),
            highlight=False,
            soft_wrap=True,
        )
        console.print(serving_run_table(result.serving))
    for w in result.warnings:
        console.print(f"[yellow]warning[/] {escape(f'[{w.code}] {w.message}')}")
    if result_path is not None:
        console.print(f"result: [bold]{escape(str(result_path))}[/]")
        report = result_path.parent.parent / REPORT_FILE
        if report.exists():
            console.print(f"report: [bold]{escape(str(report))}[/]")


def serving_run_table(record: ServingRecord) -> Table:
    """One serving run's figures from the window the report uses (``run_window``), named."""
    name, w = run_window(record)
    t = Table(show_header=False)
    t.add_column("metric", overflow="fold")
    t.add_column("value", justify="right", overflow="fold")
    t.add_row("requests/s", fmt(w.requests_per_s))
    t.add_row("output tokens/s", fmt(w.output_tokens_per_s))
    t.add_row("goodput req/s", fmt(w.goodput_rps))
    t.add_row("SLO met", "—" if w.slo_attainment is None else f"{w.slo_attainment:.0%}")
    t.add_row("TTFT p90", fmt(w.ttft_ms.p90_ms if w.ttft_ms else None, unit=" ms"))
    t.add_row("ITL p90", fmt(w.itl_ms.p90_ms if w.itl_ms else None, unit=" ms"))
    t.add_row("J / output token", fmt(w.energy_per_output_token_j, unit=" J"))
    t.add_row("J / good request", fmt(w.energy_per_good_request_j, unit=" J"))
    if name == "full" and record.steady_unavailable_reason:
        t.caption = escape(f"no steady window: {record.steady_unavailable_reason}")
    return t


def serving_study_table(study_result: StudyResult) -> Table | None:
    """The report's serving points (same definition, same window per config), or None."""
    points, latency_name, _ = serving_points(study_result)
    if not points:
        return None
    t = Table(title="serving: means over valid cycles, from the window named per config")
    for col in ("config", "load", "window (runs)", "req/s", "tok/s", "goodput req/s"):
        t.add_column(col, overflow="fold")
    for col in ("SLO met", f"p90 {latency_name} ms", "J/out-token"):
        t.add_column(col, overflow="fold")
    for p in points:
        t.add_row(
            escape(p.label),
            escape(p.load),
            f"{p.window} ({p.n_runs})",
            fmt(p.requests_per_s),
            fmt(p.tokens_per_s),
            fmt(p.goodput_rps),
            "—" if p.attainment is None else f"{p.attainment:.0%}",
            fmt(p.latency_p90_ms),
            fmt(p.j_per_token),
        )
    return t


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
        t.add_column(col, overflow="fold")

    def ci(s: Any) -> str:
        if s is None or s.mean is None:
            return "—"
        return fmt(s.mean) + (
            f" ± {fmt(s.ci95_half_width)}" if s.ci95_half_width is not None else ""
        )

    configs = [s.config for s in study_result.summaries]
    fields = varying_fields(configs)
    for s in study_result.summaries:
        m = s.metrics
        t.add_row(
            escape(distinguish(s.config, fields)),
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
    serving = serving_study_table(study_result)
    if serving is not None:
        console.print(serving)
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
    beside = sum(1 for r in study_result.runs if r.placement and r.placement.neighbours)
    if beside:  # execution.concurrent_runs > 1
        console.print(
            f"[yellow]neighbour_load[/] {beside} of {len(study_result.runs)} run(s) ran beside "
            "other runs on other GPUs of this node (placement in each result.json); compare "
            "with a one-at-a-time study before publishing"
        )
    no_energy = [r for r in study_result.runs if not r.energy.available]
    if study_result.runs and len(no_energy) == len(study_result.runs):
        why = no_energy[0].energy.unavailable_reason or "no energy meter"
        console.print(
            f"[yellow]no energy recorded[/] in any run ({escape(why)}): the J columns stay "
            "empty; throughput and latency are measured",
            soft_wrap=True,
        )
    warned = sum(1 for r in study_result.runs if r.warnings)
    if warned:
        console.print(
            f"[yellow]{warned} run(s) carry validity warnings[/] (see each result.json / the report)"
        )
    if study_result.study_dir:
        console.print(f"study directory: [bold]{escape(str(study_result.study_dir))}[/]")
        report = Path(study_result.study_dir) / REPORT_FILE
        if report.exists():
            console.print(f"report: [bold]{escape(str(report))}[/]")


def invalid_runs_line(study_result: StudyResult) -> str | None:
    """What ``--strict`` fails the study on: the runs that failed a validity gate, or None."""
    invalid = [r for r in study_result.runs if not r.valid]
    if not invalid:
        return None
    listed = "; ".join(f"{r.experiment_id} ({', '.join(r.failed_gates)})" for r in invalid)
    return f"{len(invalid)} run(s) failed a validity gate: {listed}"
