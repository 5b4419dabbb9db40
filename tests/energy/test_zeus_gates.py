"""With Zeus as the meter, the checks of the NVML meter still apply (issue 25 item 6).

Zeus gives the window's energy and a change-only power timeline; the project's sampler runs
beside it (reasons, utilisation, temperature, memory; never the counter). Each test here failed
on the Zeus meter before: hw_slowdown never fired, thermal_slowdown only through the violation
counter, no sampler_gap, no utilisation or temperature series (so host_bound and thermal_drift
were silent), the counter_power_mismatch gate looked only at method ``counter``, and the saved
series held only Zeus's change points, which every reader interpolates linearly.

Everything runs on one ``ManualClock`` (the fake NVML, the sampler, and Zeus's wall stamps), the
test taking each sample itself: no sleeps, exact numbers.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.energy import resolve_devices
from llenergymeasure.energy.nvml import (
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_SW_THERMAL,
    Nvml,
)
from llenergymeasure.energy.sampler import integrate_power
from llenergymeasure.energy.zeus_meter import (
    ZeusMeter,
    start_power_monitor,
    step_integral,
    step_values,
)
from llenergymeasure.harness.validity import evaluate_gates
from llenergymeasure.harness.window import Passes, read_timeseries, trend_warnings
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

Timeline = dict[int, list[tuple[float, float]]]


class StepZeus:
    """``zeus.monitor`` stand-in: the window's energy and a power timeline the test places
    relative to the window's start (Zeus's wall stamps, here on the manual clock)."""

    def __init__(self, clock: ManualClock, energy_j: float, steps: list[tuple[float, float]]):
        self.clock, self.energy_j, self.steps = clock, energy_j, steps
        self.t0 = 0.0

    def ZeusMonitor(self, **kw: Any) -> Any:
        z = self

        class Monitor:
            def __init__(self) -> None:
                self.gpus = [0]

            def begin_window(self, key: str, sync_execution: bool = True) -> None:
                z.t0 = z.clock()

            def end_window(self, key: str, sync_execution: bool = True) -> Any:
                return SimpleNamespace(time=z.clock() - z.t0, gpu_energy={0: z.energy_j})

        return Monitor()

    def PowerMonitor(self, **kw: Any) -> Any:
        z = self

        class Power:
            def get_power_timeline(self, *a: Any, **k: Any) -> Timeline:
                return {0: [(z.t0 + t, w) for t, w in z.steps]}

            def stop(self) -> None:
                return None

        return Power()


def _meter(gpu: FakeGpu, zeus_energy_j: float, steps: list[tuple[float, float]], **kw: Any):  # type: ignore[no-untyped-def]
    clock = ManualClock()
    fake = FakeNvml([gpu], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = ZeusMeter(
        StepZeus(clock, zeus_energy_j, steps),
        resolve_devices([0], nvml, {}),
        nvml,
        sensor_period_s=0.1,
        sample_period_s=0.1,
        clock=clock,
        wall_clock=clock,
        background_sampling=False,
        **kw,
    )
    return meter, clock, fake


def _window(
    meter: ZeusMeter, clock: ManualClock, seconds: float, skip: tuple[float, float] = (9, 9)
):  # type: ignore[no-untyped-def]
    """Samples every 0.1 s (none inside ``skip``, a stalled sampler), closed at ``seconds``."""
    meter.start()
    t = 0.0
    for _ in range(round(seconds / 0.1) - 1):
        clock.advance(0.1)
        t += 0.1
        if not skip[0] < t < skip[1]:
            assert meter.sampler is not None
            meter.sampler.sample()
    clock.advance(seconds - t)
    return meter.stop()


def _codes(m: Any) -> list[str]:
    return [w.code for w in m.warnings]


def test_hw_and_thermal_slowdown_from_the_reason_samples() -> None:
    gpu = FakeGpu(
        trace=ConstantPower(300.0),
        clock_event_reasons=lambda t: CLOCK_EVENT_HW_SLOWDOWN | CLOCK_EVENT_SW_THERMAL,
    )
    meter, clock, _ = _meter(gpu, 600.0, [(0.0, 300.0)])
    m = _window(meter, clock, 2.0)
    hw = next(w for w in m.warnings if w.code == "hw_slowdown")
    th = next(w for w in m.warnings if w.code == "thermal_slowdown")
    assert hw.details["n_samples"] == 19 and hw.details["sample_share"] == 1.0
    assert th.details["reasons"] == ["sw_thermal_slowdown"] and th.details["violation_s"] == 0
    gates = {g.name: g.passed for g in evaluate_gates(m, m.duration_s, ValiditySettings())}
    assert gates["hw_slowdown"] is False and gates["thermal_slowdown"] is False
    # Zeus alone (no sampler) sees no reason: the old behaviour, now only with sample=False
    meter, clock, _ = _meter(gpu, 600.0, [(0.0, 300.0)], sample=False)
    meter.start()
    clock.advance(2.0)
    assert not {"hw_slowdown", "thermal_slowdown"} & set(_codes(meter.stop()))


def test_a_stalled_sampler_is_a_sampler_gap_and_fails_its_gate() -> None:
    meter, clock, _ = _meter(FakeGpu(trace=ConstantPower(300.0)), 600.0, [(0.0, 300.0)])
    m = _window(meter, clock, 2.0, skip=(0.45, 1.25))  # rows at 0.4 and 1.3: a 0.9 s hole
    [gap] = [w for w in m.warnings if w.code == "sampler_gap"]
    assert gap.details["max_gap_s"] == pytest.approx(0.9)
    gates = {g.name: g for g in evaluate_gates(m, m.duration_s, ValiditySettings())}
    assert gates["sampler_gap"].passed is False and gates["sampler_gap"].value == pytest.approx(0.9)


def test_counter_power_mismatch_gate_judges_zeus_energy() -> None:
    # Zeus says 500 J, its own power timeline integrates (as steps) to 600 J: +20 %
    meter, clock, _ = _meter(FakeGpu(trace=ConstantPower(300.0)), 500.0, [(0.0, 300.0)])
    m = _window(meter, clock, 2.0)
    d = m.devices[0]
    assert (d.method, d.energy_j, d.integrated_energy_j) == ("zeus", 500.0, pytest.approx(600.0))
    assert "counter_power_mismatch" in _codes(m)
    [gate] = [
        g
        for g in evaluate_gates(m, m.duration_s, ValiditySettings())
        if g.name == "counter_power_mismatch"
    ]
    assert gate.value == pytest.approx(0.2) and gate.passed is False


def test_the_saved_series_is_the_step_function_on_the_sampler_rows(tmp_path: Path) -> None:
    """Zeus reports 100 W from the start and 300 W from 1.0 s (its only two change points): the
    energy is 400 J. Read back and integrated linearly, as every reader of the CSV does, the
    old change-points-only series gave 500 J (+25 %); the sampler-row series is within one row."""
    steps = [(0.0, 100.0), (1.0, 300.0)]
    meter, clock, _ = _meter(FakeGpu(trace=ConstantPower(200.0)), 400.0, steps)
    m = _window(meter, clock, 2.0)
    assert m.devices[0].integrated_energy_j == pytest.approx(400.0)
    assert m.timeseries_source == "zeus_power_monitor+nvml_sampler"
    path = meter.write_timeseries(tmp_path / "ts.csv")
    assert path is not None
    cols = read_timeseries(path)[0]
    t, p = cols["t_s"], cols["power_w"]
    assert t.size == 21 and np.allclose(np.diff(t), 0.1)
    assert list(p) == [100.0] * 10 + [300.0] * 11  # the Zeus value in force at each row
    assert not np.isnan(cols["temperature_c"]).any() and not np.isnan(cols["gpu_util_pct"]).any()
    linear = integrate_power(t, p, 0.0, 2.0)
    assert linear == pytest.approx(410.0)  # one 0.1 s row of 200 W interpolated: +10 J
    old = integrate_power(np.array([0.0, 1.0]), np.array([100.0, 300.0]), 0.0, 2.0)
    assert old == pytest.approx(500.0)


def test_host_bound_and_thermal_drift_now_see_a_zeus_window(tmp_path: Path) -> None:
    gpu = FakeGpu(trace=ConstantPower(90.0), gpu_util_pct=10, temperature_c=lambda t: 40 + 5 * t)
    meter, clock, _ = _meter(gpu, 270.0, [(0.0, 90.0)])
    m = _window(meter, clock, 3.0)
    assert m.devices[0].mean_utilization_pct == 10.0
    assert m.devices[0].max_memory_used_mb == 1024.0
    path = meter.write_timeseries(tmp_path / "ts.csv")
    passes = Passes(outputs=[], starts_s=[], durations_s=[])
    codes = [w.code for w in trend_warnings(path, m.duration_s, passes, {0: 80.0}, {0: 700.0})]
    assert codes == ["host_bound", "thermal_drift"]


def test_a_gpu_missing_from_zeus_timeline_falls_back_to_the_sampler_power() -> None:
    meter, clock, _ = _meter(FakeGpu(trace=ConstantPower(250.0)), 500.0, [])
    m = _window(meter, clock, 2.0)
    d = m.devices[0]
    assert d.integrated_energy_j == pytest.approx(500.0) and d.power_source == "instant"
    assert d.n_samples == 19 and d.peak_power_w == 250.0
    assert "counter_power_mismatch" not in _codes(m)


def test_step_values_match_step_integral() -> None:
    t = np.array([2.0, 1.0, 1.0, 3.0])
    p = np.array([20.0, 5.0, 10.0, 30.0])
    at = np.array([0.5, 1.0, 1.5, 2.0, 2.9, 3.0, 9.0])
    assert list(step_values(t, p, at)) == [5.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0]
    grid = np.linspace(1.0, 4.0, 30001)
    v = step_values(t, p, grid)
    riemann = float(np.sum(v[:-1] * np.diff(grid)))
    assert riemann == pytest.approx(step_integral(t, p, 1.0, 4.0), rel=1e-3)


def test_power_monitor_arguments_of_zeus_016_and_of_its_later_main_branch() -> None:
    """Zeus 0.15/0.16: update_period, power_domains; Zeus's main after 0.16: gpu_update_period,
    gpu_power_domains (and every CPU package unless cpu_indices=[])."""
    calls: list[dict[str, Any]] = []

    def later(**kw: Any) -> str:
        calls.append(kw)
        if "update_period" in kw:
            raise TypeError("PowerMonitor.__init__() got an unexpected keyword 'update_period'")
        return "monitor"

    assert start_power_monitor(SimpleNamespace(PowerMonitor=later), [0, 1], 0.1) == "monitor"
    assert calls[1] == {
        "gpu_indices": [0, 1],
        "cpu_indices": [],
        "gpu_update_period": 0.1,
        "gpu_power_domains": ["device_instant"],
    }
    calls.clear()

    def v016(**kw: Any) -> str:
        calls.append(kw)
        return "monitor"

    assert start_power_monitor(SimpleNamespace(PowerMonitor=v016), [0], 0.05) == "monitor"
    assert calls == [
        {"gpu_indices": [0], "update_period": 0.05, "power_domains": ["device_instant"]}
    ]
