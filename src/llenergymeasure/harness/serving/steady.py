"""The steady-state window of a serving run and the checks that it was steady.

Pure functions over request timelines (``perf_counter`` seconds); docs/methodology.md, "Serving
mode", states each rule.

**Window.** Ramp-up ends when the number of requests in flight can have reached its steady level;
drain starts at the last send. By Little's law an open loop that sends at a constant rate has
``rate * E[min(W, t)]`` requests in flight ``t`` seconds after its first send (``W`` the
requests' end-to-end times), so the in-flight count reaches ``RAMP_FRACTION`` of its steady level
``rate * E[W]`` at the smallest ``t`` with ``mean(min(W_i, t)) >= RAMP_FRACTION * mean(W_i)``.
The window starts there, and never before the first completion. (The first completion alone, the
old rule, is right only when every request takes about as long: with varying output lengths the
shortest request finishes long before the in-flight count has settled.) The requests *of* the
window are those that **complete** inside it (as ``vllm bench serve`` counts), so goodput can
never exceed the completion rate.

**Stationarity.** Over the window: the completion rate against the send rate, and the mean
time to first token (from the send: queueing plus prefill) of the requests sent in the window's
second half against its first half. An engine that completes fewer than ``OVERLOAD_RATE_RATIO``
of the requests sent while their waiting time grows by more than ``OVERLOAD_TTFT_GROWTH`` is
overloaded: its queue grows without bound and no steady state exists at this load.

**Drift.** Output tokens/s of the window's first third against its last third (serving runs are
one pass, so the pass-based ``throughput_drift`` cannot see them). In a closed loop the engine
sets the rate and the tolerance is the offline one (``THROUGHPUT_DRIFT_TOLERANCE``); in an open
loop the arrivals set it, so the tolerance is the larger of that and twice the relative standard
error of the two thirds' request counts (random arrivals alone move a third's rate that much).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.energy.checks import THROUGHPUT_DRIFT_TOLERANCE
from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.results.serving_models import SteadyChecks

#: the window starts when the in-flight count can have reached this share of its steady level
RAMP_FRACTION = 0.9
#: a steady window must see at least this fraction of the requests complete inside it
MIN_STEADY_FRACTION = 0.5
#: completion rate under this share of the send rate (with a growing wait): overloaded
OVERLOAD_RATE_RATIO = 0.9
#: mean TTFT of the second half over the first half's, minus 1, above which the wait grows
OVERLOAD_TTFT_GROWTH = 0.5
#: fewer completions than this in a third: the drift is not checked
MIN_DRIFT_REQUESTS = 5

STEADY_RULE = (
    f"from when the in-flight count can have reached {RAMP_FRACTION:.0%} of its steady level "
    "(first send + the smallest t with mean(min(e2e_i, t)) >= "
    f"{RAMP_FRACTION:g} * mean(e2e_i), never before the first completion) to the last send; "
    "the requests that complete inside it, tokens and energy falling inside it; none when fewer "
    f"than {MIN_STEADY_FRACTION:.0%} of the requests complete inside it"
)


def e2e_of(t: RequestTimeline) -> float:
    return max(t.end_s - t.injected_s, 0.0)


def ramp_s(latencies_s: Sequence[float], fraction: float = RAMP_FRACTION) -> float:
    """Smallest ``t`` with ``mean(min(W_i, t)) >= fraction * mean(W_i)`` (0 for no requests)."""
    w = sorted(max(x, 0.0) for x in latencies_s)
    n = len(w)
    if n == 0:
        return 0.0
    target = fraction * sum(w)  # in units of n * mean
    below = 0.0  # sum of the k smallest
    for k, wk in enumerate(w):
        # for t in [w[k-1], w[k]]: n * f(t) = below + t * (n - k)
        t = (target - below) / (n - k)
        if t <= wk:
            return max(t, 0.0)
        below += wk
    return w[-1]


def completed_inside(
    timelines: Sequence[RequestTimeline], t0: float, t1: float
) -> list[RequestTimeline]:
    return [t for t in timelines if t0 <= t.end_s <= t1]


def steady_window(
    timelines: Sequence[RequestTimeline],
) -> tuple[tuple[float, float] | None, str | None]:
    """The steady-state window and, when there is none, why."""
    if not timelines:
        return None, "no requests"
    first_send = min(t.injected_s for t in timelines)
    first_done = min(t.end_s for t in timelines)
    ramp = ramp_s([e2e_of(t) for t in timelines])
    start = max(first_done, first_send + ramp)
    end = max(t.injected_s for t in timelines)
    if end <= start:
        return None, (
            f"ramp-up (until {start - first_send:.3f} s after the first send, when the in-flight "
            f"count can have reached {RAMP_FRACTION:.0%} of its steady level) ended after the "
            "last send: no steady state; send more requests (or, when the run is overloaded, "
            "lower the rate)"
        )
    inside = len(completed_inside(timelines, start, end))
    if inside < MIN_STEADY_FRACTION * len(timelines):
        return None, (
            f"only {inside} of {len(timelines)} requests completed between the end of ramp-up "
            f"and the last send (fewer than {MIN_STEADY_FRACTION:.0%}); send more requests"
        )
    return (start, end), None


def _ttft(t: RequestTimeline) -> float | None:
    if t.engine_ttft_s is not None:
        return t.engine_ttft_s
    first = t.first_token_s
    return first - t.injected_s if first is not None else None


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def steady_checks(
    timelines: Sequence[RequestTimeline],
    window: tuple[float, float],
    which: str,
    *,
    closed_loop: bool = False,
) -> tuple[SteadyChecks, list[ValidityWarning]]:
    """Stationarity and drift over ``window`` (``which``: "steady" or "sending span")."""
    t0, t1 = window
    dur = t1 - t0
    sent = [t for t in timelines if t0 <= t.injected_s <= t1]
    done = completed_inside(timelines, t0, t1)
    send_rate = len(sent) / dur if dur > 0 else 0.0
    done_rate = len(done) / dur if dur > 0 else 0.0
    ratio = done_rate / send_rate if send_rate > 0 else None
    mid = (t0 + t1) / 2.0
    ttft1 = _mean([_ttft(t) for t in sent if t.injected_s < mid])
    ttft2 = _mean([_ttft(t) for t in sent if t.injected_s >= mid])
    growth = ttft2 / ttft1 - 1.0 if ttft1 and ttft2 is not None else None
    slow = ratio is not None and ratio < OVERLOAD_RATE_RATIO
    rising = growth is None or growth > OVERLOAD_TTFT_GROWTH
    overloaded = slow and rising
    warnings: list[ValidityWarning] = []
    if overloaded:
        trend = (
            f"the mean TTFT rose from {ttft1 * 1000:.0f} ms to {ttft2 * 1000:.0f} ms between the "
            "window's halves"
            if ttft1 is not None and ttft2 is not None
            else "no TTFT to see the queue by"
        )
        warnings.append(
            ValidityWarning(
                code="overloaded",
                message=(
                    f"the engine completed {done_rate:.2f} req/s while {send_rate:.2f} req/s were "
                    f"sent in the {which} window ({ratio:.0%}, under {OVERLOAD_RATE_RATIO:.0%}) "
                    f"and {trend}: its queue grew without bound, so this load has no steady "
                    "state; its latencies depend on the run's length. Lower load.rate_rps"
                ),
                details={
                    "send_rate_rps": send_rate,
                    "completion_rate_rps": done_rate,
                    "ttft_first_half_s": ttft1,
                    "ttft_second_half_s": ttft2,
                },
            )
        )
    checks = SteadyChecks(
        window=which,
        send_rate_rps=send_rate,
        completion_rate_rps=done_rate,
        completion_to_send_ratio=ratio,
        ttft_first_half_ms=ttft1 * 1000.0 if ttft1 is not None else None,
        ttft_second_half_ms=ttft2 * 1000.0 if ttft2 is not None else None,
        overloaded=overloaded,
    )
    drift, reason = _drift(timelines, done, t0, t1, closed_loop)
    if drift is not None:
        checks = checks.model_copy(update=drift)
        if drift["drift"]:
            warnings.append(_drift_warning(drift, which))
    else:
        checks = checks.model_copy(update={"drift_not_checked_reason": reason})
    return checks, warnings


def _drift(
    timelines: Sequence[RequestTimeline],
    done: list[RequestTimeline],
    t0: float,
    t1: float,
    closed_loop: bool,
) -> tuple[dict[str, float | bool] | None, str | None]:
    third = (t1 - t0) / 3.0
    if third <= 0:
        return None, "an empty window"
    a_end, b_start = t0 + third, t1 - third
    n_a = sum(1 for t in done if t.end_s <= a_end)
    n_b = sum(1 for t in done if t.end_s >= b_start)
    if min(n_a, n_b) < MIN_DRIFT_REQUESTS:
        return None, (
            f"{n_a} and {n_b} requests completed in the window's first and last third (fewer "
            f"than {MIN_DRIFT_REQUESTS}): too few to see a drift; send more requests"
        )
    times = [ts for t in timelines for ts in t.token_times()]
    tok_a = sum(1 for ts in times if t0 <= ts <= a_end) / third
    tok_b = sum(1 for ts in times if b_start <= ts <= t1) / third
    if tok_a <= 0:
        return None, "no output token in the window's first third"
    rel = tok_b / tok_a - 1.0
    tol = THROUGHPUT_DRIFT_TOLERANCE
    if not closed_loop:
        tol = max(tol, 2.0 * math.sqrt(1.0 / n_a + 1.0 / n_b))
    return {
        "first_third_tok_s": tok_a,
        "last_third_tok_s": tok_b,
        "drift_relative": rel,
        "drift_tolerance": tol,
        "drift": abs(rel) > tol,
    }, None


def _drift_warning(d: dict[str, float | bool], which: str) -> ValidityWarning:
    return ValidityWarning(
        code="throughput_drift",
        message=(
            f"output throughput moved {float(d['drift_relative']) * 100:+.1f} % between the "
            f"first and last third of the {which} window ({float(d['first_third_tok_s']):.1f} -> "
            f"{float(d['last_third_tok_s']):.1f} tokens/s, tolerance "
            f"{float(d['drift_tolerance']) * 100:.0f} % at these request counts): the run was "
            "not steady, so J/token depends on when it was measured"
        ),
        details={k: float(v) for k, v in d.items()},
    )
