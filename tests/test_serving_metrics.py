"""Serving metrics from hand-made timelines: steady-state rule, SLO verdicts, window figures."""

from __future__ import annotations

import pytest

from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.workload import SLOConfig
from llenergymeasure.harness.serving.metrics import meets_slo, window_record
from llenergymeasure.harness.serving.steady import steady_window


def _t(i: int, sent: float, first: float, step: float, n: int) -> RequestTimeline:
    t = RequestTimeline(index=i, input_tokens=10, scheduled_s=sent, injected_s=sent)
    t.started_s = sent
    t.token_steps = [(first + k * step, 1) for k in range(n)]
    t.finished_s = first + (n - 1) * step
    return t


def test_steady_window_runs_from_first_completion_to_last_send() -> None:
    # sends every 1 s; each request takes 2.5 s (first token after 0.5 s, 5 tokens 0.5 s apart)
    tl = [_t(i, float(i), i + 0.5, 0.5, 5) for i in range(10)]
    (start, end), reason = steady_window(tl)
    assert (start, end) == (2.5, 9.0) and reason is None
    w = window_record(tl, start, end, 0.0, None, completed_inside_only=True)
    assert w.n_requests == 7  # completed at 2.5..8.5 s
    assert w.n_sent_requests == 7  # sent at 3..9 s (the last send closes the window)
    # tokens produced inside [2.5, 9]: by hand from the 5-token timelines
    inside = sum(1 for t in tl for ts in t.token_times() if start <= ts <= end)
    assert w.output_tokens == inside
    assert w.output_tokens_per_s == pytest.approx(inside / 6.5)
    assert w.requests_per_s == pytest.approx(sum(1 for t in tl if start <= t.end_s <= end) / 6.5)


def test_no_steady_state_when_too_few_requests_fall_inside() -> None:
    tl = [_t(i, 0.01 * i, 1.0, 0.1, 3) for i in range(8)]  # all sent before anyone finished
    window, reason = steady_window(tl)
    assert window is None and "ended after the last send" in reason
    # request 0 finishes at 0.2 s; six were sent before that, only the last (0.3 s) after
    tl = [_t(0, 0.0, 0.1, 0.1, 2)] + [_t(i, 0.1, 1.0, 0.1, 2) for i in range(1, 7)]
    tl.append(_t(7, 0.3, 1.0, 0.1, 2))
    window, reason = steady_window(tl)
    assert window is None and "ended after the last send" in reason


def test_slo_verdict_needs_every_bound() -> None:
    t = _t(0, 0.0, 0.2, 0.05, 11)  # TTFT 200 ms, mean ITL 50 ms, e2e 700 ms
    assert meets_slo(t, None) is None
    assert meets_slo(t, SLOConfig(ttft_ms=200, itl_ms=50)) is True
    assert meets_slo(t, SLOConfig(ttft_ms=199)) is False
    assert meets_slo(t, SLOConfig(itl_ms=49)) is False
    assert meets_slo(t, SLOConfig(e2e_ms=700)) is True
    t.engine_ttft_s = 0.3  # the engine's own TTFT wins over the driver's
    assert meets_slo(t, SLOConfig(ttft_ms=250)) is False


def test_goodput_and_energy_per_good_request() -> None:
    tl = [_t(i, float(i), i + 0.1 + 0.2 * i, 0.05, 3) for i in range(4)]  # TTFT 0.1..0.7 s
    w = window_record(
        tl, 0.0, 4.0, 0.0, SLOConfig(ttft_ms=350), completed_inside_only=False, energy_j=80.0
    )
    assert w.n_good_requests == 2 and w.slo_attainment == 0.5
    assert w.goodput_rps == pytest.approx(0.5)
    assert w.energy_per_good_request_j == pytest.approx(40.0)
    assert w.energy_per_output_token_j == pytest.approx(80.0 / 12)
