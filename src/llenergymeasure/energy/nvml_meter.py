"""The NVML meter: each GPU's total-energy counter (primary) with a background power sampler.

A meter is ``energy/<name>_meter.py``; the protocol, the base class and the pieces shared with the
other meters (end-of-window process and violation checks, the time-series CSV, the cache
identity) are in ``energy/meters.py``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from llenergymeasure.energy import checks
from llenergymeasure.energy.devices import DeviceMapping, DeviceTarget
from llenergymeasure.energy.edges import (
    CounterEdge,
    await_counter_updates,
    edge_correction_j,
    quantisation_bound_j,
)
from llenergymeasure.energy.errors import (
    DeviceLostError,
    EnergyMeterError,
    NvmlDeviceLostError,
    NvmlError,
)
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
    COUNTER,
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


class NvmlMeter(MeterBase):
    """NVML total-energy counter per GPU (primary), with a background power sampler.

    On a GPU without the counter, energy is the trapezoidal integral of sampled power, recorded
    as ``method: integrated_power`` with a warning. ``sample=False`` turns the sampler off for
    GPUs that have the counter (no time series, fewer checks); it exists to measure the
    sampler's own cost. ``clock`` and ``background_sampling`` are test seams (see ``Sampler``):
    a fake clock, with samples taken by the test, checks the arithmetic without sleeping.

    A GPU lost during a window (an NVML error of ``DEVICE_LOST_CODES`` in a counter read or in
    the sampler, a measured GPU gone from the device count, or its energy counter going
    backwards: a reset or driver reload under the engine) makes ``start()``/``stop()`` raise
    ``DeviceLostError`` (phase ``energy``, the GPUs' UUIDs in ``lost_gpus``) with the sampler's
    threads already stopped: that window has no number.
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
        align_edges: bool = False,
        sleep: Callable[[float], None] = time.sleep,
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
        self._limits_w: dict[int, float] = {}
        self.align_edges = align_edges
        self._sleep = sleep
        self._edges0: list[CounterEdge | None] = []
        self._edges1: list[CounterEdge | None] = []
        self._count0: int | None = None

    def _read_counters(self) -> list[int | None]:
        out: list[int | None] = []
        for has, i in zip(self.has_counter, self.nvml_indices, strict=False):
            out.append(self.nvml.total_energy_mj(i) if has else None)
        return out

    def _counter_edges(self) -> tuple[float, list[CounterEdge | None]]:
        """(the edge's time, each GPU's counter there). With ``align_edges`` the edge waits for
        every counter's next update (at most ``1.5 * sensor_period_s``); else it is now."""
        with_counter = [
            i for has, i in zip(self.has_counter, self.nvml_indices, strict=True) if has
        ]
        if not self.align_edges or not with_counter:
            t = self._clock()
            return t, [
                CounterEdge(c, t, None) if c is not None else None for c in self._read_counters()
            ]
        found = iter(
            await_counter_updates(
                self.nvml.total_energy_mj,
                with_counter,
                self._clock,
                self._sleep,
                1.5 * float(self.sensor_period_s or DEFAULT_SENSOR_PERIOD_S),
            )
        )
        edges = [next(found) if has else None for has in self.has_counter]
        return self._clock(), edges

    def start(self) -> None:
        if self._closed:
            raise EnergyMeterError("this NVML meter was closed; create a new one with select_meter")
        if self._open:
            raise EnergyMeterError("a window is already open on this meter; call stop() first")
        self._started_at = utc_now("milliseconds")
        try:
            self._t0, self._edges0 = self._counter_edges()
        except NvmlDeviceLostError as exc:
            raise self._lost_error([(exc.device, str(exc))]) from exc
        self._c0 = [e.counter_mj if e is not None else None for e in self._edges0]
        if self.sampler is not None:
            self.sampler.begin(self._t0)
        self._open = True
        self._count0 = self._device_count()
        # one-off queries after the counters, so the window starts when start() is called
        if self.check_processes:
            self._pids_start = gpu_pids(self.nvml, self.nvml_indices)
            self._viol_start = {i: violation_ns(self.nvml, i) for i in self.nvml_indices}
        self._limits_w = power_limits_w(self.nvml, self.nvml_indices)

    def stop(self) -> EnergyMeasurement:
        if not self._open:
            raise EnergyMeterError("stop() called without start()")
        c1 = self._end_window()
        t0, t1 = self._t0, self._t1
        duration = t1 - t0
        sensor_period = float(self.sensor_period_s or DEFAULT_SENSOR_PERIOD_S)
        warnings: list[ValidityWarning] = list(self.mapping_warnings)
        w = checks.short_window(duration, self.sensor_period_s)
        if w is not None:
            warnings.append(w)

        if self.sampler is not None:
            times, values = self.sampler.buffer.view()
            read_t = self.sampler.buffer.device_times()
        else:
            times, values = np.empty(0), np.empty((0, len(self.nvml_indices), len(COLUMNS)))
            read_t = np.empty((0, len(self.nvml_indices)))
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
            # each GPU's own read times (its reads in a row are not at the row's time)
            dev_t = np.where(np.isnan(read_t[:, d]), times, read_t[:, d]) if times.size else times
            integrated = integrate_power(dev_t, power, t0, t1) if times.size else None
            valid_power = power[inside & ~np.isnan(power)] if times.size else np.empty(0)
            if self.has_counter[d]:
                c0, c1d = self._c0[d], c1[d]
                assert c0 is not None and c1d is not None
                # a counter that stepped back anywhere in the window failed it (_end_window):
                # the readings between the edges only rise, so the energy is the edges' difference
                energy, bound = self._edge_terms(d, (c1d - c0) / 1000.0, power, duration)
                method: Literal["counter", "integrated_power"] = "counter"
                w = checks.counter_power_mismatch(i, energy, integrated)
                if w is not None:
                    warnings.append(w)
            else:
                energy = integrated if integrated is not None else math.nan
                bound = None
                method = "integrated_power"
                warnings.append(checks.integrated_power_only(i))
            if times.size:
                ok = ~np.isnan(power)
                edge_t = dev_t[ok]
                w = checks.sampler_gap(i, edge_t, max(sensor_period, self.sample_period_s))
                if w is not None:
                    warnings.append(w)
                reasons = values[inside, d, REASONS]
                util, memory = busy_stats(values[inside, d, UTIL], values[inside, d, MEMORY])
            else:
                reasons = np.empty(0)
                util = memory = None
            warnings.extend(
                checks.clock_events(
                    i,
                    reasons,
                    violation_deltas.get(i),
                    duration,
                    mean_power_w=float(energy) / duration if duration > 0 else None,
                    power_limit_w=self._limits_w.get(i),
                )
            )
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
                    mean_utilization_pct=util,
                    max_memory_used_mb=memory,
                    edges_aligned=self._aligned(d),
                    quantisation_bound_j=bound,
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

    def _end_window(self) -> list[int | None]:
        """Read the end edge (``_t1``, each GPU's counter there), stop the sampler whatever
        happens, and raise ``DeviceLostError`` if a measured GPU was lost meanwhile."""
        try:
            self._t1, self._edges1 = self._counter_edges()
            c1 = [e.counter_mj if e is not None else None for e in self._edges1]
        except NvmlDeviceLostError as exc:
            seen = self.sampler.lost if self.sampler is not None else None
            first = [(seen.device, str(seen))] if seen is not None else []  # met before the edge
            raise self._lost_error([*first, (exc.device, str(exc))]) from exc
        finally:
            if self.sampler is not None:
                self.sampler.end()
            self._open = False
        self._raise_if_lost(c1)
        return c1

    def _device_count(self) -> int | None:
        """NVML's device count now (None where it cannot be read: not a loss by itself)."""
        try:
            return self.nvml.device_count()
        except NvmlError:
            return None

    def _raise_if_lost(self, c1: list[int | None]) -> None:
        """After a window: raise ``DeviceLostError`` if the sampler met a lost GPU, a measured
        GPU left the device count, or an energy counter went backwards."""
        lost: list[tuple[int | None, str]] = []
        if self.sampler is not None and self.sampler.lost is not None:
            lost.append((self.sampler.lost.device, str(self.sampler.lost)))
        count1 = self._device_count()
        if self._count0 is not None and count1 is not None and count1 < self._count0:
            counts = f"{self._count0} GPUs at the window's start, {count1} at its end"
            for t in self.targets:
                if t.uuid is None:  # no UUID to tell which GPU left: count it as this one
                    lost.append((t.nvml_index, f"NVML's device count fell ({counts})"))
                    continue
                try:
                    self.nvml.handle_by_uuid(t.uuid)
                except NvmlError as exc:
                    lost.append(
                        (
                            t.nvml_index,
                            f"it left NVML's device count ({counts}) and its UUID no longer "
                            f"resolves ({exc})",
                        )
                    )
        for d, i in enumerate(self.nvml_indices):
            back = self._backward_step(d, c1[d])
            if back is not None:
                lost.append(
                    (
                        i,
                        f"its energy counter went backwards during the window, from {back[0]} mJ "
                        f"to {back[1]} mJ: the GPU was reset or its driver reloaded under the "
                        "engine",
                    )
                )
        if lost:
            raise self._lost_error(lost)

    def _backward_step(self, d: int, c1: int | None) -> tuple[int, int] | None:
        """The first (before, after) readings where device ``d``'s counter went backwards between
        the window's edges and the sampler's readings inside it, or None."""
        c0 = self._c0[d] if d < len(self._c0) else None
        if c0 is None or c1 is None:
            return None
        seq = [float(c0)]
        if self.sampler is not None and self.sampler.buffer.n:
            times, values = self.sampler.buffer.view()
            inside = (times > self._t0) & (times < self._t1)
            col = values[inside, d, COUNTER]
            seq += [float(v) for v in col[~np.isnan(col)]]
        seq.append(float(c1))
        for a, b in itertools.pairwise(seq):
            if b < a:
                return int(a), int(b)
        return None

    def _lost_error(self, lost: list[tuple[int | None, str]]) -> DeviceLostError:
        """The run's error for GPUs lost in a window: each GPU's UUID and what was seen."""
        uuids = {t.nvml_index: t.uuid for t in self.targets}
        return DeviceLostError.of(
            [(i, uuids.get(i) if i is not None else None, r) for i, r in lost]
        )

    def _aligned(self, d: int) -> bool | None:
        e0, e1 = self._edges0[d], self._edges1[d]
        return None if e0 is None or e1 is None else e0.aligned and e1.aligned

    def _edge_terms(
        self, d: int, energy: float, power: np.ndarray, duration: float
    ) -> tuple[float, float | None]:
        """(counter energy corrected to [t0, t1], its quantisation bound in J) for device ``d``.
        The edge powers are the sampler's first and last readings (taken at the edges), else
        the window's mean power."""
        e0, e1 = self._edges0[d], self._edges1[d]
        if e0 is None or e1 is None:
            return energy, None
        mean = energy / duration if duration > 0 else 0.0
        ok = power[~np.isnan(power)] if power.size else power
        p0 = float(ok[0]) if ok.size else mean
        p1 = float(ok[-1]) if ok.size else mean
        energy += edge_correction_j(e0, e1, self._t0, self._t1, p0, p1)
        period = float(self.sensor_period_s or DEFAULT_SENSOR_PERIOD_S)
        return energy, quantisation_bound_j(e0, e1, p0, p1, period)

    def write_timeseries(self, path: Path) -> Path | None:
        """CSV of the last window's samples, one row per device per sample."""
        if self.sampler is None or self.sampler.buffer.n == 0:
            return None
        times, values = self.sampler.buffer.view()
        read_t = self.sampler.buffer.device_times() - self._t0
        return write_timeseries_csv(path, times - self._t0, self.nvml_indices, values, read_t)

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
