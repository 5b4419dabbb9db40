"""What the report shows, computed without any plotting library.

Kept apart from the figures so that the choices a reader relies on — which config fields count as
swept axes, which configs lie on a Pareto front, which runs a point averages — are plain functions
with their own tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.labels import run_labels
from llenergymeasure.results.export_rows import flatten, run_identity
from llenergymeasure.results.models import ConfigSummary, ExperimentResult, MetricStats, StudyResult
from llenergymeasure.results.stats import METRICS

#: metrics the report reads per run: the study statistics' own table (so the report and
#: ``summary.csv`` read a metric from a result the same way), plus request latency, which the
#: report plots but the stored summaries do not carry.
RUN_METRICS: dict[str, Any] = {
    **METRICS,
    "request_latency_p50_ms": lambda r: (
        r.request_latency_ms.p50_ms if r.request_latency_ms else None
    ),
}

#: human names with units, for table headers and axis labels.
METRIC_LABELS: dict[str, str] = {
    "energy_per_output_token_j": "energy / output token (J)",
    "energy_per_total_token_j": "energy / token, input + output (J)",
    "energy_per_output_token_above_idle_j": "energy / output token above resident idle (J)",
    "total_energy_j": "total energy (J)",
    "total_energy_above_idle_j": "total energy above resident idle (J)",
    "energy_per_request_j": "energy / request (J)",
    "mean_power_w": "mean power (W)",
    "output_tokens_per_s": "output tokens / s",
    "requests_per_s": "requests / s",
    "duration_s": "measured window (s)",
    "ttft_mean_ms": "TTFT mean (ms)",
    "ttft_p50_ms": "TTFT p50 (ms)",
    "ttft_p99_ms": "TTFT p99 (ms)",
    "itl_mean_ms": "ITL mean (ms)",
    "itl_p50_ms": "ITL p50 (ms)",
    "itl_p99_ms": "ITL p99 (ms)",
    "request_latency_p50_ms": "request latency p50 (ms)",
    "quality_accuracy": "accuracy (quality tasks)",
    "quality_energy_per_correct_j": "J per correct answer (quality tasks)",
}

ENERGY_METRIC = "energy_per_output_token_j"
THROUGHPUT_METRIC = "output_tokens_per_s"
LATENCY_METRICS = ("ttft_p50_ms", "request_latency_p50_ms")


@dataclass
class ConfigPoint:
    """One config of the study: its key in the report, its runs and its summary."""

    key: str
    config_hash: str
    label: str
    backend: str
    config: ExperimentConfig
    summary: ConfigSummary | None
    runs: list[ExperimentResult] = field(default_factory=list)
    n_failed: int = 0
    #: runs that failed a validity gate: listed, never in the statistics, points or fronts
    invalid: list[ExperimentResult] = field(default_factory=list)

    def stats(self, metric: str) -> MetricStats:
        """The metric across this config's runs: the stored summary's where it has the metric,
        else computed from the runs with the same statistics the study runner uses."""
        if self.summary is not None:
            stored = self.summary.metrics.get(metric)
            if stored is not None and stored.n > 0:
                return stored
        from llenergymeasure.results.stats import describe

        getter = RUN_METRICS.get(metric)
        if getter is None:
            return MetricStats(n=0)
        return describe([v for v in (getter(r) for r in self.runs) if v is not None])

    def run_values(self, metric: str) -> list[float]:
        getter = RUN_METRICS.get(metric)
        if getter is None:
            return []
        return [float(v) for v in (getter(r) for r in self.runs) if v is not None]


def config_points(study: StudyResult) -> list[ConfigPoint]:
    """Every config with at least one completed run or a summary, keyed C1, C2, ... in study order."""
    by_hash: dict[str, ConfigPoint] = {}
    order: list[str] = []
    for s in study.summaries:
        if s.config_hash not in by_hash:
            by_hash[s.config_hash] = ConfigPoint(
                "", s.config_hash, s.label, s.backend, s.config, s, n_failed=s.n_failed
            )
            order.append(s.config_hash)
    labels = run_labels(study.runs)
    for r in sorted(study.runs, key=lambda r: run_identity(r)[0]):
        point = by_hash.get(r.config_hash)
        if point is None:
            point = ConfigPoint(
                "", r.config_hash, labels[r.config_hash], r.config.backend, r.config, None
            )
            by_hash[r.config_hash] = point
            order.append(r.config_hash)
        (point.runs if r.valid else point.invalid).append(r)
    for f in study.failures:
        point = by_hash.get(f.config_hash)
        if point is not None and point.summary is None:
            point.n_failed += 1
    points = [by_hash[h] for h in order]
    for i, p in enumerate(points, start=1):
        p.key = f"C{i}"
    return points


def _config_fields(config: ExperimentConfig) -> dict[str, Any]:
    return flatten({k: v for k, v in config.hashable_dict().items() if v is not None})


def swept_axes(configs: Sequence[ExperimentConfig]) -> list[str]:
    """Config fields (dotted paths) whose value differs between the study's configs.

    A backend section's field (``vllm.max_num_seqs``) is compared only among the configs of that
    backend, since the others do not have it: a mixed pytorch/vLLM study does not make every
    section field an axis.
    """
    values: dict[str, set[str]] = {}
    order: list[str] = []
    for cfg in configs:
        for key, value in _config_fields(cfg).items():
            if key not in values:
                values[key] = set()
                order.append(key)
            values[key].add(repr(value))
    return [k for k in order if len(values[k]) > 1]


def axis_value(config: ExperimentConfig, axis: str) -> Any:
    """The config's value on an axis, or ``KeyError`` when the config does not have that field."""
    return _config_fields(config)[axis]


def is_numeric_axis(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def short_value(value: Any) -> str:
    """A compact rendering of an axis value for labels (``synthetic/tiny-llama`` -> ``tiny-llama``)."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return text.rsplit("/", 1)[-1] if "/" in text else text


def ci_overlap(a: MetricStats, b: MetricStats) -> bool:
    """The two 95 % intervals overlap (a config with one run counts as its mean alone)."""
    if a.mean is None or b.mean is None:
        return False
    a_lo = a.ci95_low if a.ci95_low is not None else a.mean
    a_hi = a.ci95_high if a.ci95_high is not None else a.mean
    b_lo = b.ci95_low if b.ci95_low is not None else b.mean
    b_hi = b.ci95_high if b.ci95_high is not None else b.mean
    return a_lo <= b_hi and b_lo <= a_hi


def overlapping_pairs(
    points: Sequence[ConfigPoint], x_metric: str, front_keys: Sequence[str]
) -> list[tuple[str, str]]:
    """Pairs (front config, other config) whose 95 % CIs overlap on both energy per output token
    and ``x_metric``: the data do not tell them apart, so the front's order between them is not
    established."""
    by_key = {p.key: p for p in points}
    pairs: list[tuple[str, str]] = []
    for k in front_keys:
        f = by_key.get(k)
        if f is None:
            continue
        for p in points:
            if p.key == k or (p.key in front_keys and (p.key, k) in pairs):
                continue
            if ci_overlap(f.stats(ENERGY_METRIC), p.stats(ENERGY_METRIC)) and ci_overlap(
                f.stats(x_metric), p.stats(x_metric)
            ):
                pairs.append((k, p.key))
    return pairs


def latency_metric(points: Sequence[ConfigPoint]) -> str | None:
    """TTFT p50 when every config with energy has it, else request latency p50, else ``None``."""
    with_energy = [p for p in points if p.stats(ENERGY_METRIC).mean is not None]
    if not with_energy:
        return None
    for metric in LATENCY_METRICS:
        if all(p.stats(metric).mean is not None for p in with_energy):
            return metric
    for metric in LATENCY_METRICS:
        if any(p.stats(metric).mean is not None for p in with_energy):
            return metric
    return None


def energy_unavailable_reasons(study: StudyResult) -> list[str]:
    """Why runs have no energy figure (distinct reasons, each with its meter)."""
    reasons: dict[str, None] = {}
    for r in study.runs:
        if r.energy_per_output_token_j is None:
            why = r.energy.unavailable_reason or "the meter returned no total"
            reasons.setdefault(f"meter {r.energy.meter}: {why}", None)
    return list(reasons)


def finite(value: float | None) -> TypeGuard[float]:
    """A number that can be drawn (not missing, not NaN or infinite)."""
    return value is not None and math.isfinite(value)
