"""The columns of the flat exports: ``results.parquet`` (one row per run) and ``summary.csv``
(one row per config), each with its meaning; ``docs/results.md`` mirrors them (a test checks).

Config columns are derived from ``ExperimentConfig`` itself: every field of every backend section,
always present, so the Parquet files of different studies concatenate without schema surprises.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.environment.snapshot import KEY_PACKAGES
from llenergymeasure.results.export_placement import PLACEMENT_COLUMNS
from llenergymeasure.results.export_serving import SERVING_COLUMNS
from llenergymeasure.results.export_validity import VALIDITY_COLUMNS
from llenergymeasure.results.quality_stats import QUALITY_COLUMNS

#: the latency distributions of ``ExperimentResult`` and the statistics each contributes.
LATENCY_FIELDS = ("ttft", "itl", "request_latency")
LATENCY_STATS = ("mean", "p50", "p90", "p99", "min", "max")

#: summary statistics written per metric in ``summary.csv`` (``<metric>_<stat>``).
SUMMARY_STATS = ("mean", "ci95_low", "ci95_high", "ci95_half_width", "std", "cv", "n")


def _unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model class inside ``X`` or ``X | None``, else ``None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [
            a
            for a in typing.get_args(annotation)
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if len(models) == 1:
            return models[0]
    return None


def _model_paths(model: type[BaseModel], prefix: str) -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        sub = _unwrap_model(info.annotation)
        if sub is not None:
            out.extend(_model_paths(sub, f"{prefix}{name}."))
        else:
            out.append(f"{prefix}{name}")
    return out


def config_columns() -> list[str]:
    """``config.<path>`` for every field of ``ExperimentConfig`` and of every backend section."""
    return _model_paths(ExperimentConfig, "config.")


#: fixed (non-config) run columns, in order, with their meaning; docs/results.md mirrors this.
RUN_COLUMNS: dict[str, str] = {
    "run_id": "ExperimentResult.experiment_id: in a study, the run id NNN_c<cycle>_<backend>_<hash8>",
    "cycle": "cycle number, parsed from the run id (empty outside a study)",
    "config_hash": "SHA-256 of the resolved config (64 hex digits)",
    "config_label": (
        "the config's name in its study: its own name, else model/backend/bs<batch> and each "
        "field that varies in the study (field=value)"
    ),
    "schema_version": "result schema version",
    "llenergymeasure_version": "version of llenergymeasure that produced the run",
    "started_at": "ISO-8601 start of the run",
    "ended_at": "ISO-8601 end of the run",
    "runner.kind": "local or docker",
    "runner.image": "container image (docker runner)",
    "runner.source": "where the runner choice came from (env, user_config, cli, default)",
    "model.path": "directory or hub id actually loaded",
    "model.weights": "pretrained or random",
    "model.parameters": "parameter count",
    "model.dtype": "torch dtype the weights were loaded in",
    "model.device": "device the model ran on",
    "load.duration_s": "model load time",
    "load.energy_j": "GPU energy during model load (apart from inference)",
    "warmup.mode": "fixed or cv",
    "warmup.runs": "warmup batches run",
    "warmup.converged": "cv mode: reached the threshold; fixed mode: empty",
    "warmup.final_cv": "coefficient of variation of the last warmup latencies",
    "warmup.duration_s": "time spent warming up",
    "baseline.available": "an idle-power baseline was measured or read from the cache",
    "baseline.idle_power_w": "idle power summed over the measured GPUs",
    "baseline.from_cache": "the baseline came from the on-disk cache",
    "n_requests": "prompts in the measured window",
    "input_tokens": "prompt tokens in the measured window",
    "output_tokens": "generated tokens in the measured window",
    "duration_s": "measured window, synchronised at both ends",
    "output_tokens_per_s": "output_tokens / duration_s",
    "requests_per_s": "n_requests / duration_s",
    "energy.meter": "meter that produced the energy numbers (nvml, zeus, null, ...)",
    "energy.available": "the meter produced a number",
    "energy.unavailable_reason": "why not, when energy.available is false",
    "energy.sensor_period_s": "sensor update period the meter assumed or measured",
    "energy.sample_period_s": "power sampler's polling period",
    "energy.n_devices": "GPUs measured",
    "energy.nvml_indices": "NVML indices of the measured GPUs, comma-separated",
    "energy.gpus": (
        "the measured GPUs and their power limit, e.g. 1x NVIDIA H100 80GB HBM3 @ 700 W "
        "(not the machine's GPUs)"
    ),
    "energy.integrated_energy_j": "sum over GPUs of the integrated sampled power (cross-check)",
    "energy.peak_power_w": "highest sampled power of any measured GPU",
    "energy.gpu_utilization_pct": "each measured GPU's mean NVML utilisation, comma-separated in nvml_indices order (about 0: held but idle, its energy still in the total)",
    "total_energy_j": "raw GPU energy over the measured window, all measured GPUs",
    "total_energy_adjusted_j": "pre-1.2 name of total_energy_above_idle_j (same value, kept for old queries)",
    "energy_per_output_token_j": "total_energy_j / output_tokens",
    "energy_per_output_token_adjusted_j": "pre-1.2 name of energy_per_output_token_above_idle_j",
    "energy_per_request_j": "total_energy_j / n_requests",
    "energy_per_request_adjusted_j": "pre-1.2 name of energy_per_request_above_idle_j",
    "mean_power_w": "total_energy_j / duration_s",
    **{
        f"{lat}_{stat}_ms": f"{lat.replace('_', ' ')} {stat} over the requests (ms)"
        for lat in LATENCY_FIELDS
        for stat in LATENCY_STATS
    },
    **{f"{lat}_n": f"number of {lat.replace('_', ' ')} observations" for lat in LATENCY_FIELDS},
    "timing_source": "where per-request timings came from",
    "timing_unavailable_reason": "why latency statistics are missing",
    "peak_memory_mb": "peak accelerator memory allocated",
    "flops_estimate": "estimated FLOPs, 2 x parameters x (input + output tokens) (an estimate)",
    "cpu_energy.package_j": "CPU package energy over the window (RAPL)",
    "cpu_energy.dram_j": "DRAM energy over the window (RAPL)",
    "co2_g": "CO2 estimate: energy x PUE x carbon intensity (an estimate)",
    "co2.carbon_intensity_gco2_kwh": "grid carbon intensity used for co2_g",
    "co2.datacenter_pue": "PUE used for co2_g",
    "n_warnings": "validity warnings of the run (result and meter, deduplicated)",
    "warning_codes": "their codes, sorted, unique, comma-separated",
    "timeseries_file": "power time series file beside result.json",
    "env.hostname": "host name",
    "env.os": "operating system",
    "env.kernel": "kernel release",
    "env.python_version": "Python version of the harness",
    "env.cpu_model": "CPU model",
    "env.cpu_cores_logical": "logical CPU cores",
    "env.ram_total_gb": "RAM",
    "env.gpu_count": "GPUs visible to NVML",
    "env.gpu_model": "first GPU's model name",
    "env.gpu_vram_gb": "first GPU's memory",
    "env.gpu_power_limit_w": "first GPU's power limit",
    "env.driver_version": "NVIDIA driver version",
    "env.cuda_driver_version": "CUDA version the driver supports",
    "env.cuda_visible_devices": "CUDA_VISIBLE_DEVICES of the harness",
    "env.in_container": "the harness ran in a container",
    "env.container_image": "container image name",
    "env.container_image_id": "container image id",
    **{f"env.pkg.{name}": f"installed version of {name}" for name in KEY_PACKAGES},
    **VALIDITY_COLUMNS,
    **SERVING_COLUMNS,
    **PLACEMENT_COLUMNS,
    **QUALITY_COLUMNS,
}


def run_columns() -> list[str]:
    """Every column of ``runs_dataframe`` / ``results.parquet``, in order."""
    cols = list(RUN_COLUMNS)
    at = cols.index("runner.kind")
    return cols[:at] + config_columns() + cols[at:]


SUMMARY_ID_COLUMNS: dict[str, str] = {
    "config_hash": "SHA-256 of the resolved config",
    "label": "the config's label",
    "backend": "inference backend",
    "model": "model as given in the config",
    "n_completed": "runs of this config that produced a result",
    "n_failed": "runs of this config that failed",
    "run_ids": "the completed runs, semicolon-separated",
    "n_invalid": "completed runs that failed a validity gate (left out of the statistics)",
    "invalid_run_ids": "those runs, semicolon-separated",
}


def summary_columns(metrics: Iterable[str]) -> list[str]:
    """Columns of ``summary.csv`` for the given metric names, in order."""
    cols = list(SUMMARY_ID_COLUMNS)
    for metric in metrics:
        cols.extend(f"{metric}_{stat}" for stat in SUMMARY_STATS)
    return cols + config_columns()
