"""Re-warm after the resident idle baseline, so that every cycle's window starts equally warm.

The resident baseline (settle up to ``baseline_settle_max_s`` plus ``baseline.duration_s``) sits
between warmup and the window only when it is measured now; a later cycle reads it from the cache
and starts its window straight after warmup. Without a re-warm the first cycle would be measured
on a GPU that idled for up to a minute: cooler, clocked down, drawing less (issue 25 item 5).

The warmup's level is read at its end (``warm_level``): the last batch's latency, and per GPU the
mean sampled power over that batch and the last sampled temperature. After a baseline measured in
this run, ``run_rewarm`` repeats the warmup's batch, each batch metered apart, until one is back
at that level: latency at most ``target x (1 + TOLERANCE)``, power at least ``target x (1 -
TOLERANCE)`` and temperature at least ``target - TEMPERATURE_TOLERANCE_C`` on every GPU that has
both readings (a meter without a time series checks the latency alone). It is bounded like
warmup: ``warmup.max_runs`` batches in cv mode (``warmup.runs``, at least one, in fixed mode) and
``warmup.max_s`` seconds. The record says where it started, where it ended and whether it got
there; ``rewarm_incomplete`` warns when it did not.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llenergymeasure.backends.base import Backend, Prompt
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import BaselineRecord, ValidityWarning
from llenergymeasure.harness.window import Clock, read_timeseries, rotated
from llenergymeasure.results.models import WarmupRecord
from llenergymeasure.results.phase_records import RewarmRecord

TOLERANCE = 0.05  # relative, on latency and power: batch-to-batch scatter of a warm GPU is smaller
TEMPERATURE_TOLERANCE_C = 1.0  # NVML reports whole degrees


@dataclass(frozen=True)
class Level:
    """How warm the engine is: a batch's latency, and per GPU its mean power and temperature."""

    latency_s: float | None = None
    power_w: dict[int, float] = field(default_factory=dict)
    temperature_c: dict[int, float] = field(default_factory=dict)


def series_level(
    meter: Any, scratch: Path, last_s: float
) -> tuple[dict[int, float], dict[int, float]]:
    """(mean sampled W, last sampled temperature C) per GPU over the last ``last_s`` seconds of
    the meter's latest window; empty where the meter keeps no time series or lacks a column."""
    power: dict[int, float] = {}
    temperature: dict[int, float] = {}
    written = None
    with contextlib.suppress(OSError):
        written = meter.write_timeseries(scratch / "level.csv")
    if written is None:
        return power, temperature
    for index, cols in read_timeseries(written).items():
        t = cols["t_s"]
        if t.size == 0:
            continue
        # rows strictly after the batch began (a row at its start was read before its work;
        # the series keeps microseconds, hence the margin)
        inside = t > float(t.max()) - last_s + 2e-6
        p = cols.get("power_w")
        if p is not None:
            values = [float(v) for v in p[inside] if not math.isnan(v)]
            if values:
                power[index] = sum(values) / len(values)
        c = cols.get("temperature_c")
        if c is not None:
            values = [float(v) for v in c[inside] if not math.isnan(v)]
            if values:
                temperature[index] = values[-1]
    return power, temperature


def warm_level(warmup: WarmupRecord, meter: Any) -> Level:
    """The warmup's end level: its last batch's latency, power and temperature (read from the
    warmup's time series, which the meter still holds: call it before the meter's next window)."""
    if not warmup.latencies_s:
        return Level()
    last_s = warmup.latencies_s[-1]
    if warmup.energy_j is None:  # warmup was not metered: no series of its own
        return Level(latency_s=last_s)
    with tempfile.TemporaryDirectory(prefix="llem-rewarm-") as scratch:
        power, temperature = series_level(meter, Path(scratch), last_s)
    return Level(latency_s=last_s, power_w=power, temperature_c=temperature)


def at_level(target: Level, now: Level) -> bool:
    """Whether ``now`` is back at ``target`` (one-sided: a cold GPU is slower, cooler, draws less)."""
    if (
        target.latency_s is not None
        and now.latency_s is not None
        and now.latency_s > target.latency_s * (1.0 + TOLERANCE)
    ):
        return False
    for i, w in target.power_w.items():
        if i in now.power_w and now.power_w[i] < w * (1.0 - TOLERANCE):
            return False
    for i, c in target.temperature_c.items():
        if i in now.temperature_c and now.temperature_c[i] < c - TEMPERATURE_TOLERANCE_C:
            return False
    return True


def needs_rewarm(baseline: BaselineRecord | None) -> bool:
    """A resident baseline measured now left the GPU idle; one read from the cache did not."""
    return baseline is not None and baseline.available and not baseline.from_cache


def run_rewarm(
    backend: Backend,
    batch: list[Prompt],
    config: ExperimentConfig,
    target: Level,
    baseline: BaselineRecord,
    meter: Any,
    on_step: Callable[[str], None] = lambda detail: None,
    clock: Clock = time.perf_counter,
) -> RewarmRecord:
    """Repeat the warmup's ``batch`` (rotated as warmup does) until a batch is back at
    ``target`` or a cap is reached; each batch metered apart when the meter is available."""
    wcfg = config.warmup
    limit = max(1, wcfg.runs) if wcfg.mode == "fixed" else wcfg.max_runs
    batch = [rotated(p) for p in batch]
    measured = bool(getattr(meter, "available", False))
    latencies: list[float] = []
    energy: float | None = 0.0 if measured else None
    now = Level()
    stopped_by: Literal["reached", "max_runs", "max_s"] = "max_runs"
    t_start = clock()
    with tempfile.TemporaryDirectory(prefix="llem-rewarm-") as scratch:
        while True:
            on_step(f"{len(latencies) + 1}/{limit}")
            if measured:
                meter.start()
            try:
                t0 = clock()
                backend.generate(batch)
                backend.synchronize()
                latency = clock() - t0
            finally:
                m = meter.stop() if measured else None
            latencies.append(latency)
            if m is not None and energy is not None:
                energy = energy + m.total_energy_j if m.total_energy_j is not None else None
            power, temperature = (
                series_level(meter, Path(scratch), latency) if measured else ({}, {})
            )
            now = Level(latency_s=latency, power_w=power, temperature_c=temperature)
            if at_level(target, now):
                stopped_by = "reached"
                break
            if len(latencies) >= limit:
                break
            if clock() - t_start >= wcfg.max_s:
                stopped_by = "max_s"
                break
    return RewarmRecord(
        batches=len(latencies),
        duration_s=clock() - t_start,
        reached=stopped_by == "reached",
        stopped_by=stopped_by,
        latencies_s=latencies,
        energy_j=energy,
        target_latency_s=target.latency_s,
        target_power_w=dict(target.power_w),
        target_temperature_c=dict(target.temperature_c),
        before_power_w=dict(baseline.idle_power_w),
        before_temperature_c={
            i: float(st["temperature_c"])
            for i, st in baseline.state.items()
            if isinstance(st, dict) and st.get("temperature_c") is not None
        },
        after_power_w=dict(now.power_w),
        after_temperature_c=dict(now.temperature_c),
        tolerance=TOLERANCE,
        temperature_tolerance_c=TEMPERATURE_TOLERANCE_C,
    )


def rewarm_warnings(rewarm: RewarmRecord | None) -> list[ValidityWarning]:
    """``rewarm_incomplete`` when the re-warm stopped at a cap before reaching the warm level."""
    if rewarm is None or rewarm.reached:
        return []
    return [
        ValidityWarning(
            code="rewarm_incomplete",
            message=(
                f"after the idle baseline, {rewarm.batches} re-warm batches in "
                f"{rewarm.duration_s:.1f} s did not bring latency, power and temperature back to "
                f"the warmup's level (stopped by {rewarm.stopped_by}; target "
                f"{rewarm.target_latency_s} s, {rewarm.target_power_w} W, "
                f"{rewarm.target_temperature_c} C; reached {rewarm.latencies_s[-1]:.4g} s, "
                f"{rewarm.after_power_w} W, {rewarm.after_temperature_c} C): the window may "
                "start colder than a cycle whose baseline came from the cache; raise "
                "warmup.max_runs / warmup.max_s"
            ),
            details={
                "stopped_by": rewarm.stopped_by,
                "batches": rewarm.batches,
                "target_latency_s": rewarm.target_latency_s,
                "last_latency_s": rewarm.latencies_s[-1] if rewarm.latencies_s else None,
            },
        )
    ]
