"""The energy measurement layer: meters behind one protocol, idle baseline, CO2, validity checks.

Importing this package imports neither pynvml nor zeus nor codecarbon: they load when a meter is
selected. See ``docs/methodology.md`` for what each number means.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The names below load on first use (PEP 562): ``results.models`` needs only ``energy.types``, and a
# command such as ``llem results query`` should not pay for importing every meter.
if TYPE_CHECKING:
    from llenergymeasure.energy.baseline import apply_baseline, measure_idle_baseline
    from llenergymeasure.energy.carbon import estimate_co2
    from llenergymeasure.energy.devices import DeviceMapping, DeviceTarget, resolve_devices
    from llenergymeasure.energy.errors import (
        DeviceMappingError,
        EnergyMeterError,
        NvmlError,
        NvmlNotSupportedError,
        NvmlUnavailableError,
    )
    from llenergymeasure.energy.meters import EnergyMeter, NullMeter
    from llenergymeasure.energy.nvml_meter import NvmlMeter
    from llenergymeasure.energy.rapl import RaplMeter
    from llenergymeasure.energy.select import ENERGY_BACKENDS, meter_availability, select_meter
    from llenergymeasure.energy.types import (
        BaselineRecord,
        CarbonEstimate,
        CpuEnergy,
        DeviceEnergy,
        EnergyMeasurement,
        ValidityWarning,
    )

_LAZY = {
    "BaselineRecord": "types",
    "CarbonEstimate": "types",
    "CpuEnergy": "types",
    "DeviceEnergy": "types",
    "EnergyMeasurement": "types",
    "ValidityWarning": "types",
    "DeviceMapping": "devices",
    "DeviceMappingError": "errors",
    "DeviceTarget": "devices",
    "ENERGY_BACKENDS": "select",
    "EnergyMeter": "meters",
    "EnergyMeterError": "errors",
    "NullMeter": "meters",
    "NvmlError": "errors",
    "NvmlMeter": "nvml_meter",
    "NvmlNotSupportedError": "errors",
    "NvmlUnavailableError": "errors",
    "RaplMeter": "rapl",
    "apply_baseline": "baseline",
    "estimate_co2": "carbon",
    "measure_idle_baseline": "baseline",
    "meter_availability": "select",
    "resolve_devices": "devices",
    "select_meter": "select",
}

__all__ = [
    "ENERGY_BACKENDS",
    "BaselineRecord",
    "CarbonEstimate",
    "CpuEnergy",
    "DeviceEnergy",
    "DeviceMapping",
    "DeviceMappingError",
    "DeviceTarget",
    "EnergyMeasurement",
    "EnergyMeter",
    "EnergyMeterError",
    "NullMeter",
    "NvmlError",
    "NvmlMeter",
    "NvmlNotSupportedError",
    "NvmlUnavailableError",
    "RaplMeter",
    "ValidityWarning",
    "apply_baseline",
    "estimate_co2",
    "measure_idle_baseline",
    "meter_availability",
    "resolve_devices",
    "select_meter",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
