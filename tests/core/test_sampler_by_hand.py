"""The sampler's rows by hand on a fake clock: every column a fake GPU serves lands in its own
column with its unit (memory bytes -> MiB, power mW -> W), the buffer keeps every row when it
grows, a reset reuses rows without stale values, and a window's busy-ness ignores unread samples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.sampler import (
    COLUMNS,
    COUNTER,
    MEMORY,
    POWER,
    REASONS,
    SM_CLOCK,
    TEMPERATURE,
    UTIL,
    SampleBuffer,
    Sampler,
    busy_stats,
)
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

NAN = math.nan


def test_busy_stats_mean_utilisation_and_peak_memory_of_read_samples() -> None:
    # util read in 3 of 5 samples: (10 + 20 + 60) / 3 = 30 %; memory read in 2: max 2048 MiB
    util = np.array([10.0, NAN, 20.0, NAN, 60.0])
    memory = np.array([NAN, 2048.0, NAN, 1024.5, NAN])
    assert busy_stats(util, memory) == (30.0, 2048.0)
    # one column never read: None for it, the other still computed
    assert busy_stats(np.array([NAN, NAN]), np.array([5.0, 7.0])) == (None, 7.0)
    assert busy_stats(np.array([0.0, 0.0]), np.array([NAN])) == (0.0, None)
    assert busy_stats(np.array([]), np.array([])) == (None, None)
    mean_util, peak = busy_stats(np.array([95.0]), np.array([40_000.0]))
    assert type(mean_util) is float and type(peak) is float


def _sampler(gpus: list[FakeGpu], clock: ManualClock, **kw: object) -> Sampler:
    nvml = Nvml(FakeNvml(gpus, clock=clock))
    nvml.init()
    return Sampler(nvml, list(range(len(gpus))), 0.1, clock=clock, background=False, **kw)  # type: ignore[arg-type]


def test_each_reading_lands_in_its_column_with_its_unit() -> None:
    clock = ManualClock()
    gpu = FakeGpu(
        trace=ConstantPower(237.5),
        temperature_c=61,
        sm_clock_mhz=1755,
        gpu_util_pct=87,
        memory_used_mib=3 * 1024 + 512,  # 3.5 GiB in use
        clock_event_reasons=4,
    )
    other = FakeGpu(trace=ConstantPower(70.0), gpu_util_pct=0, memory_used_mib=512)
    s = _sampler([gpu, other], clock, counter_every=1)
    assert s.columns_read == [set(COLUMNS), set(COLUMNS)]
    s.begin(clock())
    clock.advance(0.1)
    s.end()
    t, values = s.buffer.view()
    assert t.tolist() == [pytest.approx(1000.0), pytest.approx(1000.1)]
    row = values[1, 0]
    assert row[POWER] == pytest.approx(237.5)  # mW / 1000
    assert row[TEMPERATURE] == 61.0 and row[SM_CLOCK] == 1755.0 and row[UTIL] == 87.0
    assert row[REASONS] == 4.0
    assert row[MEMORY] == 3584.0  # bytes / 2**20
    assert values[1, 1, MEMORY] == 512.0 and values[1, 1, UTIL] == 0.0
    assert values[1, 1, POWER] == pytest.approx(70.0)
    # the counter (mJ) advanced by 237.5 W x 0.1 s = 23.75 J = 23750 mJ between the rows
    assert values[1, 0, COUNTER] - values[0, 0, COUNTER] == pytest.approx(23_750.0, abs=1.0)


def test_without_extras_only_power_and_counter_are_read() -> None:
    clock = ManualClock()
    nvml = Nvml(FakeNvml([FakeGpu(), FakeGpu(has_counter=False)], clock=clock))
    nvml.init()
    s = Sampler(nvml, [0, 1], 0.1, extras=False, clock=clock, background=False)
    assert s.columns_read == [{"power_w", "energy_counter_mj"}, {"power_w"}]


def test_buffer_grows_by_doubling_and_keeps_every_row() -> None:
    buf = SampleBuffer(2, capacity=2)
    for k in range(5):
        row = buf.next_row(10.0 + k)
        assert row == k
        buf.values[row, 0, POWER] = 100.0 + k
        buf.values[row, 1, POWER] = 200.0 + k
    assert buf.t.shape[0] == 8  # 2 -> 4 -> 8
    t, v = buf.view()
    assert t.tolist() == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert v[:, 0, POWER].tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert v[:, 1, POWER].tolist() == [200.0, 201.0, 202.0, 203.0, 204.0]
    assert np.isnan(v[:, :, TEMPERATURE]).all()  # never written: NaN, not 0 or garbage
    assert v.shape == (5, 2, len(COLUMNS))


def test_a_reset_buffer_reuses_rows_without_stale_values() -> None:
    buf = SampleBuffer(1, capacity=4)
    row = buf.next_row(1.0)
    buf.values[row, 0, :] = 42.0
    buf.reset()
    assert buf.view()[0].size == 0
    assert buf.next_row(2.0) == 0
    t, v = buf.view()
    assert t.tolist() == [2.0] and np.isnan(v[0, 0]).all()


def test_the_default_sampler_runs_a_named_daemon_thread_at_its_period() -> None:
    # real clock: the thread never samples faster than its period (at most elapsed / 0.02 +
    # begin's and end's rows + 1 of slack), and a working thread takes more than begin's and
    # end's rows; the test waits for 5 rows instead of a fixed time, so load cannot fail it
    import threading
    import time

    nvml = Nvml(FakeNvml([FakeGpu()]))
    nvml.init()
    s = Sampler(nvml, [0], 0.02)
    s.begin(time.perf_counter())
    try:
        assert s.running
        [thread] = [t for t in threading.enumerate() if t.name == "llem-nvml-sampler-0"]
        assert thread.daemon  # a harness that dies does not hang on its sampler
        with pytest.raises(RuntimeError) as twice:
            s.begin(time.perf_counter())
        assert str(twice.value) == "sampler already running; call end() first"
        # wait for samples rather than for a fixed time: a loaded machine delays the thread, and
        # what is checked (no faster than the period, in order) holds whatever the delay
        deadline = time.monotonic() + 120  # a hang guard only
        while s.buffer.view()[0].size < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        s.end()
    assert not s.running and not thread.is_alive()
    t, _ = s.buffer.view()
    elapsed = t[-1] - t[0]
    assert 5 <= t.size <= elapsed / 0.02 + 3
    assert np.all(np.diff(t) >= 0)


def test_an_older_nvml_without_clock_event_reasons_uses_throttle_reasons() -> None:
    class OlderNvml(FakeNvml):
        """nvidia-ml-py before 12.535: only the older name of the reasons call."""

        def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
            if name == "nvmlDeviceGetCurrentClocksEventReasons":
                raise AttributeError(name)
            return super().__getattribute__(name)

        def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):  # type: ignore[no-untyped-def]
            return 8

    clock = ManualClock()
    nvml = Nvml(OlderNvml([FakeGpu()], clock=clock))
    nvml.init()
    s = Sampler(nvml, [0], 0.1, clock=clock, background=False)
    assert "throttle_reasons" in s.columns_read[0]
    s.begin(clock())
    s.end()
    assert s.buffer.view()[1][0, 0, REASONS] == 8.0


def test_after_a_stalled_read_the_thread_resumes_its_period() -> None:
    # the power read stalls for 0.1 s once, 0.1 s into the window: the thread falls behind, then
    # samples on at its period again (not in a burst, and not stopping)
    import time

    fake = FakeNvml([FakeGpu(stalls=[(0.1, 0.1)])])
    nvml = Nvml(fake)
    nvml.init()
    s = Sampler(nvml, [0], 0.02)
    start = time.perf_counter()
    s.begin(start)
    # wait for 3 rows after the stall rather than a fixed 0.45 s (a loaded machine delays the
    # thread; sampling going on after the stall holds whatever the delay)
    deadline = time.monotonic() + 120  # a hang guard only
    while (s.buffer.view()[0] > start + 0.3).sum() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    s.end()
    t, _ = s.buffer.view()
    assert (t > start + 0.3).sum() >= 3  # sampling went on after the stall
    assert t.size <= (t[-1] - t[0]) / 0.02 + 3


def test_each_device_keeps_the_time_its_power_was_read() -> None:
    # 3 GPUs, every NVML call 5 ms on a manual clock; a row starts at 1000 s. The devices of one
    # row are read one after another, 7 calls each (power field first, then 5 extras, counter
    # on the first row): GPU 0's power returns at +5 ms, GPU 1's at +7 x 5 + 5 = +40 ms, GPU 2's
    # at +75 ms. The row's time stays its start; each device's own time is kept beside it.
    clock = ManualClock(1000.0)
    fake = FakeNvml(
        [FakeGpu() for _ in range(3)], clock=clock, read_latency_s=0.005, advance=clock.advance
    )
    nvml = Nvml(fake)
    nvml.init()
    s = Sampler(nvml, [0, 1, 2], 0.1, clock=clock, background=False)
    clock.t = 1000.0
    s.begin(clock())
    t, _ = s.buffer.view()
    assert t.tolist() == [1000.0]
    assert s.buffer.device_times()[0] == pytest.approx([1000.005, 1000.040, 1000.075])


def test_several_devices_are_read_by_threads_of_their_own() -> None:
    # one reader thread per GPU (named by NVML index), so a busy main thread's GIL hand-backs
    # overlap instead of adding up over 6 calls x N GPUs; end() stops and joins them all
    import threading
    import time

    nvml = Nvml(FakeNvml([FakeGpu() for _ in range(3)]))
    nvml.init()
    s = Sampler(nvml, [0, 1, 2], 0.05)
    s.begin(time.perf_counter())
    try:
        names = sorted(t.name for t in threading.enumerate() if t.name.startswith("llem-nvml"))
        assert names == ["llem-nvml-sampler-0", "llem-nvml-sampler-1", "llem-nvml-sampler-2"]
    finally:
        s.end()
    assert not s.running
    assert not [t for t in threading.enumerate() if t.name.startswith("llem-nvml-sampler")]
    # begin's and end's rows hold every device, each at its own read time, in order
    dev_t = s.buffer.device_times()
    assert not np.isnan(dev_t[0]).any() and not np.isnan(dev_t[-1]).any()
    for d in range(3):
        col = dev_t[:, d][~np.isnan(dev_t[:, d])]
        assert np.all(np.diff(col) > 0)
