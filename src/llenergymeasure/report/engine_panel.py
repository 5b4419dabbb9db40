"""The engine's own state beside the power trace: what a served run's server was doing.

``backend: openai`` scrapes the server's Prometheus ``/metrics`` once a second during the window
(``backends/openai/telemetry.py``) and writes ``engine_telemetry.csv`` beside ``result.json``
(``time_s`` from the window's start, the clock the power series uses). The report draws its
running and waiting requests and its KV-cache use under the power of the same run, on the same
time axis, so a power dip can be read against an emptying batch or a full cache.
matplotlib is used through the axes handed in; nothing is imported at module level.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llenergymeasure.report.html_cells import esc
from llenergymeasure.results.engine_telemetry import EngineTelemetry

#: the columns the panel draws; the file has more (counters), which the summary covers
DRAWN_COLUMNS = ("running", "waiting", "kv_cache_usage")


@dataclass
class EngineSeries:
    """The scrapes of one window: time from the window's start, and each drawn figure (None:
    the page lacked it at that scrape)."""

    t_s: list[float] = field(default_factory=list)
    running: list[float | None] = field(default_factory=list)
    waiting: list[float | None] = field(default_factory=list)
    kv_cache_usage: list[float | None] = field(default_factory=list)

    def has(self, name: str) -> bool:
        return any(v is not None for v in getattr(self, name))


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def read_engine_series(path: Path) -> EngineSeries:
    """``engine_telemetry.csv`` as an ``EngineSeries``; a file without ``time_s`` or without any
    drawn column is refused with the columns it has."""
    out = EngineSeries()
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "time_s" not in fields or not any(c in fields for c in DRAWN_COLUMNS):
            raise ValueError(
                f"{path}: needs columns time_s and one of {', '.join(DRAWN_COLUMNS)}, has "
                f"{', '.join(fields) or 'none'}"
            )
        for row in reader:
            t = _number(row.get("time_s"))
            if t is None:
                continue
            out.t_s.append(t)
            for name in DRAWN_COLUMNS:
                getattr(out, name).append(_number(row.get(name)))
    return out


def _points(ts: list[float], values: list[float | None], scale: float = 1.0) -> tuple[Any, Any]:
    pairs = [(t, v * scale) for t, v in zip(ts, values, strict=True) if v is not None]
    return [t for t, _ in pairs], [v for _, v in pairs]


def draw_engine_panel(ax: Any, series: EngineSeries, duration_s: float) -> None:
    """Running and waiting requests (left axis) and KV-cache use in % (right axis) over time."""
    ax.axvspan(0.0, duration_s, color="#ffcc66", alpha=0.3, lw=0)
    if series.has("running"):
        ax.step(
            *_points(series.t_s, series.running),
            where="post",
            color="#2ca02c",
            lw=1.2,
            label="running requests",
        )
    if series.has("waiting"):
        ax.step(
            *_points(series.t_s, series.waiting),
            where="post",
            color="#d62728",
            lw=1.0,
            linestyle="--",
            label="waiting requests",
        )
    ax.set_ylabel("requests")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    if series.has("kv_cache_usage"):
        kv = ax.twinx()
        kv.plot(
            *_points(series.t_s, series.kv_cache_usage, 100.0),
            color="#9467bd",
            lw=1.0,
            linestyle=":",
            marker=".",
            markersize=3,
            label="KV cache used (%)",
        )
        kv.set_ylabel("KV cache (%)")
        kv.set_ylim(0, 100)


def _fmt(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def telemetry_caption(tel: EngineTelemetry) -> str:
    """The window's summary in a sentence (HTML-escaped), beside the figure."""
    parts = [
        f"Engine ({esc(tel.dialect)} /metrics, {tel.n_scrapes} scrapes"
        + (f", {tel.n_scrape_errors} failed" if tel.n_scrape_errors else "")
        + "): running requests mean "
        + _fmt(tel.running_requests_mean, "{:.3g}")
        + " (max "
        + _fmt(tel.running_requests_max, "{:g}")
        + "), waiting mean "
        + _fmt(tel.waiting_requests_mean, "{:.3g}")
        + " (max "
        + _fmt(tel.waiting_requests_max, "{:g}")
        + "), KV cache mean "
        + _fmt(
            None if tel.kv_cache_usage_mean is None else tel.kv_cache_usage_mean * 100, "{:.3g} %"
        )
        + " (max "
        + _fmt(None if tel.kv_cache_usage_max is None else tel.kv_cache_usage_max * 100, "{:.3g} %")
        + "), preemptions "
        + _fmt(tel.preemptions, "{:g}")
    ]
    if tel.saturation_ratio is not None and tel.saturation_target is not None:
        parts.append(
            f"mean running batch {tel.saturation_ratio:.0%} of the {tel.saturation_target:g} asked"
        )
    return "; ".join(parts) + "."
