"""measure_idle_baseline by hand: the sub-window lengths it sleeps, when the cache is used at all
(TTL 0 and below a second), what an unavailable meter or an empty window records, the per-GPU
cross-check and warnings kept apart per device, and the GPU state at the start and end of the
window (on a fake NVML and a fake clock: exact and instant)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.energy import NvmlMeter, resolve_devices
from llenergymeasure.energy.baseline import CACHE_FILE, measure_idle_baseline
from llenergymeasure.energy.meters import MeterBase
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.types import DeviceEnergy, EnergyMeasurement, ValidityWarning
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

KEYS = {0: "GPU-a|driver 1|700000mW", 1: "GPU-b|driver 1|700000mW"}


class Windows(MeterBase):
    """Successive idle windows: (duration s, {gpu: (power W, integrated power W or None)},
    warnings); sleeping is recorded, not done."""

    name = "scripted"
    available = True

    def __init__(self, windows: list[tuple[float, dict[int, tuple[float, float | None]], list]]):
        super().__init__()
        self.nvml_indices = sorted({i for _, powers, _ in windows for i in powers}) or [0, 1]
        self.windows = windows
        self.calls = 0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def start(self) -> None:
        return None

    def stop(self) -> EnergyMeasurement:
        duration, powers, warnings = self.windows[self.calls]
        self.calls += 1
        return EnergyMeasurement(
            meter=self.name,
            duration_s=duration,
            total_energy_j=sum(p * duration for p, _ in powers.values()),
            devices=[
                DeviceEnergy(
                    nvml_index=i,
                    energy_j=p * duration,
                    integrated_energy_j=None if ip is None else ip * duration,
                    n_samples=10 + i,  # GPU 0: 10 samples a window, GPU 1: 11
                )
                for i, (p, ip) in powers.items()
            ],
            warnings=warnings,
        )

    def cache_identity(self) -> dict[int, str] | None:
        return {i: KEYS[i] for i in self.nvml_indices}


def steady(n: int, duration: float = 1.0) -> list:
    return [(duration, {0: (80.0, None), 1: (60.0, None)}, [])] * n


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_sub_windows_split_the_duration_evenly() -> None:
    # 4.4 s -> round(4.4 / 1 s) = 4 sub-windows of 1.1 s; 0.3 s -> at least 2 of 0.15 s
    meter = Windows(steady(4, 1.1))
    rec = measure_idle_baseline(meter, 4.4, None, 0, sleep=meter.sleep)
    assert meter.sleeps == [pytest.approx(1.1)] * 4 and rec.n_windows == 4
    assert rec.duration_s == pytest.approx(4.4)
    short = Windows(steady(2, 0.15))
    assert measure_idle_baseline(short, 0.3, None, 0, sleep=short.sleep).n_windows == 2
    assert short.sleeps == [pytest.approx(0.15)] * 2


def test_resident_settling_sleeps_through_the_callers_sleep() -> None:
    # settle: 2 windows (80 -> 80 W: settled), then 2 measured sub-windows; every sleep is ours
    meter = Windows(steady(4))
    rec = measure_idle_baseline(meter, 2.0, None, 0, kind="resident", sleep=meter.sleep)
    assert rec.settle_s == pytest.approx(2.0) and rec.n_windows == 2
    assert meter.sleeps == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("ttl_s", [0.0, -5.0])
def test_no_cache_when_the_ttl_is_zero_even_for_an_entry_written_this_second(
    tmp_path: Path, ttl_s: float
) -> None:
    entry = {"idle_power_w": 10.0, "measured_at_epoch": 1_000.0}
    (tmp_path / CACHE_FILE).write_text(
        json.dumps({"version": 2, "entries": {f"{k}|cold": entry for k in KEYS.values()}})
    )
    before = (tmp_path / CACHE_FILE).read_text()
    meter = Windows(steady(2))
    rec = measure_idle_baseline(
        meter, 2.0, tmp_path, ttl_s, clock=Clock(1_000.0), sleep=meter.sleep
    )
    assert not rec.from_cache and meter.calls == 2
    assert rec.idle_power_w == {0: pytest.approx(80.0), 1: pytest.approx(60.0)}
    assert (tmp_path / CACHE_FILE).read_text() == before  # not rewritten either


def test_a_ttl_under_a_second_still_caches(tmp_path: Path) -> None:
    meter = Windows(steady(2))
    measure_idle_baseline(meter, 2.0, tmp_path, 0.5, clock=Clock(1_000.0), sleep=meter.sleep)
    again = Windows([])
    hit = measure_idle_baseline(again, 2.0, tmp_path, 0.5, clock=Clock(1_000.25))
    assert hit.from_cache and again.calls == 0


def test_cache_write_false_reads_but_never_writes(tmp_path: Path) -> None:
    meter = Windows(steady(2))
    rec = measure_idle_baseline(
        meter, 2.0, tmp_path, 60, cache_write=False, clock=Clock(1.0), sleep=meter.sleep
    )
    assert rec.accepted and not (tmp_path / CACHE_FILE).exists()


def test_an_unavailable_meter_records_its_kind_and_reason() -> None:
    class Off(MeterBase):
        available = False

    rec = measure_idle_baseline(Off(), 2.0, None, 0, kind="resident")
    assert (rec.available, rec.kind) == (False, "resident")
    assert rec.unavailable_reason == "no energy meter is available"


@pytest.mark.parametrize(
    "window",
    [(0.0, {0: (80.0, None)}, []), (1.0, {}, [])],
    ids=["zero-seconds", "no-devices"],
)
def test_an_idle_window_that_measured_nothing_is_unavailable(window: tuple) -> None:
    meter = Windows([window, window])
    meter.nvml_indices = [0]
    rec = measure_idle_baseline(meter, 2.0, None, 0, kind="resident", sleep=meter.sleep)
    assert (rec.available, rec.kind) == (False, "resident")
    assert rec.unavailable_reason == "the idle window measured nothing"


def test_the_cross_check_and_warnings_are_kept_per_gpu() -> None:
    # GPU 0: counter 80 W, integrated 80 W (agree); GPU 1: counter 60 W, integrated 66 W: +10 %
    # over the whole window -> one counter_power_mismatch, for GPU 1. Each sub-window also warns
    # of a foreign process on both GPUs: one warning per (code, GPU) is kept.
    def foreign(device: int) -> ValidityWarning:
        return ValidityWarning(
            code="foreign_process", message=f"PID 9 on GPU {device}", device=device
        )

    w = [foreign(0), foreign(1)]
    meter = Windows([(1.0, {0: (80.0, 80.0), 1: (60.0, 66.0)}, w)] * 2)
    rec = measure_idle_baseline(meter, 2.0, None, 0, sleep=meter.sleep)
    assert [(x.code, x.device) for x in rec.warnings] == [
        ("foreign_process", 0),
        ("foreign_process", 1),
        ("counter_power_mismatch", 1),
    ]
    mismatch = rec.warnings[2]
    assert mismatch.details["counter_j"] == pytest.approx(120.0)
    assert mismatch.details["integrated_j"] == pytest.approx(132.0)


def test_a_drifting_gpu_is_cached_with_its_drift_and_a_utc_time(tmp_path: Path) -> None:
    # GPU 0: 100 then 102 W (+2 %, under the 3 % limit): cached with drift 0.02 and SE 1.0
    meter = Windows(
        [
            (1.0, {0: (100.0, None), 1: (60.0, None)}, []),
            (1.0, {0: (102.0, None), 1: (60.0, None)}, []),
        ]
    )
    rec = measure_idle_baseline(meter, 2.0, tmp_path, 60, clock=Clock(5.0), sleep=meter.sleep)
    assert rec.accepted
    measured = dt.datetime.fromisoformat(rec.measured_at or "")
    assert measured.utcoffset() == dt.timedelta(0)
    entry = json.loads((tmp_path / CACHE_FILE).read_text())["entries"][f"{KEYS[0]}|cold"]
    assert entry["drift"] == pytest.approx(0.02) and entry["idle_power_se_w"] == pytest.approx(1.0)
    assert entry["idle_power_w"] == pytest.approx(101.0) and entry["n_samples"] == 20
    other = json.loads((tmp_path / CACHE_FILE).read_text())["entries"][f"{KEYS[1]}|cold"]
    assert other["drift"] == 0.0 and other["n_samples"] == 22  # GPU 1's own figures


def test_gpu_state_at_start_and_end_and_the_highest_utilisation(tmp_path: Path) -> None:
    # on a fake clock: the GPU warms from 40 C and its utilisation reads 30 % after the first
    # sub-window and 10 % after the second; the state recorded is the end's, with the start's
    # inside it and the highest utilisation seen (30 %, which rejects the idle window)
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(75.0), temperature_c=40, gpu_util_pct=0, uuid="GPU-s")
    nvml = Nvml(FakeNvml([gpu], clock=clock))
    nvml.init()
    meter = NvmlMeter(
        nvml,
        resolve_devices([0], nvml, {}),
        sensor_period_s=0.1,
        sample_period_s=0.1,
        clock=clock,
        background_sampling=False,
        check_processes=False,
    )
    readings = iter([(41, 30), (42, 10)])

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        gpu.temperature_c, gpu.gpu_util_pct = next(readings)

    rec = measure_idle_baseline(
        meter, 2.0, tmp_path, 60, sleep=sleep, thresholds=ValiditySettings(baseline_max_util_pct=5)
    )
    meter.close()
    assert rec.idle_power_w[0] == pytest.approx(75.0)
    state = rec.state[0]
    assert state["temperature_c"] == 42 and state["util_pct"] == 10
    assert state["start"]["temperature_c"] == 40 and state["start"]["util_pct"] == 0
    assert state["max_util_pct"] == 30.0
    assert not rec.accepted
    assert rec.rejected_reason == "GPU 0 utilisation reached 30 % (limit 5 %)"
    assert not (tmp_path / CACHE_FILE).exists()  # a rejected window is not cached


def test_two_gpus_failing_the_cross_check_each_keep_their_warning() -> None:
    # both GPUs' integrated power 10 % above their counters: one warning per GPU
    meter = Windows([(1.0, {0: (80.0, 88.0), 1: (60.0, 66.0)}, [])] * 2)
    rec = measure_idle_baseline(meter, 2.0, None, 0, sleep=meter.sleep)
    assert [(w.code, w.device) for w in rec.warnings] == [
        ("counter_power_mismatch", 0),
        ("counter_power_mismatch", 1),
    ]


def test_a_gpu_missing_from_a_sub_window_gets_no_idle_figure(tmp_path: Path) -> None:
    meter = Windows([(1.0, {0: (80.0, 80.0), 1: (60.0, 60.0)}, []), (1.0, {0: (80.0, 80.0)}, [])])
    rec = measure_idle_baseline(meter, 2.0, tmp_path, 60, sleep=meter.sleep)
    assert rec.idle_power_w == {0: pytest.approx(80.0)}
    # GPU 1's counter over the window is the one sub-window it was in (60 J), integrated 60 J
    assert rec.warnings == []
    # not cached (this crashed with a KeyError before): there is no figure for GPU 1
    assert not (tmp_path / CACHE_FILE).exists()


def test_the_cached_entry_keeps_the_gpu_state(tmp_path: Path) -> None:
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(70.0), temperature_c=38, gpu_util_pct=0, uuid="GPU-c")
    nvml = Nvml(FakeNvml([gpu], clock=clock))
    nvml.init()
    meter = NvmlMeter(
        nvml,
        resolve_devices([0], nvml, {}),
        sensor_period_s=0.1,
        sample_period_s=0.1,
        clock=clock,
        background_sampling=False,
        check_processes=False,
    )

    def sleep(seconds: float) -> None:  # a sample every 0.1 s of fake time, like the thread
        for _ in range(round(seconds / 0.1)):
            clock.advance(0.1)
            assert meter.sampler is not None
            meter.sampler.sample()

    rec = measure_idle_baseline(meter, 2.0, tmp_path, 60, sleep=sleep)
    meter.close()
    assert rec.accepted
    [entry] = json.loads((tmp_path / CACHE_FILE).read_text())["entries"].values()
    assert entry["state"] == rec.state[0] and entry["state"]["temperature_c"] == 38
