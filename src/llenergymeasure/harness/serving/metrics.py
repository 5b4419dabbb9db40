"""Serving metrics from request timelines: latencies, SLO, goodput, windows, per-request energy.

Pure functions (no engine, no meter). Times in the timelines are ``perf_counter`` seconds; the
records report them in seconds from ``origin_s`` (the start of the measured window).

**Windows**: the full window, and the steady-state window of ``harness/serving/steady.py``. The
requests of a window are those that *complete* inside it; tokens and energy count when they fall
inside it. Goodput is the good ones among them per second, so it never exceeds the completion rate.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.workload import SLOConfig
from llenergymeasure.energy.attribution import Attribution, RequestActivity
from llenergymeasure.harness.stats import latency_stats_ms, percentile
from llenergymeasure.results.serving_models import (
    EnergyStats,
    ServingRequest,
    ServingWindow,
)


def energy_stats(values_j: Sequence[float]) -> EnergyStats | None:
    vals = sorted(values_j)
    if not vals:
        return None
    return EnergyStats(
        n=len(vals),
        mean_j=sum(vals) / len(vals),
        p50_j=percentile(vals, 50),
        p90_j=percentile(vals, 90),
        p99_j=percentile(vals, 99),
    )


# -- one request -----------------------------------------------------------------------------------


def ttft_s(t: RequestTimeline) -> float | None:
    """The engine's own TTFT when it reports one, else first token minus send time."""
    if t.engine_ttft_s is not None:
        return t.engine_ttft_s
    first = t.first_token_s
    return first - t.injected_s if first is not None else None


def e2e_s(t: RequestTimeline) -> float | None:
    last = t.last_token_s
    return last - t.injected_s if last is not None else None


def mean_itl_s(t: RequestTimeline) -> float | None:
    n = t.output_tokens
    first, last = t.first_token_s, t.last_token_s
    if n < 2 or first is None or last is None:
        return None
    return (last - first) / (n - 1)


def itls_s(t: RequestTimeline) -> list[float]:
    times = t.token_times()
    return [b - a for a, b in itertools.pairwise(times)]


def queue_s(t: RequestTimeline) -> float | None:
    if t.queued_s is None or t.started_s is None:
        return None
    return max(t.started_s - t.queued_s, 0.0)


def meets_slo(t: RequestTimeline, slo: SLOConfig | None) -> bool | None:
    """True when every bound the SLO gives holds (a missing measurement fails it)."""
    if slo is None:
        return None
    checks = [
        (slo.ttft_ms, ttft_s(t)),
        (slo.itl_ms, mean_itl_s(t) if t.output_tokens > 1 else 0.0),
        (slo.e2e_ms, e2e_s(t)),
    ]
    return all(v is not None and v * 1000.0 <= bound for bound, v in checks if bound is not None)


def activity(t: RequestTimeline) -> RequestActivity:
    """The request as attribution sees it: prefill span, one point per step's output tokens."""
    spans: list[tuple[float, float, float]] = []
    first = t.first_token_s
    start = t.started_s if t.started_s is not None else t.injected_s
    if first is not None and t.input_tokens > 0:
        spans.append((min(start, first), first, float(t.input_tokens)))
    spans.extend((ts, ts, float(n)) for ts, n in t.token_steps)
    return RequestActivity(
        key=t.index,
        inflight_start_s=t.injected_s,
        inflight_end_s=max(t.end_s, t.injected_s),
        spans=spans,
    )


# -- windows ---------------------------------------------------------------------------------------


def window_record(
    timelines: Sequence[RequestTimeline],
    t0: float,
    t1: float,
    origin_s: float,
    slo: SLOConfig | None,
    *,
    completed_inside_only: bool,
    energy_j: float | None = None,
    energy_above_idle_j: float | None = None,
    request_energy: Attribution | None = None,
) -> ServingWindow:
    """Metrics of one window ``[t0, t1]``; ``request_energy`` gives each request's joules."""
    chosen = [t for t in timelines if not completed_inside_only or t0 <= t.end_s <= t1]
    duration = t1 - t0
    tokens = sum(1 for t in timelines for ts in t.token_times() if t0 <= ts <= t1)
    finished = sum(1 for t in timelines if t0 <= t.end_s <= t1)
    sent = sum(1 for t in timelines if t0 <= t.injected_s <= t1)
    verdicts = [meets_slo(t, slo) for t in chosen]
    good = sum(1 for v in verdicts if v) if slo is not None else None

    def per(value: float | None, denom: int | None) -> float | None:
        return value / denom if value is not None and denom else None

    req_j: list[float] = []
    req_above: list[float] = []
    req_tok_j: list[float] = []
    req_tok_above: list[float] = []
    if request_energy is not None:
        for t in chosen:
            if t.index not in request_energy.energy_j:
                continue
            e = request_energy.energy_j[t.index]
            a = request_energy.above_idle_j(t.index)
            req_j.append(e)
            req_above.append(a)
            if t.output_tokens:
                req_tok_j.append(e / t.output_tokens)
                req_tok_above.append(a / t.output_tokens)
    return ServingWindow(
        start_s=t0 - origin_s,
        end_s=t1 - origin_s,
        duration_s=duration,
        n_requests=len(chosen),
        n_sent_requests=sent,
        n_good_requests=good,
        output_tokens=tokens,
        requests_per_s=finished / duration if duration > 0 else 0.0,
        send_rate_rps=sent / duration if duration > 0 else 0.0,
        output_tokens_per_s=tokens / duration if duration > 0 else 0.0,
        goodput_rps=good / duration if good is not None and duration > 0 else None,
        slo_attainment=good / len(chosen) if good is not None and chosen else None,
        ttft_ms=latency_stats_ms([ttft_s(t) for t in chosen]),
        itl_ms=latency_stats_ms([x for t in chosen for x in itls_s(t)]),
        e2e_ms=latency_stats_ms([e2e_s(t) for t in chosen]),
        queue_ms=latency_stats_ms([queue_s(t) for t in chosen]),
        energy_j=energy_j,
        energy_above_idle_j=energy_above_idle_j,
        energy_per_output_token_j=per(energy_j, tokens),
        energy_per_output_token_above_idle_j=per(energy_above_idle_j, tokens),
        energy_per_good_request_j=per(energy_j, good),
        energy_per_good_request_above_idle_j=per(energy_above_idle_j, good),
        request_energy_j=energy_stats(req_j),
        request_energy_above_idle_j=energy_stats(req_above),
        request_energy_per_output_token_j=energy_stats(req_tok_j),
        request_energy_per_output_token_above_idle_j=energy_stats(req_tok_above),
    )


def request_records(
    timelines: Sequence[RequestTimeline],
    origin_s: float,
    slo: SLOConfig | None,
    steady: tuple[float, float] | None,
    attribution: Attribution | None,
) -> list[ServingRequest]:
    out = []
    for t in timelines:
        ttft, itl, e2e, queue = ttft_s(t), mean_itl_s(t), e2e_s(t), queue_s(t)
        known = attribution is not None and t.index in attribution.energy_j
        out.append(
            ServingRequest(
                index=t.index,
                scheduled_s=t.scheduled_s - origin_s,
                injected_s=t.injected_s - origin_s,
                injection_lag_ms=(t.injected_s - t.scheduled_s) * 1000.0,
                queue_ms=queue * 1000.0 if queue is not None else None,
                ttft_ms=ttft * 1000.0 if ttft is not None else None,
                mean_itl_ms=itl * 1000.0 if itl is not None else None,
                e2e_ms=e2e * 1000.0 if e2e is not None else None,
                input_tokens=t.input_tokens,
                output_tokens=t.output_tokens,
                met_slo=meets_slo(t, slo),
                in_steady_window=steady is not None and steady[0] <= t.end_s <= steady[1],
                energy_j=attribution.energy_j[t.index] if known else None,  # type: ignore[union-attr]
                energy_above_idle_j=attribution.above_idle_j(t.index) if known else None,  # type: ignore[union-attr]
                energy_low_j=attribution.low_j.get(t.index) if known else None,  # type: ignore[union-attr]
                energy_high_j=attribution.high_j.get(t.index) if known else None,  # type: ignore[union-attr]
            )
        )
    return out
