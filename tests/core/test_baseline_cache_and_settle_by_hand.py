"""The idle-baseline cache as a real file (what is written, what a later run reads back, which
entries it refuses, TTL boundaries, the oldest entry's window) and the resident-idle settle loop
(relative, per GPU, its time budget and the tolerance boundary), with hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llenergymeasure.energy.baseline import CACHE_FILE, measure_idle_baseline, settle
from llenergymeasure.energy.meters import MeterBase
from llenergymeasure.energy.types import DeviceEnergy, EnergyMeasurement

KEY0 = "GPU-a|driver 1|700000mW"
KEY1 = "GPU-b|driver 1|700000mW"


class Windows(MeterBase):
    """Successive windows of given durations (s) and powers (W) per GPU; sleeping is recorded."""

    name = "scripted"
    available = True

    def __init__(self, windows: list[tuple[float, dict[int, float]]], gpus: int = 2) -> None:
        super().__init__()
        self.nvml_indices = list(range(gpus))
        self.windows = list(windows)
        self.calls = 0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def start(self) -> None:
        return None

    def stop(self) -> EnergyMeasurement:
        duration, powers = self.windows[self.calls]
        self.calls += 1
        return EnergyMeasurement(
            meter=self.name,
            duration_s=duration,
            total_energy_j=sum(p * duration for p in powers.values()),
            devices=[
                DeviceEnergy(nvml_index=i, energy_j=p * duration, n_samples=10)
                for i, p in powers.items()
            ],
        )

    def cache_identity(self) -> dict[int, str] | None:
        return {i: (KEY0, KEY1)[i] for i in self.nvml_indices}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def steady(n: int, p0: float = 80.0, p1: float = 60.0) -> list[tuple[float, dict[int, float]]]:
    return [(1.0, {0: p0, 1: p1})] * n


def entry(epoch: float, **over: object) -> dict[str, object]:
    e: dict[str, object] = {
        "idle_power_w": 70.0,
        "idle_power_se_w": 0.5,
        "drift": 0.01,
        "state": {"pstate": 8},
        "measured_at_epoch": epoch,
        "measured_at": "2026-12-01T10:00:00+00:00",
        "duration_s": 4.0,
        "n_windows": 4,
        "n_samples": 40,
    }
    e.update(over)
    return e


def write_cache(cache_dir: Path, entries: dict[str, object], version: object = 2) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / CACHE_FILE
    path.write_text(json.dumps({"version": version, "entries": entries}))
    return path


# -- the cache file --------------------------------------------------------------------------------


def test_measured_baseline_is_written_to_a_new_nested_cache_dir_and_read_back(
    tmp_path: Path,
) -> None:
    cache_dir = tmp_path / "not" / "yet" / "there"
    clock = Clock(5_000.0)
    # GPU 0: 80, 82, 78, 84 W -> mean 81; GPU 1: 60, 60, 60, 60 W -> mean 60, SE 0, drift 0
    meter = Windows([(1.0, {0: p, 1: 60.0}) for p in (80.0, 82.0, 78.0, 84.0)])
    first = measure_idle_baseline(meter, 4.0, cache_dir, 3600, clock=clock, sleep=meter.sleep)
    assert first.accepted and not first.from_cache and first.n_windows == 4
    # the file is complete and only the file is left in the directory (no temporary file)
    assert [p.name for p in cache_dir.iterdir()] == [CACHE_FILE]
    data = json.loads((cache_dir / CACHE_FILE).read_text())
    assert data["version"] == 2
    assert sorted(data["entries"]) == [KEY0 + "|cold", KEY1 + "|cold"]
    e0 = data["entries"][KEY0 + "|cold"]
    assert e0["idle_power_w"] == pytest.approx(81.0)
    assert e0["idle_power_se_w"] == pytest.approx((20 / 3) ** 0.5 / 2)  # SD sqrt(20/3) / sqrt(4)
    # fitted line: slope 0.8 W/s, 79.8 W at the first window; SE from the residuals 0.2, 1.4,
    # -3.4, 1.8 (16.8 / 2 / 5 -> SE(slope) 1.2961): +3.0 % over the window but not significant
    assert e0["drift"] == pytest.approx(2.4 / 79.8)
    assert e0["drift_se"] == pytest.approx(math.sqrt(8.4 / 5) * 3 / 79.8)
    assert e0["measured_at_epoch"] == 5_000.0 and e0["measured_at"] == first.measured_at
    assert e0["duration_s"] == 4.0 and e0["n_windows"] == 4 and e0["n_samples"] == 40
    assert e0["state"] == {}  # a scripted meter has no NVML state

    # a later run reads the same figures back without measuring
    clock.now += 100
    again = Windows([])
    hit = measure_idle_baseline(again, 4.0, cache_dir, 3600, clock=clock, sleep=again.sleep)
    assert hit.from_cache and again.calls == 0
    assert hit.kind == "cold" and hit.cache_key == f"{KEY0}|cold,{KEY1}|cold"
    assert hit.idle_power_w == {0: pytest.approx(81.0), 1: pytest.approx(60.0)}
    assert hit.idle_power_se_w == {0: pytest.approx(first.idle_power_se_w[0]), 1: 0.0}
    assert hit.drift == {0: pytest.approx(2.4 / 79.8), 1: 0.0}
    assert hit.drift_se == {0: pytest.approx(first.drift_se[0]), 1: 0.0}
    assert hit.state == {0: {}, 1: {}}
    assert hit.n_windows == 4 and hit.duration_s == 4.0 and hit.measured_at == first.measured_at
    assert hit.n_samples == 80  # 40 per GPU


def test_resident_hit_keeps_its_kind_and_entry_fields(tmp_path: Path) -> None:
    write_cache(
        tmp_path,
        {
            f"{KEY0}|resident|cfg": entry(1_000.0, idle_power_w=120.0, drift=-0.02),
            f"{KEY1}|resident|cfg": entry(1_000.0, idle_power_w=110.0, state={"pstate": 2}),
        },
    )
    meter = Windows([])
    hit = measure_idle_baseline(
        meter, 4.0, tmp_path, 60, kind="resident", key_extra="cfg", clock=Clock(1_030.0)
    )
    assert hit.from_cache and hit.kind == "resident" and hit.settle_s is None
    assert hit.idle_power_w == {0: 120.0, 1: 110.0}
    assert hit.idle_power_se_w == {0: 0.5, 1: 0.5}
    assert hit.drift == {0: -0.02, 1: 0.01}
    assert hit.state == {0: {"pstate": 8}, 1: {"pstate": 2}}
    assert hit.measured_at == "2026-12-01T10:00:00+00:00"
    assert hit.cache_key == f"{KEY0}|resident|cfg,{KEY1}|resident|cfg"


def test_a_hit_over_several_gpus_reports_the_oldest_entrys_window(tmp_path: Path) -> None:
    # GPU 0's entry is newer (measured at 1900) than GPU 1's (1500): the record's window, time and
    # count of sub-windows are the older one's; samples add up over both
    write_cache(
        tmp_path,
        {
            f"{KEY0}|cold": entry(
                1_900.0, n_windows=10, duration_s=10.0, measured_at="new", n_samples=100
            ),
            f"{KEY1}|cold": entry(
                1_500.0, n_windows=3, duration_s=3.0, measured_at="old", n_samples=30
            ),
        },
    )
    hit = measure_idle_baseline(Windows([]), 4.0, tmp_path, 3600, clock=Clock(2_000.0))
    assert hit.from_cache
    assert (hit.n_windows, hit.duration_s, hit.measured_at) == (3, 3.0, "old")
    assert hit.n_samples == 130


def test_an_entry_with_only_the_power_reads_with_neutral_defaults(tmp_path: Path) -> None:
    # a hand-edited or older entry: SE and drift 0, no state, no windows, no samples
    write_cache(
        tmp_path,
        {
            f"{KEY0}|cold": {"idle_power_w": 75, "measured_at_epoch": 100.0, "state": None},
            f"{KEY1}|cold": {"idle_power_w": 65.5, "measured_at_epoch": 100.0},
        },
    )
    hit = measure_idle_baseline(Windows([]), 4.0, tmp_path, 3600, clock=Clock(200.0))
    assert hit.from_cache
    assert hit.idle_power_w == {0: 75.0, 1: 65.5}
    assert hit.idle_power_se_w == {0: 0.0, 1: 0.0} and hit.drift == {0: 0.0, 1: 0.0}
    assert hit.state == {0: {}, 1: {}}
    assert hit.n_windows == 0 and hit.duration_s == 0.0 and hit.n_samples == 0


@pytest.mark.parametrize(
    ("age_s", "hit"),
    [(0.0, True), (60.0, True), (60.5, False), (-1.0, False)],
    ids=["just-written", "exactly-the-ttl", "past-the-ttl", "from-the-future"],
)
def test_ttl_boundaries(tmp_path: Path, age_s: float, hit: bool) -> None:
    write_cache(tmp_path, {f"{KEY0}|cold": entry(1_000.0), f"{KEY1}|cold": entry(1_000.0)})
    meter = Windows(steady(4))
    rec = measure_idle_baseline(
        meter, 4.0, tmp_path, 60, clock=Clock(1_000.0 + age_s), sleep=meter.sleep
    )
    assert rec.from_cache is hit
    assert meter.calls == (0 if hit else 4)


def test_one_stale_or_broken_entry_means_measuring_every_gpu(tmp_path: Path) -> None:
    for broken in (
        {k: v for k, v in entry(1_000.0).items() if k != "measured_at_epoch"},
        entry("yesterday"),  # type: ignore[arg-type]
        entry(None),  # type: ignore[arg-type]
        "not an entry",
    ):
        write_cache(tmp_path, {f"{KEY0}|cold": entry(1_000.0), f"{KEY1}|cold": broken})
        meter = Windows(steady(4))
        rec = measure_idle_baseline(
            meter, 4.0, tmp_path, 60, clock=Clock(1_010.0), sleep=meter.sleep
        )
        assert not rec.from_cache and meter.calls == 4
        assert rec.idle_power_w == {0: pytest.approx(80.0), 1: pytest.approx(60.0)}


BOTH_FRESH = {f"{KEY0}|cold": entry(1_000.0), f"{KEY1}|cold": entry(1_000.0)}


@pytest.mark.parametrize(
    "content",
    [
        json.dumps({"version": 1, "entries": BOTH_FRESH}),  # fresh entries, but the old format
        json.dumps([{"version": 2, "entries": BOTH_FRESH}]),
        json.dumps({"version": 2, "entries": list(BOTH_FRESH.values())}),
        json.dumps({"version": 2}),
        "{ not json",
    ],
    ids=["version-1", "a-list", "entries-a-list", "no-entries", "corrupt"],
)
def test_an_unreadable_cache_is_ignored_and_rewritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / CACHE_FILE
    path.write_text(content)
    meter = Windows(steady(2))
    rec = measure_idle_baseline(meter, 2.0, tmp_path, 60, clock=Clock(1_010.0), sleep=meter.sleep)
    assert not rec.from_cache and meter.calls == 2
    data = json.loads(path.read_text())  # replaced by a version-2 file with the new entries
    assert data["version"] == 2 and sorted(data["entries"]) == [f"{KEY0}|cold", f"{KEY1}|cold"]
    assert data["entries"][f"{KEY0}|cold"]["measured_at_epoch"] == 1_010.0


def test_new_entries_join_the_ones_already_cached(tmp_path: Path) -> None:
    other = {"GPU-z|driver 1|700000mW|cold": entry(900.0)}
    write_cache(tmp_path, other)
    meter = Windows(steady(2))
    measure_idle_baseline(meter, 2.0, tmp_path, 60, clock=Clock(1_000.0), sleep=meter.sleep)
    data = json.loads((tmp_path / CACHE_FILE).read_text())
    assert sorted(data["entries"]) == sorted([*other, f"{KEY0}|cold", f"{KEY1}|cold"])
    assert data["entries"]["GPU-z|driver 1|700000mW|cold"] == entry(900.0)


def test_a_cache_dir_that_cannot_be_created_costs_a_measurement_not_the_run(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    meter = Windows(steady(2))
    rec = measure_idle_baseline(
        meter, 2.0, blocker / "cache", 60, clock=Clock(1.0), sleep=meter.sleep
    )
    assert rec.available and rec.accepted and not rec.from_cache
    assert rec.idle_power_w == {0: pytest.approx(80.0), 1: pytest.approx(60.0)}


# -- settle ----------------------------------------------------------------------------------------


def test_settle_counts_measured_window_time_and_compares_power_not_energy() -> None:
    # windows of 0.5 s then 1.0 s at the same powers: energies differ (40 J vs 80 J on GPU 0) but
    # the powers agree, so the power has settled after the second window: 0.5 + 1.0 = 1.5 s
    meter = Windows([(0.5, {0: 80.0, 1: 60.0}), (1.0, {0: 80.0, 1: 60.0})])
    spent = settle(meter, 0.02, 30.0, step_s=0.25, sleep=meter.sleep)
    assert spent == pytest.approx(1.5) and meter.calls == 2
    assert meter.sleeps == [0.25, 0.25]  # each window sleeps step_s


def test_settle_needs_every_gpu_within_the_tolerance() -> None:
    # GPU 0 is steady at 80 W; GPU 1 goes 60 -> 66 (+10 %) -> 66.5 (+0.76 %): settled at window 3
    meter = Windows(
        [(0.8, {0: 80.0, 1: 60.0}), (0.8, {0: 80.0, 1: 66.0}), (0.8, {0: 80.0, 1: 66.5})]
    )
    assert settle(meter, 0.02, 30.0, sleep=meter.sleep) == pytest.approx(2.4)
    assert meter.calls == 3


def test_settle_is_relative_so_the_scale_of_the_power_does_not_matter() -> None:
    # the same series at 1/100 of the power (0.6 W, 0.66 W, ...) settles after the same windows
    series = [{0: 0.8, 1: 0.6}, {0: 0.8, 1: 0.66}, {0: 0.8, 1: 0.665}]
    meter = Windows([(1.0, s) for s in series])
    assert settle(meter, 0.02, 30.0, sleep=meter.sleep) == pytest.approx(3.0)
    assert meter.calls == 3


def test_a_change_of_exactly_the_tolerance_is_not_settled() -> None:
    # 128 -> 160 W is +25 % exactly (both exact in binary); a 25 % tolerance needs less than that
    meter = Windows([(1.0, {0: 128.0}), (1.0, {0: 160.0}), (1.0, {0: 160.0})], gpus=1)
    assert settle(meter, 0.25, 30.0, sleep=meter.sleep) == 3.0


def test_a_gpu_reading_zero_or_new_in_this_window_is_not_settled() -> None:
    # GPU 1 reads 0 W in the first window: no ratio, so not settled until two non-zero readings
    zero = Windows([(1.0, {0: 80.0, 1: 0.0}), (1.0, {0: 80.0, 1: 60.0}), (1.0, {0: 80.0, 1: 60.0})])
    assert settle(zero, 0.02, 30.0, sleep=zero.sleep) == 3.0
    # GPU 1 is missing from the first window: it has no previous reading to compare with
    new = Windows([(1.0, {0: 80.0}), (1.0, {0: 80.0, 1: 60.0}), (1.0, {0: 80.0, 1: 60.0})])
    assert settle(new, 0.02, 30.0, sleep=new.sleep) == 3.0


def test_settle_gives_up_at_its_time_budget() -> None:
    # never settles (+10 % every window); a 3 s budget of 1 s windows is exactly 3 windows
    meter = Windows([(1.0, {0: 100.0 * 1.1**k}) for k in range(10)], gpus=1)
    assert settle(meter, 0.02, 3.0, sleep=meter.sleep) == 3.0 and meter.calls == 3


def test_a_window_that_measured_nothing_ends_settling() -> None:
    # 0 s measured: the step's time is counted and settling stops (nothing to compare)
    empty = Windows([(0.0, {0: 80.0})], gpus=1)
    assert settle(empty, 0.02, 30.0, step_s=0.7, sleep=empty.sleep) == 0.7
    no_devices = Windows([(1.0, {})], gpus=1)
    assert settle(no_devices, 0.02, 30.0, sleep=no_devices.sleep) == 1.0
