"""One experiment, start to finish, in the current process.

The order is the measurement protocol's (docs/methodology.md):

1. environment snapshot (never blocks the run)
2. model load, timed, with its energy measured apart from inference
3. prompts prepared (outside any window)
4. warmup: until per-token latency settles (default), or a fixed count; bounded, metered apart
5. idle baselines: cold idle before the load (cached per GPU state), resident idle after warmup
   once the power has settled
6. measured window: synchronise -> meters start -> whole passes over all prompts until
   ``measurement.min_window_s`` -> synchronise -> meters stop
7. result: raw energy and energy above resident idle, derived figures, warnings, validity gates

The harness does not know whether it runs in a container, except to record it.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llenergymeasure._proc import end_descendants
from llenergymeasure._version import __version__
from llenergymeasure.backends.base import Backend
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.errors import ExperimentError
from llenergymeasure.harness.phases import (
    Held,
    MeterFactory,
    attach_serving,
    carbon,
    compile_engine,
    follow_the_engine,
    measure_window,
    prepare_prompts,
    resident_baseline,
    rewarm_after_baseline,
    take_snapshot,
    warm_up,
    warmup_level,
    window_figures,
)
from llenergymeasure.harness.records import LoadedModel
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.harness.result import build_result
from llenergymeasure.harness.timings import PhaseClock
from llenergymeasure.harness.warmup_host_bound import warmup_host_bound
from llenergymeasure.results.io import atomic_write_json, atomic_write_text
from llenergymeasure.results.layout import ERROR_FILE, PROGRESS_FILE, RESULT_FILE
from llenergymeasure.results.models import SCHEMA_VERSION, ExperimentResult, LoadRecord
from llenergymeasure.timestamps import utc_now


class _Phases:
    """Tracks the current phase and publishes it to ``progress.json`` for the controller."""

    def __init__(self, output_dir: Path, own_process: bool = False):
        self.output_dir = output_dir
        self.current = "start"
        self.started = time.time()
        self.clock = PhaseClock(own_process=own_process)  # the result's timings block

    def enter(self, phase: str, detail: str | None = None) -> None:
        self.current = phase
        self.clock.enter(phase, detail)
        print(f"[llem] phase={phase}" + (f" {detail}" if detail else ""), flush=True)
        # Progress is a convenience for the controller's live view: never fail the run over it.
        with contextlib.suppress(OSError):
            atomic_write_json(
                self.output_dir / PROGRESS_FILE,
                {
                    "phase": phase,
                    "detail": detail,
                    "time": time.time(),
                    "started": self.started,
                    "pid": os.getpid(),
                },
            )


def _import_engine(backend: str, model_path: str | None = None, compiles: bool = False) -> float:
    """Import the backend's engine; a failure is left for ``backend.load`` to report clearly.

    Besides the registry's ``engine_modules``, the modules its ``warm_imports`` hook names (for
    PyTorch: transformers' module of the model's architecture, torch's compiler), which the
    engine would otherwise import lazily inside the load: on an H200 machine that took 10 s,
    engine code and not the model's load.
    """
    import importlib

    from llenergymeasure.backends import registry

    # the engine libraries the backend imports (its registry entry), loaded before the load timer
    # starts so that ``load.duration_s`` is the model's load and not the import of its engine
    t0 = time.perf_counter()
    for name in registry.engine_modules(backend):
        try:
            importlib.import_module(name)
        except Exception:  # the backend's load() raises BackendUnavailableError with guidance
            return time.perf_counter() - t0
    hook = registry.load_warm_imports(registry.get(backend))
    for name in hook(model_path, compiles) if hook is not None else []:
        with contextlib.suppress(Exception):  # unknown or remote-code types load later
            importlib.import_module(name)
    return time.perf_counter() - t0


def planned_cuda_devices(config: ExperimentConfig, visible: int) -> list[int]:
    """CUDA devices the engine will use, known before load (for the load-energy window).

    With ``gpus`` set the runner has made exactly those GPUs visible (``runners/placement.py``),
    numbered 0..n-1 here; seeing another number of GPUs means it did not (the harness run some
    other way), and measuring would meter GPUs the experiment does not hold: an error.
    """
    if visible <= 0:
        return []
    if config.gpus is not None:
        if visible != len(config.gpus):
            raise ExperimentError(
                f"gpus: {config.gpus} selects {len(config.gpus)} GPU(s) but this process sees "
                f"{visible} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); "
                "run it through llem (its runners make exactly the selected GPUs visible) or set "
                "CUDA_VISIBLE_DEVICES to those GPUs yourself",
                phase="load",
            )
        return list(range(visible))
    return config.backend_section().planned_devices(visible)


def _visible_gpu_count(snapshot_gpu_count: int | None) -> int:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        items = [x for x in env.split(",") if x.strip() and x.strip() != "-1"]
        if not items:
            return 0
        return min(len(items), snapshot_gpu_count or len(items))
    return snapshot_gpu_count or 0


def run_harness(
    request: HarnessRequest,
    output_dir: Path,
    *,
    meter_factory: MeterFactory | None = None,
    own_process: bool = False,
) -> ExperimentResult:
    """Run one experiment in this process and write ``result.json`` (or ``error.json``).

    The phases, in the protocol's order (module docstring); each is a function of
    ``harness/phases.py`` (or ``load_engine`` here). ``meter_factory(energy_backend,
    cuda_devices)`` replaces ``energy.select_meter`` (tests inject a meter driven by a fake NVML).
    ``own_process``: this process exists for this experiment (the runners' entry), so its start
    counts in ``timings.startup_s``. Raises ``ExperimentError`` with the failing phase after
    writing ``error.json``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config, settings = request.config, request.settings
    phases = _Phases(output_dir, own_process=own_process)
    started_at = utc_now()
    held = Held()
    try:
        phases.enter("environment")
        from llenergymeasure.energy import select_meter

        make_meter = meter_factory or select_meter
        snapshot = take_snapshot(settings)
        loaded = load_engine(request, snapshot, make_meter, held, phases)
        backend = loaded.backend

        phases.enter("prompts")
        prompts = prepare_prompts(config, settings, backend)
        compiled = compile_engine(backend, prompts, config, held.compile_cache, phases)
        warmup = warm_up(backend, prompts, config, phases, held.meter)
        slow_warmup = warmup_host_bound(
            warmup, held.meter, _idle_w(loaded.cold_baseline), _limits_w(snapshot)
        )
        target = warmup_level(warmup, held.meter, config)
        engine_devices = list(loaded.model.load_info.cuda_devices)
        meter = follow_the_engine(
            held, make_meter, config, settings.energy_backend, loaded.devices, engine_devices
        )
        baseline = resident_baseline(meter, config, settings, loaded.baseline_cache, phases)
        rewarm = rewarm_after_baseline(backend, prompts, config, target, baseline, meter, phases)
        run = measure_window(backend, meter, prompts, config, bool(engine_devices), phases)

        phases.enter("result")
        window, written = window_figures(run, meter, baseline, snapshot, output_dir, backend)
        result = build_result(
            request=request,
            snapshot=snapshot,
            started_at=started_at,
            model=loaded.model,
            warmup=warmup,
            baseline=baseline,
            window=window,
            co2=carbon(window.energy, snapshot, settings),
            cold_baseline=loaded.cold_baseline,
            rewarm=rewarm,
            thresholds=settings.validity,
        )
        result = attach_serving(result, run, written, baseline)
        finish = getattr(backend, "finish_result", None)  # backends/openai: telemetry, gate
        if finish is not None:
            share = settings.validity.min_running_batch_share
            result = finish(result, output_dir, run.t_start, share)
        if config.quality is not None:  # lm-eval tasks in their own windows (docs/quality.md)
            from llenergymeasure.quality.phase import run_quality_phase

            result = run_quality_phase(result, backend, meter, config, enter=phases.enter)
        phases.enter("result", "writing")
        timings = phases.clock.record(result.duration_s)
        if slow_warmup is not None:
            result.warnings.append(slow_warmup)
        result = result.model_copy(update={"compile": compiled, "timings": timings})
        atomic_write_text(output_dir / RESULT_FILE, result.model_dump_json(indent=2))
        phases.enter("done")
        return result
    except BaseException as exc:
        phase = exc.phase if isinstance(exc, ExperimentError) and exc.phase else phases.current
        if own_process and getattr(exc, "lost_gpus", None):
            # a GPU was lost under the engine: its workers may never answer a shutdown, so end
            # them before the backend is closed (this process exists for this run alone)
            ended = end_descendants(os.getpid())
            print(f"[llem] GPU lost: ended the engine's processes {sorted(ended)}", flush=True)
        write_error(output_dir, phase, exc)
        if isinstance(exc, ExperimentError):
            raise
        if isinstance(exc, Exception):
            raise ExperimentError(f"{type(exc).__name__}: {exc}", phase=phase) from exc
        raise
    finally:
        held.release()


@dataclass(frozen=True)
class LoadedEngine:
    """What the load phase leaves: the backend, the model record, where the meter was planned,
    the cold idle baseline (measured before the load) and the baseline cache directory."""

    backend: Backend
    model: LoadedModel
    devices: list[int]
    cold_baseline: BaselineRecord | None
    baseline_cache: Path


def load_engine(
    request: HarnessRequest,
    snapshot: Any,
    make_meter: MeterFactory,
    held: Held,
    phases: _Phases,
) -> LoadedEngine:
    """Resolve the model, create the backend, import its engine (untimed), open the meter on the
    planned GPUs, measure cold idle before the engine starts, then load timed and metered."""
    from llenergymeasure.backends import create_backend
    from llenergymeasure.config.user import OutputSettings
    from llenergymeasure.energy import measure_idle_baseline
    from llenergymeasure.environment.snapshot import record_engine_libraries
    from llenergymeasure.models.synthetic import resolve_model

    config, settings = request.config, request.settings
    phases.enter("model", config.model)
    cache_dir = (
        Path(settings.model_cache_dir)
        if settings.model_cache_dir
        else OutputSettings().resolved_model_cache_dir()
    )
    resolved = resolve_model(config.model, cache_dir)
    # the compile cache's variables must be set before the engine (torch) is imported
    held.compile_cache = prepare_compile_cache(config, resolved.path, snapshot, cache_dir)
    if config.workload == "serving":  # harness/serving/run.py: the load driver and its record
        from llenergymeasure.harness.serving.run import create_serving_backend

        held.backend = create_serving_backend(config, resolved.path)
    else:
        held.backend = create_backend(config, resolved.path, cache_dir)
    backend = held.backend

    phases.enter("import")
    import_s = _import_engine(
        config.backend,
        resolved.path,
        compiles=bool(getattr(config.backend_section(), "torch_compile", False)),
    )

    phases.enter("load")
    load_devices = planned_cuda_devices(config, _visible_gpu_count(snapshot.gpu_count))
    # One meter serves the load window and the measured window (one NVML/Zeus owner, one
    # start-up); it is rebuilt only if the engine ended up on other GPUs than planned.
    meter = held.open_meter(make_meter, settings.energy_backend, load_devices)
    baseline_cache = (
        Path(settings.baseline_cache_dir) if settings.baseline_cache_dir else cache_dir / "baseline"
    )
    cold_baseline = None
    if config.baseline.enabled and load_devices:
        phases.enter("baseline", f"cold idle, {config.baseline.duration_s:g} s")
        cold_baseline = measure_idle_baseline(
            meter,
            config.baseline.duration_s,
            baseline_cache,
            config.baseline.cache_ttl_s,
            kind="cold",
            thresholds=settings.validity,
            cache_write=not settings.concurrent,  # a neighbour may be running now
        )
        phases.enter("load")
    t0 = time.perf_counter()
    meter.start()
    load_info = backend.load()
    backend.synchronize()
    load_measure = meter.stop()
    record_engine_libraries(snapshot)
    load = LoadRecord(
        duration_s=time.perf_counter() - t0,
        energy_j=load_measure.total_energy_j if load_measure.available else None,
        meter=load_measure.meter,
    )
    model = LoadedModel(resolved=resolved, load_info=load_info, load=load, import_s=import_s)
    return LoadedEngine(backend, model, load_devices, cold_baseline, baseline_cache)


def _idle_w(baseline: BaselineRecord | None) -> dict[int, float]:
    return dict(baseline.idle_power_w) if baseline is not None and baseline.available else {}


def _limits_w(snapshot: Any) -> dict[int, float]:
    gpus = getattr(snapshot, "gpus", None) or []
    return {g.nvml_index: g.power_limit_w for g in gpus if g.power_limit_w is not None}


def prepare_compile_cache(
    config: ExperimentConfig, model_path: str | None, snapshot: Any, cache_dir: Path
) -> Any:
    """The key's directory under ``<model_cache_dir>/compile`` (locked), its variables set."""
    from llenergymeasure.harness import compile_cache

    names = [g.name for g in getattr(snapshot, "gpus", []) or [] if g.name]
    fields = compile_cache.key_fields(config, model_path, names)
    return compile_cache.prepare(config.measurement.compile_cache, cache_dir, fields)


def write_error(output_dir: Path, phase: str, exc: BaseException) -> Path:
    """Write ``error.json`` (atomic): the phase that failed, the error and its traceback."""
    payload = {
        "schema_version": SCHEMA_VERSION,
        "llenergymeasure_version": __version__,
        "phase": phase,
        "error_type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "time": utc_now(),
    }
    lost = getattr(exc, "lost_gpus", None)  # energy.errors.DeviceLostError: --resume checks them
    if lost:
        payload["lost_gpus"] = lost
    return atomic_write_json(Path(output_dir) / ERROR_FILE, payload)
