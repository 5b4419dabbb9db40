"""Clock events and the counter/power cross-check by hand, word for word: the power cap's share
from the samples or from NVML's violation counter (which wins), heat and hardware slowdowns with
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
    # 3 of 4 read samples at the power cap (one unread): 75 %; no violation counter
    reasons = np.array([CAP, 0, CAP, np.nan, CAP], dtype=float)
    [w] = clock_events(3, reasons, None, 2.0)
    assert (w.code, w.severity, w.device) == ("power_capped", "info", 3)
    assert w.message == (
        "GPU 3 held its power limit for 75 % of the window (normal at TDP; the clocks followed "
        "the power cap)"
    )
    assert w.details == {
        "n_samples": 3,
        "sample_share": 0.75,
        "violation_s": 0.0,
        "violation_share": None,
    }


def test_power_cap_share_from_the_violation_counter_wins_over_the_samples() -> None:
    # samples say 25 %, NVML's power violation counter 1.5 s of a 2 s window: 75 % is reported
    w = _one(
        clock_events(0, np.array([CAP, 0, 0, 0], dtype=float), {"power": 1_500_000_000}, 2.0),
        "power_capped",
    )
    assert w.message.startswith("GPU 0 held its power limit for 75 % of the window")
    assert w.details["violation_s"] == 1.5 and w.details["violation_share"] == 0.75
    assert w.details["sample_share"] == 0.25
    # the counter alone (no sample saw the cap), even 1 ns of it, is a power cap
    tiny = _one(clock_events(0, np.zeros(4), {"power": 1, "thermal": 0}, 1.0), "power_capped")
    assert tiny.details["n_samples"] == 0 and tiny.details["violation_s"] == 1e-9
    # a window of no duration has no share: 0 % is printed, the share is None
    flat = _one(clock_events(0, np.zeros(2), {"power": 500_000_000}, 0.0), "power_capped")
    assert flat.message.startswith("GPU 0 held its power limit for 0 % of the window")
    assert flat.details["violation_share"] is None


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
