"""``harness/stats.relative_trend`` by hand: the least-squares slope over the mean and its t
statistic, worked out here for five values, and the flat and perfect-line cases."""

from __future__ import annotations

import math

import pytest

from llenergymeasure.harness.stats import relative_trend


def test_slope_over_the_mean_and_its_t_statistic_worked_out() -> None:
    # index 0..4 (mean 2, sum of squares about it 10); values' mean 12.4
    # slope = [(-2)(-2.4) + (-1)(-0.4) + 0 + (1)(2.6) + (2)(1.6)] / 10 = 11 / 10 = 1.1
    # residuals -0.2, 0.7, -1.4, 1.5, -0.6: sum of squares 5.1; SE = sqrt(5.1 / 3 / 10)
    rel, t = relative_trend([10.0, 12.0, 11.0, 15.0, 14.0]) or (None, None)
    assert rel == pytest.approx(1.1 / 12.4)
    assert t == pytest.approx(1.1 / math.sqrt(5.1 / 3 / 10))  # 2.668


def test_a_falling_series_and_a_negative_mean() -> None:
    rel, t = relative_trend([-10.0, -12.0, -11.0, -15.0, -14.0]) or (None, None)
    assert rel == pytest.approx(-1.1 / 12.4)  # over the mean's size: the sign is the slope's
    assert t == pytest.approx(1.1 / math.sqrt(5.1 / 3 / 10))


def test_a_flat_series_has_no_trend_and_a_perfect_line_an_infinite_t() -> None:
    assert relative_trend([3.0, 3.0, 3.0, 3.0]) == (0.0, 0.0)
    assert relative_trend([1.0, 2.0, 3.0]) == (pytest.approx(0.5), math.inf)


def test_too_few_values_or_a_zero_mean_give_none() -> None:
    assert relative_trend([1.0, 2.0]) is None
    assert relative_trend([-1.0, 0.0, 1.0]) is None
