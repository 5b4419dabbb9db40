"""The meters' arithmetic on a fake clock: no sleeps, every expected joule computed by hand.

The NVML meter and the fake NVML share a ``ManualClock``; the sampler runs without its thread
(``background_sampling=False``) and the test takes each sample itself after moving the clock, so
window edges, sample times and counter readings are exact. The threaded sampler is covered on the
real clock in test_energy_nvml_meter.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from llenergymeasure.energy import NvmlMeter, resolve_devices
from llenergymeasure.energy.errors import DeviceLostError
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.zeus_meter import ZeusMeter
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml, RampPower
from tests.fakes.zeus import fake_zeus


def make(gpus: list[FakeGpu], clock: ManualClock, **kw: object) -> tuple[NvmlMeter, FakeNvml]:
    fake = FakeNvml(gpus, clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    mapping = resolve_devices(list(range(len(gpus))), nvml, {})
    kw.setdefault("sensor_period_s", 0.1)
    kw.setdefault("sample_period_s", 0.1)
    meter = NvmlMeter(
        nvml, mapping, clock=clock, background_sampling=False, check_processes=False, **kw
    )  # type: ignore[arg-type]
    return meter, fake


def window(meter: NvmlMeter, clock: ManualClock, seconds: float, step: float = 0.1):
    """Open a window, take a sample every ``step`` s of fake time, close it at ``seconds``."""
    meter.start()
    n = round(seconds / step)
    for _ in range(n - 1):
        clock.advance(step)
        assert meter.sampler is not None
        meter.sampler.sample()
    clock.advance(seconds - (n - 1) * step)
    return meter.stop()


def codes(m) -> set[str]:
    return {w.code for w in m.warnings}


def test_constant_power_exact_energy_and_samples() -> None:
    clock = ManualClock()
    meter, _ = make([FakeGpu(trace=ConstantPower(200.0))], clock, counter_every=1)
    m = window(meter, clock, 1.0)
    d = m.devices[0]
    assert m.duration_s == pytest.approx(1.0, abs=1e-9)
    assert d.energy_j == pytest.approx(200.0, abs=1e-6)  # 200 W x 1 s, from the counter
    assert d.integrated_energy_j == pytest.approx(200.0, abs=1e-6)
    assert d.mean_power_w == pytest.approx(200.0, abs=1e-6)
    assert d.peak_power_w == 200.0
    assert d.n_samples == 9  # rows at 0.1 .. 0.9 s lie inside; the edge rows at 0 and 1 s do not
    assert d.counter_resets == 0
    assert not codes(m)  # 1 s = 10 sensor periods: not short
    assert m.total_energy_j == d.energy_j
    meter.close()


def test_ramp_energy_is_the_analytic_integral() -> None:
    clock = ManualClock()
    meter, _ = make([FakeGpu(trace=RampPower(100.0, 300.0, over_s=2.0))], clock, counter_every=1)
    m = window(meter, clock, 2.0)
    d = m.devices[0]
    # counter: 100 x 2 + (300 - 100) x 2 / 2 = 400 J; the trapezoid rule is exact on a line
    assert d.energy_j == pytest.approx(400.0, abs=1e-3)
    assert d.integrated_energy_j == pytest.approx(400.0, abs=1e-6)
    assert d.peak_power_w == pytest.approx(290.0)  # the last sample inside, at 1.9 s
    assert d.mean_power_w == pytest.approx(200.0, abs=1e-3)
    meter.close()


def test_sensor_updates_every_100_ms_quantise_the_counter() -> None:
    """The GPU's counter and power change only every 0.1 s: a window from 0.05 s to 1.27 s sees
    the counter of 0.0 s and of 1.2 s, so 300 W x 1.2 s = 360 J for a true 300 x 1.22 = 366 J."""
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(300.0), update_period_s=0.1)
    meter, fake = make([gpu], clock, sample=False)
    clock.advance(0.05)
    meter.start()
    clock.advance(1.22)
    m = meter.stop()
    d = m.devices[0]
    assert fake.now() == pytest.approx(1.27)
    assert m.duration_s == pytest.approx(1.22)
    assert d.energy_j == pytest.approx(360.0)
    assert abs(d.energy_j - 300.0 * 1.22) <= 300.0 * 0.1  # off by at most one update's energy
    assert "short_window" not in codes(m)  # 1.22 s >= 10 x 0.1 s
    meter.close()


@pytest.mark.parametrize(
    ("seconds", "short"), [(0.5, True), (0.9, True), (0.99, True), (1.0, False), (1.5, False)]
)
def test_short_window_is_under_ten_sensor_periods(seconds: float, short: bool) -> None:
    clock = ManualClock()
    meter, _ = make([FakeGpu()], clock, sample=False, sensor_period_s=0.1)
    meter.start()
    clock.advance(seconds)
    m = meter.stop()
    assert ("short_window" in codes(m)) is short
    if short:
        w = next(w for w in m.warnings if w.code == "short_window")
        assert w.details == {
            "duration_s": pytest.approx(seconds),
            "sensor_period_s": 0.1,
            "limit_s": pytest.approx(1.0),
        }
    meter.close()


def test_counter_going_backwards_in_the_window_fails_it_naming_the_readings() -> None:
    """300 W, counter read at every 0.1 s sample, counter reset at 0.45 s (a GPU reset or driver
    reload under the engine): the window fails (issue 30 item 3; it used to be bridged with
    integrated power) naming the GPU's UUID and the backward step, 0.4 s -> 0.5 s: from
    offset + 120 J to 15 J (the energy since the reset)."""
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(300.0))
    meter, fake = make([gpu], clock, counter_every=1)
    gpu.counter_resets_at_s = (fake.now() + 0.45,)
    with pytest.raises(DeviceLostError) as info:
        window(meter, clock, 1.0)
    err = info.value
    assert err.phase == "energy"
    assert err.lost_gpus == [
        {
            "uuid": gpu.uuid,
            "nvml_index": 0,
            "reason": "its energy counter went backwards during the window, from "
            f"{gpu.counter_offset_mj + 120_000} mJ to 15000 mJ: the GPU was reset or its driver "
            "reloaded under the engine",
        }
    ]
    assert meter.sampler is not None and not meter.sampler.running
    meter.close()


def test_counter_going_backwards_between_the_edges_fails_the_window() -> None:
    """Counter only (no sampler): reset at 0.4 s in a 1 s window at 300 W. The end edge reads
    180 J (since the reset), below the start edge's offset: the window fails."""
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(300.0))
    meter, fake = make([gpu], clock, sample=False)
    gpu.counter_resets_at_s = (fake.now() + 0.4,)
    meter.start()
    clock.advance(1.0)
    with pytest.raises(DeviceLostError, match=r"from 5000000 mJ to 180000 mJ"):
        meter.stop()
    meter.close()


def test_a_reset_on_the_zeus_path_fails_the_window() -> None:
    """Zeus reports the counter difference; across a reset it is negative: the counter read
    5000 J (its offset) at the start and 125 J (250 W since the reset at 0.5 s) at the end, so
    -4875 J. The window fails in phase energy naming the GPU (it used to be bridged with Zeus's
    power timeline)."""
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(250.0))
    fake = FakeNvml([gpu], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    gpu.counter_resets_at_s = (fake.now() + 0.5,)
    mapping = resolve_devices([0], nvml, {})
    meter = ZeusMeter(fake_zeus(fake, watts=250.0, clock=clock), mapping, nvml)
    meter.start()
    clock.advance(1.0)
    with pytest.raises(DeviceLostError, match=r"Zeus measured -4875 J") as info:
        meter.stop()
    assert [g["uuid"] for g in info.value.lost_gpus] == [gpu.uuid]
    meter.close()


def test_zeus_energy_without_reset_is_the_counter_difference() -> None:
    clock = ManualClock()
    fake = FakeNvml([FakeGpu(trace=ConstantPower(250.0), counter_scale=1.02)], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    # the meter's own span is on the clock the test drives (it checks Zeus's wall-clock time)
    meter = ZeusMeter(
        fake_zeus(fake, watts=250.0, clock=clock),
        resolve_devices([0], nvml, {}),
        nvml,
        clock=clock,
        wall_clock=clock,
    )
    meter.start()
    clock.advance(2.0)
    m = meter.stop()
    d = m.devices[0]
    assert d.energy_j == pytest.approx(510.0)  # the counter reads 2 % high: 250 x 2 x 1.02
    assert d.integrated_energy_j == pytest.approx(500.0)
    assert d.mean_power_w == pytest.approx(255.0)
    assert not {"counter_reset", "counter_power_mismatch"} & codes(m)  # 2 % is within 5 %
    meter.close()


def test_a_counter_that_has_not_moved_yet_is_not_a_reset() -> None:
    """Sampling every 62.5 ms (exact in binary) a counter that updates every 100 ms reads the same
    value twice in a row now and then: a flat step is zero energy, not a reset."""
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(300.0), update_period_s=0.1)
    meter, _ = make([gpu], clock, counter_every=1, sample_period_s=0.0625)
    m = window(meter, clock, 1.0, step=0.0625)
    d = m.devices[0]
    assert d.counter_resets == 0 and "counter_reset" not in codes(m)
    assert d.energy_j == pytest.approx(300.0)  # the counter at 0.0 s and at 1.0 s
    meter.close()


def test_every_sampled_column_holds_the_gpu_reading() -> None:
    from llenergymeasure.energy.nvml import CLOCK_EVENT_SW_POWER_CAP
    from llenergymeasure.energy.sampler import COLUMNS

    clock = ManualClock()
    gpu = FakeGpu(
        trace=ConstantPower(150.0),
        temperature_c=61,
        sm_clock_mhz=1755,
        gpu_util_pct=87,
        clock_event_reasons=CLOCK_EVENT_SW_POWER_CAP,
    )
    meter, _ = make([gpu], clock, counter_every=1)
    window(meter, clock, 1.0)
    assert meter.sampler is not None
    assert meter.sampler.columns_read == [set(COLUMNS)]
    _, values = meter.sampler.buffer.view()
    col = {name: values[:, 0, k] for k, name in enumerate(COLUMNS)}
    assert set(col["power_w"]) == {150.0}
    assert set(col["temperature_c"]) == {61.0}
    assert set(col["sm_clock_mhz"]) == {1755.0}
    assert set(col["gpu_util_pct"]) == {87.0}
    assert set(col["throttle_reasons"]) == {float(CLOCK_EVENT_SW_POWER_CAP)}
    # the counter, read at every sample here: 5,000,000 mJ + 150 W x t, every 0.1 s
    assert list(col["energy_counter_mj"]) == [5_000_000 + 15_000 * k for k in range(11)]
    meter.close()


def test_power_usage_reading_is_in_watts_and_a_failed_instant_read_is_a_gap() -> None:
    clock = ManualClock()
    old = FakeGpu(trace=ConstantPower(120.0), has_instant_power=False)
    meter, _ = make([old], clock)
    m = window(meter, clock, 1.0)
    assert m.devices[0].power_source == "power_usage"
    assert m.devices[0].peak_power_w == 120.0  # mW from nvmlDeviceGetPowerUsage / 1000
    assert m.devices[0].integrated_energy_j == pytest.approx(120.0)
    meter.close()

    gpu = FakeGpu(trace=ConstantPower(200.0))
    meter, _ = make([gpu], clock)
    meter.start()
    assert meter.sampler is not None
    for k in range(9):
        clock.advance(0.1)
        gpu.has_instant_power = k < 4  # the field read fails from 0.5 s on
        meter.sampler.sample()
    clock.advance(0.1)
    m = meter.stop()
    _, values = meter.sampler.buffer.view()
    assert np.isnan(values[5:, 0, 0]).all() and not np.isnan(values[:5, 0, 0]).any()
    assert m.devices[0].n_samples == 4  # the valid samples inside the window
    meter.close()


def test_a_reading_the_gpu_lacks_is_left_out_not_failed() -> None:
    """A GPU whose temperature query is not supported: that column stays empty, the rest work."""

    class NoTemperature(FakeNvml):
        def nvmlDeviceGetTemperature(self, handle, sensor):  # type: ignore[no-untyped-def]
            raise self.NVMLError(3)

    clock = ManualClock()
    fake = NoTemperature([FakeGpu(trace=ConstantPower(100.0))], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = NvmlMeter(
        nvml,
        resolve_devices([0], nvml, {}),
        clock=clock,
        background_sampling=False,
        check_processes=False,
    )
    m = window(meter, clock, 1.0)
    assert meter.sampler is not None
    assert "temperature_c" not in meter.sampler.columns_read[0]
    assert {"power_w", "sm_clock_mhz", "energy_counter_mj"} <= meter.sampler.columns_read[0]
    assert meter.sampler.read_errors == 0
    assert m.devices[0].energy_j == pytest.approx(100.0)
    meter.close()


def test_integrate_power_edges_by_hand() -> None:
    from llenergymeasure.energy.sampler import integrate_power

    one = np.array([5.0]), np.array([80.0])
    assert integrate_power(*one, 2.0, 4.5) == pytest.approx(200.0)  # a lone sample held: 80 x 2.5
    assert integrate_power(*one, 2.0, 2.0) is None  # an empty window
    t = np.array([0.0, 1.0, 2.0])
    p = np.array([100.0, 200.0, 100.0])
    # samples exactly on the edges are the edges: 150 + 150 over [0, 2]
    assert integrate_power(t, p, 0.0, 2.0) == pytest.approx(300.0)
    # [1, 2]: the sample at 1 s is the left edge, not counted twice: (200 + 100) / 2
    assert integrate_power(t, p, 1.0, 2.0) == pytest.approx(150.0)
    two = np.array([0.0, 2.0]), np.array([100.0, 300.0])
    assert integrate_power(*two, 0.0, 2.0) == pytest.approx(400.0)  # a two-sample trapezoid


def test_sampler_arguments_are_checked_and_defaults_read_every_counter() -> None:
    from llenergymeasure.energy.sampler import Sampler

    clock = ManualClock()
    fake = FakeNvml([FakeGpu(), FakeGpu(has_counter=False)], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    with pytest.raises(ValueError, match=r"period_s must be > 0 seconds, got 0"):
        Sampler(nvml, [0], 0)
    with pytest.raises(ValueError, match=r"counter_every must be >= 1 sample, got 0"):
        Sampler(nvml, [0], 0.1, counter_every=0)
    s = Sampler(nvml, [0], 0.1, clock=clock, background=False)
    assert s.counter_every == 10 and s.read_errors == 0 and not s.running
    assert "energy_counter_mj" in s.columns_read[0]  # read_counter defaults to every device
    off = Sampler(nvml, [0], 0.1, read_counter=[False], clock=clock, background=False)
    assert "energy_counter_mj" not in off.columns_read[0]
    s.begin(clock())
    for _ in range(11):
        clock.advance(0.1)
        s.sample()
    s.end()
    _, values = s.buffer.view()
    counter = values[:, 0, 5]
    # begin's row, 11 samples and end's row = 13 rows (ticks 0-12); the slow counter read
    # happens on every 10th tick only, ticks 0 and 10
    assert [k for k in range(13) if not np.isnan(counter[k])] == [0, 10]
    assert s.buffer.t[0] == pytest.approx(1000.0) and s.buffer.n == 13


def test_read_errors_are_counted_and_leave_gaps() -> None:
    from llenergymeasure.energy.sampler import Sampler

    clock = ManualClock()
    gpu = FakeGpu(has_instant_power=False)
    fake = FakeNvml([gpu], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    s = Sampler(nvml, [0], 0.1, clock=clock, background=False, counter_every=1)
    s.begin(clock())
    fake.init_depth = 0  # NVML shut down under the sampler: every read raises
    clock.advance(0.1)
    s.sample()
    fake.init_depth = 1
    s.end()
    _, values = s.buffer.view()
    assert np.isnan(values[1, 0, :]).all() and not np.isnan(values[0, 0, 0])
    assert s.read_errors == len(s.columns_read[0])  # one per column read in that row
