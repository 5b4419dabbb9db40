"""Clock events and the counter/power cross-check by hand, word for word: the power cap from the
samples and from NVML's violation counter (each reported as what it is), judged against the mean
power and the enforced limit, heat and hardware slowdowns with
their reason names and violation time, and the cross-check's tolerance on its exact value."""

from __future__ import annotations

import numpy as np
import pytest

from llenergymeasure.energy.checks import clock_events, counter_power_mismatch

CAP, HW_SLOW, SW_THERMAL, HW_THERMAL, BRAKE = 0x4, 0x8, 0x20, 0x40, 0x80


def _one(ws: list, code: str):  # type: ignore[no-untyped-def]
    [w] = [w for w in ws if w.code == code]
    return w


def test_power_cap_from_the_samples() -> None:
    # 3 of 4 read samples with sw_power_cap (one unread): 75 %; no violation counter, no limit
    reasons = np.array([CAP, 0, CAP, np.nan, CAP], dtype=float)
    [w] = clock_events(3, reasons, None, 2.0)
    assert (w.code, w.severity, w.device) == ("power_capped", "info", 3)
    assert w.message == (
        "GPU 3: power management lowered the clocks (sw_power_cap in 3 of 4 samples (75 %)); the "
        "power limit is unknown here; at the limit this is normal at TDP, well below it the "
        "clocks were lowered in bursts, not for time spent at the limit"
    )
    assert w.details == {
        "n_samples": 3,
        "sample_share": 0.75,
        "violation_s": 0.0,
        "violation_share": None,
        "mean_power_w": None,
        "power_limit_w": None,
        "mean_power_share_of_limit": None,
    }


def test_power_cap_at_64_percent_of_the_limit_is_not_called_holding_the_limit() -> None:
    """Issue 25 item 14: an H100 at a mean 450 W of its 700 W limit was told it "held its power
    limit for 12-13 % of the window". Both sources are reported apart, as what they are, and the
    mean power against the limit says the cap acted on peaks."""
    reasons = np.array([CAP, 0, 0, 0, 0, 0, 0, 0], dtype=float)  # 1 of 8 samples: 12.5 %
    [w] = clock_events(
        0, reasons, {"power": 1_300_000_000}, 10.0, mean_power_w=450.0, power_limit_w=700.0
    )
    assert "held its power limit" not in w.message
    assert w.message == (
        "GPU 0: power management lowered the clocks (sw_power_cap in 1 of 8 samples (12 %); "
        "NVML power violation time 1.300 s, 13 % of the window); mean power 450 W is only 64 % "
        "of the 700 W limit, so this is not time spent at the limit: the clocks were lowered in "
        "bursts, most likely on short power peaks (power management reacts within milliseconds; "
        "the power reading is a ~100 ms average)"
    )
    assert w.details["mean_power_share_of_limit"] == pytest.approx(450 / 700)
    assert (w.details["violation_share"], w.details["sample_share"]) == (0.13, 0.125)
    # at 90 % of the limit and above, the GPU ran at its limit
    [at] = clock_events(0, reasons, None, 10.0, mean_power_w=630.0, power_limit_w=700.0)
    assert at.message.endswith(
        "mean power 630 W is 90 % of the 700 W limit: the GPU ran at its power limit and the "
        "clocks followed the cap (normal at TDP)"
    )
    [under] = clock_events(0, reasons, None, 10.0, mean_power_w=629.0, power_limit_w=700.0)
    assert "only 90 % of the 700 W limit, so this is not time spent at the limit" in under.message
    # a limit of 0 W (not reported) is unknown, not a division
    [zero] = clock_events(0, reasons, None, 10.0, mean_power_w=450.0, power_limit_w=0.0)
    assert "the power limit is unknown here" in zero.message
    assert zero.details["mean_power_share_of_limit"] is None


def test_power_cap_from_the_violation_counter_alone_and_both_reported_apart() -> None:
    # samples say 25 %, NVML's power violation counter 1.5 s of a 2 s window: both are stated
    w = _one(
        clock_events(0, np.array([CAP, 0, 0, 0], dtype=float), {"power": 1_500_000_000}, 2.0),
        "power_capped",
    )
    assert w.message.startswith(
        "GPU 0: power management lowered the clocks (sw_power_cap in 1 of 4 samples (25 %); "
        "NVML power violation time 1.500 s, 75 % of the window); "
    )
    assert w.details["violation_s"] == 1.5 and w.details["violation_share"] == 0.75
    assert w.details["sample_share"] == 0.25
    # the counter alone (no sample saw the cap), even 1 ns of it, is a power cap
    tiny = _one(clock_events(0, np.zeros(4), {"power": 1, "thermal": 0}, 1.0), "power_capped")
    assert tiny.details["n_samples"] == 0 and tiny.details["violation_s"] == 1e-9
    assert tiny.message.startswith(
        "GPU 0: power management lowered the clocks (NVML power violation time 0.000 s, 0 % of "
        "the window); "
    )
    # a window of no duration has no share: none is printed, the share is None
    flat = _one(clock_events(0, np.zeros(2), {"power": 500_000_000}, 0.0), "power_capped")
    assert flat.message.startswith(
        "GPU 0: power management lowered the clocks (NVML power violation time 0.500 s); "
    )
    assert flat.details["violation_share"] is None
    # no sample read the reasons and no violation time: no warning
    assert clock_events(0, np.array([np.nan, np.nan]), {"power": 0}, 1.0) == []


def test_heat_with_samples_names_and_violation_time() -> None:
    reasons = np.array([SW_THERMAL, HW_THERMAL, 0, 0], dtype=float)
    [w] = clock_events(1, reasons, {"thermal": 300_000_000}, 3.0)
    assert (w.code, w.severity, w.device) == ("thermal_slowdown", "warning", 1)
    assert w.message == (
        "GPU 1: clocks pulled down by heat in 2 sample(s) (50.0 % of the samples; 0.300 s of "
        "thermal violation time): hw_thermal_slowdown, sw_thermal_slowdown"
    )
    assert w.details == {
        "reasons": ["hw_thermal_slowdown", "sw_thermal_slowdown"],
        "n_samples": 2,
        "sample_share": 0.5,
        "violation_s": 0.3,
        "violation_share": pytest.approx(0.1),
    }
    # the thermal violation counter alone: no sample, no reason names
    [only] = clock_events(1, np.zeros(4), {"thermal": 1_000_000_000}, 4.0)
    assert only.message == (
        "GPU 1: clocks pulled down by heat in 0 sample(s) (0.0 % of the samples; 1.000 s of "
        "thermal violation time)"
    )
    assert only.details["violation_share"] == 0.25


def test_hardware_slowdown_has_no_violation_counter() -> None:
    reasons = np.array([HW_SLOW, 0, BRAKE, 0], dtype=float)
    [w] = clock_events(0, reasons, {"power": 0, "thermal": 0}, 1.0)
    assert (w.code, w.device) == ("hw_slowdown", 0)
    assert w.message == (
        "GPU 0: clocks pulled down by a hardware slowdown signal (HW slowdown or power brake) in "
        "2 sample(s) (50.0 % of the samples): hw_power_brake_slowdown, hw_slowdown"
    )
    assert w.details["violation_s"] == 0.0 and w.details["violation_share"] is None


def test_counter_power_mismatch_text_and_boundaries() -> None:
    w = counter_power_mismatch(2, 100.0, 112.5)
    assert w is not None and w.code == "counter_power_mismatch" and w.device == 2
    assert w.message == (
        "GPU 2: the energy counter (100.0 J) and integrated power (112.5 J) disagree by +12.5 % "
        "(tolerance 5 %); short windows, sampler gaps or a slow power reading cause this"
    )
    assert w.details == {"counter_j": 100.0, "integrated_j": 112.5, "relative": 0.125}
    assert counter_power_mismatch(2, 100.0, 105.0) is None  # 5 % exactly: within tolerance
    assert counter_power_mismatch(2, 100.0, None) is None
    assert counter_power_mismatch(2, 0.0, 3.0) is None  # no counter energy: nothing to compare
    small = counter_power_mismatch(2, 0.5, 1.0)  # under a joule still compares: +100 %
    assert small is not None and small.details["relative"] == 1.0
