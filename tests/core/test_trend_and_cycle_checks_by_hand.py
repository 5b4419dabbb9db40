"""The window's trend checks (``energy/checks.py``: ``_thirds``, ``throughput_drift``,
``thermal_drift``, ``host_bound``) and the cross-cycle advice (``results/stats.py``:
``cycles_for_half_width``, ``cycle_warnings``) on series small enough to compute by hand; each
threshold is tried on both sides."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llenergymeasure.energy.checks import _thirds, host_bound, thermal_drift, throughput_drift
from llenergymeasure.results.models import MetricStats
from llenergymeasure.results.stats import (
    cycle_warnings,
    cycles_for_half_width,
    describe,
    t_quantile_975,
)

NAN = math.nan

# -- _thirds ---------------------------------------------------------------------------------------


def test_thirds_keep_the_first_and_last_third_inclusive_and_drop_nan_and_outside() -> None:
    t = np.array([-1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    v = t * 10.0
    v[2] = NAN  # t = 1 lost
    # [0, 9]: a third is 3 s; first t <= 3, last t >= 6; -1 and 10 lie outside
    first, last = _thirds(t, v, 0.0, 9.0)
    assert first.tolist() == [0.0, 20.0, 30.0]
    assert last.tolist() == [60.0, 70.0, 80.0, 90.0]


# -- throughput_drift ------------------------------------------------------------------------------

MIDS = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5]  # nine passes over a 9 s window


def _rates(first: float, last: float) -> list[float]:
    return [first] * 3 + [50.0] * 3 + [last] * 3  # the middle third never counts


def test_throughput_drift_compares_the_last_third_with_the_first() -> None:
    w = throughput_drift(MIDS, _rates(100.0, 110.0), 9.0)  # +10 % > 5 %
    assert w is not None and w.code == "throughput_drift"
    assert w.details == {
        "first_third_tok_s": 100.0,
        "last_third_tok_s": 110.0,
        "relative": pytest.approx(0.10),
        "n_first": 3,
        "n_last": 3,
    }
    assert "+10.0 %" in w.message and "100.0 -> 110.0 tokens/s" in w.message
    assert "tolerance 5 %" in w.message
    slower = throughput_drift(MIDS, _rates(100.0, 90.0), 9.0)  # -10 %: a drop counts too
    assert slower is not None and slower.details["relative"] == pytest.approx(-0.10)
    assert throughput_drift(MIDS, _rates(100.0, 104.0), 9.0) is None  # +4 %: steady
    assert throughput_drift(MIDS, _rates(100.0, 96.0), 9.0) is None  # -4 %: steady


def test_throughput_drift_needs_three_passes_a_window_and_a_first_third() -> None:
    assert throughput_drift([0.5, 8.5], [100.0, 200.0], 9.0) is None  # two passes
    assert throughput_drift([0.5, 4.5, 8.5], [100.0, 50.0, 200.0], 9.0) is not None  # three: +100 %
    assert throughput_drift(MIDS, _rates(100.0, 200.0), 0.0) is None  # no window
    assert throughput_drift(MIDS, _rates(0.0, 200.0), 9.0) is None  # nothing to divide by
    # every pass centred in the middle third: neither end has a pass
    assert throughput_drift([4.0, 4.5, 5.0], [100.0, 150.0, 200.0], 9.0) is None


# -- thermal_drift ---------------------------------------------------------------------------------

T10 = np.arange(10.0)  # 0 .. 9 s, one sample a second


def test_thermal_drift_warns_above_two_degrees() -> None:
    # 60 + 0.5 t: first third (t 0..3) mean 60.75, last (t 6..9) mean 63.75: +3.0 > 2
    w = thermal_drift(1, T10, 60.0 + 0.5 * T10, 0.0, 9.0)
    assert w is not None and (w.code, w.device) == ("thermal_drift", 1)
    assert w.details == {
        "first_third_c": pytest.approx(60.75),
        "last_third_c": pytest.approx(63.75),
        "rise_c": pytest.approx(3.0),
    }
    assert "from 60.8 to 63.8 °C" in w.message and "+3.0 °C, over 2 °C" in w.message
    # 60 + 0.3 t: +1.8: within the tolerance; cooling never warns
    assert thermal_drift(1, T10, 60.0 + 0.3 * T10, 0.0, 9.0) is None
    assert thermal_drift(1, T10, 70.0 - 0.5 * T10, 0.0, 9.0) is None


def test_thermal_drift_needs_three_samples_in_each_third() -> None:
    # first third t 0, 1 (two samples) and last third 8, 9: too few to judge a +20 degree rise
    t = np.array([0.0, 1.0, 5.0, 8.0, 9.0])
    assert thermal_drift(0, t, np.array([50.0, 50.0, 60.0, 70.0, 70.0]), 0.0, 9.0) is None
    # three in each: the same rise warns
    t = np.array([0.0, 1.0, 2.0, 7.0, 8.0, 9.0])
    temp = np.array([50.0, 50.0, 50.0, 70.0, 70.0, 70.0])
    w = thermal_drift(0, t, temp, 0.0, 9.0)
    assert w is not None and w.details["rise_c"] == pytest.approx(20.0)


# -- host_bound ------------------------------------------------------------------------------------

BUSY_W = np.full(10, 500.0)


def test_host_bound_by_utilisation_share() -> None:
    # 6 of the 10 readings under 50 % (NaNs dropped): share 0.6 > 0.5; median (45 + 49.9) / 2
    util = np.array([10, 20, 30, 40, 45, 49.9, 60, 70, 80, 90, NAN, NAN])
    w = host_bound(2, util, BUSY_W, idle_w=100.0, limit_w=700.0)
    assert w is not None and (w.code, w.device) == ("host_bound", 2)
    assert w.details["low_util_share"] == pytest.approx(0.6)
    assert w.details["median_util_pct"] == pytest.approx(47.45)
    assert "utilisation under 50 % in 60 % of samples (median 47 %)" in w.message
    assert "power under" not in w.message  # power was high throughout
    # exactly half under 50 %: not "most of the window"
    half = np.array([10, 20, 30, 40, 45, 60, 70, 80, 90, 95.0])
    assert host_bound(2, half, BUSY_W, idle_w=100.0, limit_w=700.0) is None
    # five readings are too few to judge
    assert host_bound(2, np.full(5, 1.0), BUSY_W, idle_w=None, limit_w=None) is None
    assert host_bound(2, np.full(6, 1.0), BUSY_W, idle_w=None, limit_w=None) is not None


def test_host_bound_by_power_near_idle() -> None:
    # idle 100 W, limit 700 W: near idle = 100 + 10 % x 600 = 160 W; 7 of 10 samples under it
    power = np.array([110, 120, 130, 140, 150, 155, 159, 400, 500, 600.0])
    busy_util = np.full(10, 90.0)
    w = host_bound(0, busy_util, power, idle_w=100.0, limit_w=700.0)
    assert w is not None
    assert w.details["near_idle_w"] == pytest.approx(160.0)
    assert w.details["near_idle_share"] == pytest.approx(0.7)
    assert w.details["median_power_w"] == pytest.approx(152.5)  # (150 + 155) / 2
    assert (w.details["idle_w"], w.details["power_limit_w"]) == (100.0, 700.0)
    assert (
        "power under 160 W (idle 100 W + 10 % of the headroom to the 700 W limit) "
        "in 70 % of samples (median 152 W)" in w.message
    )
    # a 1000 W limit: near idle is 190 W and the same samples are still 70 % under it
    assert host_bound(0, busy_util, power, idle_w=100.0, limit_w=1000.0) is not None
    # a 300 W limit: near idle 120 W; only 110 is under it
    assert host_bound(0, busy_util, power, idle_w=100.0, limit_w=300.0) is None
    # without idle or limit (or a limit not above idle) power is not judged
    assert host_bound(0, busy_util, power, idle_w=None, limit_w=700.0) is None
    assert host_bound(0, busy_util, power, idle_w=100.0, limit_w=None) is None
    assert host_bound(0, busy_util, power, idle_w=100.0, limit_w=100.0) is None


# -- cycles_for_half_width / cycle_warnings --------------------------------------------------------


def test_cycles_for_half_width_by_hand() -> None:
    # sd 1, mean 10, target 10 %: goal half-width 1.0. t(n-1) / sqrt(n):
    # n=6: 2.570582 / 2.449490 = 1.0494 > 1;  n=7: 2.446912 / 2.645751 = 0.9248 <= 1
    assert cycles_for_half_width(1.0, 10.0, 0.10) == 7
    assert cycles_for_half_width(1.0, -10.0, 0.10) == 7  # |mean|
    # target 2 %: goal 0.2; n=98: 1.98472 / 9.89949 = 0.20049 > 0.2; n=99: 0.19945
    assert cycles_for_half_width(1.0, 10.0, 0.02) == 99
    assert cycles_for_half_width(0.0, 10.0, 0.02) == 2  # no spread: the fewest cycles, 2
    assert cycles_for_half_width(1.0, 0.0, 0.02) is None  # no mean to be relative to
    assert cycles_for_half_width(1.0, 10.0, 0.0) is None
    # sd 1000 x the mean at 1 %: sqrt(n) would need to be ~2e5, far over 1000 cycles
    assert cycles_for_half_width(1000.0, 1.0, 0.01) is None


def test_cycle_warnings_say_how_many_more_cycles() -> None:
    # 9, 10, 11: mean 10, sd 1, CV 10 % > 5 %; half-width 4.302653 / sqrt(3) = 2.484138
    (w,) = cycle_warnings(describe([9.0, 10.0, 11.0]))
    assert w.code == "cycles_disagree"
    assert w.details == {
        "metric": "energy_per_output_token_j",
        "cv": pytest.approx(0.1),
        "n_cycles": 3,
        "ci95_half_width_rel": pytest.approx(0.2484138, rel=1e-6),
        "target_ci95_half_width_rel": 0.02,
        "cycles_needed": 99,
        "more_cycles": 96,
    }
    assert w.message.startswith(
        "energy_per_output_token_j varies across 3 cycles with CV 10.0 % (threshold 5 %): "
        "the 95 % CI is ±24.8 % of the mean; about 99 cycles in all (96 more) would bring it "
        "to ±2 % if the spread stays the same"
    )
    # a looser target and another metric name: 7 cycles (see above), 4 more
    (w,) = cycle_warnings(describe([9.0, 10.0, 11.0]), metric="ttft", target_rel=0.10)
    assert (w.details["metric"], w.details["cycles_needed"], w.details["more_cycles"]) == (
        "ttft",
        7,
        4,
    )
    # a CV under the threshold, or at a higher threshold: no warning
    assert cycle_warnings(describe([9.9, 10.0, 10.1])) == []  # CV 1 %
    assert cycle_warnings(describe([9.0, 10.0, 11.0]), threshold=0.1) == []  # CV = threshold
    assert cycle_warnings(describe([9.0, 10.0, 11.0]), threshold=0.2) == []
    assert cycle_warnings(describe([10.0])) == []  # one cycle
    assert cycle_warnings(MetricStats(n=0)) == []


def test_cycle_warnings_past_the_advised_maximum() -> None:
    # 1 and 99: mean 50, sd 69.3, CV 139 %; 1 % of the mean needs far more than 1000 cycles
    (w,) = cycle_warnings(describe([1.0, 99.0]), target_rel=0.01)
    assert w.details["cycles_needed"] is None and w.details["more_cycles"] is None
    assert "more than 1000 cycles would be needed at this spread" in w.message


# -- each boundary on its exact value (found by mutation testing) ----------------------------------


def test_thirds_of_a_window_that_does_not_start_at_zero() -> None:
    t = np.arange(3.0, 13.0)  # 3 .. 12 s; [3, 12]: a third is 3 s, first t <= 6, last t >= 9
    first, last = _thirds(t, t, 3.0, 12.0)
    assert first.tolist() == [3.0, 4.0, 5.0, 6.0]
    assert last.tolist() == [9.0, 10.0, 11.0, 12.0]


def test_throughput_drift_edges() -> None:
    # a 0.9 s window is still a window: +50 % between its thirds
    w = throughput_drift([0.1, 0.45, 0.8], [100.0, 100.0, 150.0], 0.9)
    assert w is not None and w.details["relative"] == pytest.approx(0.5)
    # no pass centred in the last third: nothing to compare
    assert throughput_drift([0.5, 1.5, 4.5], [100.0, 100.0, 300.0], 9.0) is None
    # a slow start (0.5 tokens/s) is a start: doubling to 1.0 is drift
    w = throughput_drift(MIDS, _rates(0.5, 1.0), 9.0)
    assert w is not None and w.details["relative"] == pytest.approx(1.0)
    w = throughput_drift(MIDS, _rates(100.0, 110.0), 9.0)
    assert w is not None and w.message == (
        "throughput moved +10.0 % between the first and last third of the window "
        "(100.0 -> 110.0 tokens/s, tolerance 5 %): the workload was not steady, so J/token "
        "depends on when it was measured"
    )


def test_thermal_drift_edges() -> None:
    # exactly +2.0 degrees is within the tolerance
    t = np.array([0.0, 1.0, 2.0, 7.0, 8.0, 9.0])
    flat_rise = np.array([60.0, 60.0, 60.0, 62.0, 62.0, 62.0])
    assert thermal_drift(0, t, flat_rise, 0.0, 9.0) is None
    # three samples at one end are not enough when the other end has two
    rise = np.array([50.0, 50.0, 60.0, 70.0, 70.0, 70.0])
    t_first2 = np.array([0.0, 1.0, 5.0, 7.0, 8.0, 9.0])  # first third: t 0, 1
    assert thermal_drift(0, t_first2, rise, 0.0, 9.0) is None
    t_last2 = np.array([0.0, 1.0, 2.0, 5.0, 8.0, 9.0])  # last third: t 8, 9
    assert thermal_drift(0, t_last2, np.array([50, 50, 50, 60, 70, 70.0]), 0.0, 9.0) is None
    w = thermal_drift(4, T10, 60.0 + 0.5 * T10, 0.0, 9.0)
    assert w is not None and w.message == (
        "GPU 4 warmed from 60.8 to 63.8 °C between the first and last third of the window "
        "(+3.0 °C, over 2 °C): it had not reached a steady temperature; warm up longer or "
        "lengthen the window"
    )


def test_host_bound_edges() -> None:
    busy_util = np.full(10, 90.0)
    # a reading of exactly 50 % is not "under 50 %": 5 of 10 under, not most
    util = np.array([10, 20, 30, 40, 45, 50, 70, 80, 90, 95.0])
    assert host_bound(0, util, BUSY_W, idle_w=None, limit_w=None) is None
    # near idle is 160 W (idle 100, limit 700); a sample at exactly 160 W is not under it
    power = np.array([110, 120, 130, 140, 150, 160, 400, 500, 600, 650.0])
    assert host_bound(0, busy_util, power, idle_w=100.0, limit_w=700.0) is None
    # exactly six power samples are enough to judge
    six = np.array([110, 120, 130, 140, 150, 155.0])
    assert host_bound(0, np.full(6, 90.0), six, idle_w=100.0, limit_w=700.0) is not None
    # a limit equal to idle leaves no headroom: power is not judged, even all under idle
    assert host_bound(0, busy_util, np.full(10, 90.0), idle_w=100.0, limit_w=100.0) is None
    # both reasons, joined by "; "
    low_util = np.full(10, 10.0)
    w = host_bound(5, low_util, np.full(10, 120.0), idle_w=100.0, limit_w=700.0)
    assert w is not None and w.message == (
        "GPU 5 was near idle for most of the window: utilisation under 50 % in 100 % of samples "
        "(median 10 %); power under 160 W (idle 100 W + 10 % of the headroom to the 700 W limit) "
        "in 100 % of samples (median 120 W). The host sets this workload's speed, so its "
        "tokens/s and J/token move with the host's load; a larger batch, a static cache with "
        "torch_compile, or another engine keeps the GPU busy"
    )


def test_cycles_for_half_width_edges() -> None:
    # no spread but no mean, or no target: still no answer (not "2 cycles")
    assert cycles_for_half_width(0.0, 0.0, 0.02) is None
    assert cycles_for_half_width(0.0, 10.0, 0.0) is None
    # a target met exactly at the advised maximum, 1000 cycles: t(999) / sqrt(1000)
    at_max = t_quantile_975(999) / math.sqrt(1000)
    assert cycles_for_half_width(1.0, 1.0, at_max) == 1000
    # a target only 1001 cycles would meet: over the maximum, None
    past_max = t_quantile_975(1000) / math.sqrt(1001)
    assert cycles_for_half_width(1.0, 1.0, past_max) is None


def test_cycle_warnings_need_two_cycles_and_a_complete_summary() -> None:
    # one cycle never warns, whatever its CV field says
    one = MetricStats(n=1, mean=10.0, std=1.0, cv=0.5, ci95_half_width=1.0)
    assert cycle_warnings(one) == []
    no_sd = MetricStats(n=3, mean=10.0, std=None, cv=0.5, ci95_half_width=1.0)
    assert cycle_warnings(no_sd) == []
    no_half = MetricStats(n=3, mean=10.0, std=1.0, cv=0.5, ci95_half_width=None)
    with pytest.raises(AssertionError):
        cycle_warnings(no_half)
