"""The Zeus meter: ``zeus.monitor.ZeusMonitor`` windows, with Zeus's ``PowerMonitor`` for power
and the project's NVML sampler beside it for everything else.

Zeus reads the energy counter (its window is the energy) and polls power in its own processes;
our ``Sampler`` polls the rest at the same period (temperature, SM clock, utilisation,
clock-event reasons, memory in use; never the slow counter), so the same checks apply as with
the NVML meter: ``sampler_gap`` on the sampler's rows, ``thermal_slowdown`` / ``hw_slowdown`` /
``power_capped`` from the reason masks, ``host_bound`` and ``thermal_drift`` from the saved
series, utilisation and memory per GPU. ``docs/methodology.md`` has the table of checks per meter.

Zeus's PowerMonitor sends a sample only when the power value changes, so its series is a step
function: it is integrated as one (each value held until the next) for the cross-check, and the
saved time series holds, at each of the sampler's rows, the Zeus value in force there, so every
reader of the CSV (which interpolates linearly between rows) sees a regular series. A GPU missing
from Zeus's timeline falls back to the sampler's own power reading. Without NVML (or with
``sample=False``) the series is Zeus's step function on a regular grid of ``sample_period_s``.

Zeus (0.11+) takes CUDA indices and applies ``CUDA_VISIBLE_DEVICES`` itself, but only integer
entries: with GPU-/MIG- UUIDs in that variable this meter reports itself unusable and ``auto``
selection falls back to the NVML meter, which maps UUIDs (``energy.devices``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llenergymeasure.energy import checks
from llenergymeasure.energy.devices import DeviceMapping, DeviceTarget, parse_cuda_visible_devices
from llenergymeasure.energy.errors import DeviceLostError, EnergyMeterError
from llenergymeasure.energy.meters import (
    DEFAULT_SENSOR_PERIOD_S,
    MeterBase,
    gpu_pids,
    identity,
    power_limits_w,
    violation_ns,
    window_checks,
    write_timeseries_csv,
)
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.sampler import (
    COLUMNS,
    MEMORY,
    POWER,
    REASONS,
    UTIL,
    Sampler,
    busy_stats,
    integrate_power,
)
from llenergymeasure.energy.types import DeviceEnergy, EnergyMeasurement, ValidityWarning
from llenergymeasure.timestamps import utc_now


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


def start_power_monitor(zeus_monitor: Any, cuda_indices: list[int], period_s: float) -> Any:
    """Zeus's ``PowerMonitor`` on the GPUs' instantaneous power, every ``period_s``. Zeus 0.15
    and 0.16 name the arguments ``update_period`` / ``power_domains``; Zeus's main branch after
    0.16 names them ``gpu_update_period`` / ``gpu_power_domains`` and monitors every CPU package
    unless ``cpu_indices=[]``: the second spelling is tried when the first is refused."""
    try:
        return zeus_monitor.PowerMonitor(
            gpu_indices=cuda_indices, update_period=period_s, power_domains=["device_instant"]
        )
    except TypeError:
        return zeus_monitor.PowerMonitor(
            gpu_indices=cuda_indices,
            cpu_indices=[],
            gpu_update_period=period_s,
            gpu_power_domains=["device_instant"],
        )


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


def step_values(t: np.ndarray, p: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The step function's value at each time of ``at``: the last sample at or before it (of
    equal stamps the later one), the first sample before the first stamp; as ``step_integral``."""
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    k = np.searchsorted(t, at, side="right") - 1
    return p[np.clip(k, 0, t.size - 1)]


@dataclass
class _Window:
    """One closed window: Zeus's duration and wall-clock edges, the span on the sampler's clock
    and the sampler's rows (times from the window's start; a copy whose power column becomes
    Zeus's step values)."""

    duration: float
    window_s: float
    wall0: float
    wall1: float
    times: np.ndarray
    values: np.ndarray

    @property
    def inside(self) -> np.ndarray:
        return (self.times > 0.0) & (self.times < self.window_s)


def window_duration(zeus_s: float, span_s: float) -> tuple[float, ValidityWarning | None]:
    """The window's length: Zeus's own figure, unless a wall-clock step moved it. Zeus times a
    window with ``time.time()``, which NTP may step; the meter's span on its monotonic clock
    brackets Zeus's calls, so a Zeus time more than max(0.5 s, 5 %) away from it is a step: the
    span is the duration then, with a ``wall_clock_step`` (info) warning."""
    if abs(zeus_s - span_s) <= max(0.5, 0.05 * span_s):
        return zeus_s, None
    return span_s, ValidityWarning(
        code="wall_clock_step",
        severity="info",
        message=(
            f"Zeus timed the window at {zeus_s:.3f} s on the wall clock, which was stepped "
            f"(NTP) during it; the duration is the monotonic clock's {span_s:.3f} s"
        ),
        details={"zeus_time_s": zeus_s, "monotonic_s": span_s},
    )


class ZeusMeter(MeterBase):
    """Energy from ``ZeusMonitor.begin_window``/``end_window`` (Zeus reads the NVML counter on
    Volta and newer, integrates power on older GPUs), checked like the NVML meter's.

    ``sample=False`` leaves our sampler off (Zeus alone: no reasons, utilisation or temperature,
    so fewer checks). ``clock`` (the sampler's, ``perf_counter``), ``wall_clock`` (Zeus's
    timestamps, ``time.time``) and ``background_sampling`` are test seams, as in ``NvmlMeter``.
    """

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
        sample: bool = True,
        clock: Callable[[], float] = time.perf_counter,
        wall_clock: Callable[[], float] = time.time,
        background_sampling: bool = True,
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
        self._clock, self._wall = clock, wall_clock
        try:
            self.monitor = zeus_monitor.ZeusMonitor(gpu_indices=self.cuda_indices, cpu_indices=[])
        except Exception as exc:  # Zeus raises ValueError/RuntimeError/its own errors
            raise EnergyMeterError(f"zeus.monitor.ZeusMonitor could not start: {exc}") from exc
        n_gpus = len(getattr(self.monitor, "gpus", []) or [])
        if n_gpus == 0 or max(self.cuda_indices) >= n_gpus:
            raise EnergyMeterError(
                f"Zeus sees {n_gpus} GPU(s); CUDA device(s) {self.cuda_indices} are not among them"
            )
        self.sampler: Sampler | None = None
        if sample and nvml is not None:
            self.sampler = Sampler(
                nvml,
                self.nvml_indices,
                self.sample_period_s,
                read_counter=[False] * len(self.nvml_indices),  # Zeus reads the counter
                clock=clock,
                background=background_sampling,
            )
        self.power_monitor: Any = None
        self.timeseries_problem: str | None = None
        if timeseries:
            try:
                self.power_monitor = start_power_monitor(
                    zeus_monitor, self.cuda_indices, self.sample_period_s
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
        self._limits_w: dict[int, float] = {}
        self._series: tuple[np.ndarray, np.ndarray] | None = None

    def start(self) -> None:
        if self._closed:
            raise EnergyMeterError("this Zeus meter was closed; create a new one with select_meter")
        if self._key is not None:
            raise EnergyMeterError("a window is already open on this meter; call stop() first")
        self._n += 1
        key = f"llem-window-{self._n}"
        self._started_at = utc_now("milliseconds")
        self._wall0 = self._wall()
        self._t0 = self._clock()
        try:
            self.monitor.begin_window(key, sync_execution=False)
        except Exception as exc:  # Zeus's own GPU errors, or NVML's through it
            raise self._failed("begin_window", exc) from exc
        self._key = key
        if self.sampler is not None:
            self.sampler.begin(self._t0)
        if self.check_processes and self.nvml is not None:
            self._pids_start = gpu_pids(self.nvml, self.nvml_indices)
            self._viol_start = {i: violation_ns(self.nvml, i) for i in self.nvml_indices}
        if self.nvml is not None:
            self._limits_w = power_limits_w(self.nvml, self.nvml_indices)

    def stop(self) -> EnergyMeasurement:
        if self._key is None:
            raise EnergyMeterError("stop() called without start()")
        key, self._key = self._key, None
        try:
            m = self.monitor.end_window(key, sync_execution=False)
        except Exception as exc:  # Zeus's own GPU errors, or NVML's through it
            raise self._failed("end_window", exc) from exc
        finally:
            if self.sampler is not None:
                self.sampler.end()
        self._raise_if_lost(m.gpu_energy)
        t1, wall1 = self._clock(), self._wall()
        duration, stepped = window_duration(float(m.time), t1 - self._t0)
        warnings: list[ValidityWarning] = list(self.mapping_warnings)
        if stepped is not None:
            warnings.append(stepped)
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
        if self.sampler is not None:
            times, values = self.sampler.buffer.view()
            times, values = times - self._t0, values.copy()
        else:
            times = np.empty(0)
            values = np.empty((0, len(self.targets), len(COLUMNS)))
        win = _Window(duration, t1 - self._t0, self._wall0, wall1, times, values)
        devices: list[DeviceEnergy] = []
        for d, target in enumerate(self.targets):
            dev, extra = self._device(
                d, target, m.gpu_energy, timelines.get(target.cuda_index, []), win
            )
            devices.append(dev)
            warnings.extend(extra)
            warnings.extend(
                checks.clock_events(
                    dev.nvml_index,
                    values[win.inside, d, REASONS] if times.size else np.empty(0),
                    violation_deltas.get(dev.nvml_index),
                    duration,
                    mean_power_w=dev.mean_power_w,
                    power_limit_w=self._limits_w.get(dev.nvml_index),
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
        self._series = self._window_series(times, values, timelines, duration)
        total = sum(d.energy_j for d in devices)
        sources = [
            s
            for s, on in (
                ("zeus_power_monitor", bool(timelines)),
                ("nvml_sampler", self.sampler is not None),
            )
            if on
        ]
        self.last = EnergyMeasurement(
            meter=self.name,
            available=True,
            duration_s=duration,
            sensor_period_s=self.sensor_period_s,
            sample_period_s=self.sample_period_s if sources else None,
            total_energy_j=None if math.isnan(total) else total,
            devices=devices,
            warnings=warnings,
            started_at=self._started_at,
            timeseries_source="+".join(sources) or None,
        )
        return self.last

    def _failed(self, call: str, exc: BaseException) -> DeviceLostError:
        """Zeus failed inside a window: it does not say which GPU, so every GPU of the window is
        named (``--resume`` checks that each is still there)."""
        what = f"Zeus's ZeusMonitor.{call} failed: {type(exc).__name__}: {exc}"
        return DeviceLostError.of([(t.nvml_index, t.uuid, what) for t in self.targets])

    def _raise_if_lost(self, gpu_energy: Mapping[int, float]) -> None:
        """After a window: the sampler beside Zeus met a lost GPU, or Zeus's energy for a GPU is
        negative (its counter went backwards: a GPU reset or driver reload)."""
        lost: list[tuple[int | None, str | None, str]] = []
        seen = self.sampler.lost if self.sampler is not None else None
        by_index = {t.nvml_index: t for t in self.targets}
        if seen is not None:
            target = by_index.get(seen.device) if seen.device is not None else None
            lost.append((seen.device, target.uuid if target else None, str(seen)))
        for t in self.targets:
            energy = gpu_energy.get(t.cuda_index)
            if energy is not None and energy < 0:
                lost.append(
                    (
                        t.nvml_index,
                        t.uuid,
                        f"Zeus measured {energy:g} J: its energy counter went backwards during "
                        "the window (the GPU was reset or its driver reloaded under the engine)",
                    )
                )
        if lost:
            raise DeviceLostError.of(lost)

    def _power(
        self, d: int, line: list[tuple[float, float]], win: _Window
    ) -> tuple[float | None, int, float | None, str | None]:
        """(integrated J, samples in the window, peak W, power source) for device ``d``, from
        Zeus's timeline as a step function; its values go into the series at the sampler's rows.
        Without a timeline for it: from the sampler's own power reading."""
        if line:
            arr = np.asarray(line, dtype=np.float64)
            integrated = step_integral(arr[:, 0], arr[:, 1], win.wall0, win.wall0 + win.duration)
            in_window = arr[(arr[:, 0] >= win.wall0) & (arr[:, 0] <= win.wall1)]
            n = int(in_window.shape[0])
            if win.times.size:  # the series: Zeus's value in force at each sampler row
                win.values[:, d, POWER] = step_values(arr[:, 0] - win.wall0, arr[:, 1], win.times)
            return integrated, n, float(in_window[:, 1].max()) if n else None, "instant"
        own = win.values[:, d, POWER] if win.times.size else np.empty(0)
        if own.size == 0 or np.isnan(own).all():
            return None, 0, None, None
        read = own[win.inside & ~np.isnan(own)]
        source = self.nvml.power_source(self.nvml_indices[d]) if self.nvml is not None else None
        return (
            integrate_power(win.times, own, 0.0, win.window_s),
            int(read.size),
            float(read.max()) if read.size else None,
            source,
        )

    def _device(
        self,
        d: int,
        target: DeviceTarget,
        gpu_energy: Mapping[int, float],
        line: list[tuple[float, float]],
        win: _Window,
    ) -> tuple[DeviceEnergy, list[ValidityWarning]]:
        """One GPU's record and its warnings (reset, cross-check, sampler gap)."""
        i = target.nvml_index
        warnings: list[ValidityWarning] = []
        energy = float(gpu_energy.get(target.cuda_index, math.nan))
        integrated, n, peak, power_source = self._power(d, line, win)
        w = checks.counter_power_mismatch(i, energy, integrated)  # energy >= 0: _raise_if_lost
        if w is not None:
            warnings.append(w)
        util = memory = None
        if win.times.size:
            sensor = float(self.sensor_period_s or DEFAULT_SENSOR_PERIOD_S)
            w = checks.sampler_gap(i, win.times, max(sensor, self.sample_period_s))
            if w is not None:
                warnings.append(w)
            util, memory = busy_stats(
                win.values[win.inside, d, UTIL], win.values[win.inside, d, MEMORY]
            )
        duration = win.duration
        mean_w = energy / duration if duration > 0 and not math.isnan(energy) else None
        device = DeviceEnergy(
            nvml_index=i,
            cuda_index=target.cuda_index,
            uuid=target.uuid,
            name=target.name,
            energy_j=energy,
            method="zeus",
            integrated_energy_j=integrated,
            mean_power_w=mean_w,
            peak_power_w=peak,
            n_samples=n,
            power_source=power_source,
            mean_utilization_pct=util,
            max_memory_used_mb=memory,
        )
        return device, warnings

    def _window_series(
        self,
        times: np.ndarray,
        values: np.ndarray,
        timelines: dict[int, list[tuple[float, float]]],
        duration: float,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The saved series, times from the window's start: the sampler's rows (their power
        column already Zeus's step value), or without a sampler Zeus's step function on a
        regular grid of ``sample_period_s`` over the window."""
        if times.size:
            return times, values
        lines = {c: timelines.get(c) for c in self.cuda_indices}
        if not any(lines.values()) or duration <= 0:
            return None
        grid = np.append(np.arange(0.0, duration, self.sample_period_s), duration)
        out = np.full((grid.size, len(self.targets), len(COLUMNS)), np.nan)
        for d, c in enumerate(self.cuda_indices):
            line = lines[c]
            if line:
                arr = np.asarray(line, dtype=np.float64)
                out[:, d, POWER] = step_values(arr[:, 0] - self._wall0, arr[:, 1], grid)
        return grid, out

    def write_timeseries(self, path: Path) -> Path | None:
        """CSV of the last window's series (``_window_series``), one row per device per time."""
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
        if self._key is not None and self.sampler is not None:
            self.sampler.end()
            self._key = None
        if self.power_monitor is not None:
            with contextlib.suppress(Exception):
                self.power_monitor.stop()
        if self.nvml is not None:
            self.nvml.shutdown()
