"""The measured window of a ``workload: serving`` experiment, and its ``serving`` record.

``run_harness`` (harness/core.py) does everything else as for an offline experiment (load, warmup,
baseline, meters, result); inside the window it calls ``run_serving`` instead of whole passes over
the prompts, and after ``build_result`` it calls ``ServingRun.attach`` to add
``ExperimentResult.serving``: windows, per-request latencies, goodput and per-request energy
(energy/attribution.py over the power time series the meter wrote).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llenergymeasure.backends.base import GenerationOutput, Prompt, RequestRecord
from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.attribution import (
    BAND_WEIGHTING,
    Attribution,
    attribute_energy,
    attribute_energy_band,
)
from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.harness.serving.driver import DriveResult, drive_closed_loop, drive_open_loop
from llenergymeasure.harness.serving.metrics import (
    activity,
    e2e_s,
    request_records,
    ttft_s,
    window_record,
)
from llenergymeasure.harness.serving.schedule import (
    MAX_SCHEDULED,
    arrival_offsets,
    dataset_output_lengths,
    request_prompts,
    with_output_lengths,
)
from llenergymeasure.harness.serving.steady import STEADY_RULE, steady_checks, steady_window
from llenergymeasure.harness.stats import latency_stats_ms
from llenergymeasure.harness.window import Passes, read_timeseries
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.results.serving_models import ServingRecord, SteadyChecks


def create_serving_backend(config: ExperimentConfig, model_path: str) -> Any:
    """The backend's serving engine (its registry entry's ``serving_factory``), imported now."""
    from llenergymeasure.backends.registry import get, load_factory

    return load_factory(get(config.backend), serving=True)(config, model_path)


def serving_prompts(
    config: ExperimentConfig, prompts: list[Prompt], tokenizer: Any
) -> list[Prompt]:
    """The prompt pool with per-request output lengths (``load.lengths``), before the window."""
    if config.load is not None and config.load.lengths == "dataset":
        return with_output_lengths(prompts, dataset_output_lengths(config, tokenizer))
    return prompts


class _Cycled(Sequence[Prompt]):
    """``count`` requests cycling through a pool, without building the list."""

    def __init__(self, pool: list[Prompt], count: int):
        self.pool, self.n = pool, count

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.n))]
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.pool[i % len(self.pool)]


@dataclass
class ServingRun:
    """The window's driver outcome, in the shapes the rest of the harness takes."""

    config: ExperimentConfig
    drive: DriveResult
    passes: Passes
    prompts: list[Prompt]
    timing_source: str

    def attach(
        self,
        result: ExperimentResult,
        timeseries: Path | None,
        window_s: tuple[float, float],
        idle_w: float | None,
    ) -> ExperimentResult:
        """``result`` with its ``serving`` record (per-request energy when a series exists) and
        the steady checks' warnings (``overloaded``, ``throughput_drift``) in its warnings.

        ``window_s`` is the metered window on the ``perf_counter`` clock: from just before the
        meter started to just after the last synchronize, so every token the window measured
        falls inside it."""
        record = self.record(result, timeseries, window_s, idle_w)
        warnings = self.checks()[1]
        return result.model_copy(
            update={"serving": record, "warnings": [*result.warnings, *warnings]}
        )

    def checks(self) -> tuple[SteadyChecks | None, list[ValidityWarning]]:
        """``steady_checks`` over the steady window, else over the sending span (first to last
        send: an overloaded run has no steady window, and that is where it shows)."""
        timelines = self.drive.timelines
        window, which = steady_window(timelines)[0], "steady"
        if window is None:
            sends = [t.injected_s for t in timelines]
            if not sends or max(sends) <= min(sends):
                return None, []
            window, which = (min(sends), max(sends)), "sending span"
        return steady_checks(timelines, window, which, closed_loop=self.drive.mode == "closed")

    def record(
        self,
        result: ExperimentResult,
        timeseries: Path | None,
        window_s: tuple[float, float],
        idle_w: float | None,
    ) -> ServingRecord:
        config, drive = self.config, self.drive
        assert config.load is not None
        timelines = drive.timelines
        origin = window_s[0]
        full = window_s
        steady, steady_reason = steady_window(timelines)
        attribution, steady_energy, reason = None, None, None
        total = result.energy.total_energy_j if result.energy.available else None
        series = _power_series(timeseries)
        if total is None:
            reason = result.energy.unavailable_reason or "no energy was measured"
        elif series is None:
            reason = "the meter wrote no power time series to split the energy by"
        else:
            t, p = series
            t_abs = [origin + x for x in t]
            acts = [activity(x) for x in timelines]
            attribution = attribute_energy_band(
                t_abs, p, acts, *full, total_energy_j=total, idle_w=idle_w or 0.0
            )
            if steady is not None:
                steady_energy = _scaled_window(t_abs, p, acts, steady, full, total, idle_w or 0.0)

        def energies(a: Attribution | None) -> tuple[float | None, float | None]:
            if a is None:
                return None, None
            above = a.window_energy_j - a.window_idle_j if idle_w is not None else None
            return a.window_energy_j, above

        slo = config.slo
        full_j, full_above_j = energies(attribution)
        full_rec = window_record(
            timelines,
            *full,
            origin,
            slo,
            completed_inside_only=False,
            request_energy=attribution,
            energy_j=full_j,
            energy_above_idle_j=full_above_j,
        )
        steady_rec = None
        if steady is not None:
            steady_j, steady_above_j = energies(steady_energy)
            steady_rec = window_record(
                timelines,
                *steady,
                origin,
                slo,
                completed_inside_only=True,
                request_energy=attribution,
                energy_j=steady_j,
                energy_above_idle_j=steady_above_j,
            )
        return ServingRecord(
            mode="closed" if config.load.closed_loop else "open",
            load=config.load.describe(),
            rate_rps=config.load.rate_rps,
            concurrency=config.load.concurrency,
            n_requests=len(timelines),
            timing_source=self.timing_source,
            injection_lag_ms=latency_stats_ms(drive.lags_s),
            steady_rule=STEADY_RULE,
            full=full_rec,
            steady=steady_rec,
            steady_unavailable_reason=steady_reason,
            steady_checks=self.checks()[0],
            attribution_unavailable_reason=reason,
            attribution_weighting=BAND_WEIGHTING if attribution is not None else None,
            attribution_intervals=(
                {
                    "by_tokens": attribution.intervals_by_tokens,
                    "by_inflight": attribution.intervals_by_inflight,
                    "spread": attribution.intervals_spread,
                }
                if attribution is not None
                else {}
            ),
            requests=request_records(timelines, origin, slo, steady, attribution),
        )


def _scaled_window(
    t_abs: list[float],
    p: list[float],
    acts: list[Any],
    window: tuple[float, float],
    full: tuple[float, float],
    total: float,
    idle_w: float,
) -> Attribution:
    """Attribution over ``window`` with the same series-to-meter scale as the full window."""
    raw_full = attribute_energy(t_abs, p, [], *full)
    scale = total / raw_full.window_energy_j if raw_full.window_energy_j > 0 else 1.0
    raw = attribute_energy(t_abs, p, acts, *window, idle_w=idle_w)
    return Attribution(
        window_start_s=raw.window_start_s,
        window_end_s=raw.window_end_s,
        energy_j={k: v * scale for k, v in raw.energy_j.items()},
        idle_j=raw.idle_j,
        window_energy_j=raw.window_energy_j * scale,
        window_idle_j=raw.window_idle_j,
    )


def _power_series(path: Path | None) -> tuple[list[float], list[float]] | None:
    """Total power of the measured GPUs over time, from the meter's CSV (None without one)."""
    if path is None or not Path(path).is_file():
        return None
    import numpy as np

    per_device = read_timeseries(Path(path))
    if not per_device:
        return None
    devices = list(per_device.values())
    t = devices[0]["t_s"]
    total = np.zeros_like(t)
    for cols in devices:
        ok = ~np.isnan(cols["power_w"])
        if not ok.any():
            return None
        total = total + np.interp(t, cols["t_s"][ok], cols["power_w"][ok])
    return [float(x) for x in t], [float(x) for x in total]


def run_serving(
    backend: Any, prompts: list[Prompt], config: ExperimentConfig, t_start: float
) -> ServingRun:
    """Drive the load of ``config.load`` through ``backend`` on its event loop."""
    load = config.load
    assert load is not None
    loop = backend.loop
    if load.closed_loop:
        assert load.concurrency is not None
        pool = _Cycled(prompts, load.n_requests or MAX_SCHEDULED)
        drive = loop.run_until_complete(
            drive_closed_loop(backend, pool, load.concurrency, load.duration_s)  # type: ignore[arg-type]
        )
        sent = [pool[t.index] for t in drive.timelines]
    else:
        offsets = arrival_offsets(load, config.seed)
        sent = request_prompts(prompts, len(offsets))
        drive = loop.run_until_complete(drive_open_loop(backend, sent, offsets))
    out = generation_output(drive.timelines, drive.end_s - drive.start_s, backend.clock_note())
    passes = Passes(
        outputs=[out],
        starts_s=[drive.start_s - t_start],
        durations_s=[drive.end_s - drive.start_s],
        busy_s=busy_spans(drive.timelines, t_start),
    )
    return ServingRun(
        config=config,
        drive=drive,
        passes=passes,
        prompts=list(sent),
        timing_source=backend.clock_note(),
    )


def busy_spans(timelines: Sequence[RequestTimeline], origin_s: float) -> list[tuple[float, float]]:
    """The spans (s from ``origin_s``) with at least one request in flight, merged."""
    spans = sorted((t.injected_s - origin_s, t.end_s - origin_s) for t in timelines)
    out: list[tuple[float, float]] = []
    for a, b in spans:
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def generation_output(
    timelines: list[RequestTimeline], duration_s: float, timing_source: str
) -> GenerationOutput:
    """The run as the offline fields see it (TTFT, ITL and latency from the send time)."""
    records = []
    for t in timelines:
        times = t.token_times()
        records.append(
            RequestRecord(
                input_tokens=t.input_tokens,
                output_tokens=t.output_tokens,
                latency_s=e2e_s(t),
                ttft_s=ttft_s(t),
                itl_s=[b - a for a, b in itertools.pairwise(times)],
            )
        )
    return GenerationOutput(
        requests=records,
        duration_s=duration_s,
        timing_source=f"serving: {timing_source}",
        prefill_overlap_reason=(
            "a serving run prefills arriving requests while others decode; the per-request "
            "energies of `serving` split the window instead"
        ),
    )


__all__ = ["ServingRun", "create_serving_backend", "run_serving", "serving_prompts"]
