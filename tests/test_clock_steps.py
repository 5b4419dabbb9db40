"""A wall-clock step (NTP) during a run must not corrupt a duration: durations come from
monotonic clocks, wall time only stamps when things happened. The fake wall clock is stepped by
an hour each way in the middle of a window (tests/fakes/clock.py: ``SteppedWallClock`` over a
``ManualClock``)."""

from __future__ import annotations

import pytest

from llenergymeasure.energy.devices import resolve_devices
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.zeus_meter import ZeusMeter
from llenergymeasure.study.placement import Span, overlap_s
from tests.fakes.clock import ManualClock, SteppedWallClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml
from tests.fakes.zeus import fake_zeus


@pytest.mark.parametrize("step_s", [-3600.0, 3600.0, -30.0])
def test_a_zeus_window_keeps_its_length_when_the_wall_clock_steps(step_s: float) -> None:
    clock = ManualClock()
    wall = SteppedWallClock(clock)
    fake = FakeNvml([FakeGpu(trace=ConstantPower(200.0))], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = ZeusMeter(
        fake_zeus(fake, clock=wall),
        resolve_devices([0], nvml, {}),
        nvml,
        sensor_period_s=0.1,
        sample=False,
        timeseries=False,
        check_processes=False,
        clock=clock,
        wall_clock=wall,
        background_sampling=False,
    )
    meter.start()
    clock.advance(1.0)
    wall.step(step_s)  # NTP corrects the wall clock mid-window
    clock.advance(1.0)
    m = meter.stop()
    # 2 s at 200 W: the counter says 400 J; the duration is the monotonic 2 s, not 2 s + step
    assert m.duration_s == pytest.approx(2.0)
    assert m.devices[0].energy_j == pytest.approx(400.0)
    assert m.devices[0].mean_power_w == pytest.approx(200.0)
    (note,) = [w for w in m.warnings if w.code == "wall_clock_step"]
    assert note.severity == "info"
    assert note.details == {"zeus_time_s": pytest.approx(2.0 + step_s), "monotonic_s": 2.0}


def test_a_zeus_window_without_a_step_keeps_zeus_s_own_time() -> None:
    clock = ManualClock()
    wall = SteppedWallClock(clock)
    fake = FakeNvml([FakeGpu(trace=ConstantPower(200.0))], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = ZeusMeter(
        fake_zeus(fake, clock=wall),
        resolve_devices([0], nvml, {}),
        nvml,
        sensor_period_s=0.1,
        sample=False,
        timeseries=False,
        check_processes=False,
        clock=clock,
        wall_clock=wall,
        background_sampling=False,
    )
    meter.start()
    clock.advance(2.0)
    m = meter.stop()
    assert m.duration_s == pytest.approx(2.0)
    assert not [w for w in m.warnings if w.code == "wall_clock_step"]


def test_process_overlap_of_runs_side_by_side_is_on_the_monotonic_clock() -> None:
    # the controller records each run's span on time.monotonic and on the wall clock; the
    # overlap (neighbour_load's seconds) is taken from the monotonic pair, so a wall step of an
    # hour between the two starts changes nothing
    clock = ManualClock()
    wall = SteppedWallClock(clock)
    a = Span("001", [0], clock(), wall())
    clock.advance(5.0)
    wall.step(-3600.0)
    b = Span("002", [1], clock(), wall())
    clock.advance(10.0)
    a.end, a.end_wall = clock(), wall()
    assert overlap_s(a, b, clock()) == pytest.approx(10.0)
