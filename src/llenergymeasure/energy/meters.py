"""The meter protocol, the base and null meters, and the pieces every meter shares.

A meter is ``energy/<name>_meter.py`` (``nvml_meter``, ``zeus_meter``; RAPL's CPU meter is
``rapl``). A meter opens a window over a set of GPUs (``start``), closes it (``stop``) and returns an
``EnergyMeasurement``: per-device energy, totals, the integrated-power cross-check and validity
warnings. Synchronising the device before ``start`` and ``stop`` is the caller's job (the harness
knows the engine); the meter reads its sensors the moment it is called.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Protocol, runtime_checkable

import numpy as np

from llenergymeasure.energy import checks
from llenergymeasure.energy.devices import DeviceTarget
from llenergymeasure.energy.errors import NvmlError
from llenergymeasure.energy.nvml import NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL, Nvml
from llenergymeasure.energy.sampler import COLUMNS, COUNTER, REASONS
from llenergymeasure.energy.types import EnergyMeasurement, ValidityWarning
from llenergymeasure.timestamps import utc_now

DEFAULT_SENSOR_PERIOD_S = 0.1  # NVML energy counter and power update period measured on an H200
TIMESERIES_HEADER = ("t_s", "nvml_index", *COLUMNS)


@runtime_checkable
class EnergyMeter(Protocol):
    """What the harness and library users call. See ``docs/methodology.md``."""

    name: str
    available: bool
    unavailable_reason: str | None
    nvml_indices: list[int]
    sensor_period_s: float | None
    ignore_pids: set[int]
    last: EnergyMeasurement | None

    def start(self) -> None: ...

    def stop(self) -> EnergyMeasurement: ...

    def write_timeseries(self, path: Path) -> Path | None: ...

    def cache_identity(self) -> dict[int, str] | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> EnergyMeter: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class MeterBase:
    """Context-manager plumbing shared by the meters: ``with meter: ...`` then ``meter.last``."""

    name = "base"
    available = False
    unavailable_reason: str | None = None
    sensor_period_s: float | None = None

    def __init__(self) -> None:
        self.nvml_indices: list[int] = []
        self.ignore_pids: set[int] = set()
        self.last: EnergyMeasurement | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> EnergyMeasurement:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def write_timeseries(self, path: Path) -> Path | None:
        return None

    def cache_identity(self) -> dict[int, str] | None:
        return None

    def __enter__(self) -> MeterBase:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()  # sets self.last; the window is closed even when the body raised


class NullMeter(MeterBase):
    """For machines with no usable sensor: experiments still run, energy is null with a reason."""

    name = "null"
    available = False

    def __init__(self, reason: str):
        super().__init__()
        self.unavailable_reason = reason
        self._t0: float | None = None
        self._started_at: str | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._started_at = utc_now("milliseconds")

    def stop(self) -> EnergyMeasurement:
        duration = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        self._t0 = None
        self.last = EnergyMeasurement(
            meter=self.name,
            available=False,
            unavailable_reason=self.unavailable_reason,
            duration_s=duration,
            started_at=self._started_at,
        )
        return self.last


def violation_ns(nvml: Nvml, index: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, policy in (("power", NVML_PERF_POLICY_POWER), ("thermal", NVML_PERF_POLICY_THERMAL)):
        try:
            out[key] = nvml.violation_time_ns(index, policy)
        except NvmlError:
            continue
    return out


def power_limits_w(nvml: Nvml, indices: list[int]) -> dict[int, float]:
    """Each GPU's enforced power limit (W), for judging ``power_capped``; a GPU that does not
    report one is left out."""
    out: dict[int, float] = {}
    for i in indices:
        try:
            out[i] = nvml.power_limit_mw(i) / 1000.0
        except NvmlError:
            continue
    return out


def gpu_pids(nvml: Nvml, indices: list[int]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for i in indices:
        try:
            out[i] = nvml.running_pids(i)
        except NvmlError:
            out[i] = set()
    return out


def window_checks(
    nvml: Nvml | None,
    indices: list[int],
    pids_start: dict[int, set[int]],
    violations_start: dict[int, dict[str, int]],
    ignore_pids: set[int],
) -> tuple[dict[int, dict[str, int]], list[ValidityWarning]]:
    """End-of-window checks that need only one-off NVML queries (no polling): other processes
    on the GPU, and the violation counters' deltas. Returns (violation deltas, warnings)."""
    deltas: dict[int, dict[str, int]] = {}
    warnings: list[ValidityWarning] = []
    if nvml is None:
        return deltas, warnings
    pids_end = gpu_pids(nvml, indices)
    ours = {os.getpid(), *ignore_pids}
    seen = set().union(*pids_start.values(), *pids_end.values()) if indices else set()
    if seen - ours:  # only then walk /proc for our descendants (engine workers)
        ours = checks.own_process_tree(ignore_pids)
    for i in indices:
        end = violation_ns(nvml, i)
        start = violations_start.get(i, {})
        deltas[i] = {k: end[k] - start[k] for k in end if k in start}
        w = checks.foreign_process(i, pids_start.get(i, set()) | pids_end.get(i, set()), ours)
        if w is not None:
            warnings.append(w)
    return deltas, warnings


def identity(nvml: Nvml, targets: list[DeviceTarget]) -> dict[int, str]:
    """Per-device idle-baseline cache identity: UUID, driver, enforced power limit, persistence
    mode and application clocks (idle power depends on each; ``gpu_state.baseline_identity``)."""
    from llenergymeasure.energy.gpu_state import baseline_identity

    return {t.nvml_index: baseline_identity(nvml, t.nvml_index, t.uuid) for t in targets}


def write_timeseries_csv(
    path: Path,
    t_rel: np.ndarray,
    nvml_indices: list[int],
    values: np.ndarray,
    device_t_rel: np.ndarray | None = None,
) -> Path:
    """Long-format CSV: t_s, nvml_index, then the sampler's columns (empty where not read).
    ``device_t_rel`` (``[rows, devices]``) gives each device's own read time, used for its
    ``t_s`` where known (NaN: the row's time)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TIMESERIES_HEADER)
        for row in range(t_rel.shape[0]):
            for d, idx in enumerate(nvml_indices):
                t = t_rel[row]
                if device_t_rel is not None and not math.isnan(device_t_rel[row, d]):
                    t = device_t_rel[row, d]
                cells: list[str] = [f"{t:.6f}", str(idx)]
                for c in range(values.shape[2]):
                    v = values[row, d, c]
                    if math.isnan(v):
                        cells.append("")
                    elif c in (REASONS, COUNTER) or float(v).is_integer():
                        cells.append(str(int(v)))
                    else:
                        cells.append(f"{v:.3f}")
                writer.writerow(cells)
    tmp.replace(path)
    return path
