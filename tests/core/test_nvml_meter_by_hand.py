"""The NVML meter's own arithmetic by hand (``energy/nvml_meter.py``): the edge correction and its
bound from the sampler's edge readings (or the window's mean power when it has none), whether a
GPU's edges count as aligned, a device count that could not be read at the start, and the time
series file's rows. Each expected figure is worked out here from the fake's numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from llenergymeasure.energy.devices import DeviceMapping, DeviceTarget, resolve_devices
from llenergymeasure.energy.edges import CounterEdge
from llenergymeasure.energy.errors import DeviceLostError, NvmlError
from llenergymeasure.energy.meters import power_limits_w
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.nvml_meter import NvmlMeter
from llenergymeasure.energy.sampler import COUNTER
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml, RampPower

ALIGNED_START = CounterEdge(5_000_000, at_s=9.98, resolution_s=0.002)  # 20 ms before t0 = 10
ALIGNED_END = CounterEdge(5_400_000, at_s=11.95, resolution_s=0.001)  # 50 ms before t1 = 12
UNALIGNED = CounterEdge(5_000_000, at_s=10.0, resolution_s=None)


def make_meter(
    n_gpus: int = 1,
    *,
    sensor_period_s: float = 0.1,
    sample_period_s: float | None = None,
    sample: bool = True,
    align_edges: bool = False,
    gpus: list[FakeGpu] | None = None,
    without_uuids: bool = False,
) -> tuple[NvmlMeter, FakeNvml, ManualClock]:
    clock = ManualClock()
    gpus = gpus or [FakeGpu(trace=ConstantPower(200.0)) for _ in range(n_gpus)]
    fake = FakeNvml(gpus, clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    mapping = resolve_devices(list(range(len(gpus))), nvml, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    if without_uuids:  # NVML could not say which GPU a target is
        mapping = DeviceMapping([DeviceTarget(k, k) for k in range(len(gpus))])
    meter = NvmlMeter(
        nvml,
        mapping,
        sensor_period_s=sensor_period_s,
        sample_period_s=sample_period_s,
        clock=clock,
        sleep=clock.advance,
        background_sampling=False,
        check_processes=False,
        sample=sample,
        align_edges=align_edges,
    )
    return meter, fake, clock


def with_edges(meter: NvmlMeter, e0: CounterEdge | None, e1: CounterEdge | None) -> NvmlMeter:
    meter._edges0, meter._edges1 = [e0], [e1]
    meter._t0, meter._t1 = 10.0, 12.0
    return meter


# -- _edge_terms: the correction to [t0, t1] and its bound ---------------------------------------


@pytest.mark.parametrize(("e0", "e1"), [(None, ALIGNED_END), (ALIGNED_START, None), (None, None)])
def test_a_gpu_missing_either_edge_gets_no_correction_and_no_bound(
    e0: CounterEdge | None, e1: CounterEdge | None
) -> None:
    meter = with_edges(make_meter()[0], e0, e1)
    assert meter._edge_terms(0, 400.0, np.array([180.0, 220.0]), 2.0) == (400.0, None)


def test_the_edge_powers_are_the_first_and_last_readings_that_are_not_nan() -> None:
    meter = with_edges(make_meter()[0], ALIGNED_START, ALIGNED_END)
    power = np.array([np.nan, 150.0, 170.0, 190.0, 250.0, np.nan])
    energy, bound = meter._edge_terms(0, 400.0, power, 2.0)
    # start: the update 20 ms before t0 counted 150 W x 0.02 s too much; end: the update
    # 50 ms before t1 left 250 W x 0.05 s out
    assert energy == pytest.approx(400.0 - 150.0 * 0.02 + 250.0 * 0.05)  # 409.5 J
    # both edges aligned: P x resolution at each
    assert bound == pytest.approx(150.0 * 0.002 + 250.0 * 0.001)  # 0.55 J


@pytest.mark.parametrize(
    ("duration_s", "edge_power_w"),
    [(2.0, 200.0), (0.5, 800.0), (0.0, 0.0)],  # 400 J over the window; a 0 s window: 0 W
)
def test_with_no_readings_the_edges_take_the_window_mean_power(
    duration_s: float, edge_power_w: float
) -> None:
    meter = with_edges(make_meter()[0], ALIGNED_START, ALIGNED_END)
    energy, bound = meter._edge_terms(0, 400.0, np.empty(0), duration_s)
    assert energy == pytest.approx(400.0 + edge_power_w * (0.05 - 0.02))
    assert bound == pytest.approx(edge_power_w * (0.002 + 0.001))


def test_only_nan_readings_count_as_none() -> None:
    meter = with_edges(make_meter()[0], ALIGNED_START, ALIGNED_END)
    energy, _ = meter._edge_terms(0, 400.0, np.array([np.nan, np.nan]), 2.0)
    assert energy == pytest.approx(400.0 + 200.0 * 0.03)


@pytest.mark.parametrize(("sensor_period_s", "bound_period_s"), [(0.05, 0.05), (0.0, 0.1)])
def test_an_unaligned_edge_is_bounded_by_the_meter_s_sensor_period(
    sensor_period_s: float, bound_period_s: float
) -> None:
    # a 0 s sensor period (not known) falls back to NVML's 100 ms (no sampler: it needs a period)
    meter, _, _ = make_meter(sensor_period_s=sensor_period_s, sample=False)
    meter = with_edges(meter, UNALIGNED, ALIGNED_END)
    energy, bound = meter._edge_terms(0, 400.0, np.array([300.0, 250.0]), 2.0)
    assert energy == pytest.approx(400.0 + 250.0 * 0.05)  # no correction at the unaligned start
    assert bound == pytest.approx(250.0 * 0.001 + bound_period_s * 300.0)


# -- _aligned --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e0", "e1", "aligned"),
    [
        (ALIGNED_START, ALIGNED_END, True),
        (ALIGNED_START, UNALIGNED, False),
        (UNALIGNED, ALIGNED_END, False),
        (UNALIGNED, UNALIGNED, False),
        (None, ALIGNED_END, None),
        (ALIGNED_START, None, None),
    ],
)
def test_edges_are_aligned_only_when_both_are(
    e0: CounterEdge | None, e1: CounterEdge | None, aligned: bool | None
) -> None:
    assert with_edges(make_meter()[0], e0, e1)._aligned(0) is aligned


# -- the window's edges -----------------------------------------------------------------------------


def test_an_edge_read_at_any_time_is_dated_at_its_read_and_not_aligned() -> None:
    meter, _, clock = make_meter()
    meter.start()
    [e0] = meter._edges0
    assert e0 == CounterEdge(e0.counter_mj, at_s=meter._t0, resolution_s=None)
    assert meter._t0 == clock()


def test_a_gpu_without_a_counter_has_no_edges_aligned_or_not() -> None:
    gpus = [FakeGpu(trace=ConstantPower(200.0)), FakeGpu(has_counter=False)]
    for align in (False, True):
        meter, _, clock = make_meter(gpus=gpus, align_edges=align)
        meter.start()
        assert meter._edges0[1] is None
        clock.advance(1.0)
        m = meter.stop()
        assert [d.edges_aligned for d in m.devices] == [align, None]
        assert [d.method for d in m.devices] == ["counter", "integrated_power"]


@pytest.mark.parametrize(
    ("sensor_period_s", "sample_period_s", "waited_s"),
    [(0.2, None, 0.3), (0.04, None, 0.06), (0.0, 0.1, 0.15)],  # 0 s: NVML's 100 ms
)
def test_a_counter_that_never_updates_is_awaited_one_and_a_half_sensor_periods(
    sensor_period_s: float, sample_period_s: float | None, waited_s: float
) -> None:
    frozen = FakeGpu(trace=ConstantPower(200.0), update_period_s=3600.0)
    meter, _, clock = make_meter(
        gpus=[frozen],
        sensor_period_s=sensor_period_s,
        sample_period_s=sample_period_s,
        align_edges=True,
    )
    before = clock()
    meter.start()
    # polls every 1 ms until more than ``waited_s`` has passed
    assert waited_s < clock() - before <= waited_s + 0.0011
    assert meter._edges0[0] is not None and not meter._edges0[0].aligned


# -- the device count ------------------------------------------------------------------------------


def test_a_device_count_unreadable_at_the_start_is_no_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    meter, _, clock = make_meter()
    real = meter.nvml.device_count
    calls: list[int] = []

    def count_once_failing() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise NvmlError("nvmlDeviceGetCount", 999, "Unknown Error")
        return real()

    monkeypatch.setattr(meter.nvml, "device_count", count_once_failing)
    meter.start()
    assert meter._count0 is None
    clock.advance(1.0)
    m = meter.stop()  # the end's count (1) has nothing to compare with: not a lost GPU
    assert len(calls) == 2 and m.devices[0].energy_j == pytest.approx(200.0)


def test_a_fall_in_the_device_count_loses_every_gpu_that_has_no_uuid() -> None:
    # with no UUID to tell which GPU left, each target counts as lost, each with its own line
    meter, fake, clock = make_meter(n_gpus=2, without_uuids=True)
    meter.start()
    clock.advance(0.5)
    fake.gpus[1].gone_from_s = fake.now()
    clock.advance(0.5)
    with pytest.raises(DeviceLostError) as err:
        meter.stop()
    fell = "NVML's device count fell (2 GPUs at the window's start, 1 at its end)"
    assert err.value.lost_gpus == [
        {"uuid": None, "nvml_index": 0, "reason": fell},
        {"uuid": None, "nvml_index": 1, "reason": fell},
    ]


def test_a_steady_device_count_is_no_loss_even_without_uuids() -> None:
    meter, _, clock = make_meter(n_gpus=2, without_uuids=True)
    meter.start()
    clock.advance(1.0)
    assert [d.energy_j for d in meter.stop().devices] == pytest.approx([200.0, 200.0])


def test_a_gpu_lost_at_the_window_s_start_is_named_with_its_uuid() -> None:
    meter, fake, _ = make_meter(n_gpus=2)
    gpu = fake.gpus[1]
    gpu.fails_calls, gpu.fails_from_s = ("nvmlDeviceGetTotalEnergyConsumption",), fake.now()
    with pytest.raises(DeviceLostError) as err:
        meter.start()
    [lost] = err.value.lost_gpus
    assert (lost["uuid"], lost["nvml_index"]) == (gpu.uuid, 1)
    assert "nvmlDeviceGetTotalEnergyConsumption" in str(lost["reason"])


# -- _backward_step: a counter that went backwards --------------------------------------------------


def with_counter_rows(rows: list[tuple[float, float]]) -> NvmlMeter:
    """A meter whose window is [10, 12] s from a counter of 5000 mJ, with the sampler's rows
    ``(time, counter mJ)``."""
    meter, _, _ = make_meter()
    meter._c0, meter._t0, meter._t1 = [5000], 10.0, 12.0
    assert meter.sampler is not None
    buf = meter.sampler.buffer
    buf.reset()
    for t, counter in rows:
        buf.values[buf.next_row(t), 0, COUNTER] = counter
    return meter


@pytest.mark.parametrize(
    ("rows", "c1", "step"),
    [
        ([(10.5, 6000.0), (11.0, 5500.0), (11.5, 7000.0)], 8000, (6000, 5500)),
        ([(11.0, 4000.0)], 6000, (5000, 4000)),  # below the start's reading
        ([(11.0, 6000.0)], 5900, (6000, 5900)),  # the end's reading below the last row's
        ([(11.0, 6000.0), (11.5, float("nan"))], 7000, None),  # a row without a counter read
        ([], 4999, (5000, 4999)),  # no rows: the edges alone
        # rows on or outside the edges belong to the edges or to other windows
        ([(10.0, 1.0), (9.0, 2.0), (12.0, 3.0), (13.0, 4.0)], 6000, None),
    ],
)
def test_the_first_backward_step_between_the_edges_is_found(
    rows: list[tuple[float, float]], c1: int, step: tuple[int, int] | None
) -> None:
    assert with_counter_rows(rows)._backward_step(0, c1) == step


def test_no_backward_step_without_both_edges() -> None:
    meter = with_counter_rows([(11.0, 1.0)])
    assert meter._backward_step(0, None) is None  # no end reading
    meter._c0 = [None]
    assert meter._backward_step(0, 1) is None  # no start reading (no counter)
    never_started, _, _ = make_meter()
    assert never_started._backward_step(0, 1) is None


# -- write_timeseries ------------------------------------------------------------------------------


def rows_of(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def test_a_meter_that_never_opened_a_window_writes_no_file(tmp_path: Path) -> None:
    meter, _, _ = make_meter()
    assert meter.write_timeseries(tmp_path / "ts.csv") is None
    assert not (tmp_path / "ts.csv").exists()


def test_each_row_is_one_gpu_s_readings_at_its_time_from_the_window_s_start(
    tmp_path: Path,
) -> None:
    meter, fake, clock = make_meter(n_gpus=2)
    fake.gpus[1].trace = ConstantPower(350.5)
    meter.start()  # the sampler's first row, at the window's start
    clock.advance(1.0)
    meter.stop()  # and its last, at the end
    path = meter.write_timeseries(tmp_path / "ts.csv")
    assert path == tmp_path / "ts.csv"
    assert [(r["t_s"], r["nvml_index"], r["power_w"]) for r in rows_of(path)] == [
        ("0.000000", "0", "200"),
        ("0.000000", "1", "350.500"),
        ("1.000000", "0", "200"),
        ("1.000000", "1", "350.500"),
    ]


def test_times_are_from_the_window_s_start_where_a_gpu_has_no_read_time(tmp_path: Path) -> None:
    # a reader thread that missed its slot leaves the row with no read time of that GPU: the
    # row's own time is used, also counted from the window's start
    meter, _, clock = make_meter()
    meter.start()
    clock.advance(0.1)
    assert meter.sampler is not None
    meter.sampler.sample()
    meter.sampler.buffer.next_row(meter._t0 + 0.3)  # the missed slot: nothing read
    clock.advance(0.5)
    meter.stop()
    rows = rows_of(meter.write_timeseries(tmp_path / "ts.csv") or tmp_path / "none")
    assert [(r["t_s"], r["power_w"]) for r in rows] == [
        ("0.000000", "200"),
        ("0.100000", "200"),
        ("0.300000", ""),
        ("0.600000", "200"),
    ]


def test_without_a_sampler_there_is_no_time_series(tmp_path: Path) -> None:
    meter, _, clock = make_meter(sample=False)
    assert meter.sampler is None
    meter.start()
    clock.advance(1.0)
    meter.stop()
    assert meter.write_timeseries(tmp_path / "ts.csv") is None


# -- the sampler the meter sets up ------------------------------------------------------------------


def test_the_sampler_reads_the_counter_every_tenth_row_of_gpus_that_have_one() -> None:
    gpus = [FakeGpu(trace=ConstantPower(200.0)), FakeGpu(has_counter=False)]
    meter, _, clock = make_meter(gpus=gpus)
    meter.start()
    assert meter.sampler is not None
    for _ in range(20):
        clock.advance(0.1)
        meter.sampler.sample()
    clock.advance(0.1)
    meter.stop()
    _, values = meter.sampler.buffer.view()
    read = ~np.isnan(values[:, :, COUNTER])
    assert np.flatnonzero(read[:, 0]).tolist() == [0, 10, 20]  # the start row, then every 10th
    assert not read[:, 1].any()  # no counter on the second GPU: not asked for it
    assert meter.sampler.read_errors == 0


def test_a_gpu_without_a_counter_is_asked_for_it_once_only() -> None:
    # the meter's probe finds it missing; the sampler is told, so it does not probe again
    meter, fake, _ = make_meter(gpus=[FakeGpu(has_counter=False)])
    assert meter.has_counter == [False] and meter.sampler is not None
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1


# -- what stop() derives from the samples ------------------------------------------------------------


def test_integrated_power_uses_each_gpu_s_own_read_times() -> None:
    # every NVML call takes 10 ms, so a GPU's power is read well after its row's time; on a
    # 1000 W/s ramp, dating the readings at the row's time would put the integral ~10 J high
    clock = ManualClock()
    trace = RampPower(100.0, 10_100.0, 10.0)
    fake = FakeNvml([FakeGpu(trace=trace)], clock=clock, read_latency_s=0.01, advance=clock.advance)
    nvml = Nvml(fake)
    nvml.init()
    mapping = resolve_devices([0], nvml, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    meter = NvmlMeter(nvml, mapping, clock=clock, background_sampling=False, check_processes=False)
    assert meter.sampler is not None
    meter.start()
    for _ in range(8):
        clock.advance(0.1)
        meter.sampler.sample()
    m = meter.stop()
    true_j = trace.energy_j(meter._t1 - fake.t_start) - trace.energy_j(meter._t0 - fake.t_start)
    [d] = m.devices
    assert d.integrated_energy_j is not None
    assert abs(d.integrated_energy_j - true_j) < 0.5


def test_the_power_cap_check_is_given_the_window_s_mean_power() -> None:
    gpus = [FakeGpu(trace=ConstantPower(350.0), clock_event_reasons=0x4, power_limit_mw=700_000)]
    meter, _, clock = make_meter(gpus=gpus)
    meter.start()
    clock.advance(0.25)
    assert meter.sampler is not None
    meter.sampler.sample()  # the reasons counted are those of the rows inside the window
    clock.advance(0.25)
    m = meter.stop()
    [cap] = [w for w in m.warnings if w.code == "power_capped"]
    assert cap.details["mean_power_w"] == pytest.approx(350.0)
    assert cap.details["mean_power_share_of_limit"] == pytest.approx(0.5)


def test_a_gpu_without_a_readable_power_limit_leaves_the_others_limits() -> None:
    first = FakeGpu(
        fails_from_s=0.0, fails_with=3, fails_calls=("nvmlDeviceGetEnforcedPowerLimit",)
    )
    second = FakeGpu(power_limit_mw=450_000)
    fake = FakeNvml([first, second])
    nvml = Nvml(fake)
    nvml.init()
    assert power_limits_w(nvml, [0, 1]) == {1: 450.0}
