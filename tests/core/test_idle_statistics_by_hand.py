"""Idle statistics and the rejection of an idle window, by hand: sub-windows without a GPU or
without time, a single sub-window, a first half at 0 W, powers below 1 W, and the rejection text
with its limits, each boundary on its exact value."""

from __future__ import annotations

import pytest

from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.energy.baseline import idle_statistics, rejection_reason


def test_a_gpu_missing_from_a_sub_window_gets_no_statistics_the_others_do() -> None:
    # GPU 0 is missing from the second sub-window; GPU 1 (sorted after it) is still computed:
    # 80 and 84 W -> mean 82, SD 2.828, SE 2.828 / sqrt(2) = 2.0, drift 84 / 80 - 1 = 0.05
    means, ses, drifts = idle_statistics([(1.0, {0: 70.0, 1: 80.0}), (1.0, {1: 84.0})])
    assert means == {1: pytest.approx(82.0)}
    assert ses == {1: pytest.approx(2.0)}
    assert drifts == {1: pytest.approx(0.05)}


def test_a_sub_window_without_time_adds_no_power_reading() -> None:
    # a 0 s sub-window (0 J) is left out of the powers; mean 200 J / 2 s = 100 W, powers 90, 110
    means, ses, drifts = idle_statistics([(1.0, {0: 90.0}), (0.0, {0: 0.0}), (1.0, {0: 110.0})])
    assert means[0] == pytest.approx(100.0)
    assert ses[0] == pytest.approx(10.0)  # SD 14.142 / sqrt(2)
    assert drifts[0] == pytest.approx(110.0 / 90.0 - 1.0)


def test_one_sub_window_has_no_spread_and_no_drift() -> None:
    means, ses, drifts = idle_statistics([(2.0, {0: 150.0})])
    assert means == {0: 75.0} and ses == {0: 0.0} and drifts == {0: 0.0}


def test_no_sub_windows_or_no_time_gives_nothing() -> None:
    assert idle_statistics([]) == ({}, {}, {})
    assert idle_statistics([(0.0, {0: 0.0}), (0.0, {0: 0.0})]) == ({}, {}, {})


def test_drift_of_a_first_half_at_zero_watts_is_zero_and_small_powers_are_fine() -> None:
    # first half at 0 W: no ratio, drift reported as 0
    _, _, zero = idle_statistics([(1.0, {0: 0.0}), (1.0, {0: 5.0})])
    assert zero == {0: 0.0}
    # the drift is relative: 0.5 W -> 0.6 W is +20 %, like 50 W -> 60 W
    _, _, small = idle_statistics([(1.0, {0: 0.5}), (1.0, {0: 0.6})])
    assert small[0] == pytest.approx(0.2)


def test_rejection_text_names_gpu_value_and_limit() -> None:
    th = ValiditySettings(baseline_max_util_pct=10.0, baseline_max_drift=0.03)
    reason = rejection_reason({1: 35.0, 0: 12.5}, {0: 0.01, 1: -0.08}, {}, th, 2)
    assert reason == (
        "GPU 0 utilisation reached 12.5 % (limit 10 %); "
        "GPU 1 utilisation reached 35 % (limit 10 %); "
        "GPU 1 idle power drifted -8.0 % over the window (fitted line; limit 3 %)"
    )
    assert rejection_reason({0: 10.0}, {0: 0.0299}, {}, th, 2) is None  # at the limits: accepted


def test_a_drift_rejects_only_when_significant_against_its_se() -> None:
    th = ValiditySettings(baseline_max_drift=0.03)
    # 10 windows: t(0.975, 8) = 2.306; +8 % with SE 3.5 % -> 8.07 % needed: accepted
    assert rejection_reason({}, {0: 0.08}, {0: 0.035}, th, 10) is None
    # with SE 3.4 % -> 7.84 % < 8 %: rejected, the SE named
    assert rejection_reason({}, {0: 0.08}, {0: 0.034}, th, 10) == (
        "GPU 0 idle power drifted +8.0 % over the window (fitted line, SE 3.4 %; limit 3 %)"
    )
    # significant but small: accepted
    assert rejection_reason({}, {0: 0.029}, {0: 0.0}, th, 10) is None


def test_a_drift_of_exactly_the_limit_is_accepted() -> None:
    # 160 / 128 - 1 = 0.25 exactly in binary; the limit rejects only what exceeds it
    _, _, drifts = idle_statistics([(1.0, {0: 128.0}), (1.0, {0: 160.0})])
    assert drifts[0] == 0.25
    th = ValiditySettings(baseline_max_drift=0.25)
    assert rejection_reason({}, drifts, {}, th, 2) is None
    assert rejection_reason({}, {0: -0.25}, {}, th, 2) is None
    assert rejection_reason({}, {0: 0.2500001}, {}, th, 2) == (
        "GPU 0 idle power drifted +25.0 % over the window (fitted line; limit 25 %)"
    )
