"""Idle-power baseline and baseline-adjusted energy.

A GPU draws power doing nothing (77-81 W on the H200 we measured); over a long window that idle
draw is a large share of the raw energy. The baseline is the mean power of each measured GPU
over an idle window, cached on disk per GPU (keyed by UUID and enforced power limit, which both
change idle power) for a TTL so a study does not pay the window for every experiment.

Adjusted energy = max(0, raw - idle_power * duration). Raw is always kept beside it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llenergymeasure.energy.meters import EnergyMeter
from llenergymeasure.energy.types import BaselineRecord, EnergyMeasurement

CACHE_FILE = "idle_baseline.json"
CACHE_VERSION = 1
# Warnings from the idle window that do not make it less valid as an idle reading.
_IGNORED_IN_BASELINE = {"short_window"}


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _save_cache(path: Path, entries: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=2, sort_keys=True)
    )
    tmp.replace(path)


def measure_idle_baseline(
    meter: EnergyMeter,
    duration_s: float,
    cache_dir: Path | None,
    ttl_s: float,
    *,
    clock: Any = time.time,
) -> BaselineRecord:
    """Mean idle power per GPU over ``duration_s`` seconds, or from the cache when every measured
    GPU has an entry younger than ``ttl_s`` (0 disables the cache; so does ``cache_dir=None``).

    The caller makes sure the GPUs are idle (no work queued) before calling.
    """
    if not meter.available:
        return BaselineRecord(
            available=False,
            unavailable_reason=meter.unavailable_reason or "no energy meter is available",
        )
    if not (isinstance(duration_s, (int, float)) and duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(
            f"baseline duration_s must be a positive number of seconds, got {duration_s!r}"
        )
    identity = meter.cache_identity() or {}
    use_cache = cache_dir is not None and ttl_s > 0 and bool(identity)
    cache_path = Path(cache_dir) / CACHE_FILE if cache_dir is not None else None
    cache_key = ",".join(identity[i] for i in sorted(identity)) or None

    if use_cache and cache_path is not None:
        entries = _load_cache(cache_path)
        now = clock()
        hits: dict[int, dict[str, Any]] = {}
        for i, key in identity.items():
            e = entries.get(key)
            try:
                fresh = isinstance(e, dict) and 0 <= now - float(e["measured_at_epoch"]) <= ttl_s
            except (KeyError, TypeError, ValueError):
                fresh = False
            if fresh:
                hits[i] = e  # type: ignore[assignment]
        if len(hits) == len(identity):
            oldest = min(hits.values(), key=lambda e: float(e["measured_at_epoch"]))
            return BaselineRecord(
                idle_power_w={i: float(e["idle_power_w"]) for i, e in hits.items()},
                duration_s=float(oldest.get("duration_s", 0.0)),
                measured_at=str(oldest.get("measured_at")),
                from_cache=True,
                cache_key=cache_key,
                n_samples=sum(int(e.get("n_samples", 0)) for e in hits.values()),
            )

    meter.start()
    try:
        time.sleep(duration_s)
    finally:
        m = meter.stop()
    if m.duration_s <= 0 or not m.devices:
        return BaselineRecord(
            available=False, unavailable_reason="the idle window measured nothing"
        )
    idle = {d.nvml_index: d.energy_j / m.duration_s for d in m.devices}
    measured_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record = BaselineRecord(
        idle_power_w=idle,
        duration_s=m.duration_s,
        measured_at=measured_at,
        from_cache=False,
        cache_key=cache_key,
        n_samples=sum(d.n_samples for d in m.devices),
        warnings=[w for w in m.warnings if w.code not in _IGNORED_IN_BASELINE],
    )
    # An idle window that saw other processes or throttling is not cached: it is not idle.
    if use_cache and cache_path is not None and not record.warnings:
        entries = _load_cache(cache_path)
        now = clock()
        for i, key in identity.items():
            entries[key] = {
                "idle_power_w": idle[i],
                "measured_at_epoch": now,
                "measured_at": measured_at,
                "duration_s": m.duration_s,
                "n_samples": next((d.n_samples for d in m.devices if d.nvml_index == i), 0),
            }
        # a read-only cache directory costs the next run a re-measure, nothing more
        with contextlib.suppress(OSError):
            _save_cache(cache_path, entries)
    return record


def apply_baseline(
    measurement: EnergyMeasurement, baseline: BaselineRecord | None
) -> EnergyMeasurement:
    """A copy of ``measurement`` with ``energy_adjusted_j = max(0, raw - idle_w * duration_s)``
    per device and their total. Devices without a baseline value stay unadjusted (None), and
    then so does the total."""
    out = measurement.model_copy(deep=True)
    if baseline is None or not baseline.available or not out.available:
        return out
    adjusted_total = 0.0
    complete = bool(out.devices)
    for d in out.devices:
        idle = baseline.idle_power_w.get(d.nvml_index)
        if idle is None or math.isnan(d.energy_j):
            complete = False
            continue
        d.idle_power_w = idle
        d.energy_adjusted_j = max(0.0, d.energy_j - idle * out.duration_s)
        adjusted_total += d.energy_adjusted_j
    out.total_energy_adjusted_j = adjusted_total if complete else None
    return out
