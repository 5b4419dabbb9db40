"""The idle-baseline cache file: ``<cache_dir>/idle_baseline.json``, one entry per GPU and kind.

``{"version": 2, "entries": {key: entry}}``; a key is the GPU's identity (UUID, driver, enforced
power limit, persistence mode, application clocks: ``gpu_state.baseline_identity``), ``|cold`` or
``|resident``, and for resident idle the experiment's config hash. An entry holds one GPU's idle
mean, its SE, drift, state, the window's size and when it was measured: ``measured_at_epoch``
(wall time: its age is judged across processes and boots, where no monotonic clock is shared)
and ``window_monotonic`` (absent from entries written before issue 30). A file that cannot be
used is ignored and written again; ``energy/baseline.py`` measures what goes in.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from llenergymeasure.energy.types import BaselineRecord, MonotonicWindow

CACHE_FILE = "idle_baseline.json"
CACHE_VERSION = 2  # 2: cold/resident kinds, SE, state (issue 19); version-1 entries are ignored


def load_cache(path: Path, problems: list[str] | None = None) -> dict[str, Any]:
    """The cache's entries; a file that cannot be used is ignored (and rebuilt when a window is
    stored), with why in ``problems`` when given."""
    problem = None
    try:
        data = json.loads(path.read_text(errors="replace"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        data, problem = None, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
    if problem is None and not isinstance(data, dict):
        problem = "not a JSON object"
    elif problem is None and data.get("version") != CACHE_VERSION:
        problem = f"cache version {data.get('version')!r}, not {CACHE_VERSION}"
    elif problem is None and not isinstance(data.get("entries"), dict):
        problem = "its entries are not a mapping"
    if problem is not None:
        if problems is not None:
            problems.append(problem)
        return {}
    return dict(data["entries"])


def save_cache(path: Path, entries: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(
        json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=2, sort_keys=True)
    )
    tmp.replace(path)


def store_entries(
    cache_path: Path, keys: dict[int, str], record: BaselineRecord, now: float, n_samples: dict
) -> None:
    """Write ``record``'s figures for each GPU under its key in ``keys`` (``now``: wall time,
    for the entry's age), keeping the other entries; a cache that cannot be written is left."""
    entries = load_cache(cache_path)
    for i, key in keys.items():
        entries[key] = {
            "idle_power_w": record.idle_power_w[i],
            "idle_power_se_w": record.idle_power_se_w.get(i, 0.0),
            "drift": record.drift.get(i, 0.0),
            "drift_se": record.drift_se.get(i),
            "state": record.state.get(i, {}),
            "measured_at_epoch": now,
            "measured_at": record.measured_at,
            "duration_s": record.duration_s,
            "n_windows": record.n_windows,
            "n_samples": n_samples.get(i, 0),
            "window_monotonic": (
                record.window_monotonic.model_dump() if record.window_monotonic else None
            ),
        }
    # a read-only cache directory costs the next run a re-measure, nothing more
    with contextlib.suppress(OSError):
        save_cache(cache_path, entries)


def from_cache(
    entries: dict[str, Any],
    keys: dict[int, str],
    now: float,
    ttl_s: float,
    kind: Literal["cold", "resident"],
    cache_key: str | None,
) -> BaselineRecord | None:
    """The baseline from the cache when every GPU in ``keys`` has an entry at most ``ttl_s``
    old at wall time ``now`` (an entry from the future, after the wall clock was stepped back,
    is not used), else None; the window's size, time and monotonic window are the oldest
    entry's. An entry with a field of the wrong type raises (TypeError, ValueError, KeyError)."""
    hits: dict[int, dict[str, Any]] = {}
    for i, key in keys.items():
        e = entries.get(key)
        try:
            fresh = isinstance(e, dict) and 0 <= now - float(e["measured_at_epoch"]) <= ttl_s
        except (KeyError, TypeError, ValueError):
            fresh = False
        if fresh:
            hits[i] = e  # type: ignore[assignment]
    if len(hits) != len(keys):
        return None
    oldest = min(hits.values(), key=lambda e: float(e["measured_at_epoch"]))
    mono = oldest.get("window_monotonic")  # absent from entries written before issue 30
    return BaselineRecord(
        kind=kind,
        idle_power_w={i: float(e["idle_power_w"]) for i, e in hits.items()},
        idle_power_se_w={i: float(e.get("idle_power_se_w", 0.0)) for i, e in hits.items()},
        drift={i: float(e.get("drift", 0.0)) for i, e in hits.items()},
        drift_se={
            i: float(e["drift_se"]) for i, e in hits.items() if e.get("drift_se") is not None
        },
        state={i: dict(e.get("state") or {}) for i, e in hits.items()},
        n_windows=int(oldest.get("n_windows", 0)),
        duration_s=float(oldest.get("duration_s", 0.0)),
        measured_at=str(oldest.get("measured_at")),
        from_cache=True,
        cache_key=cache_key,
        n_samples=sum(int(e.get("n_samples", 0)) for e in hits.values()),
        window_monotonic=MonotonicWindow.model_validate(mono) if mono is not None else None,
    )
