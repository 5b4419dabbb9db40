"""Builders of study directories for the report and export tests.

``build_study_dir`` writes what the study runner writes (study.yaml, manifest.json, run folders with
request.json and result.json or error.json, timeseries.csv, study_result.json) from the real models.
The energy and power numbers in it are SYNTHETIC: made up by a simple formula so that plots and
statistics have something GPU-like to show on a machine without a GPU. They are never presented as
measurements; the committed fixture under fixtures/ holds the real (CPU, no-energy) harness output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llenergymeasure.config.study import StudyConfig
from llenergymeasure.energy.types import (
    BaselineRecord,
    DeviceEnergy,
    EnergyMeasurement,
    ValidityWarning,
)
from llenergymeasure.environment.snapshot import EnvironmentSnapshot, GpuInfo
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.results.models import (
    ExperimentResult,
    LatencyStats,
    LoadRecord,
    ModelRecord,
    RunFailure,
    WarmupRecord,
)
from llenergymeasure.results.stats import summarise
from llenergymeasure.results.study_result import StudyResult  # what the study runner builds
from tests.builders import make_result

FIXTURES = Path(__file__).parent / "fixtures"

STUDY_YAML = """\
name: synthetic-sweep
base:
  model: synthetic/tiny-llama
  n: 16
  max_output_tokens: 32
  dataset: {source: synthetic, input_tokens: 64}
experiments:
  - backend: pytorch
  - backend: vllm
sweep:
  batch_size: [1, 8]
execution:
  n_cycles: 2
  cycle_order: interleaved
  config_gap_seconds: 0
  cycle_gap_seconds: 0
"""


def environment(driver: str = "580.65.06") -> EnvironmentSnapshot:
    return EnvironmentSnapshot(
        captured_at="2026-11-28T10:00:00+00:00",
        hostname="gpu-host",
        os="Debian GNU/Linux 12 (bookworm)",
        kernel="6.1.0",
        python_version="3.11.2",
        cpu_model="Synthetic CPU",
        cpu_cores_logical=16,
        ram_total_gb=128.0,
        gpu_count=1,
        gpus=[
            GpuInfo(nvml_index=0, name="NVIDIA H200", memory_total_mb=143771.0, power_limit_w=700.0)
        ],
        gpu_model="NVIDIA H200",
        gpu_vram_gb=140.4,
        driver_version=driver,
        cuda_driver_version="13.0",
        packages={"llenergymeasure": "0.1.0", "torch": "2.13.0", "vllm": "0.32.0"},
        probe_errors={"carbon_intensity_gco2_kwh": "not set"},
    )


def synthetic_result(
    cfg: Any, run_id: str, cycle: int, with_energy: bool = True, driver: str = "580.65.06"
) -> ExperimentResult:
    """A complete ExperimentResult whose numbers follow a made-up, deterministic formula."""
    bs = cfg.batch_size
    speed = {"pytorch": 1.0, "vllm": 2.5}[cfg.backend]
    output_tokens = cfg.n * cfg.max_output_tokens
    duration = output_tokens / (60.0 * bs**0.8 * speed) * (1.0 + 0.03 * cycle)
    power = 150.0 + 40.0 * bs**0.5 + 10 * cycle
    total = power * duration if with_energy else None
    idle = 80.0
    adjusted = max(0.0, total - idle * duration) if total is not None else None
    warnings = []
    if duration < 1.0:
        warnings.append(
            ValidityWarning(
                code="short_window", message=f"window {duration:.2f} s is under 1 s", device=0
            )
        )
    energy = (
        EnergyMeasurement(
            meter="nvml",
            duration_s=duration,
            sensor_period_s=0.1,
            sample_period_s=0.05,
            total_energy_j=total,
            total_energy_adjusted_j=adjusted,
            devices=[
                DeviceEnergy(
                    nvml_index=0,
                    cuda_index=0,
                    name="NVIDIA H200",
                    energy_j=total or 0.0,
                    energy_adjusted_j=adjusted,
                    idle_power_w=idle,
                    integrated_energy_j=(total or 0) * 0.99,
                    mean_power_w=power,
                    peak_power_w=power * 1.2,
                    n_samples=int(duration * 20),
                )
            ],
            warnings=list(warnings),
        )
        if with_energy
        else EnergyMeasurement(
            meter="null", available=False, unavailable_reason="energy backend none"
        )
    )
    lat = LatencyStats(
        n=cfg.n,
        mean_ms=50.0 * bs**0.3,
        p50_ms=48.0 * bs**0.3,
        p90_ms=60.0,
        p99_ms=70.0,
        min_ms=30.0,
        max_ms=80.0,
    )
    return make_result(
        cfg,
        llenergymeasure_version="0.1.0",
        experiment_id=run_id,
        environment=environment(driver),
        started_at=f"2026-11-28T10:{cycle:02d}:00+00:00",
        ended_at=f"2026-11-28T10:{cycle:02d}:30+00:00",
        model=ModelRecord(
            id=cfg.model,
            weights="random",
            parameters=1_100_000_000,
            dtype="bfloat16",
            device="cuda:0",
        ),
        load=LoadRecord(duration_s=3.2),
        warmup=WarmupRecord(mode="fixed", runs=3, latencies_s=[0.5, 0.4, 0.4], duration_s=1.3),
        baseline=BaselineRecord(idle_power_w={0: idle}, duration_s=15.0, n_samples=150)
        if with_energy
        else None,
        energy=energy,
        n_requests=cfg.n,
        input_tokens=cfg.n * 64,
        output_tokens=output_tokens,
        duration_s=duration,
        output_tokens_per_s=output_tokens / duration,
        requests_per_s=cfg.n / duration,
        total_energy_j=total,
        total_energy_adjusted_j=adjusted,
        energy_per_output_token_j=total / output_tokens if total is not None else None,
        energy_per_output_token_adjusted_j=adjusted / output_tokens
        if adjusted is not None
        else None,
        energy_per_request_j=total / cfg.n if total is not None else None,
        mean_power_w=power if with_energy else None,
        ttft_ms=lat,
        itl_ms=lat,
        request_latency_ms=lat,
        timing_source="synthetic",
        warnings=list(warnings),
        timeseries_file="timeseries.csv" if with_energy else None,
    )


def synthetic_timeseries(duration_s: float, power_w: float) -> str:
    """Power samples every 50 ms from 0.5 s before to 0.5 s after the window (synthetic)."""
    lines = ["t_s,nvml_index,power_w,temperature_c"]
    t = -0.5
    while t <= duration_s + 0.5:
        inside = 0.0 <= t <= duration_s
        lines.append(f"{t:.3f},0,{power_w if inside else 80.0:.1f},55")
        t += 0.05
    return "\n".join(lines) + "\n"


def build_study_dir(
    root: Path,
    with_energy: bool = True,
    fail_run: int | None = 4,
    write_aggregate: bool = True,
    pending_runs: int = 0,
) -> tuple[Path, StudyResult]:
    """Write a two-backend x two-batch-size x two-cycle study directory; return it and its result.

    ``fail_run`` (1-based plan position) is written as a failure with error.json; the last
    ``pending_runs`` runs are left pending (an interrupted study).
    """
    study_dir = root / "synthetic-sweep_20261128-100000"
    study_dir.mkdir(parents=True)
    (study_dir / "study.yaml").write_text(STUDY_YAML)
    study = StudyConfig.model_validate(__import__("yaml").safe_load(STUDY_YAML))
    configs = study.expand()
    plan = [(c, y) for y in (1, 2) for c in range(len(configs))]
    runs: list[ExperimentResult] = []
    failures: list[RunFailure] = []
    manifest_runs = []
    for i, (c, cycle) in enumerate(plan, start=1):
        cfg = configs[c]
        run_id = f"{i:03d}_c{cycle}_{cfg.backend}_{cfg.short_hash}"
        entry: dict[str, Any] = {
            "run_id": run_id,
            "index": i,
            "config_hash": cfg.config_hash,
            "config_index": c,
            "cycle": cycle,
            "backend": cfg.backend,
            "status": "pending",
            "attempts": 0,
            "run_dir": None,
            "history": [],
        }
        manifest_runs.append(entry)
        if i > len(plan) - pending_runs:
            continue
        folder = study_dir / run_id
        folder.mkdir()
        HarnessRequest(config=cfg, settings=HarnessSettings(run_id=run_id, cycle=cycle)).write(
            folder / "request.json"
        )
        entry.update(run_dir=run_id, attempts=1)
        if i == fail_run:
            (folder / "error.json").write_text(
                json.dumps(
                    {
                        "phase": "load",
                        "error_type": "OutOfMemoryError",
                        "message": "CUDA out of memory (synthetic failure)",
                        "traceback": "Traceback ...",
                    }
                )
            )
            entry.update(
                status="failed", phase="load", message="CUDA out of memory (synthetic failure)"
            )
            failures.append(
                RunFailure(
                    run_id=run_id,
                    config_hash=cfg.config_hash,
                    cycle=cycle,
                    phase="load",
                    error_type="OutOfMemoryError",
                    message="CUDA out of memory (synthetic failure)",
                    error_file=str(folder / "error.json"),
                )
            )
            continue
        result = synthetic_result(cfg, run_id, cycle, with_energy)
        (folder / "result.json").write_text(result.model_dump_json(indent=2))
        if with_energy:
            (folder / "timeseries.csv").write_text(
                synthetic_timeseries(result.duration_s, result.mean_power_w or 0)
            )
        entry["status"] = "completed"
        runs.append(result)
    (study_dir / "manifest.json").write_text(
        json.dumps(
            {
                "schema_version": "1.0",
                "llenergymeasure_version": "0.1.0",
                "study_name": study.name,
                "study_design_hash": study.study_design_hash,
                "created_at": "2026-11-28T10:00:00+00:00",
                "updated_at": "2026-11-28T10:30:00+00:00",
                "controller": {},
                "n_cycles": 2,
                "runs": manifest_runs,
            }
        )
    )
    result = StudyResult(
        llenergymeasure_version="0.1.0",
        name=study.name,
        study_design_hash=study.study_design_hash,
        study_dir=str(study_dir),
        started_at="2026-11-28T10:00:00+00:00",
        ended_at="2026-11-28T10:30:00+00:00",
        measurement_protocol={
            "n_cycles": 2,
            "cycle_order": "interleaved",
            "config_gap_seconds": 0.0,
        },
        environment=environment(),
        runners={"pytorch": {"kind": "local"}, "vllm": {"kind": "local"}},
        runs=runs,
        summaries=summarise(runs, failures),
        failures=failures,
        interrupted=pending_runs > 0,
    )
    if write_aggregate:
        (study_dir / "study_result.json").write_text(result.model_dump_json(indent=2))
    return study_dir, result


def copy_fixture_study(dest_root: Path) -> Path:
    """A writable copy of the committed real-harness study directory."""
    import shutil

    target = dest_root / "report-fixture_20261128-134930"
    shutil.copytree(FIXTURES / "study", target)
    return target


ENGINE_TELEMETRY_CSV = "engine_telemetry.csv"


def synthetic_engine_series(duration_s: float) -> str:
    """A served engine's scrapes once a second over the window (SYNTHETIC): the batch fills to 8,
    requests queue while it is full, the KV cache fills to 60 % and empties at the end."""
    lines = ["time_s,running,waiting,kv_cache_usage,preemptions,prompt_tokens,generation_tokens"]
    n = max(3, int(duration_s) + 1)
    for k in range(n + 1):
        t = duration_s * k / n
        running = 0.0 if k in (0, n) else 8.0
        waiting = 3.0 if 0 < k < n - 1 else 0.0
        kv = 0.0 if k in (0, n) else 0.6 * min(1.0, k / 2)
        lines.append(f"{t:.4f},{running},{waiting},{kv},0.0,{64.0 * k},{32.0 * k}")
    return "\n".join(lines) + "\n"


def add_engine_telemetry(
    study_dir: Path, study: StudyResult, legacy: bool = False
) -> tuple[StudyResult, str]:
    """Give the first completed run a served engine's telemetry (SYNTHETIC numbers): the summary
    and ``engine_telemetry.csv`` beside its result.json. ``legacy``: the summary in
    ``extra.engine_telemetry``, where results written before it was a field of its own kept it.
    Rewrites result.json (and study_result.json when the study has one); returns the study as
    loaded from those files, and the run's id."""
    from llenergymeasure.results.engine_telemetry import EngineTelemetry

    run = study.runs[0]
    folder = study_dir / run.experiment_id
    (folder / ENGINE_TELEMETRY_CSV).write_text(synthetic_engine_series(run.duration_s))
    tel = EngineTelemetry(
        dialect="vllm",
        period_s=1.0,
        n_scrapes=5,
        running_requests_mean=6.4,
        running_requests_max=8.0,
        waiting_requests_mean=1.8,
        waiting_requests_max=3.0,
        kv_cache_usage_mean=0.42,
        kv_cache_usage_max=0.6,
        preemptions=0.0,
        saturation_target=8.0,
        saturation_ratio=0.8,
        timeseries_file=ENGINE_TELEMETRY_CSV,
    )
    data = json.loads(run.model_dump_json())
    if legacy:
        data["extra"] = {**data["extra"], "engine_telemetry": tel.model_dump(mode="json")}
    else:
        data["engine_telemetry"] = tel.model_dump(mode="json")
    (folder / "result.json").write_text(json.dumps(data, indent=2))
    aggregate = json.loads(study.model_dump_json())
    aggregate["runs"][0] = data
    if (study_dir / "study_result.json").exists():
        (study_dir / "study_result.json").write_text(json.dumps(aggregate, indent=2))
    return StudyResult.model_validate(aggregate), run.experiment_id
