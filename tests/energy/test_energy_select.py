"""Meter selection, the null meter's reasons, the single-owner rule, CUDA->NVML mapping."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import pytest

from llenergymeasure.energy import (
    DeviceMappingError,
    EnergyMeterError,
    meter_availability,
    resolve_devices,
    select_meter,
)
from llenergymeasure.energy.devices import parse_cuda_visible_devices
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.zeus_meter import step_integral
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml
from tests.fakes.zeus import fake_zeus

ZEUS_INSTALLED = importlib.util.find_spec("zeus") is not None


def test_none_and_cpu_runs_get_the_null_meter_with_reasons() -> None:
    m = select_meter("none", [0], {})
    assert m.name == "null" and not m.available and "disabled" in (m.unavailable_reason or "")
    m = select_meter("nvml", [], {})
    assert m.unavailable_reason == "the experiment uses no GPU"
    with m:
        time.sleep(0.01)
    assert m.last is not None and not m.last.available and m.last.total_energy_j is None
    assert m.last.unavailable_reason == "the experiment uses no GPU" and m.last.duration_s > 0


def test_auto_without_nvml_is_null_with_the_reason() -> None:
    fake = FakeNvml(init_error=12)
    m = select_meter("auto", [0], {}, nvml_module=fake, zeus_module=fake_zeus(fake))
    assert m.name == "null"
    assert "NVML" in (m.unavailable_reason or "") and "Library Not Found" in (
        m.unavailable_reason or ""
    )


def test_explicit_nvml_that_cannot_work_raises() -> None:
    with pytest.raises(EnergyMeterError, match="energy_backend 'nvml' cannot measure here"):
        select_meter("nvml", [0], {}, nvml_module=FakeNvml(init_error=9))
    with pytest.raises(DeviceMappingError, match="CUDA device 3 does not exist"):
        select_meter("nvml", [3], {}, nvml_module=FakeNvml([FakeGpu()]))


def test_unknown_backend_is_rejected_with_the_choices() -> None:
    with pytest.raises(EnergyMeterError, match="auto, nvml, zeus, none"):
        select_meter("rapl", [0], {})


@pytest.mark.skipif(ZEUS_INSTALLED, reason="zeus is installed here")
def test_explicit_zeus_not_installed_raises() -> None:
    with pytest.raises(EnergyMeterError, match="Zeus is not installed"):
        select_meter("zeus", [0], {}, nvml_module=FakeNvml([FakeGpu()]))


def test_auto_prefers_zeus_and_zeus_alone_reads_the_counter() -> None:
    fake = FakeNvml([FakeGpu(trace=ConstantPower(250.0))])
    m = select_meter("auto", [0], {}, nvml_module=fake, zeus_module=fake_zeus(fake))
    assert m.name == "zeus"
    fake.calls.clear()
    m.start()
    time.sleep(0.4)
    r = m.stop()
    # Zeus reads the energy counter (once at each edge of its window); our sampler polls the
    # rest beside it (reasons, utilisation, temperature: the checks), never the slow counter
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 2
    assert fake.calls["nvmlDeviceGetCurrentClocksEventReasons"] >= 2
    d = r.devices[0]
    assert d.method == "zeus" and r.timeseries_source == "zeus_power_monitor+nvml_sampler"
    assert d.mean_utilization_pct == 100.0
    assert d.energy_j == pytest.approx(250.0 * r.duration_s, rel=0.05)
    assert d.integrated_energy_j == pytest.approx(250.0 * r.duration_s, rel=0.01)
    pm = m.power_monitor  # type: ignore[attr-defined]
    m.close()
    assert pm.stopped and fake.init_depth == 0


def test_auto_falls_back_to_nvml_when_zeus_cannot_start() -> None:
    fake = FakeNvml([FakeGpu()])
    m = select_meter("auto", [0], {}, nvml_module=fake, zeus_module=fake_zeus(fake, fail=True))
    assert m.name == "nvml"
    m.close()
    with pytest.raises(EnergyMeterError, match="ZeusMonitor could not start"):
        select_meter("zeus", [0], {}, nvml_module=fake, zeus_module=fake_zeus(fake, fail=True))
    assert fake.init_depth == 0


def test_zeus_cannot_parse_uuid_visible_devices_so_auto_uses_nvml() -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu()])
    env = {"CUDA_VISIBLE_DEVICES": fake.gpus[1].uuid}
    m = select_meter("auto", [0], env, nvml_module=fake, zeus_module=fake_zeus(fake))
    assert m.name == "nvml" and m.nvml_indices == [1]
    m.close()


def test_meter_availability_lists_every_meter() -> None:
    rows = meter_availability(
        {}, nvml_module=FakeNvml([FakeGpu(name="H200 (fake)")]), rapl_root="/nonexistent"
    )
    names = [r[0] for r in rows]
    assert names == ["nvml", "zeus", "rapl", "codecarbon"]
    nvml = rows[0]
    assert nvml == (
        "nvml",
        True,
        "1 GPU(s), driver 580.00.00: 0: H200 (fake) (energy counter, power instant)",
    )
    rapl_name, rapl_ok, rapl_why = rows[2]
    assert (rapl_name, rapl_ok) == ("rapl", False)
    assert rapl_why.startswith("/nonexistent does not exist: no RAPL here")
    bad = meter_availability({}, nvml_module=FakeNvml(init_error=12), zeus_installed=True)
    assert not bad[0][1] and not bad[1][1] and "needs NVML" in bad[1][2]


# -- CUDA_VISIBLE_DEVICES -> NVML ------------------------------------------------------------


def nvml_with(n: int, **gpu_kw: Any) -> Nvml:
    nvml = Nvml(FakeNvml([FakeGpu(**gpu_kw) for _ in range(n)]))
    nvml.init()
    return nvml


def test_parse_stops_at_the_first_invalid_entry() -> None:
    assert parse_cuda_visible_devices(None) is None
    assert parse_cuda_visible_devices("") == []
    assert parse_cuda_visible_devices("2, 0,-1,1") == ["2", "0"]
    assert parse_cuda_visible_devices("GPU-abc,MIG-xyz,foo,1") == ["GPU-abc", "MIG-xyz"]


def test_integer_visible_devices_renumber() -> None:
    nvml = nvml_with(4)
    mapping = resolve_devices([0, 1], nvml, {"CUDA_VISIBLE_DEVICES": "3,1"})
    assert [(t.cuda_index, t.nvml_index) for t in mapping.targets] == [(0, 3), (1, 1)]
    assert resolve_devices([2], nvml, {}).nvml_indices == [2]
    with pytest.raises(DeviceMappingError, match="exposes 2 device"):
        resolve_devices([2], nvml, {"CUDA_VISIBLE_DEVICES": "3,1"})
    with pytest.raises(DeviceMappingError, match="names GPU 7"):
        resolve_devices([0], nvml, {"CUDA_VISIBLE_DEVICES": "7"})
    with pytest.raises(DeviceMappingError, match="exposes 0 device"):
        resolve_devices([0], nvml, {"CUDA_VISIBLE_DEVICES": ""})


def test_uuid_visible_devices_including_prefixes() -> None:
    fake = FakeNvml(
        [
            FakeGpu(uuid="GPU-aaaa-1111"),
            FakeGpu(uuid="GPU-bbbb-2222"),
            FakeGpu(uuid="GPU-bbbc-3333"),
        ]
    )
    nvml = Nvml(fake)
    nvml.init()
    m = resolve_devices([0, 1], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-bbbb-2222,GPU-aaaa"})
    assert m.nvml_indices == [1, 0] and m.targets[0].uuid == "GPU-bbbb-2222"
    with pytest.raises(DeviceMappingError, match="matches 2 GPU UUID"):
        resolve_devices([0], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-bbb"})
    with pytest.raises(DeviceMappingError, match="matches no GPU UUID"):
        resolve_devices([0], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-ffff"})


def test_mig_slices_map_to_the_parent_gpu_with_a_warning() -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(mig_uuids=["MIG-s1", "MIG-s2"])])
    nvml = Nvml(fake)
    nvml.init()
    m = resolve_devices([0, 1], nvml, {"CUDA_VISIBLE_DEVICES": "MIG-s1,MIG-s2"})
    assert m.nvml_indices == [1]  # both slices on GPU 1: measured once
    assert {w.code for w in m.warnings} == {"mig_whole_gpu", "shared_gpu"}
    with pytest.raises(DeviceMappingError, match="MIG device"):
        resolve_devices([0], nvml, {"CUDA_VISIBLE_DEVICES": "MIG-unknown"})


def test_mixed_models_without_pci_order_warn() -> None:
    fake = FakeNvml([FakeGpu(name="A"), FakeGpu(name="B")])
    nvml = Nvml(fake)
    nvml.init()
    assert {w.code for w in resolve_devices([0], nvml, {}).warnings} == {"device_order"}
    assert not resolve_devices([0], nvml, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}).warnings


def test_step_integral_holds_values_between_samples() -> None:
    import numpy as np

    t = np.array([0.0, 2.0, 3.0])
    p = np.array([100.0, 200.0, 50.0])
    assert step_integral(t, p, 1.0, 4.0) == pytest.approx(100 + 200 + 50)
    assert step_integral(t, p, -1.0, 1.0) == pytest.approx(200)  # first value held back
