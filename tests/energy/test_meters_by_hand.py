"""The NVML meter's records, the null meter and the end-of-window checks, by hand.

Like test_energy_fake_clock.py, the meter and the fake NVML share a ``ManualClock`` and the test
takes each sample itself, so every joule, sample count and CSV cell below is computed by hand. The
checks here are about what a result records: which GPU (CUDA and NVML index, UUID, name) each
number belongs to, which warning names which GPU, what is null when it was not measured, and the
processes and throttling seen on the GPUs during the window.
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.energy import EnergyMeterError, NvmlMeter, resolve_devices
from llenergymeasure.energy.devices import DeviceMapping
from llenergymeasure.energy.meters import (
    TIMESERIES_HEADER,
    NullMeter,
    window_checks,
    write_timeseries_csv,
)
from llenergymeasure.energy.nvml import Nvml
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml, FakeNVMLError

PCI = {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def failing(fake: FakeNvml, call: str, code: int = 999) -> None:
    def fail(*args: Any) -> Any:
        raise FakeNVMLError(code)

    setattr(fake, call, fail)


def make(
    gpus: list[FakeGpu],
    clock: ManualClock,
    cuda: list[int] | None = None,
    env: dict[str, str] | None = None,
    fail: tuple[str, ...] = (),
    **kw: Any,
) -> tuple[NvmlMeter, FakeNvml]:
    fake = FakeNvml(gpus, clock=clock)
    for call in fail:
        failing(fake, call)
    nvml = Nvml(fake)
    nvml.init()
    mapping = resolve_devices(
        cuda if cuda is not None else list(range(len(gpus))), nvml, env or PCI
    )
    kw.setdefault("sensor_period_s", 0.1)
    kw.setdefault("sample_period_s", 0.1)
    kw.setdefault("check_processes", False)
    meter = NvmlMeter(nvml, mapping, clock=clock, background_sampling=False, **kw)
    return meter, fake


def window(meter: NvmlMeter, clock: ManualClock, n: int, step: float) -> Any:
    """Open a window, take ``n`` samples ``step`` s apart, close it ``step`` s after the last."""
    meter.start()
    for _ in range(n):
        clock.advance(step)
        if meter.sampler is not None:
            meter.sampler.sample()
    clock.advance(step)
    return meter.stop()


def utc(stamp: str | None) -> datetime:
    assert stamp is not None
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def test_two_gpus_renumbered_by_cuda_one_without_counter(tmp_path: Path) -> None:
    clock = ManualClock()
    gpus = [
        FakeGpu(name="H200", trace=ConstantPower(200.5), gpu_util_pct=37, memory_used_mib=2048),
        FakeGpu(name="V100", trace=ConstantPower(100.0), has_counter=False, gpu_util_pct=5),
    ]
    env = {**PCI, "CUDA_VISIBLE_DEVICES": "1,0"}  # CUDA 0 is NVML 1 and CUDA 1 is NVML 0
    meter, fake = make(gpus, clock, cuda=[0, 1], env=env, counter_every=1)
    fake.calls.clear()
    meter.start()
    assert meter.sampler is not None and not meter.sampler.running  # no thread: the test samples
    meter.stop()
    m = window(meter, clock, 9, 0.1)  # rows at 0.0 (start), 0.1 .. 0.9, 1.0 (stop)
    # the GPU without a counter is never asked for it: GPU 0's counter at start, rows, stop
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == (1 + 2 + 1) + (1 + 11 + 1)
    v100, h200 = m.devices
    assert (v100.nvml_index, v100.cuda_index, v100.uuid, v100.name) == (
        1,
        0,
        fake.gpus[1].uuid,
        "V100",
    )
    assert (h200.nvml_index, h200.cuda_index, h200.uuid, h200.name) == (
        0,
        1,
        fake.gpus[0].uuid,
        "H200",
    )
    assert v100.method == "integrated_power" and h200.method == "counter"
    assert v100.energy_j == pytest.approx(100.0) and v100.integrated_energy_j == pytest.approx(
        100.0
    )
    assert h200.energy_j == pytest.approx(200.5, abs=1e-3)  # the counter, in whole mJ
    assert h200.integrated_energy_j == pytest.approx(200.5)
    assert (v100.mean_power_w, h200.mean_power_w) == (
        pytest.approx(100.0),
        pytest.approx(200.5, abs=1e-3),
    )
    assert (v100.peak_power_w, h200.peak_power_w) == (100.0, 200.5)
    assert (v100.n_samples, h200.n_samples) == (9, 9)  # the edge rows are outside the window
    assert (v100.counter_resets, h200.counter_resets) == (0, 0)
    assert (v100.power_source, h200.power_source) == ("instant", "instant")
    assert (v100.mean_utilization_pct, h200.mean_utilization_pct) == (5.0, 37.0)
    assert h200.max_memory_used_mb == 2048.0
    assert [(w.code, w.device) for w in m.warnings] == [("integrated_power_only", 1)]
    assert (m.meter, m.available, m.duration_s) == ("nvml", True, pytest.approx(1.0))
    assert m.total_energy_j == pytest.approx(300.5, abs=1e-3)
    assert (m.sensor_period_s, m.sample_period_s, m.timeseries_source) == (0.1, 0.1, "nvml_sampler")
    utc(m.started_at)

    path = meter.write_timeseries(tmp_path / "deep" / "er" / "ts.csv")
    assert path == tmp_path / "deep" / "er" / "ts.csv"
    rows = list(csv.reader(path.open()))
    assert tuple(rows[0]) == TIMESERIES_HEADER and len(rows) == 1 + 11 * 2
    col = {name: k for k, name in enumerate(TIMESERIES_HEADER)}
    first, second, last = rows[1], rows[2], rows[-1]
    assert (first[0], first[1], second[0], second[1], last[0], last[1]) == (
        "0.000000",
        "1",
        "0.000000",
        "0",
        "1.000000",
        "0",
    )
    assert (first[col["power_w"]], second[col["power_w"]]) == ("100", "200.500")
    assert first[col["energy_counter_mj"]] == ""  # no counter on that GPU
    assert second[col["energy_counter_mj"]] == str(fake.gpus[0].counter_offset_mj)
    assert last[col["energy_counter_mj"]] == str(fake.gpus[0].counter_offset_mj + 200_500)
    assert second[col["gpu_util_pct"]] == "37" and first[col["gpu_util_pct"]] == "5"
    assert not list(tmp_path.rglob("*.tmp"))  # written whole, then renamed into place


def test_warnings_name_the_nvml_index_of_their_gpu() -> None:
    clock = ManualClock()
    gpus = [
        FakeGpu(),
        FakeGpu(counter_scale=0.8),
        FakeGpu(counter_scale=1.2, clock_event_reasons=0x4),
    ]
    env = {**PCI, "CUDA_VISIBLE_DEVICES": "1,2"}
    meter, _ = make(gpus, clock, cuda=[0, 1], env=env, counter_every=1)
    m = window(meter, clock, 9, 0.1)
    assert [(w.code, w.device) for w in m.warnings] == [
        ("counter_power_mismatch", 1),
        ("counter_power_mismatch", 2),
        ("power_capped", 2),
    ]


def test_a_counter_only_meter_records_no_series_and_nulls_what_it_did_not_sample(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    meter, fake = make([FakeGpu(trace=ConstantPower(150.0))], clock, sample=False)
    assert meter.sampler is None
    fake.calls.clear()
    m = window(meter, clock, 0, 2.0)
    d = m.devices[0]
    assert d.energy_j == pytest.approx(300.0, abs=1e-3) and d.method == "counter"
    assert (d.integrated_energy_j, d.peak_power_w, d.n_samples) == (None, None, 0)
    assert (d.mean_utilization_pct, d.max_memory_used_mb) == (None, None)
    assert (m.sample_period_s, m.timeseries_source, m.sensor_period_s) == (None, None, 0.1)
    assert m.warnings == []
    assert fake.polling_calls() == 0
    assert meter.write_timeseries(tmp_path / "ts.csv") is None
    assert not (tmp_path / "ts.csv").exists()


def test_no_power_and_no_counter_means_unknown_energy() -> None:
    clock = ManualClock()
    power_reads = ("nvmlDeviceGetFieldValues", "nvmlDeviceGetPowerUsage")
    meter, _ = make([FakeGpu(has_counter=False)], clock, fail=power_reads)
    m = window(meter, clock, 4, 0.5)
    d = m.devices[0]
    assert math.isnan(d.energy_j) and d.integrated_energy_j is None and d.n_samples == 0
    assert m.total_energy_j is None
    assert [w.code for w in m.warnings] == ["integrated_power_only"]


def test_the_gap_limit_uses_the_slower_of_sensor_and_sample_periods() -> None:
    clock = ManualClock()
    meter, _ = make([FakeGpu()], clock, sensor_period_s=0.5, sample_period_s=0.1)
    m = window(meter, clock, 4, 0.4)  # samples 0.4 s apart: under 3 x 0.5 s
    assert [w.code for w in m.warnings] == ["short_window"]  # 2 s < 10 sensor periods
    assert m.warnings[0].details == {
        "duration_s": pytest.approx(2.0),
        "sensor_period_s": 0.5,
        "limit_s": 5.0,
    }
    meter, _ = make([FakeGpu()], clock, sensor_period_s=0.1, sample_period_s=0.1)
    m = window(meter, clock, 4, 0.4)  # 0.4 s > 3 x 0.1 s
    assert [(w.code, w.device, w.details["n_gaps"]) for w in m.warnings] == [("sampler_gap", 0, 5)]


def test_nvml_meter_lifecycle_messages() -> None:
    clock = ManualClock()
    fake = FakeNvml([FakeGpu()], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    with pytest.raises(EnergyMeterError) as info:
        NvmlMeter(nvml, DeviceMapping([]))
    assert str(info.value) == "the NVML meter needs at least one GPU; use the null meter"
    meter, fake = make([FakeGpu()], clock)
    with pytest.raises(EnergyMeterError) as info:
        meter.stop()
    assert str(info.value) == "stop() called without start()"
    meter.start()
    with pytest.raises(EnergyMeterError) as info:
        meter.start()
    assert str(info.value) == "a window is already open on this meter; call stop() first"
    clock.advance(1.0)
    meter.stop()
    assert meter.sampler is not None
    rows = meter.sampler.buffer.n
    meter.close()
    assert meter.sampler.buffer.n == rows  # closing after a window leaves its series alone
    assert fake.init_depth == 0
    with pytest.raises(EnergyMeterError) as info:
        meter.start()
    assert str(info.value) == "this NVML meter was closed; create a new one with select_meter"
    with pytest.raises(EnergyMeterError, match=r"^stop\(\) called without start\(\)$"):
        meter.stop()


def test_closing_with_a_window_open_stops_the_sampler_thread() -> None:
    fake = FakeNvml([FakeGpu()])
    nvml = Nvml(fake)
    nvml.init()
    meter = NvmlMeter(nvml, resolve_devices([0], nvml, {}), sample_period_s=0.005)
    meter.start()
    assert meter.sampler is not None and meter.sampler.running
    meter.close()
    assert not meter.sampler.running and fake.init_depth == 0
    with pytest.raises(EnergyMeterError, match=r"^stop\(\) called without start\(\)$"):
        meter.stop()


def test_null_meter_records_the_window_and_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from llenergymeasure.energy import meters as meters_module

    clock = ManualClock()  # the window's length from a clock the test moves, not the machine's
    monkeypatch.setattr(meters_module, "time", types.SimpleNamespace(perf_counter=clock))
    m = NullMeter("no GPU here")
    assert (m.nvml_indices, m.last, m.ignore_pids) == ([], None, set())
    assert m.cache_identity() is None and m.write_timeseries(Path("unused")) is None
    first = m.stop()  # never started: a zero-length window
    assert (first.duration_s, first.started_at, first.available) == (0.0, None, False)
    assert first.unavailable_reason == "no GPU here" and first.total_energy_j is None
    before = datetime.now().astimezone()
    with m:
        clock.advance(0.25)
    last = m.last
    assert last is not None and last.duration_s == pytest.approx(0.25)
    started = utc(last.started_at)
    assert before - timedelta(seconds=1) <= started <= datetime.now().astimezone()
    again = m.stop()  # a second stop has no window open
    assert again.duration_s == 0.0


# -- end-of-window checks ------------------------------------------------------------------------


def opened(gpus: list[FakeGpu]) -> tuple[Nvml, FakeNvml, ManualClock]:
    clock = ManualClock()
    fake = FakeNvml(gpus, clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    return nvml, fake, clock


def test_violation_deltas_per_policy_and_a_failing_policy_skipped() -> None:
    nvml, fake, clock = opened([FakeGpu(violation_ns_per_s={0: 0.25e9, 1: 0.5e9}), FakeGpu()])
    start = {0: {"power": 1_000, "thermal": 2_000}, 1: {"thermal": 0}}
    clock.advance(4.0)
    deltas, warnings = window_checks(nvml, [0, 1], {}, start, set())
    assert deltas == {
        0: {"power": 1_000_000_000 - 1_000, "thermal": 2_000_000_000 - 2_000},
        1: {"thermal": 0},
    }
    assert warnings == []
    real = fake.nvmlDeviceGetViolationStatus

    def power_unsupported(handle: Any, policy: int) -> Any:
        if policy == fake.NVML_PERF_POLICY_POWER:
            raise FakeNVMLError(3)
        return real(handle, policy)

    fake.nvmlDeviceGetViolationStatus = power_unsupported  # type: ignore[method-assign]
    deltas, _ = window_checks(nvml, [0], {}, {0: {"power": 0, "thermal": 0}}, set())
    assert deltas == {0: {"thermal": 2_000_000_000}}  # the thermal counter is still read
    deltas, _ = window_checks(nvml, [0], {}, {}, set())  # no start reading: no delta
    assert deltas == {0: {}}


def test_a_foreign_process_seen_at_either_edge_is_reported_on_its_gpu() -> None:
    stranger = 2_000_000_000  # no such PID here: reported as invisible, severity info
    nvml, fake, _ = opened([FakeGpu(), FakeGpu(pids=[stranger])])
    _, warnings = window_checks(nvml, [0, 1], {}, {}, set())  # seen at the end only
    assert [(w.code, w.device, w.severity) for w in warnings] == [("foreign_process", 1, "info")]
    fake.gpus[1].pids = []
    _, warnings = window_checks(nvml, [0, 1], {1: {stranger}}, {}, set())  # at the start only
    assert [(w.code, w.device) for w in warnings] == [("foreign_process", 1)]
    _, warnings = window_checks(nvml, [0, 1], {1: {stranger}}, {}, {stranger})  # ignored
    assert warnings == []


def test_our_own_child_process_on_the_gpu_is_not_foreign() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        nvml, fake, _ = opened([FakeGpu()])
        # the engine's worker (our child) holds the GPU at the start only, then at the end only
        _, warnings = window_checks(nvml, [0], {0: {child.pid}}, {}, set())
        assert warnings == []
        fake.gpus[0].pids = [child.pid]
        _, warnings = window_checks(nvml, [0], {}, {}, set())
        assert warnings == []
        assert os.getpid() != child.pid
    finally:
        child.kill()
        child.wait()


def test_unreadable_process_lists_are_no_processes() -> None:
    nvml, fake, _ = opened([FakeGpu(pids=[2_000_000_000])])
    failing(fake, "nvmlDeviceGetComputeRunningProcesses", 999)
    deltas, warnings = window_checks(nvml, [0], {}, {}, set())
    assert warnings == [] and deltas == {0: {}}
    assert window_checks(None, [0], {}, {}, set()) == ({}, [])


def test_timeseries_cells_integers_decimals_and_gaps(tmp_path: Path) -> None:
    import numpy as np

    values = np.full((2, 1, len(TIMESERIES_HEADER) - 2), np.nan)
    values[0, 0, 0] = 250.5  # power
    values[1, 0, 0] = 250.0
    path = write_timeseries_csv(tmp_path / "a" / "b.csv", np.array([0.0, 0.1234567]), [3], values)
    rows = list(csv.reader(path.open()))
    assert rows[1][:3] == ["0.000000", "3", "250.500"] and rows[2][:3] == ["0.123457", "3", "250"]
    assert rows[1][3:] == [""] * (len(TIMESERIES_HEADER) - 3)


def test_the_time_series_gives_each_gpu_the_time_its_power_was_read(tmp_path: Path) -> None:
    # 2 GPUs, every NVML call 10 ms on a manual clock: in one row GPU 1's power is read after
    # GPU 0's 7 calls (power, 5 extras, the counter on the first row), 70 ms later; the CSV's
    # t_s says so instead of giving both the row's start
    clock = ManualClock()
    fake = FakeNvml([FakeGpu(), FakeGpu()], clock=clock, read_latency_s=0.01, advance=clock.advance)
    nvml = Nvml(fake)
    nvml.init()
    mapping = resolve_devices([0, 1], nvml, PCI)
    meter = NvmlMeter(nvml, mapping, clock=clock, background_sampling=False, check_processes=False)
    meter.start()
    clock.advance(1.0)
    meter.stop()
    path = meter.write_timeseries(tmp_path / "ts.csv")
    assert path is not None
    rows = list(csv.reader(path.open()))[1:]
    t = {(r[1], k // 2): float(r[0]) for k, r in enumerate(rows)}
    assert t[("1", 0)] - t[("0", 0)] == pytest.approx(0.07)
    assert t[("1", 1)] - t[("0", 1)] == pytest.approx(0.06)  # no counter read in the end row
