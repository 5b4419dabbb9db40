"""Idle baseline (cache, TTL, keys), adjusted energy, CO2 arithmetic, RAPL over a sysfs tree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from llenergymeasure.energy import (
    BaselineRecord,
    DeviceEnergy,
    EnergyMeasurement,
    NullMeter,
    NvmlMeter,
    RaplMeter,
    apply_baseline,
    estimate_co2,
    measure_idle_baseline,
    resolve_devices,
)
from llenergymeasure.energy import rapl as rapl_module
from llenergymeasure.energy.nvml import Nvml
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml


def meter_for(gpus: list[FakeGpu]) -> NvmlMeter:
    nvml = Nvml(FakeNvml(gpus))
    nvml.init()
    return NvmlMeter(
        nvml,
        resolve_devices(list(range(len(gpus))), nvml, {}),
        sensor_period_s=0.05,
        sample_period_s=0.02,
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_baseline_measures_mean_idle_power_and_caches_it(tmp_path: Path) -> None:
    gpu = FakeGpu(trace=ConstantPower(80.0), uuid="GPU-idle-1", gpu_util_pct=0)
    meter = meter_for([gpu])
    clock = Clock()
    first = measure_idle_baseline(meter, 0.3, tmp_path, ttl_s=60, clock=clock)
    assert first.available and not first.from_cache
    assert first.idle_power_w[0] == pytest.approx(80.0, rel=0.03)
    assert first.cache_key == (
        "GPU-idle-1|driver 580.00.00|700000mW|persistence ?|app_sm ?|app_mem ?|cold"
    )
    assert first.n_samples > 5
    assert (tmp_path / "idle_baseline.json").exists()

    gpu.trace = ConstantPower(500.0)  # a cache hit does not measure
    clock.now += 30
    second = measure_idle_baseline(meter, 0.3, tmp_path, ttl_s=60, clock=clock)
    assert second.from_cache and second.idle_power_w == first.idle_power_w

    clock.now += 31  # past the TTL: measured again
    third = measure_idle_baseline(meter, 0.3, tmp_path, ttl_s=60, clock=clock)
    assert not third.from_cache and third.idle_power_w[0] == pytest.approx(500.0, rel=0.03)
    meter.close()


def test_cache_key_includes_the_power_limit(tmp_path: Path) -> None:
    gpu = FakeGpu(trace=ConstantPower(80.0), uuid="GPU-x", gpu_util_pct=0)
    meter = meter_for([gpu])
    measure_idle_baseline(meter, 0.2, tmp_path, ttl_s=3600)
    gpu.power_limit_mw = 400_000
    rec = measure_idle_baseline(meter, 0.2, tmp_path, ttl_s=3600)
    assert not rec.from_cache and rec.cache_key == (
        "GPU-x|driver 580.00.00|400000mW|persistence ?|app_sm ?|app_mem ?|cold"
    )
    meter.close()


def test_ttl_zero_or_no_dir_disables_the_cache(tmp_path: Path) -> None:
    meter = meter_for([FakeGpu()])
    measure_idle_baseline(meter, 0.2, tmp_path, ttl_s=0)
    assert not (tmp_path / "idle_baseline.json").exists()
    assert not measure_idle_baseline(meter, 0.2, None, ttl_s=3600).from_cache
    meter.close()


def test_an_idle_window_with_another_process_is_not_cached(tmp_path: Path) -> None:
    meter = meter_for([FakeGpu(pids=[1])])
    rec = measure_idle_baseline(meter, 0.2, tmp_path, ttl_s=3600)
    assert [w.code for w in rec.warnings] == ["foreign_process"]
    assert not (tmp_path / "idle_baseline.json").exists()
    meter.close()


def test_baseline_on_the_null_meter_is_unavailable_with_reason(tmp_path: Path) -> None:
    rec = measure_idle_baseline(NullMeter("the experiment uses no GPU"), 1.0, tmp_path, 60)
    assert not rec.available and rec.unavailable_reason == "the experiment uses no GPU"
    with pytest.raises(ValueError, match="positive number of seconds"):
        measure_idle_baseline(meter_for([FakeGpu()]), 0.0, None, 0)


def measurement(*energies: float, duration: float = 10.0) -> EnergyMeasurement:
    return EnergyMeasurement(
        meter="nvml",
        duration_s=duration,
        total_energy_j=sum(energies),
        devices=[DeviceEnergy(nvml_index=i, energy_j=e) for i, e in enumerate(energies)],
    )


def test_apply_baseline_arithmetic_without_clamp() -> None:
    m = measurement(1000.0, 500.0)
    out = apply_baseline(m, BaselineRecord(idle_power_w={0: 80.0, 1: 60.0}))
    # 1000 - 80 * 10 = 200; 500 - 60 * 10 = -100 (not clamped: a negative value is information)
    assert [d.energy_above_idle_j for d in out.devices] == [200.0, -100.0]
    assert [d.idle_power_w for d in out.devices] == [80.0, 60.0]
    assert out.total_energy_above_idle_j == 100.0 and out.total_energy_j == 1500.0
    assert m.devices[0].energy_adjusted_j is None  # the input is not changed


def test_apply_baseline_without_a_value_leaves_adjusted_empty() -> None:
    out = apply_baseline(measurement(1000.0, 500.0), BaselineRecord(idle_power_w={0: 80.0}))
    assert out.devices[0].energy_adjusted_j == 200.0 and out.devices[1].energy_adjusted_j is None
    assert out.total_energy_adjusted_j is None
    assert apply_baseline(measurement(1.0), None).total_energy_adjusted_j is None
    unavailable = BaselineRecord(available=False, unavailable_reason="x")
    assert apply_baseline(measurement(1.0), unavailable).devices[0].energy_adjusted_j is None


def test_co2_arithmetic() -> None:
    est = estimate_co2(3.6e6, 400.0, 1.5, "user_config")  # 1 kWh x 1.5 x 400 g/kWh
    assert est.estimate is True and est.energy_kwh == pytest.approx(1.0)
    assert est.co2_g == pytest.approx(600.0) and est.intensity_source == "user_config"
    assert estimate_co2(7.2e6, 100.0, None, "env:LLEM_CARBON_INTENSITY").co2_g == pytest.approx(
        200.0
    )


def test_co2_reasons_and_bad_input() -> None:
    none = estimate_co2(None, 400.0, 1.0, "user_config")
    assert none.co2_g is None and "no energy" in (none.unavailable_reason or "")
    no_ci = estimate_co2(3.6e6, None, 1.0, None, use_codecarbon=False)
    assert no_ci.co2_g is None and "carbon_intensity_gco2_kwh" in (no_ci.unavailable_reason or "")
    with pytest.raises(ValueError, match="datacenter_pue"):
        estimate_co2(1.0, 400.0, 0.5, None)
    with pytest.raises(ValueError, match="carbon_intensity_gco2_kwh"):
        estimate_co2(1.0, -3.0, 1.0, None)


@pytest.mark.skipif(
    importlib.util.find_spec("codecarbon") is None, reason="codecarbon not installed"
)
def test_co2_from_codecarbon_offline_data() -> None:
    world = estimate_co2(3.6e6, None, 1.0, None)
    assert world.co2_g is not None and "world_average" in (world.intensity_source or "")
    fra = estimate_co2(3.6e6, None, 1.0, None, country_iso_code="FRA")
    assert fra.intensity_source and fra.intensity_source.startswith("codecarbon:FRA")
    assert fra.carbon_intensity_gco2_kwh is not None and fra.carbon_intensity_gco2_kwh < 200


# -- RAPL over a powercap tree ---------------------------------------------------------------


def zone(root: Path, name: str, label: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "name").write_text(label + "\n")
    (d / "energy_uj").write_text(f"{energy_uj}\n")
    (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def test_rapl_package_and_dram_with_wraparound(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 900_000)
    core = zone(tmp_path, "intel-rapl:0:0", "core", 100)
    dram = zone(tmp_path, "intel-rapl:0:1", "dram", 1_000)
    meter = RaplMeter(tmp_path)
    assert meter.available
    meter.start()
    (pkg / "energy_uj").write_text("200000\n")  # wrapped: 900000 -> 1000000 -> 200000
    (dram / "energy_uj").write_text("251000\n")
    (core / "energy_uj").write_text("999\n")
    e = meter.stop()
    assert e.available and e.package_j == pytest.approx(0.3) and e.dram_j == pytest.approx(0.25)
    assert e.domains == {"package-0": pytest.approx(0.3), "package-0/dram": pytest.approx(0.25)}


def test_rapl_absent_and_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = RaplMeter(tmp_path / "nope")
    assert not absent.available and "does not exist" in (absent.unavailable_reason or "")
    absent.start()
    assert absent.stop().unavailable_reason == absent.unavailable_reason
    empty = RaplMeter(tmp_path)
    assert "no intel-rapl zones" in (empty.unavailable_reason or "")

    zone(tmp_path, "intel-rapl:0", "package-0", 5)

    def denied(path: Path) -> int:  # root reads anything, so permission is simulated here
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return int(path.read_text())

    monkeypatch.setattr(rapl_module, "_read_int", denied)
    locked = RaplMeter(tmp_path)
    assert not locked.available and "permission denied" in (locked.unavailable_reason or "")
    assert rapl_module.rapl_status(tmp_path)[0] is False
