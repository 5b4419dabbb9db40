"""Small statistics used inside one experiment (latency distributions, warmup convergence)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from llenergymeasure.results.models import LatencyStats


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (the numpy default) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(sorted_values[lo])
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def latency_stats_ms(values_s: Sequence[float | None]) -> LatencyStats | None:
    """Distribution of latencies given in seconds, reported in milliseconds; None when empty."""
    vals = sorted(v * 1000.0 for v in values_s if v is not None)
    if not vals:
        return None
    return LatencyStats(
        n=len(vals),
        mean_ms=sum(vals) / len(vals),
        p50_ms=percentile(vals, 50),
        p90_ms=percentile(vals, 90),
        p99_ms=percentile(vals, 99),
        min_ms=vals[0],
        max_ms=vals[-1],
    )


def coefficient_of_variation(values: Sequence[float]) -> float | None:
    """Sample standard deviation over the mean; None for fewer than two values or a zero mean."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    if mean == 0:
        return None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(var) / abs(mean)


def relative_trend(values: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares slope of ``values`` against their index, over their mean (relative change per
    step), and the slope's t statistic (slope over its standard error; ``inf`` for a perfect line
    with a non-zero slope, 0 for a flat one). None for fewer than three values or a zero mean."""
    n = len(values)
    if n < 3:
        return None
    mean = sum(values) / n
    if mean == 0:
        return None
    x_mean = (n - 1) / 2
    sxx = sum((i - x_mean) ** 2 for i in range(n))
    slope = sum((i - x_mean) * (v - mean) for i, v in enumerate(values)) / sxx
    residual_ss = sum((v - mean - slope * (i - x_mean)) ** 2 for i, v in enumerate(values))
    se = math.sqrt(residual_ss / (n - 2) / sxx)
    flat_t = 0.0 if slope == 0 else math.inf
    t = abs(slope) / se if se > 0 else flat_t
    return slope / abs(mean), t
