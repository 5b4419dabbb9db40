"""A study's time: how much of its experiment processes' wall time was measured window.

Each result's ``timings`` block (``harness/timings.py``) splits its process's wall time into
phases; summed over the runs, they say what share of a campaign's GPU-hours the reported windows
are and what took the rest (issue 26: 17-33 % in window on an H100 before compile caches).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from llenergymeasure.results.models import ExperimentResult

#: the timings fields that are phases (``total_s`` and ``window_share`` are not)
_NOT_PHASES = {"total_s", "window_share"}


@dataclass(frozen=True)
class CampaignTime:
    """Sums over the runs that recorded timings; ``rest_s``: phase -> seconds, largest first."""

    runs: int
    total_s: float
    window_s: float
    rest_s: dict[str, float] = field(default_factory=dict)

    @property
    def window_share(self) -> float:
        return self.window_s / self.total_s if self.total_s > 0 else 0.0


def campaign_time(runs: Iterable[ExperimentResult]) -> CampaignTime | None:
    """The runs' time in window and outside it (None when no run recorded its timings).

    The window is each result's ``duration_s`` (the measured window itself); the measure phase's
    remainder (synchronising, starting and stopping the meters) is ``window_edges``.
    """
    n, total, window = 0, 0.0, 0.0
    rest: dict[str, float] = {}
    for r in runs:
        t = r.timings
        if t is None:
            continue
        n += 1
        total += t.total_s
        window += r.duration_s
        for name, value in t.model_dump().items():
            if name in _NOT_PHASES or not value:
                continue
            key = name.removesuffix("_s")
            if key == "window":
                key, value = "window_edges", max(0.0, value - r.duration_s)
            rest[key] = rest.get(key, 0.0) + value
    if not n:
        return None
    ordered = dict(sorted(((k, v) for k, v in rest.items() if v > 0), key=lambda kv: -kv[1]))
    return CampaignTime(runs=n, total_s=total, window_s=window, rest_s=ordered)


def describe(time_: CampaignTime, top: int = 4) -> str:
    """One line: the window's share and the largest phases outside it."""
    parts = ", ".join(
        f"{name.replace('_', ' ')} {100 * s / time_.total_s:.0f} %"
        for name, s in list(time_.rest_s.items())[:top]
    )
    return (
        f"{100 * time_.window_share:.0f} % of {time_.total_s:,.0f} s of experiment-process time "
        f"({time_.runs} runs) was measured window; the rest: {parts}"
    )
