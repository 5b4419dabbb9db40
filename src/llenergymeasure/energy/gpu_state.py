"""One-off reads of a GPU's operating state, for the idle baseline: its cache key and its record.

Each read is independent; a value the GPU or the installed nvidia-ml-py cannot give is left out
(state) or written ``unknown`` (identity), never an error: the baseline must not fail over a
metadata query.
"""

from __future__ import annotations

import contextlib
from typing import Any

from llenergymeasure.energy.errors import NvmlError
from llenergymeasure.energy.nvml import Nvml

NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2


def _read(nvml: Nvml, index: int, call: str, *args: Any) -> Any:
    try:
        return nvml.call(call, nvml.handle(index), *args, device=index)
    except (NvmlError, TypeError, ValueError):
        return None


def idle_state(nvml: Nvml, index: int) -> dict[str, Any]:
    """P-state, SM and memory clock (MHz), temperature (C) and utilisation (%) right now."""
    out: dict[str, Any] = {}
    pstate = _read(nvml, index, "nvmlDeviceGetPerformanceState")
    if pstate is not None:
        out["pstate"] = f"P{int(pstate)}"
    for key, clock in (("sm_clock_mhz", NVML_CLOCK_SM), ("mem_clock_mhz", NVML_CLOCK_MEM)):
        value = _read(nvml, index, "nvmlDeviceGetClockInfo", clock)
        if value is not None:
            out[key] = int(value)
    with contextlib.suppress(NvmlError):
        out["temperature_c"] = nvml.temperature_c(index)
    with contextlib.suppress(NvmlError):
        out["util_pct"] = nvml.gpu_util_pct(index)
    return out


def baseline_identity(nvml: Nvml, index: int, uuid: str | None) -> str:
    """What idle power depends on, as one cache-key string: the GPU, the driver, the enforced
    power limit, persistence mode and the application clocks (SM, memory)."""
    parts = [uuid or f"nvml{index}"]
    try:
        parts.append(f"driver {nvml.driver_version()}")
    except NvmlError:
        parts.append("driver unknown")
    limit = _read(nvml, index, "nvmlDeviceGetEnforcedPowerLimit")
    parts.append(f"{int(limit)}mW" if limit is not None else "unknown mW")
    persistence = _read(nvml, index, "nvmlDeviceGetPersistenceMode")
    parts.append(f"persistence {int(persistence)}" if persistence is not None else "persistence ?")
    for name, clock in (("app_sm", NVML_CLOCK_SM), ("app_mem", NVML_CLOCK_MEM)):
        value = _read(nvml, index, "nvmlDeviceGetApplicationsClock", clock)
        parts.append(f"{name} {int(value)}MHz" if value is not None else f"{name} ?")
    return "|".join(parts)
