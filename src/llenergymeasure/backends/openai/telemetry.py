"""Scraping the engine's ``/metrics`` during the window, its summary, and the saturation gate.

``TelemetryScraper`` reads the page every ``period_s`` (1 s by default) on a thread of its own;
each scrape is stamped with the clock (``perf_counter``, the meter's clock) before the request.
A failed or unparsable scrape is counted and its message kept, never raised: telemetry must not
cost a measurement. ``summarise`` turns the series into ``EngineTelemetry`` (means and maxima of
the gauges, increases of the counters) and ``write_series`` writes it as CSV.

**Saturation gate** (``saturation_gate``): a closed-loop or offline run asks the engine to keep a
batch of requests running (the concurrency, or the offline batch); the engine can run at most its
``max_num_seqs``. If the mean running batch it reported stays under ``min_running_batch_share``
(``validity:``, default 0.8, the ML.ENERGY benchmark's rule) of the smaller of the two, the run did
not measure the load it names (the client could not keep the server busy, or the server queued
requests somewhere else) and the gate fails. Open-loop runs have no such target: no gate.
"""

from __future__ import annotations

import csv
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llenergymeasure.backends.openai.prometheus import EngineSample, engine_sample
from llenergymeasure.results.engine_telemetry import EngineTelemetry
from llenergymeasure.results.models import GateResult

#: the series' file, beside result.json (``EngineTelemetry.timeseries_file`` names it)
TELEMETRY_FILE = "engine_telemetry.csv"
FIELDS = (
    "running",
    "waiting",
    "kv_cache_usage",
    "preemptions",
    "prompt_tokens",
    "generation_tokens",
)


@dataclass
class TelemetrySeries:
    """Every scrape of a window: (clock time, sample); failures counted."""

    period_s: float
    points: list[tuple[float, EngineSample]] = field(default_factory=list)
    n_errors: int = 0
    last_error: str | None = None


class TelemetryScraper:
    """Reads ``fetch()`` (the page's text) every ``period_s`` between ``start`` and ``stop``."""

    def __init__(
        self,
        fetch: Callable[[], str],
        period_s: float = 1.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.fetch = fetch
        self.clock = clock
        self.series = TelemetrySeries(period_s=period_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def scrape_once(self) -> None:
        t = self.clock()
        try:
            sample = engine_sample(self.fetch())
        except Exception as exc:
            self.series.n_errors += 1
            self.series.last_error = f"{type(exc).__name__}: {exc}"
            return
        if sample is None:
            self.series.n_errors += 1
            self.series.last_error = "the /metrics page has neither vLLM's nor SGLang's names"
            return
        self.series.points.append((t, sample))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scrape_once()
            self._stop.wait(self.series.period_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llem-engine-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> TelemetrySeries:
        """Stop the thread after one last scrape (the window's end) and return the series."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self.scrape_once()
        return self.series


def _values(series: TelemetrySeries, name: str) -> list[float]:
    return [v for _, s in series.points if (v := getattr(s, name)) is not None]


def _increase(values: list[float]) -> float | None:
    """A counter's increase; a fall (the server restarted) counts from zero after it."""
    if not values:
        return None
    total = 0.0
    for a, b in itertools.pairwise(values):
        total += b - a if b >= a else b
    return total


def summarise(
    series: TelemetrySeries, target: float | None, timeseries_file: str | None = None
) -> EngineTelemetry | None:
    """The window's summary; None when no scrape succeeded and none failed (no /metrics)."""
    if not series.points and not series.n_errors:
        return None
    stats: dict[str, float | None] = {}
    for name, out in (("running", "running_requests"), ("waiting", "waiting_requests")):
        vals = _values(series, name)
        stats[f"{out}_mean"] = sum(vals) / len(vals) if vals else None
        stats[f"{out}_max"] = max(vals) if vals else None
    kv = _values(series, "kv_cache_usage")
    stats["kv_cache_usage_mean"] = sum(kv) / len(kv) if kv else None
    stats["kv_cache_usage_max"] = max(kv) if kv else None
    for name in ("preemptions", "prompt_tokens", "generation_tokens"):
        stats[name] = _increase(_values(series, name))
    mean = stats["running_requests_mean"]
    ratio = mean / target if (mean is not None and target) else None
    return EngineTelemetry(
        dialect=series.points[0][1].dialect if series.points else "unknown",
        period_s=series.period_s,
        n_scrapes=len(series.points),
        n_scrape_errors=series.n_errors,
        last_scrape_error=series.last_error,
        saturation_target=target,
        saturation_ratio=ratio,
        timeseries_file=timeseries_file,
        **stats,
    )


def finish_series(
    series: TelemetrySeries, output_dir: Path, origin_s: float, target: float | None
) -> EngineTelemetry | None:
    """The window's summary, its series written to ``output_dir/TELEMETRY_FILE`` when non-empty."""
    name = None
    if series.points:
        write_series(series, output_dir / TELEMETRY_FILE, origin_s=origin_s)
        name = TELEMETRY_FILE
    return summarise(series, target, name)


def saturation_target(mode: str, concurrency: int | None, max_num_seqs: int | None) -> float | None:
    """The running batch a run asks for: closed loop or offline only, capped by max_num_seqs."""
    if mode not in ("closed", "offline") or concurrency is None:
        return None
    return float(min(concurrency, max_num_seqs) if max_num_seqs else concurrency)


def saturation_gate(telemetry: EngineTelemetry | None, min_share: float) -> GateResult | None:
    """The ``saturation`` gate; None when the run has no target or no running-batch figure."""
    if telemetry is None or telemetry.saturation_ratio is None:
        return None
    ratio = telemetry.saturation_ratio
    return GateResult(
        name="saturation",
        passed=ratio >= min_share,
        value=ratio,
        threshold=min_share,
        detail=(
            f"mean running batch {telemetry.running_requests_mean:.2f} of "
            f"{telemetry.saturation_target:g} asked ({ratio:.1%}); at least {min_share:.0%} "
            "needed (validity.min_running_batch_share)"
        ),
    )


def write_series(series: TelemetrySeries, path: Path, origin_s: float) -> None:
    """Every scrape as CSV: time_s (from ``origin_s``, the window's start) and the figures."""
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("time_s", *FIELDS))
        for t, s in series.points:
            row = [getattr(s, f) for f in FIELDS]
            writer.writerow((f"{t - origin_s:.4f}", *("" if v is None else repr(v) for v in row)))
