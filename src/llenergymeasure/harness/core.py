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
import datetime as _dt
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llenergymeasure._proc import descendant_pids
from llenergymeasure._version import __version__
from llenergymeasure.backends.base import Backend
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.errors import ExperimentError
from llenergymeasure.harness.request import (
    ERROR_FILE,
    RESULT_FILE,
    TIMESERIES_FILE,
    HarnessRequest,
)
from llenergymeasure.harness.result import build_result
from llenergymeasure.harness.validity import energy_split, first_token_s, window_edges
from llenergymeasure.harness.window import merge_outputs, run_passes, run_warmup, trend_warnings
from llenergymeasure.results.io import atomic_write_json, atomic_write_text
from llenergymeasure.results.models import (
    SCHEMA_VERSION,
    ExperimentResult,
    LoadRecord,
)

PROGRESS_FILE = "progress.json"
MeterFactory = Callable[[str, list[int]], Any]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


class _Phases:
    """Tracks the current phase and publishes it to ``progress.json`` for the controller."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.current = "start"
        self.started = time.time()

    def enter(self, phase: str, detail: str | None = None) -> None:
        self.current = phase
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


#: the engine libraries each backend imports, loaded before the load timer starts so that
#: ``load.duration_s`` is the model's load and not the interpreter's import of torch or vLLM.
ENGINE_MODULES = {
    "pytorch": ("torch", "transformers"),
    "vllm": ("vllm",),
    "tensorrt": ("tensorrt_llm",),
}


def _import_engine(backend: str, model_path: str | None = None, compiles: bool = False) -> float:
    """Import the backend's engine; a failure is left for ``backend.load`` to report clearly.

    For the pytorch backend this includes transformers' module of the model's architecture
    (read from a local ``config.json``): transformers imports it lazily on first use, which on an
    H200 machine took 10 s, and that is engine code, not the model's load.
    """
    import importlib

    t0 = time.perf_counter()
    for name in ENGINE_MODULES.get(backend, ()):
        try:
            importlib.import_module(name)
        except Exception:  # the backend's load() raises BackendUnavailableError with guidance
            return time.perf_counter() - t0
    if backend == "pytorch" and compiles:
        with contextlib.suppress(Exception):  # torch.compile imports its compiler on first use
            importlib.import_module("torch._dynamo")
    if backend == "pytorch" and model_path:
        model_type = _local_model_type(model_path)
        if model_type:
            with contextlib.suppress(Exception):  # unknown or remote-code types load later
                importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
    return time.perf_counter() - t0


def _local_model_type(model_path: str) -> str | None:
    import json

    try:
        data = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = data.get("model_type") if isinstance(data, dict) else None
    return value.replace("-", "_") if isinstance(value, str) and value.isidentifier() else None


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
    if config.backend == "pytorch":
        section = config.backend_section()
        if getattr(section, "device_map", None):
            return list(range(visible))
        return [0]
    section = config.backend_section()
    tp = int(getattr(section, "tensor_parallel_size", 0) or getattr(section, "tp_size", 1))
    pp = int(getattr(section, "pipeline_parallel_size", 0) or getattr(section, "pp_size", 1))
    return list(range(min(visible, tp * pp)))


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
) -> ExperimentResult:
    """Run one experiment in this process and write ``result.json`` (or ``error.json``).

    ``meter_factory(energy_backend, cuda_devices)`` replaces ``energy.select_meter`` (tests inject a
    meter driven by a fake NVML). Raises ``ExperimentError`` with the failing phase after writing
    ``error.json``.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = request.config
    settings = request.settings
    phases = _Phases(output_dir)
    started_at = _now()
    backend: Backend | None = None
    meters: list[Any] = []
    try:
        phases.enter("environment")
        from llenergymeasure.energy import (
            RaplMeter,
            apply_baseline,
            estimate_co2,
            measure_idle_baseline,
            select_meter,
        )
        from llenergymeasure.environment.snapshot import (
            capture_environment,
            record_engine_libraries,
        )

        make_meter = meter_factory or select_meter
        snapshot = capture_environment(
            carbon_intensity_gco2_kwh=settings.carbon_intensity_gco2_kwh,
            carbon_intensity_source=settings.carbon_intensity_source,
            datacenter_pue=settings.datacenter_pue,
            datacenter_pue_source=settings.datacenter_pue_source,
        )

        phases.enter("model", config.model)
        from llenergymeasure.backends import create_backend
        from llenergymeasure.config.user import OutputSettings
        from llenergymeasure.models.synthetic import resolve_model

        cache_dir = (
            Path(settings.model_cache_dir)
            if settings.model_cache_dir
            else OutputSettings().resolved_model_cache_dir()
        )
        resolved = resolve_model(config.model, cache_dir)
        if config.workload == "serving":  # harness/serving/run.py: the load driver and its record
            from llenergymeasure.harness.serving.run import create_serving_backend

            backend = create_serving_backend(config, resolved.path)
        else:
            backend = create_backend(config, resolved.path, cache_dir)

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
        meter = make_meter(settings.energy_backend, load_devices)
        meters.append(meter)
        meter.ignore_pids.add(os.getpid())
        baseline_cache = (
            Path(settings.baseline_cache_dir)
            if settings.baseline_cache_dir
            else cache_dir / "baseline"
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
        load_s = time.perf_counter() - t0
        load = LoadRecord(
            duration_s=load_s,
            energy_j=load_measure.total_energy_j if load_measure.available else None,
            meter=load_measure.meter,
        )

        phases.enter("prompts")
        from llenergymeasure.datasets import load_prompts, warmup_prompts

        prompt_seed = settings.prompt_seed if settings.prompt_seed is not None else config.seed
        prompts = load_prompts(config.model_copy(update={"seed": prompt_seed}), backend.tokenizer())
        if not prompts:
            raise ExperimentError("the dataset produced no prompts", phase="prompts")
        serving = None
        if config.workload == "serving":
            from llenergymeasure.harness.serving.run import run_serving, serving_prompts

            prompts = serving_prompts(config, prompts, backend.tokenizer())

        phases.enter("warmup")
        warmup = run_warmup(
            backend,
            warmup_prompts(prompts, config),
            config,
            on_step=lambda detail: phases.enter("warmup", detail),
            meter=meter,
        )

        # With gpus set the meter stays on every GPU held, the engine's or not (idle draw counts).
        if config.gpus is None and sorted(load_info.cuda_devices) != sorted(load_devices):
            meter.close()
            meter = make_meter(settings.energy_backend, list(load_info.cuda_devices))
            meters.append(meter)
            meter.ignore_pids.add(os.getpid())
        meter.ignore_pids.update(descendant_pids(os.getpid()))

        baseline = None
        if config.baseline.enabled:
            phases.enter("baseline", f"resident idle, {config.baseline.duration_s:g} s")
            baseline = measure_idle_baseline(
                meter,
                config.baseline.duration_s,
                baseline_cache,
                config.baseline.cache_ttl_s,
                kind="resident",
                key_extra=config.config_hash,
                thresholds=settings.validity,
                cache_write=not settings.concurrent,
            )

        on_gpu = bool(load_info.cuda_devices)
        min_window_s = config.measurement.resolved_min_window_s(on_gpu)
        max_window_s = config.measurement.max_window_s
        phases.enter("measure", f"{len(prompts)} prompts, window >= {min_window_s:g} s")
        rapl = RaplMeter()
        backend.synchronize()
        rapl.start()
        t_meter = time.perf_counter()
        meter.start()
        t_start = time.perf_counter()
        window_started = getattr(backend, "window_started", None)  # backends/openai: telemetry
        if window_started is not None:
            window_started(t_start)
        if config.workload == "serving":
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
        cpu_energy = rapl.stop()
        out = merge_outputs(passes.outputs)

        phases.enter("result")
        energy = apply_baseline(energy, baseline)
        timeseries_file = None
        written = None
        try:
            written = meter.write_timeseries(output_dir / TIMESERIES_FILE)
            timeseries_file = written.name if written else None
            energy.warnings.extend(
                trend_warnings(
                    written,
                    duration_s,
                    passes,
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
        result = build_result(
            request=request,
            snapshot=snapshot,
            started_at=started_at,
            resolved=resolved,
            load_info=load_info,
            load=load,
            warmup=warmup,
            baseline=baseline,
            energy=energy,
            cpu_energy=cpu_energy,
            co2=estimate_co2(
                energy.total_energy_j,
                snapshot.carbon_intensity_gco2_kwh,
                snapshot.datacenter_pue,
                snapshot.carbon_intensity_source,
                country_iso_code=settings.carbon_country_iso_code,
                region=settings.carbon_region,
            ),
            out=out,
            prompts=prompts * len(passes.outputs),
            duration_s=duration_s,
            peak_bytes=backend.peak_memory_bytes(),
            timeseries_file=timeseries_file,
            import_s=import_s,
            window=passes.record(min_window_s, max_window_s),
            cold_baseline=cold_baseline,
            thresholds=settings.validity,
            edges=window_edges(written, duration_s),
            split=energy_split(
                written,
                energy,
                passes.starts_s,
                passes.durations_s,
                [first_token_s(o) for o in passes.outputs],
                out.input_tokens,
                out.output_tokens,
            ),
        )
        if serving is not None:
            idle = baseline.idle_power_w if baseline and baseline.available else None
            result = serving.attach(
                result,
                written,
                (t_meter, t_start + duration_s),
                sum(idle.values()) if idle else None,
            )
        finish = getattr(backend, "finish_result", None)  # backends/openai: telemetry, gate
        if finish is not None:
            share = settings.validity.min_running_batch_share
            result = finish(result, output_dir, t_start, share)
        atomic_write_text(output_dir / RESULT_FILE, result.model_dump_json(indent=2))
        phases.enter("done")
        return result
    except BaseException as exc:
        phase = exc.phase if isinstance(exc, ExperimentError) and exc.phase else phases.current
        write_error(output_dir, phase, exc)
        if isinstance(exc, ExperimentError):
            raise
        if isinstance(exc, Exception):
            raise ExperimentError(f"{type(exc).__name__}: {exc}", phase=phase) from exc
        raise
    finally:
        for m in meters:
            with contextlib.suppress(Exception):
                m.close()
        if backend is not None:
            try:
                backend.close()
            except Exception as exc:  # never mask the experiment's own error
                print(f"[llem] warning: backend close failed: {exc}", flush=True)


def write_error(output_dir: Path, phase: str, exc: BaseException) -> Path:
    """Write ``error.json`` (atomic): the phase that failed, the error and its traceback."""
    payload = {
        "schema_version": SCHEMA_VERSION,
        "llenergymeasure_version": __version__,
        "phase": phase,
        "error_type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "time": _now(),
    }
    return atomic_write_json(Path(output_dir) / ERROR_FILE, payload)
