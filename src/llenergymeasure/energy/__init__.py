"""The energy measurement layer: meters behind one protocol, idle baseline, CO2, validity checks.

Importing this package imports neither pynvml nor zeus nor codecarbon: they load when a meter is
selected. See ``docs/methodology.md`` for what each number means.
"""

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
from llenergymeasure.energy.meters import EnergyMeter, NullMeter, NvmlMeter
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
