"""Meter selection and ``llem doctor``'s meter table, word for word.

The reasons a meter is unusable end up in results (the null meter's ``unavailable_reason``) and in
front of the user (``meter_availability``), so they are checked whole. Zeus is not installed on
the development machine: a Zeus *installation* is a real package directory put on ``sys.path``
(``zeus/monitor.py`` plus ``zeus-<version>.dist-info``), found by the same ``importlib`` lookups
the product makes; only the missing-CodeCarbon case patches ``importlib.metadata.version``
(CodeCarbon is a dev dependency here and cannot be absent).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.energy import DeviceMappingError, EnergyMeterError, select_meter
from llenergymeasure.energy.select import meter_availability
from tests.fakes.nvml import FakeGpu, FakeNvml, FakeNVMLError
from tests.fakes.zeus import fake_zeus

NO_NVML = (
    "no NVIDIA GPU / NVML not usable: NVML call nvmlInit failed: NVML Shared Library Not Found "
    "(NVML code 12); install the NVIDIA driver, or in a container run with the NVIDIA container "
    "toolkit (--gpus / --runtime nvidia) so libnvidia-ml.so is mounted"
)
ZEUS_MISSING = "not installed (pip install 'llenergymeasure[zeus]')"
ZEUS_INSTALLED = importlib.util.find_spec("zeus") is not None


def failing(fake: FakeNvml, call: str, code: int) -> None:
    def fail(*args: Any) -> Any:
        raise FakeNVMLError(code)

    setattr(fake, call, fail)


@pytest.fixture
def zeus_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for a ``zeus`` package; the test writes its files."""
    for name in [m for m in sys.modules if m == "zeus" or m.startswith("zeus.")]:
        monkeypatch.delitem(sys.modules, name)  # a real Zeus comes back after the test
    (tmp_path / "zeus").mkdir()
    (tmp_path / "zeus" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "zeus" or m.startswith("zeus.")]:
        del sys.modules[name]


def dist_info(root: Path, version: str) -> None:
    d = root / f"zeus-{version}.dist-info"
    d.mkdir()
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: zeus\nVersion: {version}\n")


# -- select_meter -----------------------------------------------------------------------------


def test_periods_reach_the_nvml_meter_on_every_path() -> None:
    fake = FakeNvml([FakeGpu()])
    kw: dict[str, Any] = {"sensor_period_s": 0.05, "sample_period_s": 0.2, "nvml_module": fake}
    m = select_meter("nvml", [0], {}, **kw)
    assert (m.name, m.sensor_period_s, m.sample_period_s) == ("nvml", 0.05, 0.2)  # type: ignore[attr-defined]
    m.close()
    m = select_meter("auto", [0], {}, zeus_module=fake_zeus(fake, fail=True), **kw)
    assert (m.name, m.sensor_period_s, m.sample_period_s) == ("nvml", 0.05, 0.2)  # type: ignore[attr-defined]
    m.close()
    assert fake.init_depth == 0


def test_periods_and_timeseries_choice_reach_the_zeus_meter() -> None:
    fake = FakeNvml([FakeGpu()])
    kw: dict[str, Any] = {"sensor_period_s": 0.05, "sample_period_s": 0.2, "nvml_module": fake}
    for backend in ("zeus", "auto"):
        m = select_meter(backend, [0], {}, zeus_module=fake_zeus(fake), **kw)
        assert (m.name, m.sensor_period_s, m.sample_period_s) == ("zeus", 0.05, 0.2)  # type: ignore[attr-defined]
        assert m.power_monitor is not None  # type: ignore[attr-defined]
        m.close()
        m = select_meter(backend, [0], {}, zeus_module=fake_zeus(fake), zeus_timeseries=False, **kw)
        assert m.power_monitor is None  # type: ignore[attr-defined]
        m.close()
    assert fake.init_depth == 0


def test_cuda_visible_devices_comes_from_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    m = select_meter("nvml", [0], nvml_module=FakeNvml([FakeGpu(), FakeGpu()]))
    assert m.nvml_indices == [1]
    m.close()


def test_disabled_reason_word_for_word() -> None:
    m = select_meter("none", [0], {})
    assert m.unavailable_reason == "energy measurement disabled (energy_backend: none)"


@pytest.mark.skipif(ZEUS_INSTALLED, reason="zeus is installed here")
def test_no_meter_and_explicit_backend_reasons_word_for_word() -> None:
    m = select_meter("auto", [0], {}, nvml_module=FakeNvml(init_error=12), zeus_module=None)
    zeus_why = "zeus: Zeus is not installed (pip install 'llenergymeasure[zeus]')"
    assert m.unavailable_reason == f"no usable energy meter ({zeus_why}; nvml: {NO_NVML})"
    with pytest.raises(EnergyMeterError) as info:
        select_meter("nvml", [0], {}, nvml_module=FakeNvml(init_error=12))
    assert str(info.value) == (
        f"energy_backend 'nvml' cannot measure here: {NO_NVML}. Use energy_backend: auto "
        "(records energy as unavailable) or none"
    )
    with pytest.raises(EnergyMeterError) as info:
        select_meter("zeus", [0], {}, nvml_module=FakeNvml([FakeGpu()]))
    assert str(info.value) == (
        "energy_backend 'zeus' cannot measure here: Zeus is not installed (pip install "
        "'llenergymeasure[zeus]'). Use energy_backend: nvml or auto"
    )


def test_zeus_refuses_uuid_visible_devices_with_the_reason() -> None:
    fake = FakeNvml([FakeGpu()])
    env = {"CUDA_VISIBLE_DEVICES": fake.gpus[0].uuid}
    with pytest.raises(EnergyMeterError) as info:
        select_meter("zeus", [0], env, nvml_module=fake, zeus_module=fake_zeus(fake))
    assert str(info.value) == (
        "energy_backend 'zeus' cannot measure here: CUDA_VISIBLE_DEVICES holds GPU/MIG UUIDs, "
        "which Zeus does not parse (it accepts integer indices only); the NVML meter maps UUIDs. "
        "Use energy_backend: nvml or auto"
    )


def test_a_mapping_error_keeps_its_class_through_the_explanation() -> None:
    fake = FakeNvml([FakeGpu()])
    with pytest.raises(DeviceMappingError) as info:
        select_meter("zeus", [3], {}, nvml_module=fake, zeus_module=fake_zeus(fake))
    assert str(info.value) == (
        "energy_backend 'zeus' cannot measure here: CUDA device 3 does not exist: NVML sees 1 "
        "GPU(s) and CUDA_VISIBLE_DEVICES is unset; use an index below 1. Use energy_backend: "
        "nvml or auto"
    )
    assert fake.init_depth == 0


def test_a_failing_nvml_query_becomes_a_plain_meter_error() -> None:
    # an NvmlError (which needs a call name and a code) is re-raised as EnergyMeterError
    fake = FakeNvml([FakeGpu()])
    failing(fake, "nvmlDeviceGetTotalEnergyConsumption", 15)
    with pytest.raises(EnergyMeterError) as info:
        select_meter("nvml", [0], {}, nvml_module=fake)
    assert type(info.value) is EnergyMeterError
    assert str(info.value).startswith(
        "energy_backend 'nvml' cannot measure here: NVML call nvmlDeviceGetTotalEnergyConsumption "
        "on GPU 0 (NVML index) failed: GPU is lost (NVML code 15); the GPU fell off "
        "the bus"
    )
    assert fake.init_depth == 0


def test_nvml_with_no_gpu_is_refused_and_released() -> None:
    fake = FakeNvml([])
    with pytest.raises(EnergyMeterError) as info:
        select_meter("nvml", [0], {}, nvml_module=fake)
    assert str(info.value) == (
        "energy_backend 'nvml' cannot measure here: NVML started but reports no GPU. Use "
        "energy_backend: auto (records energy as unavailable) or none"
    )
    assert fake.init_depth == 0


def test_a_broken_zeus_install_is_named_and_auto_falls_back(zeus_package: Path) -> None:
    (zeus_package / "zeus" / "monitor.py").write_text("raise ImportError('libcuda.so not found')\n")
    fake = FakeNvml([FakeGpu()])
    with pytest.raises(EnergyMeterError) as info:
        select_meter("zeus", [0], {}, nvml_module=fake)
    assert str(info.value) == (
        "energy_backend 'zeus' cannot measure here: Zeus is installed but fails to import: "
        "libcuda.so not found. Use energy_backend: nvml or auto"
    )
    m = select_meter("auto", [0], {}, nvml_module=fake)
    assert m.name == "nvml"
    m.close()


# -- meter_availability -----------------------------------------------------------------------


def test_nvml_row_lists_every_gpu_and_its_counter() -> None:
    fake = FakeNvml([FakeGpu(name="H200"), FakeGpu(name="V100", has_counter=False)])
    rows = meter_availability({}, nvml_module=fake, zeus_installed=False, rapl_root="/none")
    assert rows[0] == (
        "nvml",
        True,
        "2 GPU(s), driver 580.00.00: 0: H200 (energy counter, power instant); "
        "1: V100 (no energy counter, power instant)",
    )
    assert rows[1] == ("zeus", False, ZEUS_MISSING)
    assert fake.init_depth == 0


def test_nvml_row_without_driver_version_or_with_a_failing_query() -> None:
    fake = FakeNvml([FakeGpu(name="H200")])
    failing(fake, "nvmlSystemGetDriverVersion", 999)
    rows = meter_availability({}, nvml_module=fake, zeus_installed=False, rapl_root="/none")
    assert rows[0] == (
        "nvml",
        True,
        "1 GPU(s), driver unknown: 0: H200 (energy counter, power instant)",
    )
    fake = FakeNvml([FakeGpu(name="H200")])
    failing(fake, "nvmlDeviceGetName", 999)
    rows = meter_availability({}, nvml_module=fake, zeus_installed=False, rapl_root="/none")
    assert rows[0] == (
        "nvml",
        False,
        "NVML started but a query failed: NVML call nvmlDeviceGetName on GPU 0 (NVML index) "
        "failed: Unknown Error (NVML code 999)",
    )
    assert fake.init_depth == 0


def test_zeus_rows_when_nvml_is_missing_or_devices_are_uuids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = meter_availability({}, nvml_module=FakeNvml(init_error=12), zeus_installed=True)
    assert rows[0] == ("nvml", False, NO_NVML)
    assert rows[1] == (
        "zeus",
        False,
        f"zeus version unknown installed, but it needs NVML: {NO_NVML}",
    )
    uuid_problem = (
        "zeus version unknown installed, but CUDA_VISIBLE_DEVICES holds GPU/MIG UUIDs, which Zeus "
        "does not parse (it accepts integer indices only); the NVML meter maps UUIDs"
    )
    fake = FakeNvml([FakeGpu()])
    rows = meter_availability(
        {"CUDA_VISIBLE_DEVICES": "GPU-1"}, nvml_module=fake, zeus_installed=True
    )
    assert rows[1] == ("zeus", False, uuid_problem)
    # environ defaults to the process environment, and only then
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-1")
    assert meter_availability(None, nvml_module=fake, zeus_installed=True)[1] == (
        "zeus",
        False,
        uuid_problem,
    )
    assert meter_availability({}, nvml_module=fake, zeus_installed=True)[1][1] is True


def test_an_installed_zeus_is_found_and_its_version_shown(zeus_package: Path) -> None:
    (zeus_package / "zeus" / "monitor.py").write_text("")
    dist_info(zeus_package, "0.11.0")
    fake = FakeNvml([FakeGpu()])
    rows = meter_availability({}, nvml_module=fake, rapl_root="/none")
    assert rows[1] == ("zeus", True, "zeus 0.11.0; preferred by energy_backend: auto")


def test_codecarbon_row_installed_and_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    version = importlib.metadata.version("codecarbon")
    rows = meter_availability({}, nvml_module=FakeNvml([]), zeus_installed=False, rapl_root="/x")
    assert rows[3] == (
        "codecarbon",
        True,
        f"codecarbon {version}: offline carbon-intensity data used when the user config sets none",
    )
    real = importlib.metadata.version

    def without_codecarbon(dist: str) -> str:
        if dist == "codecarbon":
            raise importlib.metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(importlib.metadata, "version", without_codecarbon)
    rows = meter_availability({}, nvml_module=FakeNvml([]), zeus_installed=False, rapl_root="/x")
    assert rows[3] == (
        "codecarbon",
        False,
        "not installed (pip install 'llenergymeasure[codecarbon]'); CO2 needs "
        "carbon_intensity_gco2_kwh in the user config",
    )
