"""Statistics across the cycles of one config: mean, sample SD, Student-t 95 % CI, CV.

Only valid runs (every validity gate passed) enter the statistics; a config's invalid runs are
listed beside them (``n_invalid``, ``invalid_run_ids``). The cycles are repeats under one machine,
day and software stack, not independent replicates: the CI says how well the mean of *this* setup
is known, not how another machine would measure (``docs/methodology.md``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from llenergymeasure.config.labels import run_labels
from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.results.models import ConfigSummary, ExperimentResult, MetricStats, RunFailure
from llenergymeasure.results.quality_stats import quality_series

#: a config's J/token varying across cycles by more than this CV is flagged in the summary
CYCLE_CV_THRESHOLD = 0.05
#: the 95 % CI half-width (relative to the mean) the flag says how many cycles would reach
TARGET_CI_HALF_WIDTH = 0.02
MAX_CYCLES_ADVISED = 1000

# Two-sided 95 % quantiles of Student's t (t_{0.975, df}) for df = 1..30.
T975 = [
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
    2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
    2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
    2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
    2.045229642, 2.042272456,
]  # fmt: skip


def t_quantile_975(df: int) -> float:
    """t_{0.975} for ``df`` degrees of freedom (exact table to 30, Cornish-Fisher beyond)."""
    if df < 1:
        raise ValueError("degrees of freedom must be at least 1")
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959963984540054
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def describe(values: Sequence[float]) -> MetricStats:
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    if n == 0:
        return MetricStats(n=0)
    mean = sum(vals) / n
    if n == 1:
        return MetricStats(n=1, mean=mean, values=vals)
    var = sum((v - mean) ** 2 for v in vals) / (n - 1)
    sd = math.sqrt(var)
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return MetricStats(
        n=n,
        mean=mean,
        std=sd,
        ci95_low=mean - half,
        ci95_high=mean + half,
        ci95_half_width=half,
        cv=sd / abs(mean) if mean != 0 else None,
        values=vals,
    )


def cycles_for_half_width(sd: float, mean: float, target_rel: float) -> int | None:
    """Fewest cycles n (>= 2) whose Student-t 95 % CI half-width, t(n-1) * sd / sqrt(n), is at
    most ``target_rel`` x |mean|, if the spread stays ``sd``; None when over MAX_CYCLES_ADVISED."""
    if mean == 0 or target_rel <= 0:
        return None
    goal = target_rel * abs(mean)
    for n in range(2, MAX_CYCLES_ADVISED + 1):
        if t_quantile_975(n - 1) * sd / math.sqrt(n) <= goal:
            return n
    return None


def cycle_warnings(
    stats: MetricStats,
    metric: str = "energy_per_output_token_j",
    threshold: float = CYCLE_CV_THRESHOLD,
    target_rel: float = TARGET_CI_HALF_WIDTH,
) -> list[ValidityWarning]:
    """``cycles_disagree`` when the metric's CV across cycles exceeds ``threshold``, saying how
    many more cycles would bring the 95 % CI half-width to ``target_rel`` of the mean."""
    if stats.n < 2 or stats.cv is None or stats.cv <= threshold or stats.std is None:
        return []
    assert stats.mean is not None and stats.ci95_half_width is not None
    needed = cycles_for_half_width(stats.std, stats.mean, target_rel)
    half_rel = stats.ci95_half_width / abs(stats.mean)
    if needed is None:
        advice = f"more than {MAX_CYCLES_ADVISED} cycles would be needed at this spread"
    else:
        advice = (
            f"about {needed} cycles in all ({needed - stats.n} more) would bring it to "
            f"±{target_rel * 100:g} % if the spread stays the same"
        )
    return [
        ValidityWarning(
            code="cycles_disagree",
            message=(
                f"{metric} varies across {stats.n} cycles with CV {stats.cv * 100:.1f} % (threshold "
                f"{threshold * 100:g} %): the 95 % CI is ±{half_rel * 100:.1f} % of the mean; "
                f"{advice}. Check the runs' host_bound / throughput_drift warnings first"
            ),
            details={
                "metric": metric,
                "cv": stats.cv,
                "n_cycles": stats.n,
                "ci95_half_width_rel": half_rel,
                "target_ci95_half_width_rel": target_rel,
                "cycles_needed": needed,
                "more_cycles": None if needed is None else needed - stats.n,
            },
        )
    ]


def invalid_warnings(invalid: Sequence[ExperimentResult]) -> list[ValidityWarning]:
    """``invalid_runs`` naming the config's runs left out of its statistics, and their gates."""
    if not invalid:
        return []
    listed = "; ".join(f"{r.experiment_id} ({', '.join(r.failed_gates)})" for r in invalid)
    return [
        ValidityWarning(
            code="invalid_runs",
            message=(
                f"{len(invalid)} run(s) failed a validity gate and are left out of the "
                f"statistics: {listed}"
            ),
            details={
                "runs": {r.experiment_id: list(r.failed_gates) for r in invalid},
            },
        )
    ]


#: above-idle metric -> the standard error its idle baseline gives one run's value
BASELINE_SE: dict[str, Callable[[ExperimentResult], float | None]] = {
    "total_energy_above_idle_j": lambda r: r.total_energy_above_idle_se_j,
    "energy_per_output_token_above_idle_j": lambda r: r.energy_per_output_token_above_idle_se_j,
}


def baseline_identity(result: ExperimentResult) -> tuple[str, ...] | None:
    """Which idle-baseline measurement a run subtracted: runs with the same identity (the cache
    entry and the time it was measured) share one baseline's error. None when the record cannot
    tell (no baseline, or one without cache key and time): treated as the run's own."""
    b = result.baseline
    if b is None or not b.available or not b.accepted:
        return None
    if b.cache_key is None and b.measured_at is None:
        return None
    idle = ",".join(f"{i}:{w!r}" for i, w in sorted(b.idle_power_w.items()))
    return (str(b.cache_key), str(b.measured_at), idle)


def shared_baseline_se(ses: Sequence[tuple[tuple[str, ...] | None, float | None]]) -> float:
    """The standard error a cross-cycle mean inherits from idle baselines that several of its runs
    share, one ``(baseline identity, the run's baseline SE)`` per run in the mean.

    A run's value is x_i = raw_i - P_g T_i (per token: divided by its tokens); its baseline SE is
    u_i = c_i s_g. Over the n runs the mean's baseline error is (1/n) sum_g delta_g sum_{i in g}
    c_i: a baseline used by one run adds an independent error, which the cycles' spread already
    shows; a baseline shared by a group g of two or more runs moves them together, which the
    spread does not show and averaging does not reduce. Its part is (1/n) sum_{i in g} u_i, and
    groups are independent of each other: SE = sqrt(sum over shared groups of that squared).
    (Counting a shared group's between-group part both here and in the spread makes the interval
    slightly conservative when there are several shared groups.)
    """
    n = len(ses)
    groups: dict[tuple[str, ...], list[float]] = {}
    for key, u in ses:
        if key is not None and u is not None:
            groups.setdefault(key, []).append(u)
    return math.sqrt(sum((sum(us) / n) ** 2 for us in groups.values() if len(us) >= 2))


def widen_for_shared_baseline(stats: MetricStats, shared_se: float) -> MetricStats:
    """The cross-cycle interval with a shared baseline's error: SE of the mean =
    sqrt(sd^2 / n + shared_se^2), half-width = t(0.975, n - 1) x that SE (t for the whole, which
    is conservative for the baseline's part, itself a mean over many idle sub-windows)."""
    if stats.n < 2 or shared_se <= 0 or stats.std is None or stats.mean is None:
        return stats
    half = t_quantile_975(stats.n - 1) * math.sqrt(stats.std**2 / stats.n + shared_se**2)
    return stats.model_copy(
        update={
            "ci95_low": stats.mean - half,
            "ci95_high": stats.mean + half,
            "ci95_half_width": half,
        }
    )


def shared_baseline_warnings(
    widened: dict[str, tuple[float, float, MetricStats]],
) -> list[ValidityWarning]:
    """``shared_baseline`` (info): which intervals include a shared idle baseline's error."""
    if not widened:
        return []
    parts = [
        f"{m}: ±{st.ci95_half_width:.4g} (±{before:.4g} from the cycles' spread alone; shared "
        f"baseline SE {se:.4g})"
        for m, (se, before, st) in widened.items()
    ]
    return [
        ValidityWarning(
            code="shared_baseline",
            severity="info",
            message=(
                "runs of this config subtracted the same idle baseline (from the cache), whose "
                "error moves them together and does not average down over cycles; the 95 % CI "
                "includes it: " + "; ".join(parts)
            ),
            details={
                m: {"shared_baseline_se": se, "ci95_half_width_spread_only": before}
                for m, (se, before, _) in widened.items()
            },
        )
    ]


#: metric name -> how to read it from a result (None when absent)
METRICS: dict[str, Callable[[ExperimentResult], float | None]] = {
    "total_energy_j": lambda r: r.total_energy_j,
    "total_energy_above_idle_j": lambda r: r.total_energy_above_idle_j,
    "energy_per_output_token_j": lambda r: r.energy_per_output_token_j,
    "energy_per_total_token_j": lambda r: r.energy_per_total_token_j,
    "energy_per_output_token_above_idle_j": lambda r: r.energy_per_output_token_above_idle_j,
    "energy_per_request_j": lambda r: r.energy_per_request_j,
    "output_tokens_per_s": lambda r: r.output_tokens_per_s,
    "requests_per_s": lambda r: r.requests_per_s,
    "duration_s": lambda r: r.duration_s,
    "mean_power_w": lambda r: r.mean_power_w,
    "ttft_mean_ms": lambda r: r.ttft_ms.mean_ms if r.ttft_ms else None,
    "ttft_p50_ms": lambda r: r.ttft_ms.p50_ms if r.ttft_ms else None,
    "ttft_p99_ms": lambda r: r.ttft_ms.p99_ms if r.ttft_ms else None,
    "itl_mean_ms": lambda r: r.itl_ms.mean_ms if r.itl_ms else None,
    "itl_p50_ms": lambda r: r.itl_ms.p50_ms if r.itl_ms else None,
    "itl_p99_ms": lambda r: r.itl_ms.p99_ms if r.itl_ms else None,
}


def summarise(
    results: Sequence[ExperimentResult], failures: Sequence[RunFailure] = ()
) -> list[ConfigSummary]:
    """One ``ConfigSummary`` per distinct config hash, in first-seen order."""
    groups: dict[str, list[ExperimentResult]] = {}
    for r in results:
        groups.setdefault(r.config_hash, []).append(r)
    failed: dict[str, int] = {}
    for f in failures:
        failed[f.config_hash] = failed.get(f.config_hash, 0) + 1
    labels = run_labels(rs[0] for rs in groups.values())
    out = []
    for h, all_rs in groups.items():
        cfg = all_rs[0].config
        rs = [r for r in all_rs if r.valid]
        invalid = [r for r in all_rs if not r.valid]
        metrics = {}
        widened: dict[str, tuple[float, float, MetricStats]] = {}
        for name, get in METRICS.items():
            pairs = [(r, v) for r in rs if (v := get(r)) is not None]
            used = [r for r, _ in pairs]
            stats = describe([v for _, v in pairs])
            se_of = BASELINE_SE.get(name)
            if se_of is not None:
                shared = shared_baseline_se([(baseline_identity(r), se_of(r)) for r in used])
                before = stats.ci95_half_width
                stats = widen_for_shared_baseline(stats, shared)
                if before is not None and stats.ci95_half_width != before:
                    widened[name] = (shared, before, stats)
            metrics[name] = stats
        for name, values in quality_series(rs).items():  # docs/quality.md: per task and over all
            metrics[name] = describe(values)
        out.append(
            ConfigSummary(
                config_hash=h,
                label=labels[h],
                backend=cfg.backend,
                model=cfg.model,
                config=cfg,
                n_completed=len(all_rs),
                n_failed=failed.get(h, 0),
                run_ids=[r.experiment_id for r in all_rs],
                n_invalid=len(invalid),
                invalid_run_ids=[r.experiment_id for r in invalid],
                metrics=metrics,
                warnings=cycle_warnings(metrics["energy_per_output_token_j"])
                + invalid_warnings(invalid)
                + shared_baseline_warnings(widened),
            )
        )
    return out
