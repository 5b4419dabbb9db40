"""Time `llem results list` and a `configs` query over 1,000 synthetic study directories.

Target: each under 2 s on the 2-core CI machine. Usage:

    .venv/bin/python benchmarks/results_archive.py [--studies 1000] [--dir DIR] [--keep]

The study directories are SYNTHETIC: every run is the result of ``tests/report/fixtures/study``
(a real CPU run) with its identity, config (batch size 1/4/16), environment (1 or 8 H200 or A100
GPUs, every GPU field an NVML probe fills), the NVML meter's records (per-device energy, idle
baseline, measurement window) and figures (energy, throughput, latency) replaced by made-up values,
so each study's ``results.parquet`` has the columns a GPU study's has; each study has 3
configs x 3 cycles = 9 runs, a manifest, every run's ``result.json`` and the package's own
``results.parquet`` and ``summary.csv`` exports. The numbers inside mean nothing; only the sizes
and the layout matter here.

Each command runs as a fresh process (`llem ...`, interpreter start included): once with an empty
cache (``archive-schemas.json``: each Parquet file's column types, each study's GPU label), then
three times with it. The files are in the OS page cache in every run (they were just written).
Wall time depends on what else the machine runs; the CPU time (user + system of the process and
DuckDB's threads) is printed beside it and the load average after each command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "report" / "fixtures" / "study"
GPUS = [("NVIDIA H200", 1), ("NVIDIA H200", 8), ("NVIDIA A100-SXM4-80GB", 1)]
QUERY = (
    'SELECT "config.model", "env.gpu_model", config_label, n_runs, '
    "energy_per_output_token_j_mean, energy_per_output_token_j_ci95_half_width, "
    "output_tokens_per_s_mean FROM configs ORDER BY energy_per_output_token_j_mean LIMIT 20"
)


def gpu_environment(env: Any, gpu: str, count: int) -> Any:
    """The fixture's (CPU) environment made to look like an NVML-probed GPU node's: every GPU
    field a real H200/A100 snapshot fills is filled, so the Parquet files have the columns that a
    GPU study's have (the archive's cost grows with the number of columns in each file)."""
    from llenergymeasure.environment.snapshot import GpuInfo

    gpus = [
        GpuInfo(
            nvml_index=i,
            name=gpu,
            uuid=f"GPU-{i:08d}-0000-0000-0000-000000000000",
            memory_total_mb=143771,
            power_limit_w=700.0,
            default_power_limit_w=700.0,
            mig_mode=False,
            pci_bus_id=f"00000000:{i + 0x18:02X}:00.0",
            enforced_power_limit_w=700.0,
            persistence_mode=True,
            ecc_enabled=True,
            compute_mode="Default",
            pstate="P0",
            temperature_c=31,
            app_sm_clock_mhz=1980,
            app_mem_clock_mhz=3201,
            max_sm_clock_mhz=1980,
            vbios_version="96.00.AF.00.01",
            pcie_link_gen=5,
            pcie_link_gen_max=5,
            pcie_link_width=16,
            nvlink_active_links=18,
        )
        for i in range(count)
    ]
    packages = {
        **env.packages,
        "nvidia-cudnn-cu12": "9.10.2.21",
        "nvidia-nccl-cu12": "2.27.3",
    }
    return env.model_copy(
        update={
            "gpu_model": gpu,
            "gpu_count": count,
            "gpus": gpus,
            "gpu_vram_gb": 140.4,
            "driver_version": "580.95.05",
            "cuda_driver_version": "13.0",
            "cuda_visible_devices": ",".join(str(i) for i in range(count)),
            "cpu_governor": "performance",
            "cudnn_version": "91002",
            "nccl_version": "2.27.3",
            "packages": packages,
            "probe_errors": {},
        }
    )


def generate(root: Path, n_studies: int, seed: int = 1) -> None:
    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.energy.types import BaselineRecord, ValidityWarning
    from llenergymeasure.results.export import write_exports
    from llenergymeasure.results.models import (
        ExperimentResult,
        LoadRecord,
        StudyResult,
        WindowRecord,
    )
    from llenergymeasure.results.stats import summarise

    rng = random.Random(seed)
    template = ExperimentResult.model_validate_json(
        sorted(FIXTURE.glob("*/result.json"))[0].read_text()
    )
    base_cfg = template.config.model_dump(mode="json")
    configs = [ExperimentConfig.model_validate({**base_cfg, "batch_size": b}) for b in (1, 4, 16)]
    energy = template.energy.model_dump(mode="json")
    energy.update(
        available=True,
        meter="nvml",
        unavailable_reason=None,
        warnings=[],
        sensor_period_s=0.1,
        sample_period_s=0.1,
        timeseries_source="nvml_sampler",
    )
    for i in range(n_studies):
        study_dir = root / f"study-{i:04d}_20261201-{i // 60 % 24:02d}{i % 60:02d}00"
        study_dir.mkdir(parents=True)
        gpu, count = GPUS[i % len(GPUS)]
        env = gpu_environment(template.environment, gpu, count)
        runs, entries = [], []
        index = 0
        for cycle in (1, 2, 3):
            for cfg in configs:
                index += 1
                run_id = f"{index:03d}_c{cycle}_pytorch_{cfg.config_hash[:8]}"
                tput = rng.uniform(200, 4000) * (cfg.batch_size**0.5)
                duration = rng.uniform(5, 60)
                out_tokens = int(tput * duration)
                total = rng.uniform(0.05, 0.5) * out_tokens
                idle_w = rng.uniform(60, 120)
                above = total - idle_w * duration
                device = {
                    "nvml_index": 0,
                    "cuda_index": 0,
                    "uuid": "GPU-00000000-0000-0000-0000-000000000000",
                    "name": gpu,
                    "energy_j": total,
                    "energy_above_idle_j": above,
                    "energy_above_idle_se_j": 0.5,
                    "idle_power_w": idle_w,
                    "integrated_energy_j": total * 1.001,
                    "mean_power_w": total / duration,
                    "peak_power_w": total / duration * 1.2,
                    "n_samples": int(duration * 10),
                    "power_source": "instant",
                }
                baseline = BaselineRecord(
                    enabled=True,
                    available=True,
                    idle_power_w={0: idle_w},
                    idle_power_se_w={0: 0.2},
                    duration_s=30.0,
                    n_samples=300,
                    measured_at="2026-12-01T00:00:00+00:00",
                    from_cache=cycle > 1,
                    accepted=True,
                )
                warning = ValidityWarning(code="thermal_drift", message="made up", device=0)
                result = template.model_copy(
                    update={
                        "experiment_id": run_id,
                        "config": cfg,
                        "config_hash": cfg.config_hash,
                        "environment": env,
                        "energy": template.energy.model_validate(
                            {
                                **energy,
                                "total_energy_j": total,
                                "total_energy_above_idle_j": above,
                                "total_energy_above_idle_se_j": 0.5,
                                "devices": [device],
                            }
                        ),
                        "baseline": baseline,
                        "window": WindowRecord(
                            min_window_s=5.0,
                            passes=3,
                            pass_durations_s=[duration / 3] * 3,
                            pass_output_tokens=[out_tokens // 3] * 3,
                        ),
                        "peak_memory_mb": rng.uniform(3000, 20000),
                        "timeseries_file": "timeseries.csv",
                        "total_energy_above_idle_j": above,
                        "energy_per_output_token_above_idle_j": above / out_tokens,
                        "energy_quantisation_bound_rel": 0.001,
                        "total_energy_above_idle_se_j": 0.5,
                        "energy_per_request_above_idle_j": above / template.n_requests,
                        "energy_per_total_token_j": total / (out_tokens + template.input_tokens),
                        "load": LoadRecord(duration_s=4.0, energy_j=900.0, meter="nvml"),
                        "cold_baseline": baseline,
                        "warnings": [warning],
                        "duration_s": duration,
                        "output_tokens": out_tokens,
                        "output_tokens_per_s": tput,
                        "total_energy_j": total,
                        "total_energy_adjusted_j": total * 0.8,
                        "energy_per_output_token_j": total / out_tokens,
                        "energy_per_output_token_adjusted_j": total * 0.8 / out_tokens,
                        "energy_per_request_j": total / template.n_requests,
                        "mean_power_w": total / duration,
                    }
                )
                (study_dir / run_id).mkdir()
                (study_dir / run_id / "result.json").write_text(result.model_dump_json())
                runs.append(result)
                entries.append(
                    {
                        "run_id": run_id,
                        "index": index,
                        "config_hash": cfg.config_hash,
                        "cycle": cycle,
                        "backend": "pytorch",
                        "status": "completed",
                        "attempts": 1,
                        "run_dir": run_id,
                    }
                )
        manifest = {
            "schema_version": "1.0",
            "llenergymeasure_version": template.llenergymeasure_version,
            "study_name": f"study-{i:04d}",
            "study_design_hash": f"{i:064x}",
            "created_at": f"2026-12-01T{i // 60 % 24:02d}:{i % 60:02d}:00+00:00",
            "updated_at": f"2026-12-01T{i // 60 % 24:02d}:{i % 60:02d}:59+00:00",
            "n_cycles": 3,
            "runs": entries,
        }
        (study_dir / "manifest.json").write_text(json.dumps(manifest))
        study = StudyResult(
            llenergymeasure_version=template.llenergymeasure_version,
            name=manifest["study_name"],
            study_design_hash=manifest["study_design_hash"],
            study_dir=str(study_dir),
            started_at=manifest["created_at"],
            ended_at=manifest["updated_at"],
            environment=env,
            runs=runs,
            summaries=summarise(runs),
        )
        write_exports(study, study_dir)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--studies", type=int, default=1000)
    ap.add_argument("--dir", type=Path, default=None, help="reuse or create the studies here")
    ap.add_argument("--keep", action="store_true", help="keep the generated studies")
    args = ap.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="llem-archive-bench-"))
    if not any(root.glob("study-*")):
        t0 = time.perf_counter()
        generate(root, args.studies)
        print(f"generated {args.studies} studies in {time.perf_counter() - t0:.0f} s under {root}")
    n = len(list(root.glob("study-*")))
    size_mb = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    llem = str(Path(sys.executable).parent / "llem")
    cache = Path(tempfile.mkdtemp(prefix="llem-archive-cache-"))
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "COLUMNS": "200"}
    print(f"{n} studies, {size_mb:.0f} MiB; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    commands = {
        "llem results list": [llem, "results", "list", "--root", str(root)],
        "llem results query <configs>": [llem, "results", "query", QUERY, "--root", str(root)],
    }
    for name, cmd in commands.items():
        shutil.rmtree(cache, ignore_errors=True)
        cold, cold_cpu = timed(cmd, env)
        warm = [timed(cmd, env) for _ in range(3)]
        wall = statistics.median(w for w, _ in warm)
        cpu = statistics.median(c for _, c in warm)
        print(
            f"{name}: cold {cold:.2f} s wall ({cold_cpu:.2f} s CPU); warm median {wall:.2f} s wall "
            f"({cpu:.2f} s CPU), runs {', '.join(f'{w:.2f}' for w, _ in warm)} s; "
            f"load {os.getloadavg()[0]:.1f}"
        )
    shutil.rmtree(cache, ignore_errors=True)
    if not args.keep and args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
