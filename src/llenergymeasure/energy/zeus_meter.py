"""The Zeus meter: ``zeus.monitor.ZeusMonitor`` windows, with Zeus's ``PowerMonitor`` for the
time series.

Single NVML owner: when Zeus is the meter, Zeus polls NVML (its PowerMonitor processes) and our
sampler does not run. This meter still makes a few one-off NVML queries at the window's edges
(processes on the GPU, violation counters, UUID and power limit), which are not polling.

Zeus (0.11+) takes CUDA indices and applies ``CUDA_VISIBLE_DEVICES`` itself, but only integer
entries: with GPU-/MIG- UUIDs in that variable this meter reports itself unusable and ``auto``
selection falls back to the NVML meter, which maps UUIDs (``energy.devices``).

Zeus's PowerMonitor sends a sample only when the power value changes, so its series is irregular:
it is integrated as a step function (each value held until the next), and the sampler-gap check
does not apply to it.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from llenergymeasure.energy import checks
from llenergymeasure.energy.devices import DeviceMapping, DeviceTarget, parse_cuda_visible_devices
from llenergymeasure.energy.errors import EnergyMeterError
from llenergymeasure.energy.meters import (
    DEFAULT_SENSOR_PERIOD_S,
    MeterBase,
    gpu_pids,
    identity,
    utc_now_iso,
    violation_ns,
    window_checks,
    write_timeseries_csv,
)
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.sampler import COLUMNS, POWER
from llenergymeasure.energy.types import DeviceEnergy, EnergyMeasurement, ValidityWarning


def import_zeus_monitor() -> Any:
    """``zeus.monitor`` (the module with ZeusMonitor and PowerMonitor), or ImportError."""
    import zeus.monitor

    return zeus.monitor


def zeus_device_problem(environ: Mapping[str, str]) -> str | None:
    """Why Zeus cannot address the GPUs under this CUDA_VISIBLE_DEVICES, or None."""
    entries = parse_cuda_visible_devices(environ.get("CUDA_VISIBLE_DEVICES"))
    if entries and any(not e.isdigit() for e in entries):
        return (
            "CUDA_VISIBLE_DEVICES holds GPU/MIG UUIDs, which Zeus does not parse (it accepts "
            "integer indices only); the NVML meter maps UUIDs"
        )
    return None


def step_integral(t: np.ndarray, p: np.ndarray, t_start: float, t_end: float) -> float | None:
    """Integral (J) of a step function: each power value held until the next sample.

    The value in force at ``t_start`` is the last sample at or before it; with none before, the
    first sample is held back to ``t_start``."""
    if t.size == 0 or t_end <= t_start:
        return None
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    before = np.nonzero(t <= t_start)[0]
    first = before[-1] if before.size else 0
    tt = [t_start]
    pp = [float(p[first])]
    for k in range(first + 1, t.size):
        if t[k] >= t_end:
            break
        if t[k] > t_start:
            tt.append(float(t[k]))
            pp.append(float(p[k]))
    tt.append(t_end)
    return float(sum(pp[j] * (tt[j + 1] - tt[j]) for j in range(len(pp))))


class ZeusMeter(MeterBase):
    """Energy from ``ZeusMonitor.begin_window``/``end_window`` (Zeus reads the NVML counter on
    Volta and newer, integrates power on older GPUs)."""

    name = "zeus"
    available = True

    def __init__(
        self,
        zeus_monitor: Any,
        mapping: DeviceMapping,
        nvml: Nvml | None,
        *,
        sensor_period_s: float = DEFAULT_SENSOR_PERIOD_S,
        sample_period_s: float | None = None,
        timeseries: bool = True,
        check_processes: bool = True,
    ):
        super().__init__()
        if not mapping.targets:
            raise EnergyMeterError("the Zeus meter needs at least one GPU; use the null meter")
        self.targets: list[DeviceTarget] = list(mapping.targets)
        self.mapping_warnings = list(mapping.warnings)
        self.nvml_indices = [t.nvml_index for t in self.targets]
        self.cuda_indices = [t.cuda_index for t in self.targets]
        self.nvml = nvml
        self.sensor_period_s = float(sensor_period_s)
        self.sample_period_s = float(sample_period_s or sensor_period_s)
        self.check_processes = check_processes and nvml is not None
        try:
            self.monitor = zeus_monitor.ZeusMonitor(gpu_indices=self.cuda_indices, cpu_indices=[])
        except Exception as exc:  # Zeus raises ValueError/RuntimeError/its own errors
            raise EnergyMeterError(f"zeus.monitor.ZeusMonitor could not start: {exc}") from exc
        n_gpus = len(getattr(self.monitor, "gpus", []) or [])
        if n_gpus == 0 or max(self.cuda_indices) >= n_gpus:
            raise EnergyMeterError(
                f"Zeus sees {n_gpus} GPU(s); CUDA device(s) {self.cuda_indices} are not among them"
            )
        self.power_monitor: Any = None
        self.timeseries_problem: str | None = None
        if timeseries:
            try:
                self.power_monitor = zeus_monitor.PowerMonitor(
                    gpu_indices=self.cuda_indices,
                    update_period=self.sample_period_s,
                    power_domains=["device_instant"],
                )
            except Exception as exc:
                self.timeseries_problem = f"Zeus PowerMonitor unavailable: {exc}"
        self._n = 0
        self._key: str | None = None
        self._closed = False
        self._t0 = self._wall0 = 0.0
        self._started_at: str | None = None
        self._pids_start: dict[int, set[int]] = {}
        self._viol_start: dict[int, dict[str, int]] = {}
        self._series: tuple[np.ndarray, np.ndarray] | None = None

    def start(self) -> None:
        if self._closed:
            raise EnergyMeterError("this Zeus meter was closed; create a new one with select_meter")
        if self._key is not None:
            raise EnergyMeterError("a window is already open on this meter; call stop() first")
        self._n += 1
        key = f"llem-window-{self._n}"
        self._started_at = utc_now_iso()
        self._wall0 = time.time()
        self._t0 = time.perf_counter()
        self.monitor.begin_window(key, sync_execution=False)
        self._key = key
        if self.check_processes and self.nvml is not None:
            self._pids_start = gpu_pids(self.nvml, self.nvml_indices)
            self._viol_start = {i: violation_ns(self.nvml, i) for i in self.nvml_indices}

    def stop(self) -> EnergyMeasurement:
        if self._key is None:
            raise EnergyMeterError("stop() called without start()")
        key, self._key = self._key, None
        m = self.monitor.end_window(key, sync_execution=False)
        wall1 = time.time()
        duration = float(m.time)
        warnings: list[ValidityWarning] = list(self.mapping_warnings)
        w = checks.short_window(duration, self.sensor_period_s)
        if w is not None:
            warnings.append(w)
        violation_deltas: dict[int, dict[str, int]] = {}
        if self.check_processes:
            violation_deltas, extra = window_checks(
                self.nvml, self.nvml_indices, self._pids_start, self._viol_start, self.ignore_pids
            )
            warnings.extend(extra)

        timelines: dict[int, list[tuple[float, float]]] = {}
        if self.power_monitor is not None:
            try:
                timelines = self.power_monitor.get_power_timeline(
                    "device_instant", start_time=None, end_time=wall1
                )
            except Exception as exc:
                self.timeseries_problem = f"Zeus PowerMonitor timeline failed: {exc}"
        self._store_series(timelines, self._wall0, wall1)

        devices: list[DeviceEnergy] = []
        for target in self.targets:
            i, c = target.nvml_index, target.cuda_index
            energy = float(m.gpu_energy.get(c, math.nan))
            line = timelines.get(c, [])
            integrated = None
            peak = None
            n = 0
            if line:
                arr = np.asarray(line, dtype=np.float64)
                integrated = step_integral(
                    arr[:, 0], arr[:, 1], self._wall0, self._wall0 + duration
                )
                inside = arr[(arr[:, 0] >= self._wall0) & (arr[:, 0] <= wall1)]
                n = int(inside.shape[0])
                peak = float(inside[:, 1].max()) if n else None
            if energy < 0:
                w = checks.counter_reset(i, 1, integrated or 0.0)
                if w is not None:
                    warnings.append(w)
                energy = integrated if integrated is not None else math.nan
            else:
                w = checks.counter_power_mismatch(i, energy, integrated)
                if w is not None:
                    warnings.append(w)
            warnings.extend(checks.clock_events(i, np.empty(0), violation_deltas.get(i), duration))
            devices.append(
                DeviceEnergy(
                    nvml_index=i,
                    cuda_index=c,
                    uuid=target.uuid,
                    name=target.name,
                    energy_j=energy,
                    method="zeus",
                    integrated_energy_j=integrated,
                    mean_power_w=energy / duration
                    if duration > 0 and not math.isnan(energy)
                    else None,
                    peak_power_w=peak,
                    n_samples=n,
                    power_source="instant" if self.power_monitor is not None else None,
                )
            )
        if self.timeseries_problem:
            warnings.append(
                ValidityWarning(
                    code="no_timeseries",
                    message=self.timeseries_problem,
                    severity="info",
                )
            )
        total = sum(d.energy_j for d in devices)
        self.last = EnergyMeasurement(
            meter=self.name,
            available=True,
            duration_s=duration,
            sensor_period_s=self.sensor_period_s,
            sample_period_s=self.sample_period_s if self.power_monitor is not None else None,
            total_energy_j=None if math.isnan(total) else total,
            devices=devices,
            warnings=warnings,
            started_at=self._started_at,
            timeseries_source="zeus_power_monitor" if self.power_monitor is not None else None,
        )
        return self.last

    def _store_series(
        self, timelines: dict[int, list[tuple[float, float]]], wall0: float, wall1: float
    ) -> None:
        """Keep the window's samples as (times, values) in the sampler's column layout."""
        if not timelines:
            self._series = None
            return
        stamps = sorted(
            {
                ts
                for c in self.cuda_indices
                for ts, _ in timelines.get(c, [])
                if wall0 <= ts <= wall1
            }
        )
        if not stamps:
            self._series = None
            return
        t = np.asarray(stamps, dtype=np.float64)
        values = np.full((t.size, len(self.targets), len(COLUMNS)), np.nan)
        pos = {ts: k for k, ts in enumerate(stamps)}
        for d, c in enumerate(self.cuda_indices):
            for ts, watts in timelines.get(c, []):
                if ts in pos:
                    values[pos[ts], d, POWER] = watts
        self._series = (t - wall0, values)

    def write_timeseries(self, path: Path) -> Path | None:
        """CSV of the last window's Zeus power samples (power only; Zeus records nothing else)."""
        if self._series is None:
            return None
        t_rel, values = self._series
        return write_timeseries_csv(path, t_rel, self.nvml_indices, values)

    def cache_identity(self) -> dict[int, str] | None:
        return identity(self.nvml, self.targets) if self.nvml is not None else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.power_monitor is not None:
            with contextlib.suppress(Exception):
                self.power_monitor.stop()
        if self.nvml is not None:
            self.nvml.shutdown()
