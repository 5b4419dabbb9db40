"""The harness's phases after the model's load, each one function (``run_harness`` sequences them).

Each phase announces itself through ``Phases.enter`` (``progress.json`` for the controller, and the
phase an error names), does one step of the measurement protocol (``docs/methodology.md``) and
hands on a record. ``Held`` keeps what must be released however a phase ends: the meters opened
and the backend.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llenergymeasure._proc import descendant_pids
from llenergymeasure.backends.base import Backend, GenerationOutput, Prompt
from llenergymeasure.clocks import boot_id
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import (
    BaselineRecord,
    EnergyMeasurement,
    MonotonicWindow,
    ValidityWarning,
)
from llenergymeasure.errors import ExperimentError
from llenergymeasure.harness.records import MeasuredWindow
from llenergymeasure.harness.request import HarnessSettings
from llenergymeasure.harness.rewarm import Level, needs_rewarm, run_rewarm, warm_level
from llenergymeasure.harness.validity import energy_split, window_edges
from llenergymeasure.harness.window import (
    Passes,
    merge_outputs,
    run_passes,
    run_warmup,
    trend_warnings,
)
from llenergymeasure.results.layout import TIMESERIES_FILE
from llenergymeasure.results.models import CompileRecord, RewarmRecord, WarmupRecord

MeterFactory = Callable[[str, list[int]], Any]


class Phases(Protocol):
    """The phase tracker (``core._Phases``): ``enter`` publishes the phase now running."""

    current: str

    def enter(self, phase: str, detail: str | None = None) -> None: ...


@dataclass
class Held:
    """The meters and the backend a run opened, released at its end whatever happened."""

    backend: Backend | None = None
    meters: list[Any] = field(default_factory=list)
    compile_cache: Any = None  # harness.compile_cache.CompileCache: its key's lock

    @property
    def meter(self) -> Any:
        """The meter in use now (the last one opened)."""
        return self.meters[-1]

    def open_meter(self, make_meter: MeterFactory, energy_backend: str, devices: list[int]) -> Any:
        """A new meter on ``devices`` that ignores this process (the engine's own host process)."""
        meter = make_meter(energy_backend, devices)
        self.meters.append(meter)
        meter.ignore_pids.add(os.getpid())
        return meter

    def release(self) -> None:
        if self.compile_cache is not None:
            self.compile_cache.release()
        for m in self.meters:
            with contextlib.suppress(Exception):
                m.close()
        if self.backend is not None:
            try:
                self.backend.close()
            except Exception as exc:  # never mask the experiment's own error
                print(f"[llem] warning: backend close failed: {exc}", flush=True)


def take_snapshot(settings: HarnessSettings) -> Any:
    """The environment snapshot (never blocks the run: missing probes are null with a reason)."""
    from llenergymeasure.environment.snapshot import capture_environment

    return capture_environment(
        carbon_intensity_gco2_kwh=settings.carbon_intensity_gco2_kwh,
        carbon_intensity_source=settings.carbon_intensity_source,
        datacenter_pue=settings.datacenter_pue,
        datacenter_pue_source=settings.datacenter_pue_source,
    )


def prepare_prompts(
    config: ExperimentConfig, settings: HarnessSettings, backend: Backend
) -> list[Prompt]:
    """The window's prompts, tokenised by the engine's tokenizer (outside any window)."""
    from llenergymeasure.datasets import load_prompts

    prompt_seed = settings.prompt_seed if settings.prompt_seed is not None else config.seed
    prompts = load_prompts(config.model_copy(update={"seed": prompt_seed}), backend.tokenizer())
    if not prompts:
        raise ExperimentError("the dataset produced no prompts", phase="prompts")
    if config.workload == "serving":
        from llenergymeasure.harness.serving.run import serving_prompts

        prompts = serving_prompts(config, prompts, backend.tokenizer())
    return prompts


def compile_engine(
    backend: Backend,
    prompts: list[Prompt],
    config: ExperimentConfig,
    cache: Any,
    phases: Phases,
) -> CompileRecord:
    """The engine's compile on a batch of the measured shapes, timed apart from warmup.

    A backend that compiles has ``compile(batch)``: it runs the batches that compile (or load the
    compiled graphs from the persistent cache) and capture CUDA graphs, and returns
    ``{"batches": n, "counters": {...}}`` (the engine's cache hit/miss counters), ``{"batches":
    0, ...}`` when it compiled inside ``load``, or None when nothing compiles. The key's lock
    (``harness/compile_cache.py``) is released here: the next run with this key may compile now.
    """
    from llenergymeasure.harness.compile_cache import verdict

    hook = getattr(backend, "compile", None)
    try:
        if cache is None:
            return CompileRecord(cache="off", reason="no compile cache was prepared")
        info = None
        duration = None
        if hook is not None:
            from llenergymeasure.datasets import warmup_prompts

            phases.enter("compile")
            t0 = time.perf_counter()
            info = hook(warmup_prompts(prompts, config))
            backend.synchronize()
            duration = time.perf_counter() - t0
        if info is None:
            return CompileRecord(
                cache="off",
                key=cache.key,
                mode=cache.mode,
                reason="the engine compiles nothing in this configuration",
            )
        batches = int(info.get("batches", 0))
        counters = {k: int(v) for k, v in dict(info.get("counters") or {}).items()}
        state = verdict(cache, counters)
        if not batches:  # compiled inside ``load`` (vLLM): the backend reports the time, or why not
            inside = info.get("duration_s")
            duration = float(inside) if inside is not None else None
        off = "measurement.compile_cache: off (compiled cold)"
        reasons = [
            r for r in (cache.damaged_note if state != "off" else off, info.get("reason")) if r
        ]
        record = CompileRecord(
            cache=state,
            duration_s=duration,
            key=cache.key,
            mode=cache.mode,
            directory=str(cache.directory) if cache.directory else None,
            lock_wait_s=cache.lock_wait_s,
            batches=batches,
            counters=counters,
            reason="; ".join(reasons) or None,
        )
        cache.mark_complete({"key": cache.key, "compile_s": duration, "batches": batches})
        return record
    finally:
        if cache is not None:
            cache.release()


def warm_up(
    backend: Backend, prompts: list[Prompt], config: ExperimentConfig, phases: Phases, meter: Any
) -> WarmupRecord:
    """Warmup on a batch of the measured shapes, metered apart (``harness/window.py``)."""
    from llenergymeasure.datasets import warmup_prompts

    phases.enter("warmup")
    return run_warmup(
        backend,
        warmup_prompts(prompts, config),
        config,
        on_step=lambda detail: phases.enter("warmup", detail),
        meter=meter,
    )


def follow_the_engine(
    held: Held,
    make_meter: MeterFactory,
    config: ExperimentConfig,
    energy_backend: str,
    planned: list[int],
    engine_devices: list[int],
) -> Any:
    """The meter for the measured window: rebuilt on the engine's GPUs if they are not the
    planned ones (with ``gpus`` set it stays on every GPU held: idle draw counts); it ignores
    this process and its children (the engine's own workers)."""
    meter = held.meter
    if config.gpus is None and sorted(engine_devices) != sorted(planned):
        meter.close()
        meter = held.open_meter(make_meter, energy_backend, list(engine_devices))
    meter.ignore_pids.update(descendant_pids(os.getpid()))
    server_pids = getattr(held.backend, "server_pids", None)  # backends/openai: its server
    if server_pids is not None:
        meter.ignore_pids.update(server_pids())
    return meter


def resident_baseline(
    meter: Any,
    config: ExperimentConfig,
    settings: HarnessSettings,
    cache_dir: Path,
    phases: Phases,
) -> BaselineRecord | None:
    """Resident idle: this process, model loaded, after warmup, once the power has settled."""
    if not config.baseline.enabled:
        return None
    from llenergymeasure.energy import measure_idle_baseline

    phases.enter("baseline", f"resident idle, {config.baseline.duration_s:g} s")
    return measure_idle_baseline(
        meter,
        config.baseline.duration_s,
        cache_dir,
        config.baseline.cache_ttl_s,
        kind="resident",
        key_extra=config.config_hash,
        thresholds=settings.validity,
        cache_write=not settings.concurrent,
    )


def warmup_level(warmup: WarmupRecord, meter: Any, config: ExperimentConfig) -> Level | None:
    """The warmup's end level a re-warm returns to (only a run with a baseline may need one)."""
    return warm_level(warmup, meter) if config.baseline.enabled else None


def rewarm_after_baseline(
    backend: Backend,
    prompts: list[Prompt],
    config: ExperimentConfig,
    target: Level | None,
    baseline: BaselineRecord | None,
    meter: Any,
    phases: Phases,
) -> RewarmRecord | None:
    """Re-warm to ``target`` after a resident baseline measured in this run (``harness/rewarm.py``);
    None when there was no idle pause (baseline off, unavailable or read from the cache)."""
    if target is None or baseline is None or not needs_rewarm(baseline):
        return None
    from llenergymeasure.datasets import warmup_prompts

    phases.enter("rewarm")
    return run_rewarm(
        backend,
        warmup_prompts(prompts, config),
        config,
        target,
        baseline,
        meter,
        on_step=lambda detail: phases.enter("rewarm", detail),
    )


@dataclass
class WindowRun:
    """What the measured window ran, before the result phase turns it into figures."""

    energy: EnergyMeasurement  # raw: no baseline applied yet
    cpu_energy: Any
    passes: Passes
    prompts: list[Prompt]  # the prompts of one pass
    duration_s: float
    t_meter: float  # perf_counter when the meter was started
    t_start: float  # perf_counter when the window's work began
    min_window_s: float
    max_window_s: float | None
    serving: Any = None  # harness.serving.run.ServingRun in serving mode

    @property
    def out(self) -> GenerationOutput:
        return merge_outputs(self.passes.outputs)


def measure_window(
    backend: Backend,
    meter: Any,
    prompts: list[Prompt],
    config: ExperimentConfig,
    on_gpu: bool,
    phases: Phases,
) -> WindowRun:
    """Synchronise, start the meters, run whole passes until the window is long enough (or the
    serving load), synchronise, stop the meters."""
    from llenergymeasure.energy import RaplMeter

    min_window_s = config.measurement.resolved_min_window_s(on_gpu)
    max_window_s = config.measurement.max_window_s
    phases.enter("measure", f"{len(prompts)} prompts, window >= {min_window_s:g} s")
    rapl = RaplMeter()
    backend.synchronize()
    rapl.start()
    t_meter = time.perf_counter()
    mono_start = time.monotonic()  # the controller compares it with its neighbours' spans
    meter.start()
    t_start = time.perf_counter()
    window_started = getattr(backend, "window_started", None)  # backends/openai: telemetry
    if window_started is not None:
        window_started(t_start)
    serving = None
    if config.workload == "serving":
        from llenergymeasure.harness.serving.run import run_serving

        serving = run_serving(backend, prompts, config, t_start)
        passes, prompts = serving.passes, serving.prompts
    else:
        passes = run_passes(
            backend,
            prompts,
            min_window_s,
            max_window_s,
            t_start,
            on_pass=lambda n: phases.enter("measure", f"pass {n} done"),
        )
    backend.synchronize()
    duration_s = time.perf_counter() - t_start
    energy = meter.stop()
    window_ended = getattr(backend, "window_ended", None)  # backends/openai: stop the scraper
    if window_ended is not None:
        window_ended()
    window_monotonic = MonotonicWindow(
        start_s=mono_start, end_s=time.monotonic(), boot_id=boot_id()
    )
    energy = energy.model_copy(update={"window_monotonic": window_monotonic})
    cpu_energy = rapl.stop()
    return WindowRun(
        energy=energy,
        cpu_energy=cpu_energy,
        passes=passes,
        prompts=prompts,
        duration_s=duration_s,
        t_meter=t_meter,
        t_start=t_start,
        min_window_s=min_window_s,
        max_window_s=max_window_s,
        serving=serving,
    )


def window_figures(
    run: WindowRun,
    meter: Any,
    baseline: BaselineRecord | None,
    snapshot: Any,
    output_dir: Path,
    backend: Backend,
) -> tuple[MeasuredWindow, Path | None]:
    """The window's energy above idle, its time series (written beside the result) with the
    trend warnings read from it, and its estimates; also the series' path (None: not written)."""
    from llenergymeasure.energy import apply_baseline

    energy = apply_baseline(run.energy, baseline)
    out = run.out
    timeseries_file = None
    written = None
    try:
        written = meter.write_timeseries(output_dir / TIMESERIES_FILE)
        timeseries_file = written.name if written else None
        energy.warnings.extend(
            trend_warnings(
                written,
                run.duration_s,
                run.passes,
                idle_w=dict(baseline.idle_power_w) if baseline and baseline.available else {},
                limit_w={
                    g.nvml_index: g.power_limit_w
                    for g in snapshot.gpus
                    if g.power_limit_w is not None
                },
            )
        )
    except OSError as exc:
        energy.warnings.append(
            ValidityWarning(
                code="timeseries_not_written",
                message=f"could not write the power time series: {exc}",
            )
        )
    passes = run.passes
    window = MeasuredWindow(
        energy=energy,
        cpu_energy=run.cpu_energy,
        out=out,
        prompts=run.prompts * len(passes.outputs),
        duration_s=run.duration_s,
        record=passes.record(run.min_window_s, run.max_window_s),
        edges=window_edges(written, run.duration_s),
        split=energy_split(
            written,
            energy,
            passes.starts_s,
            passes.durations_s,
            passes.outputs,
            out.input_tokens,
            out.output_tokens,
        ),
        timeseries_file=timeseries_file,
        peak_bytes=backend.peak_memory_bytes(),
    )
    return window, written


def carbon(energy: EnergyMeasurement, snapshot: Any, settings: HarnessSettings) -> Any:
    """The CO2 estimate of the window's energy (an estimate, stored apart from energy)."""
    from llenergymeasure.energy import estimate_co2

    return estimate_co2(
        energy.total_energy_j,
        snapshot.carbon_intensity_gco2_kwh,
        snapshot.datacenter_pue,
        snapshot.carbon_intensity_source,
        country_iso_code=settings.carbon_country_iso_code,
        region=settings.carbon_region,
    )


def attach_serving(
    result: Any, run: WindowRun, written: Path | None, baseline: BaselineRecord | None
) -> Any:
    """The result with its serving record (per-request energy from the written series). Energy
    above idle only against a baseline that was accepted, as ``apply_baseline`` does for the
    window's own figures: a rejected one is recorded, never subtracted."""
    if run.serving is None:
        return result
    usable = baseline is not None and baseline.available and baseline.accepted
    idle = baseline.idle_power_w if baseline is not None and usable else None
    return run.serving.attach(
        result,
        written,
        (run.t_meter, run.t_start + run.duration_s),
        sum(idle.values()) if idle else None,
    )
