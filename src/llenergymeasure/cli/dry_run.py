"""``llem run --dry-run``: the resolved runners, the plan, its order and its estimated duration."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.cli.run_fields import _distinguish, _hms, _varying_fields
from llenergymeasure.config.study import StudyConfig


def print_dry_run(
    console: Console,
    study: StudyConfig,
    runner_opt: str | None,
    cycles: int | None,
    no_gaps: bool,
    results_dir: Path | None,
) -> None:
    from llenergymeasure.study.planning import estimate_duration_s
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    sr = StudyRunner(
        study,
        StudyOptions(runner=runner_opt, n_cycles=cycles, no_gaps=no_gaps, results_dir=results_dir),
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
    if study.execution.concurrent_runs > 1:
        from llenergymeasure.errors import LLEMError

        try:
            pool = sr.concurrency_pool(plan, runners)
            console.print(
                f"side by side: up to {study.execution.concurrent_runs} run(s) at once on "
                f"disjoint GPUs of {escape(pool.describe() if pool else '?')}; the estimate above "
                "counts runs one after another"
            )
        except LLEMError as exc:
            console.print(f"[red]would be refused:[/] {escape(str(exc))}")
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
