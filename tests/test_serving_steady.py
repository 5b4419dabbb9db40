"""The steady window and its checks on hand-made timelines (fixed service times, no clock):
goodput counted over completions, the overloaded warning, the ramp-up with varying output
lengths, the serving drift check, and the attribution band of prompt against output tokens."""

from __future__ import annotations

import pytest

from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.workload import SLOConfig
from llenergymeasure.energy.attribution import (
    RequestActivity,
    attribute_energy,
    attribute_energy_band,
)
from llenergymeasure.harness.serving.metrics import window_record
from llenergymeasure.harness.serving.steady import (
    RAMP_FRACTION,
    ramp_s,
    steady_checks,
    steady_window,
)


def _request(i: int, sent: float, start: float, n: int, step: float) -> RequestTimeline:
    """Sent at ``sent``, scheduled by the engine at ``start``, ``n`` tokens ``step`` apart."""
    t = RequestTimeline(index=i, input_tokens=10, scheduled_s=sent, injected_s=sent)
    t.queued_s, t.started_s = sent, start
    t.token_steps = [(start + (k + 1) * step, 1) for k in range(n)]
    t.finished_s = t.token_steps[-1][0]
    return t


def _fifo(rate_rps: float, service_s: float, n: int, tokens: int = 4) -> list[RequestTimeline]:
    """An open loop at ``rate_rps`` into a one-at-a-time engine taking ``service_s`` each."""
    out, free = [], 0.0
    for i in range(n):
        sent = i / rate_rps
        start = max(sent, free)
        free = start + service_s
        out.append(_request(i, sent, start, tokens, service_s / tokens))
    return out


def test_goodput_never_exceeds_the_completion_rate_of_an_overloaded_engine() -> None:
    # 40 req/s into an engine completing 7 req/s; every request meets the (generous) SLO
    tl = _fifo(40.0, 1 / 7, 200)
    t0, t1 = min(t.end_s for t in tl), max(t.injected_s for t in tl)
    w = window_record(tl, t0, t1, 0.0, SLOConfig(e2e_ms=10**9), completed_inside_only=True)
    assert w.requests_per_s == pytest.approx(7.0, rel=0.05)
    assert w.send_rate_rps == pytest.approx(40.0, rel=0.05)
    assert w.goodput_rps is not None and w.goodput_rps <= w.requests_per_s
    assert w.n_good_requests == w.n_requests and w.slo_attainment == 1.0
    assert w.energy_per_good_request_j is None  # no energy given


def test_slo_attainment_is_over_the_requests_completed_in_the_window() -> None:
    tl = _fifo(2.0, 0.2, 20)  # each request: e2e 0.2 s, no queue
    tl[5].token_steps[-1] = (tl[5].token_steps[-1][0] + 1.0, 1)  # one slow request: e2e 1.2 s
    tl[5].finished_s = tl[5].token_steps[-1][0]
    w = window_record(
        tl, 0.0, 3.3, 0.0, SLOConfig(e2e_ms=500), completed_inside_only=True, energy_j=60.0
    )
    # completed by 3.3 s: requests 0..5 (the slow one at 3.7 s is not) and 6 (3.2 s)
    done = [t.index for t in tl if t.end_s <= 3.3]
    assert done == [0, 1, 2, 3, 4, 6]
    assert w.n_requests == 6 and w.n_good_requests == 6 and w.slo_attainment == 1.0
    assert w.n_sent_requests == 7  # sent at 0, 0.5, ..., 3.0
    assert w.energy_per_good_request_j == pytest.approx(10.0)
    w = window_record(tl, 0.0, 4.0, 0.0, SLOConfig(e2e_ms=500), completed_inside_only=True)
    assert w.n_requests == 8 and w.n_good_requests == 7
    assert w.slo_attainment == pytest.approx(7 / 8)


def test_an_overloaded_run_is_named_with_its_rates() -> None:
    tl = _fifo(40.0, 1 / 7, 200)
    window, reason = steady_window(tl)
    assert window is None and reason is not None  # its queue never settles
    span = (0.0, max(t.injected_s for t in tl))
    checks, warnings = steady_checks(tl, span, "sending span")
    assert checks.overloaded
    assert checks.completion_rate_rps == pytest.approx(7.0, rel=0.05)
    assert checks.send_rate_rps == pytest.approx(40.0, rel=0.05)
    assert checks.ttft_second_half_ms > 2 * checks.ttft_first_half_ms  # type: ignore[operator]
    (w,) = [w for w in warnings if w.code == "overloaded"]
    assert f"completed {checks.completion_rate_rps:.2f} req/s" in w.message
    assert f"{checks.send_rate_rps:.2f} req/s were sent" in w.message
    assert "load.rate_rps" in w.message
    # the same engine at 5 req/s keeps up: a steady window, no warning
    tl = _fifo(5.0, 1 / 7, 200)
    window, _ = steady_window(tl)
    assert window is not None
    checks, warnings = steady_checks(tl, window, "steady")
    assert not checks.overloaded and not [w for w in warnings if w.code == "overloaded"]
    assert checks.drift is False


def _inflight(tl: list[RequestTimeline], at: float) -> int:
    return sum(1 for t in tl if t.injected_s <= at < t.end_s)


def test_ramp_up_lasts_until_the_in_flight_count_settles_with_varying_lengths() -> None:
    # every 0.1 s a request; odd ones produce 2 tokens (0.2 s), even ones 30 tokens (3 s); the
    # engine runs them all at once (no queue), so the in-flight count settles at 10 * 1.6 = 16
    tl = [_request(i, 0.1 * i, 0.1 * i, 2 if i % 2 else 30, 0.1) for i in range(300)]
    (start, _end), _ = steady_window(tl)
    level = 10 * (0.2 + 3.0) / 2
    assert min(t.end_s for t in tl) == pytest.approx(0.3)  # the first short request's end
    assert _inflight(tl, start) >= RAMP_FRACTION * level - 1  # settled when the window opens
    assert start == pytest.approx(ramp_s([0.2, 3.0]))  # from the first send, at 0 s
    assert ramp_s([0.2, 3.0]) == pytest.approx(2 * 0.9 * 1.6 - 0.2)
    # equal lengths: the in-flight count settles with the first completion (the old rule)
    same = [_request(i, 0.1 * i, 0.1 * i, 10, 0.1) for i in range(100)]
    (start, _), _ = steady_window(same)
    assert start == pytest.approx(1.0)


def test_too_few_completions_inside_means_no_steady_state() -> None:
    # 6 requests finish quickly, then 10 long ones sent at once near the end
    tl = [_request(i, 0.5 * i, 0.5 * i, 2, 0.1) for i in range(6)]
    tl += [_request(6 + i, 3.0, 3.0, 40, 0.1) for i in range(10)]
    window, reason = steady_window(tl)
    assert window is None and reason is not None
    assert "requests completed between" in reason or "ended after the last send" in reason


def test_serving_drift_sees_a_slowing_engine_in_a_closed_loop() -> None:
    # closed loop at concurrency 1: each request 10 tokens; the step time grows 10 -> 30 ms
    tl, now = [], 0.0
    for i in range(300):
        step = 0.01 + 0.02 * i / 299
        tl.append(_request(i, now, now, 10, step))
        now = tl[-1].end_s
    window, _ = steady_window(tl)
    assert window is not None
    checks, warnings = steady_checks(tl, window, "steady", closed_loop=True)
    assert checks.drift is True and checks.drift_relative < -0.3  # type: ignore[operator]
    assert [w.code for w in warnings] == ["throughput_drift"]
    # a constant engine: checked, no drift
    steady = [_request(i, 0.1 * i, 0.1 * i, 10, 0.01) for i in range(300)]
    checks, warnings = steady_checks(steady, (0.1, 29.9), "steady", closed_loop=True)
    assert checks.drift is False and warnings == []
    # too few requests: not checked, and the record says why
    checks, _ = steady_checks(steady[:8], (0.0, 0.7), "steady")
    assert checks.drift is None and "too few" in (checks.drift_not_checked_reason or "")


def test_attribution_band_between_prompt_and_output_token_weighting() -> None:
    # one 2,000-token prefill and another request's 5 decode tokens in one 1 s interval, 100 J
    prefill = RequestActivity(0, 0.0, 1.0, spans=[(0.0, 1.0, 2000.0)])
    decode = RequestActivity(1, 0.0, 1.0, spans=[(0.1 * k, 0.1 * k, 1.0) for k in range(1, 6)])
    t, p = [0.0, 1.0], [100.0, 100.0]
    by_tok = attribute_energy(t, p, [prefill, decode], 0.0, 1.0)
    assert by_tok.energy_j[1] == pytest.approx(100 * 5 / 2005)  # the old, compute-bound split
    band = attribute_energy_band(t, p, [prefill, decode], 0.0, 1.0)
    assert band.low_j[1] == pytest.approx(100 * 5 / 2005) and band.high_j[1] == pytest.approx(50)
    assert band.energy_j[1] == pytest.approx((100 * 5 / 2005 + 50) / 2)
    assert band.low_j[0] == pytest.approx(50) and band.high_j[0] == pytest.approx(100 * 2000 / 2005)
    assert sum(band.energy_j.values()) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="weighting"):
        attribute_energy(t, p, [prefill], 0.0, 1.0, weighting="flops")  # type: ignore[arg-type]
