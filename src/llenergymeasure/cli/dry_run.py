"""``llem run --dry-run``: the resolved runners, the plan, its order and its estimated duration,
and what the run would refuse (a Docker image not built here, a results folder it cannot write),
checked without starting anything. ``--json``: the same as one JSON document on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from llenergymeasure.cli.plan_notes import host_gpus, plan_notes
from llenergymeasure.cli.run_fields import hms
from llenergymeasure.config.labels import distinguish, varying_fields
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.errors import LLEMError


def refusals(sr: Any, runners: dict[str, Any]) -> list[LLEMError]:
    """What the run would stop on before its first experiment: checked, nothing started."""
    from llenergymeasure.runners.preflight import (
        check_docker_images_present,
        check_results_dir_writable,
    )
    from llenergymeasure.runners.resolution import study_docker_images

    found: list[LLEMError] = []
    try:  # each experiment's image (an image without llem is refused as the run would)
        check_docker_images_present(study_docker_images(runners, sr.study.expand()))
    except LLEMError as exc:
        found.append(exc)
    if not any(r.kind == "slurm" for r in runners.values()):
        try:
            check_results_dir_writable(Path(sr.resume_dir or sr.results_dir))
        except LLEMError as exc:
            found.append(exc)
    return found


def dry_run_data(sr: Any, runners: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """The plan as one JSON-ready mapping (``llem run --dry-run --json``)."""
    from llenergymeasure.study.planning import estimate_duration_s

    study = sr.study
    configs = study.expand()
    fields = varying_fields(configs)
    plan = sr.plan()
    gaps_total, _ = estimate_duration_s(plan)
    return {
        "study": study.name,
        "study_design_hash": study.study_design_hash,
        "results_dir": str(sr.results_dir),
        "configs": [
            {
                "config_hash": c.config_hash,
                "model": c.model,
                "backend": c.backend,
                "label": distinguish(c, fields),
                "runner": runners[c.backend].for_experiment(c).describe(),
                "runner_source": runners[c.backend].source,
            }
            for c in configs
        ],
        "invalid_points": [p.describe() for p in study.expand_report().invalid],
        "gaps": {
            "config_gap_s": sr.gaps.config_gap_s,
            "config_gap_source": sr.gaps.config_gap_source,
            "cycle_gap_s": sr.gaps.cycle_gap_s,
            "cycle_gap_source": sr.gaps.cycle_gap_source,
            "total_s": gaps_total,
        },
        "runs": [
            {
                "run_id": r.run_id,
                "cycle": r.cycle,
                "gap_before_s": r.gap_before_s,
                "gap_kind": r.gap_kind,
                "config_hash": r.config.config_hash,
            }
            for r in plan
        ],
        "notes": notes,
    }


def print_dry_run(
    console: Console,
    study: StudyConfig,
    runner_opt: str | None,
    cycles: int | None,
    no_gaps: bool,
    results_dir: Path | None,
    as_json: bool = False,
    resume_dir: Path | None = None,
    no_gaps_reason: str | None = None,
) -> int:
    """Print the plan (or, ``as_json``, emit it on stdout); the exit status the run would have
    on what can be checked now: 0, or the first refusal's (1 a missing image, 74 a folder)."""
    from llenergymeasure.study.planning import estimate_duration_s
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    sr = StudyRunner(
        study,
        StudyOptions(
            runner=runner_opt,
            n_cycles=cycles,
            no_gaps=no_gaps,
            no_gaps_reason=no_gaps_reason,
            results_dir=results_dir,
        ),
        resume_dir=resume_dir,
    )
    runners = sr.resolve()
    configs = study.expand()
    notes = plan_notes(
        configs, runners, runner_opt, host_gpus(), sr.user_config.measurement.energy_backend
    )
    problems = refusals(sr, runners)
    code = problems[0].exit_code if problems else 0
    if as_json:
        from llenergymeasure.cli.json_out import emit

        data = dry_run_data(sr, runners, notes)
        data["would_be_refused"] = [{"message": str(p), "exit_code": p.exit_code} for p in problems]
        emit(data)
        return code
    fields = varying_fields(configs)
    table = Table(title=escape(f"study {study.name!r}: {len(configs)} experiment(s)"))
    # cells wrap on a narrow terminal instead of being cut with "…" (issue 29 item 9)
    table.add_column("#", justify="right", overflow="fold")
    table.add_column("config hash", overflow="fold")
    table.add_column("model", overflow="fold")
    table.add_column("backend", overflow="fold")
    table.add_column("runner (source)", overflow="fold")
    table.add_column("distinguishing fields" if fields else "label", overflow="fold")
    for i, cfg in enumerate(configs, start=1):
        r = runners[cfg.backend].for_experiment(cfg)
        table.add_row(
            str(i),
            cfg.short_hash,
            escape(cfg.model),
            cfg.backend,
            escape(f"{r.describe()} ({r.source})"),
            escape(distinguish(cfg, fields)),
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
        f"estimated duration: {hms(gaps_total + baseline_s)} of thermal gaps and idle baselines "
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
            order.add_column(col, overflow="fold")
        for planned in plan:
            order.add_row(
                planned.run_id,
                str(planned.cycle),
                f"{planned.gap_before_s:g} s {planned.gap_kind}" if planned.gap_before_s else "—",
                escape(distinguish(planned.config, fields)),
            )
        console.print(order)
    console.print(f"study design hash: {study.study_design_hash}")
    for line in notes:
        console.print(f"[yellow]note:[/] {escape(line)}", soft_wrap=True)
    for refused in problems:
        console.print(f"[red]the run would be refused:[/] {escape(str(refused))}", soft_wrap=True)
    return code
