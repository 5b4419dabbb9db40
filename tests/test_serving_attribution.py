"""Energy per request (energy/attribution.py) against synthetic power series, values by hand."""

from __future__ import annotations

import random

import pytest

from llenergymeasure.energy.attribution import (
    RequestActivity,
    attribute_energy,
    interval_energies,
)


def _req(key: int, start: float, end: float, spans: list[tuple[float, float, float]]):
    return RequestActivity(key=key, inflight_start_s=start, inflight_end_s=end, spans=spans)


def test_interval_energies_trapezoids_clipped_to_the_window() -> None:
    # 100 W at t=0, 200 W at t=1, 100 W at t=2; window [0.5, 2]
    edges, e = interval_energies([0, 1, 2], [100, 200, 100], 0.5, 2.0)
    assert list(edges) == [0.5, 1.0, 2.0]
    # power at 0.5 is 150 W: (150+200)/2*0.5 = 87.5, then (200+100)/2*1 = 150
    assert list(e) == pytest.approx([87.5, 150.0])


def test_split_by_tokens_in_each_interval_by_hand() -> None:
    # flat 100 W, samples every second: intervals [0,1], [1,2] of 100 J each
    t, p = [0, 1, 2], [100, 100, 100]
    a = _req(0, 0.0, 2.0, [(0.5, 0.5, 3), (1.5, 1.5, 1)])  # 3 tokens in [0,1], 1 in [1,2]
    b = _req(1, 0.0, 2.0, [(0.6, 0.6, 1), (1.6, 1.6, 3)])  # 1 in [0,1], 3 in [1,2]
    res = attribute_energy(t, p, [a, b], 0.0, 2.0)
    assert res.energy_j[0] == pytest.approx(100 * 3 / 4 + 100 * 1 / 4)
    assert res.energy_j[1] == pytest.approx(100 * 1 / 4 + 100 * 3 / 4)
    assert res.intervals_by_tokens == 2


def test_prefill_span_is_spread_over_its_duration() -> None:
    t, p = [0, 1, 2], [50, 50, 50]
    a = _req(0, 0.0, 2.0, [(0.0, 2.0, 8)])  # 4 tokens in each interval
    b = _req(1, 0.0, 2.0, [(0.5, 0.5, 4)])  # 4 tokens in the first only
    res = attribute_energy(t, p, [a, b], 0.0, 2.0)
    assert res.energy_j[0] == pytest.approx(25 + 50)
    assert res.energy_j[1] == pytest.approx(25)


def test_no_tokens_goes_to_requests_in_flight_and_idle_gaps_are_spread() -> None:
    t, p = [0, 1, 2, 3], [10, 10, 10, 10]
    a = _req(0, 0.0, 1.0, [(0.5, 0.5, 1)])
    b = _req(1, 0.0, 2.0, [(0.5, 0.5, 1)])  # in flight through [1,2], no tokens there
    # [0,1]: 5 J each by tokens; [1,2]: 10 J to b, the only one in flight;
    # [2,3]: nobody in flight: 10 J spread in proportion to what they had (5 and 15 of 20 J)
    res = attribute_energy(t, p, [a, b], 0.0, 3.0)
    assert (res.intervals_by_tokens, res.intervals_by_inflight, res.intervals_spread) == (1, 1, 1)
    assert res.energy_j[0] == pytest.approx(5 + 10 * 5 / 20)
    assert res.energy_j[1] == pytest.approx(15 + 10 * 15 / 20)


def test_requests_outside_the_window_get_no_entry() -> None:
    t, p = [0, 10], [100, 100]
    inside = _req(0, 2.0, 4.0, [(3.0, 3.0, 5)])
    before = _req(1, 0.0, 1.5, [(1.0, 1.0, 5)])
    after = _req(2, 6.5, 8.0, [(7.0, 7.0, 5)])
    res = attribute_energy(t, p, [inside, before, after], 2.0, 6.0)
    assert set(res.energy_j) == {0}
    assert res.energy_j[0] == pytest.approx(400.0)


def test_the_meter_total_scales_the_series_and_idle_share_is_not_clamped() -> None:
    t, p = [0, 1, 2], [100, 100, 100]
    a = _req(0, 0.0, 2.0, [(0.5, 0.5, 1), (1.5, 1.5, 1)])
    res = attribute_energy(t, p, [a], 0.0, 2.0, total_energy_j=300.0, idle_w=200.0)
    assert res.window_energy_j == pytest.approx(300.0)
    assert res.energy_j[0] == pytest.approx(300.0)
    assert res.idle_j[0] == pytest.approx(400.0)
    assert res.above_idle_j(0) == pytest.approx(-100.0)  # power below idle is information


@pytest.mark.parametrize("seed", range(8))
def test_random_loads_sum_to_the_window_and_none_is_negative(seed: int) -> None:
    rng = random.Random(seed)
    times = sorted({0.0, 10.0, *(rng.uniform(0, 10) for _ in range(40))})
    power = [rng.uniform(0, 400) for _ in times]
    requests = []
    for k in range(rng.randint(1, 30)):
        start = rng.uniform(-2, 11)
        end = start + rng.uniform(0.01, 4)
        first = rng.uniform(start, end)
        spans = [(start, first, float(rng.randint(1, 64)))]
        spans += [(x, x, 1.0) for x in sorted(rng.uniform(first, end) for _ in range(5))]
        requests.append(_req(k, start, end, spans))
    t0, t1 = 1.0, 9.0
    total = rng.uniform(100, 3000)
    res = attribute_energy(times, power, requests, t0, t1, total_energy_j=total, idle_w=50.0)
    assert sum(res.energy_j.values()) == pytest.approx(total, rel=1e-9)
    assert sum(res.idle_j.values()) == pytest.approx(50.0 * (t1 - t0), rel=1e-9)
    assert all(v >= 0 for v in res.energy_j.values())
    expected = {r.key for r in requests if r.inflight_start_s < t1 and r.inflight_end_s > t0}
    assert set(res.energy_j) == expected


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="empty window"):
        attribute_energy([0, 1], [1, 1], [], 1.0, 1.0)
    with pytest.raises(ValueError, match="no power samples"):
        attribute_energy([], [], [], 0.0, 1.0)
    with pytest.raises(ValueError, match="idle power"):
        attribute_energy([0, 1], [1, 1], [], 0.0, 1.0, idle_w=-1)
