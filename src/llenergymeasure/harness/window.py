"""Warmup until latencies settle, and a measured window filled by time with whole passes.

Warmup (``config.warmup``) repeats one batch of the measured shapes. In ``cv`` mode it stops
once the per-token latency of the last ``window`` batches varies by less than ``cv_threshold``
(coefficient of variation) and shows no trend (see ``settled``), or at a cap (``max_runs``
batches, ``max_s`` seconds); ``fixed`` runs ``runs`` batches. Its energy is measured over the
whole warmup and recorded.

Every duration here is read from ``clock`` (``time.perf_counter`` unless a caller injects another),
so tests drive warmup and passes with fixed latencies instead of the machine's noise.

The measured window (``config.measurement``) runs every prompt once (a pass), then again, until
it has lasted ``min_window_s``; a further pass is not started when the passes so far say it
would end after ``max_window_s``. Passes after the first rotate each prompt's tokens (see
``rotated``) so an engine with prefix caching cannot reuse the previous pass's prefill.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llenergymeasure.backends.base import Backend, GenerationOutput, Prompt
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.harness.stats import coefficient_of_variation, relative_trend
from llenergymeasure.results.models import WarmupRecord, WindowRecord
from llenergymeasure.results.stats import t_quantile_975

Clock = Callable[[], float]


def rotated(prompt: Prompt, shift: int = 1) -> Prompt:
    """The prompt's tokens rotated left by ``shift``: the same length and shape, another prefix.

    Engines with prefix caching (vLLM, TensorRT-LLM block reuse) would otherwise skip the prefill
    of prompts they saw before (in warmup or an earlier pass), and the window would be too cheap.
    """
    ids = prompt.token_ids
    if len(ids) < 2:
        return Prompt(token_ids=list(ids), max_new_tokens=prompt.max_new_tokens, text=None)
    k = shift % len(ids)
    return Prompt(token_ids=ids[k:] + ids[:k], max_new_tokens=prompt.max_new_tokens, text=None)


def per_token_latencies(latencies_s: list[float], tokens: list[int]) -> list[float]:
    """Seconds per output token of each batch (a batch without tokens keeps its latency)."""
    return [lat / n if n > 0 else lat for lat, n in zip(latencies_s, tokens, strict=True)]


def trending(per_token_s: list[float], cv_threshold: float) -> tuple[bool, float | None]:
    """Whether the latencies still move in one direction, and their relative trend per batch.

    A steady fall (a cache or clock still warming) can have a CV under the threshold: latencies
    falling 0.9 % a batch over three batches have a CV of 0.9 %. The least-squares slope over the
    window is a trend when it is both large enough to matter (carried over another ``window``
    batches it would move the latency by at least ``cv_threshold``) and distinguishable from the
    scatter (its t statistic at least Student's t_{0.975, n-2}). Fewer than three values: no trend.
    """
    fit = relative_trend(per_token_s)
    if fit is None:
        return False, None
    slope, t = fit
    large = abs(slope) * len(per_token_s) >= cv_threshold
    return large and t >= t_quantile_975(len(per_token_s) - 2), slope


def run_warmup(
    backend: Backend,
    batch: list[Prompt],
    config: ExperimentConfig,
    on_step: Callable[[str], None] = lambda detail: None,
    meter: Any = None,
    clock: Clock = time.perf_counter,
) -> WarmupRecord:
    """Warm the engine up on ``batch`` as ``config.warmup`` says; energy from ``meter`` if given.

    In ``cv`` mode warmup has settled when the last ``window`` per-token latencies have a CV under
    ``cv_threshold`` and no trend (``trending``)."""
    wcfg = config.warmup
    batch = [rotated(p) for p in batch]
    latencies: list[float] = []
    tokens: list[int] = []
    converged: bool | None = None
    final_cv: float | None = None
    final_trend: float | None = None
    stopped_by: str
    fixed = wcfg.mode == "fixed"
    limit = wcfg.runs if fixed else wcfg.max_runs
    stopped_by = "runs" if fixed else "max_runs"
    measured = meter is not None and getattr(meter, "available", False)
    if measured:
        meter.start()
    t_start = clock()
    try:
        for i in range(limit):
            if not fixed and i > 0 and clock() - t_start >= wcfg.max_s:
                stopped_by = "max_s"
                break
            on_step(f"{i + 1}/{limit}")
            t0 = clock()
            out = backend.generate(batch)
            backend.synchronize()
            latencies.append(clock() - t0)
            tokens.append(out.output_tokens)
            if not fixed and len(latencies) >= max(wcfg.runs, wcfg.window):
                window = per_token_latencies(latencies, tokens)[-wcfg.window :]
                final_cv = coefficient_of_variation(window)
                trend, final_trend = trending(window, wcfg.cv_threshold)
                if final_cv is not None and final_cv < wcfg.cv_threshold and not trend:
                    converged = True
                    stopped_by = "converged"
                    break
    finally:
        energy = meter.stop() if measured else None
    duration = clock() - t_start
    if not fixed and converged is None:
        converged = False
        if len(latencies) >= 2:
            window = per_token_latencies(latencies, tokens)[-wcfg.window :]
            final_cv = coefficient_of_variation(window)
            final_trend = trending(window, wcfg.cv_threshold)[1]
    return WarmupRecord(
        mode=wcfg.mode,
        runs=len(latencies),
        latencies_s=latencies,
        converged=converged,
        final_cv=final_cv,
        final_trend_per_run=final_trend,
        duration_s=duration,
        stopped_by=stopped_by,
        energy_j=energy.total_energy_j if energy is not None and energy.available else None,
        meter=energy.meter if energy is not None else None,
    )


@dataclass
class Passes:
    """What the measured window ran: one output per pass, with its host-clock span."""

    outputs: list[GenerationOutput] = field(default_factory=list)
    starts_s: list[float] = field(default_factory=list)  # seconds from the window's start
    durations_s: list[float] = field(default_factory=list)
    #: serving runs: the spans (s from the window's start) with a request in flight; the
    #: host_bound check judges only samples inside them (idle between arrivals is the load)
    busy_s: list[tuple[float, float]] | None = None

    def record(self, min_window_s: float, max_window_s: float | None) -> WindowRecord:
        return WindowRecord(
            min_window_s=min_window_s,
            max_window_s=max_window_s,
            passes=len(self.outputs),
            pass_durations_s=list(self.durations_s),
            pass_output_tokens=[o.output_tokens for o in self.outputs],
        )


def run_passes(
    backend: Backend,
    prompts: list[Prompt],
    min_window_s: float,
    max_window_s: float | None,
    t_start: float,
    on_pass: Callable[[int], None] = lambda n: None,
    clock: Clock = time.perf_counter,
) -> Passes:
    """Whole passes over ``prompts`` from ``t_start`` (perf_counter) until the window is long
    enough; at least one pass. Synchronises after each pass (the window's end needs it anyway)."""
    passes = Passes()
    while True:
        k = len(passes.outputs)
        batch = prompts if k == 0 else [rotated(p, k + 1) for p in prompts]
        t0 = clock()
        out = backend.generate(batch)
        backend.synchronize()
        t1 = clock()
        passes.outputs.append(out)
        passes.starts_s.append(t0 - t_start)
        passes.durations_s.append(t1 - t0)
        on_pass(k + 1)
        elapsed = t1 - t_start
        if elapsed >= min_window_s:
            break
        if max_window_s is not None:
            longest = max(passes.durations_s)
            if elapsed + longest > max_window_s:
                break
    return passes


def merge_outputs(outputs: list[GenerationOutput]) -> GenerationOutput:
    """One output for the whole window: every pass's requests, the span of all passes."""
    if len(outputs) == 1:
        return outputs[0]
    requests = [r for o in outputs for r in o.requests]
    sources = {o.timing_source for o in outputs}
    reasons = [o.timing_unavailable_reason for o in outputs if o.timing_unavailable_reason]
    ids = [o.output_token_ids for o in outputs]
    return GenerationOutput(
        requests=requests,
        duration_s=sum(o.duration_s for o in outputs),
        timing_source=sources.pop() if len(sources) == 1 else None,
        timing_unavailable_reason=reasons[0] if reasons else None,
        output_token_ids=[t for i in ids if i is not None for t in i] if all(ids) else None,
    )


def pass_rates(passes: Passes) -> tuple[list[float], list[float]]:
    """(pass midpoints in s from the window's start, output tokens/s of each pass)."""
    mids = [s + d / 2 for s, d in zip(passes.starts_s, passes.durations_s, strict=True)]
    rates = [
        o.output_tokens / d if d > 0 else 0.0
        for o, d in zip(passes.outputs, passes.durations_s, strict=True)
    ]
    return mids, rates


def read_timeseries(path: Path) -> dict[int, dict[str, Any]]:
    """The power time series CSV the meter wrote, per NVML index: ``t_s`` and each column as
    numpy arrays (NaN where a sample lacks the column)."""
    import csv

    import numpy as np

    rows: dict[int, list[dict[str, str]]] = {}
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            rows.setdefault(int(row["nvml_index"]), []).append(row)
    out: dict[int, dict[str, Any]] = {}
    for index, items in rows.items():
        cols: dict[str, Any] = {}
        for key in items[0]:
            if key == "nvml_index":
                continue
            cols[key] = np.array([float(r[key]) if r[key] else np.nan for r in items])
        out[index] = cols
    return out


def trend_warnings(
    timeseries: Path | None,
    duration_s: float,
    passes: Passes,
    idle_w: dict[int, float],
    limit_w: dict[int, float],
) -> list[ValidityWarning]:
    """``host_bound`` and ``thermal_drift`` per GPU from the sampler's time series (relative to
    the window's start), ``throughput_drift`` from the passes' host-clock spans (a serving run is
    one pass: its drift is ``harness/serving/steady.py``'s, over the requests)."""
    from llenergymeasure.energy import checks

    warnings: list[ValidityWarning] = []
    if timeseries is not None and Path(timeseries).is_file():
        for index, cols in sorted(read_timeseries(timeseries).items()):
            t = cols["t_s"]
            inside = (t >= 0.0) & (t <= duration_s)
            util = cols.get("gpu_util_pct")
            power = cols.get("power_w")
            temp = cols.get("temperature_c")
            judged = inside
            if passes.busy_s is not None:
                busy = inside & False
                for a, b in passes.busy_s:
                    busy |= (t >= a) & (t <= b)
                judged = inside & busy
            nan = t[judged] * float("nan")
            w = checks.host_bound(
                index,
                util[judged] if util is not None else nan,
                power[judged] if power is not None else nan,
                idle_w.get(index),
                limit_w.get(index),
                serving=passes.busy_s is not None,
            )
            if w is not None:
                warnings.append(w)
            if temp is not None:
                w = checks.thermal_drift(index, t, temp, 0.0, duration_s)
                if w is not None:
                    warnings.append(w)
    mids, rates = pass_rates(passes)
    w = checks.throughput_drift(mids, rates, duration_s)
    if w is not None:
        warnings.append(w)
    return warnings
