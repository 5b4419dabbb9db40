"""Energy meters behind one protocol: the NVML meter (counter + sampler) and the null meter.

A meter opens a window over a set of GPUs (``start``), closes it (``stop``) and returns an
``EnergyMeasurement``: per-device energy, totals, the integrated-power cross-check and validity
warnings. Synchronising the device before ``start`` and ``stop`` is the caller's job (the harness
knows the engine); the meter reads its sensors the moment it is called.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from llenergymeasure.energy import checks
from llenergymeasure.energy.devices import DeviceMapping, DeviceTarget
from llenergymeasure.energy.errors import EnergyMeterError, NvmlError
from llenergymeasure.energy.nvml import NVML_PERF_POLICY_POWER, NVML_PERF_POLICY_THERMAL, Nvml
from llenergymeasure.energy.sampler import (
    COLUMNS,
    COUNTER,
    MEMORY,
    POWER,
    REASONS,
    UTIL,
    Sampler,
    busy_stats,
    counter_energy,
    integrate_power,
)
from llenergymeasure.energy.types import DeviceEnergy, EnergyMeasurement, ValidityWarning

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


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
        self._started_at = utc_now_iso()

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


def _violation_ns(nvml: Nvml, index: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, policy in (("power", NVML_PERF_POLICY_POWER), ("thermal", NVML_PERF_POLICY_THERMAL)):
        try:
            out[key] = nvml.violation_time_ns(index, policy)
        except NvmlError:
            continue
    return out


def _gpu_pids(nvml: Nvml, indices: list[int]) -> dict[int, set[int]]:
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
    pids_end = _gpu_pids(nvml, indices)
    ours = {os.getpid(), *ignore_pids}
    seen = set().union(*pids_start.values(), *pids_end.values()) if indices else set()
    if seen - ours:  # only then walk /proc for our descendants (engine workers)
        ours = checks.own_process_tree(ignore_pids)
    for i in indices:
        end = _violation_ns(nvml, i)
        start = violations_start.get(i, {})
        deltas[i] = {k: end[k] - start[k] for k in end if k in start}
        w = checks.foreign_process(i, pids_start.get(i, set()) | pids_end.get(i, set()), ours)
        if w is not None:
            warnings.append(w)
    return deltas, warnings


class NvmlMeter(MeterBase):
    """NVML total-energy counter per GPU (primary), with a background power sampler.

    On a GPU without the counter, energy is the trapezoidal integral of sampled power, recorded
    as ``method: integrated_power`` with a warning. ``sample=False`` turns the sampler off for
    GPUs that have the counter (no time series, fewer checks); it exists to measure the
    sampler's own cost. ``clock`` and ``background_sampling`` are test seams (see ``Sampler``):
    a fake clock, with samples taken by the test, checks the arithmetic without sleeping.
    """

    name = "nvml"
    available = True

    def __init__(
        self,
        nvml: Nvml,
        mapping: DeviceMapping,
        *,
        sensor_period_s: float = DEFAULT_SENSOR_PERIOD_S,
        sample_period_s: float | None = None,
        sample: bool = True,
        check_processes: bool = True,
        counter_every: int = 10,
        clock: Callable[[], float] = time.perf_counter,
        background_sampling: bool = True,
    ):
        super().__init__()
        if not mapping.targets:
            raise EnergyMeterError("the NVML meter needs at least one GPU; use the null meter")
        self.nvml = nvml
        self._clock = clock
        self.targets: list[DeviceTarget] = list(mapping.targets)
        self.mapping_warnings = list(mapping.warnings)
        self.nvml_indices = [t.nvml_index for t in self.targets]
        self.sensor_period_s = float(sensor_period_s)
        self.sample_period_s = float(sample_period_s or sensor_period_s)
        self.check_processes = check_processes
        self.has_counter = [nvml.has_energy_counter(i) for i in self.nvml_indices]
        self.power_sources = [nvml.power_source(i) for i in self.nvml_indices]
        needs_sampler = sample or not all(self.has_counter)
        self.sampler: Sampler | None = (
            Sampler(
                nvml,
                self.nvml_indices,
                self.sample_period_s,
                read_counter=self.has_counter,
                counter_every=counter_every,
                clock=clock,
                background=background_sampling,
            )
            if needs_sampler
            else None
        )
        self._open = False
        self._closed = False
        self._t0 = self._t1 = 0.0
        self._c0: list[int | None] = []
        self._started_at: str | None = None
        self._pids_start: dict[int, set[int]] = {}
        self._viol_start: dict[int, dict[str, int]] = {}

    def _read_counters(self) -> list[int | None]:
        out: list[int | None] = []
        for has, i in zip(self.has_counter, self.nvml_indices, strict=False):
            out.append(self.nvml.total_energy_mj(i) if has else None)
        return out

    def start(self) -> None:
        if self._closed:
            raise EnergyMeterError("this NVML meter was closed; create a new one with select_meter")
        if self._open:
            raise EnergyMeterError("a window is already open on this meter; call stop() first")
        self._started_at = utc_now_iso()
        self._t0 = self._clock()
        self._c0 = self._read_counters()
        if self.sampler is not None:
            self.sampler.begin(self._t0)
        self._open = True
        # one-off queries after the counters, so the window starts when start() is called
        if self.check_processes:
            self._pids_start = _gpu_pids(self.nvml, self.nvml_indices)
            self._viol_start = {i: _violation_ns(self.nvml, i) for i in self.nvml_indices}

    def stop(self) -> EnergyMeasurement:
        if not self._open:
            raise EnergyMeterError("stop() called without start()")
        t1 = self._clock()
        try:
            c1 = self._read_counters()
        finally:
            if self.sampler is not None:
                self.sampler.end()
            self._open = False
        self._t1 = t1
        t0 = self._t0
        duration = t1 - t0
        sensor_period = float(self.sensor_period_s or DEFAULT_SENSOR_PERIOD_S)
        warnings: list[ValidityWarning] = list(self.mapping_warnings)
        w = checks.short_window(duration, self.sensor_period_s)
        if w is not None:
            warnings.append(w)

        if self.sampler is not None:
            times, values = self.sampler.buffer.view()
        else:
            times, values = np.empty(0), np.empty((0, len(self.nvml_indices), len(COLUMNS)))
        inside = (times > t0) & (times < t1)

        violation_deltas: dict[int, dict[str, int]] = {}
        if self.check_processes:
            violation_deltas, extra = window_checks(
                self.nvml, self.nvml_indices, self._pids_start, self._viol_start, self.ignore_pids
            )
            warnings.extend(extra)

        devices: list[DeviceEnergy] = []
        for d, target in enumerate(self.targets):
            i = target.nvml_index
            power = values[:, d, POWER] if times.size else np.empty(0)
            integrated = integrate_power(times, power, t0, t1) if times.size else None
            valid_power = power[inside & ~np.isnan(power)] if times.size else np.empty(0)
            resets = 0
            if self.has_counter[d]:
                c0, c1d = self._c0[d], c1[d]
                assert c0 is not None and c1d is not None
                seq_t = np.concatenate(([t0], times[inside], [t1]))
                col = values[inside, d, COUNTER] if times.size else np.empty(0)
                seq_c = np.concatenate(([float(c0)], col, [float(c1d)]))
                seq_p = np.concatenate(([np.nan], power[inside], [np.nan])) if times.size else None
                energy, resets, substituted = counter_energy(seq_t, seq_c, seq_p)
                method: Literal["counter", "integrated_power"] = "counter"
                w = checks.counter_reset(i, resets, substituted)
                if w is not None:
                    warnings.append(w)
                w = checks.counter_power_mismatch(i, energy, integrated)
                if w is not None:
                    warnings.append(w)
            else:
                energy = integrated if integrated is not None else math.nan
                method = "integrated_power"
                warnings.append(checks.integrated_power_only(i))
            if times.size:
                ok = ~np.isnan(power)
                edge_t = times[ok]
                w = checks.sampler_gap(i, edge_t, max(sensor_period, self.sample_period_s))
                if w is not None:
                    warnings.append(w)
                reasons = values[inside, d, REASONS]
                util, memory = busy_stats(values[inside, d, UTIL], values[inside, d, MEMORY])
            else:
                reasons = np.empty(0)
                util = memory = None
            warnings.extend(checks.clock_events(i, reasons, violation_deltas.get(i), duration))
            devices.append(
                DeviceEnergy(
                    nvml_index=i,
                    cuda_index=target.cuda_index,
                    uuid=target.uuid,
                    name=target.name,
                    energy_j=float(energy),
                    method=method,
                    integrated_energy_j=integrated,
                    mean_power_w=float(energy) / duration if duration > 0 else None,
                    peak_power_w=float(valid_power.max()) if valid_power.size else None,
                    n_samples=int(valid_power.size),
                    power_source=self.power_sources[d],
                    counter_resets=resets,
                    mean_utilization_pct=util,
                    max_memory_used_mb=memory,
                )
            )
        total = sum(dv.energy_j for dv in devices)  # held GPUs count whether busy or idle
        self.last = EnergyMeasurement(
            meter=self.name,
            available=True,
            duration_s=duration,
            sensor_period_s=self.sensor_period_s,
            sample_period_s=self.sample_period_s if self.sampler is not None else None,
            total_energy_j=None if math.isnan(total) else total,
            devices=devices,
            warnings=warnings,
            started_at=self._started_at,
            timeseries_source="nvml_sampler" if self.sampler is not None else None,
        )
        return self.last

    def write_timeseries(self, path: Path) -> Path | None:
        """CSV of the last window's samples, one row per device per sample."""
        if self.sampler is None or self.sampler.buffer.n == 0:
            return None
        times, values = self.sampler.buffer.view()
        return write_timeseries_csv(path, times - self._t0, self.nvml_indices, values)

    def cache_identity(self) -> dict[int, str] | None:
        return identity(self.nvml, self.targets)

    def close(self) -> None:
        if self._closed:
            return
        if self._open and self.sampler is not None:
            self.sampler.end()
            self._open = False
        self._closed = True
        self.nvml.shutdown()


def identity(nvml: Nvml, targets: list[DeviceTarget]) -> dict[int, str]:
    """Per-device idle-baseline cache identity: UUID, driver, enforced power limit, persistence
    mode and application clocks (idle power depends on each; ``gpu_state.baseline_identity``)."""
    from llenergymeasure.energy.gpu_state import baseline_identity

    return {t.nvml_index: baseline_identity(nvml, t.nvml_index, t.uuid) for t in targets}


def write_timeseries_csv(
    path: Path, t_rel: np.ndarray, nvml_indices: list[int], values: np.ndarray
) -> Path:
    """Long-format CSV: t_s, nvml_index, then the sampler's columns (empty where not read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TIMESERIES_HEADER)
        for row in range(t_rel.shape[0]):
            for d, idx in enumerate(nvml_indices):
                cells: list[str] = [f"{t_rel[row]:.6f}", str(idx)]
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
