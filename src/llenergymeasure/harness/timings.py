"""Where an experiment process's wall time goes: the phases' durations, back to back.

``PhaseClock`` is fed every phase change (``core._Phases.enter``) and adds the time since the
previous change to the phase that was running, so the phases cover the harness's time without
gaps; ``startup_s`` is the process's age when the harness started (the interpreter's start and
the package's import), read from the kernel's record of when the process started. The issue this
answers (26): a campaign spent 70-80 % of its GPU time outside the windows it reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from llenergymeasure.results.phase_records import TimingsRecord

#: phase names (``Phases.enter``) whose time has a field of its own (``<name>_s``)
_FIELDS = {
    "environment",
    "model",
    "imports",
    "cold_baseline",
    "load",
    "prompts",
    "compile",
    "warmup",
    "resident_baseline",
    "rewarm",
    "window",
    "quality",
    "result",
}


def timing_key(phase: str, detail: str | None) -> str:
    """The timings field a phase's time goes to (``other`` for a phase without one)."""
    if phase == "baseline":
        return "cold_baseline" if (detail or "").startswith("cold") else "resident_baseline"
    key = {"start": "environment", "import": "imports", "measure": "window", "done": "result"}.get(
        phase, phase
    )
    return key if key in _FIELDS else "other"


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: ``/proc/self/stat`` on the boot-time clock,
    10 ms resolution); None where that cannot be read."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, now - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class PhaseClock:
    """Adds each phase's time to its field; ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter, own_process: bool = False):
        self.clock = clock
        self.startup_s = process_age_s() if own_process else None
        self._last = clock()
        self._key = "environment"
        self.spent: dict[str, float] = {}

    def _flush(self) -> None:
        now = self.clock()
        self.spent[self._key] = self.spent.get(self._key, 0.0) + (now - self._last)
        self._last = now

    def enter(self, phase: str, detail: str | None = None) -> None:
        self._flush()
        self._key = timing_key(phase, detail)

    def record(self, window_s: float) -> TimingsRecord:
        """The timings up to now (the phase running now counted to now)."""
        self._flush()
        parts = {f"{k}_s": round(v, 6) for k, v in self.spent.items()}
        harness = sum(self.spent.values())
        total = harness + (self.startup_s or 0.0)
        return TimingsRecord(
            startup_s=round(self.startup_s, 6) if self.startup_s is not None else None,
            **parts,
            total_s=round(total, 6),
            window_share=round(window_s / total, 6) if total > 0 else 0.0,
        )
