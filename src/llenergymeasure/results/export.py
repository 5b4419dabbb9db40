"""Flat exports of a study: one row per run (``results.parquet``) and one per config (``summary.csv``).

Researchers load results into pandas, R or a spreadsheet; nested JSON is awkward there. This module
flattens each ``ExperimentResult`` into a row with a *stable* set of columns (every config field of
every backend section, always present, ``None`` where it does not apply), so the Parquet files of
different studies concatenate without schema surprises. Every column is listed, with its meaning,
in ``docs/results.md``; ``run_columns()`` and ``summary_columns()`` are the authoritative lists and
a test checks the two agree.

The row builders use only the standard library; pandas and pyarrow (the ``[report]`` extra) are
imported inside the functions that need them, so the study runner can always write ``summary.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.environment.snapshot import KEY_PACKAGES, EnvironmentSnapshot
from llenergymeasure.errors import LLEMError
from llenergymeasure.results.export_serving import SERVING_COLUMNS, serving_values
from llenergymeasure.results.export_validity import VALIDITY_COLUMNS, validity_values
from llenergymeasure.results.models import (
    ConfigSummary,
    ExperimentResult,
    LatencyStats,
    StudyResult,
)

RESULTS_PARQUET = "results.parquet"
SUMMARY_CSV = "summary.csv"

#: the latency distributions of ``ExperimentResult`` and the statistics each contributes.
LATENCY_FIELDS = ("ttft", "itl", "request_latency")
LATENCY_STATS = ("mean", "p50", "p90", "p99", "min", "max")

#: summary statistics written per metric in ``summary.csv`` (``<metric>_<stat>``).
SUMMARY_STATS = ("mean", "ci95_low", "ci95_high", "ci95_half_width", "std", "cv", "n")

_RUN_ID_CYCLE = re.compile(r"_c(\d+)_")


class ReportDependencyError(LLEMError):
    """pandas, pyarrow or matplotlib (the ``[report]`` extra) is not installed."""

    exit_code = 1


def require(module: str) -> Any:
    """Import an optional dependency of the ``[report]`` extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ReportDependencyError(
            f"{module} is needed for results exports and the report but is not installed "
            f"({exc}); install it with: pip install 'llenergymeasure[report]'"
        ) from exc


# -- column lists ---------------------------------------------------------------------------------


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
    "config_label": "ExperimentConfig.label(): the config's name, else model/backend/bs<batch>",
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
    "energy.integrated_energy_j": "sum over GPUs of the integrated sampled power (cross-check)",
    "energy.peak_power_w": "highest sampled power of any measured GPU",
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


# -- flattening -----------------------------------------------------------------------------------


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys; lists become JSON text (Parquet and CSV cells are scalars)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (list, tuple)):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def config_values(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as ``config.*`` columns: the backend's section with its defaults filled."""
    data = config.hashable_dict()
    data["name"] = config.name
    flat = flatten({k: v for k, v in data.items() if v is not None}, "config.")
    return {col: flat.get(col) for col in config_columns()}


def run_identity(result: ExperimentResult) -> tuple[str, int | None]:
    """(run id, cycle) of a result. The study runner hands the harness its run id
    ``NNN_c<cycle>_<backend>_<hash8>`` as the experiment id; the cycle is read back from it."""
    run_id = result.experiment_id
    match = _RUN_ID_CYCLE.search(run_id)
    return run_id, (int(match.group(1)) if match else None)


def run_warnings(result: ExperimentResult) -> list[ValidityWarning]:
    """All validity warnings of a run: the result's and the meter's, each once."""
    seen: set[tuple[str, str, int | None]] = set()
    out: list[ValidityWarning] = []
    for w in [*result.warnings, *result.energy.warnings]:
        key = (w.code, w.message, w.device)
        if key not in seen:
            seen.add(key)
            out.append(w)
    return out


def _latency(prefix: str, stats: LatencyStats | None) -> dict[str, Any]:
    out: dict[str, Any] = {f"{prefix}_{s}_ms": None for s in LATENCY_STATS}
    out[f"{prefix}_n"] = None
    if stats is not None:
        for s in LATENCY_STATS:
            out[f"{prefix}_{s}_ms"] = getattr(stats, f"{s}_ms")
        out[f"{prefix}_n"] = stats.n
    return out


def environment_values(env: EnvironmentSnapshot | None) -> dict[str, Any]:
    """The key environment fields as ``env.*`` columns."""
    cols = [c for c in RUN_COLUMNS if c.startswith("env.") and c not in VALIDITY_COLUMNS]
    out: dict[str, Any] = dict.fromkeys(cols)
    if env is None:
        return out
    for col in cols:
        attr = col[len("env.") :]
        if attr.startswith("pkg."):
            out[col] = env.packages.get(attr[len("pkg.") :])
        elif attr == "gpu_power_limit_w":
            out[col] = env.gpus[0].power_limit_w if env.gpus else None
        else:
            out[col] = getattr(env, attr)
    return out


def run_record(result: ExperimentResult) -> dict[str, Any]:
    """One run as a flat mapping with exactly the keys of ``run_columns()``."""
    run_id, cycle = run_identity(result)
    energy = result.energy
    devices = energy.devices
    integrated = [d.integrated_energy_j for d in devices]
    peaks = [d.peak_power_w for d in devices if d.peak_power_w is not None]
    warnings = run_warnings(result)
    baseline = result.baseline
    rec: dict[str, Any] = {
        "run_id": run_id,
        "cycle": cycle,
        "config_hash": result.config_hash,
        "config_label": result.config.label(),
        "schema_version": result.schema_version,
        "llenergymeasure_version": result.llenergymeasure_version,
        "started_at": result.started_at,
        "ended_at": result.ended_at,
        **config_values(result.config),
        "runner.kind": result.runner.kind,
        "runner.image": result.runner.image,
        "runner.source": result.runner.source,
        "model.path": result.model.path,
        "model.weights": result.model.weights,
        "model.parameters": result.model.parameters,
        "model.dtype": result.model.dtype,
        "model.device": result.model.device,
        "load.duration_s": result.load.duration_s,
        "load.energy_j": result.load.energy_j,
        "warmup.mode": result.warmup.mode,
        "warmup.runs": result.warmup.runs,
        "warmup.converged": result.warmup.converged,
        "warmup.final_cv": result.warmup.final_cv,
        "warmup.duration_s": result.warmup.duration_s,
        "baseline.available": baseline.available if baseline is not None else None,
        "baseline.idle_power_w": (
            sum(baseline.idle_power_w.values())
            if baseline is not None and baseline.available and baseline.idle_power_w
            else None
        ),
        "baseline.from_cache": baseline.from_cache if baseline is not None else None,
        "n_requests": result.n_requests,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "duration_s": result.duration_s,
        "output_tokens_per_s": result.output_tokens_per_s,
        "requests_per_s": result.requests_per_s,
        "energy.meter": energy.meter,
        "energy.available": energy.available,
        "energy.unavailable_reason": energy.unavailable_reason,
        "energy.sensor_period_s": energy.sensor_period_s,
        "energy.sample_period_s": energy.sample_period_s,
        "energy.n_devices": len(devices),
        "energy.nvml_indices": ",".join(str(d.nvml_index) for d in devices) or None,
        "energy.integrated_energy_j": (
            sum(v for v in integrated if v is not None)
            if integrated and all(v is not None for v in integrated)
            else None
        ),
        "energy.peak_power_w": max(peaks) if peaks else None,
        "total_energy_j": result.total_energy_j,
        "total_energy_adjusted_j": result.total_energy_adjusted_j,
        "energy_per_output_token_j": result.energy_per_output_token_j,
        "energy_per_output_token_adjusted_j": result.energy_per_output_token_adjusted_j,
        "energy_per_request_j": result.energy_per_request_j,
        "energy_per_request_adjusted_j": result.energy_per_request_adjusted_j,
        "mean_power_w": result.mean_power_w,
        **_latency("ttft", result.ttft_ms),
        **_latency("itl", result.itl_ms),
        **_latency("request_latency", result.request_latency_ms),
        "timing_source": result.timing_source,
        "timing_unavailable_reason": result.timing_unavailable_reason,
        "peak_memory_mb": result.peak_memory_mb,
        "flops_estimate": result.flops.flops,
        "cpu_energy.package_j": result.cpu_energy.package_j,
        "cpu_energy.dram_j": result.cpu_energy.dram_j,
        "co2_g": result.co2.co2_g,
        "co2.carbon_intensity_gco2_kwh": result.co2.carbon_intensity_gco2_kwh,
        "co2.datacenter_pue": result.co2.datacenter_pue,
        "n_warnings": len(warnings),
        "warning_codes": ",".join(sorted({w.code for w in warnings})) or None,
        "timeseries_file": result.timeseries_file,
        **environment_values(result.environment),
        **validity_values(result),
        **serving_values(result),
    }
    return {col: rec.get(col) for col in run_columns()}


def run_records(study: StudyResult) -> list[dict[str, Any]]:
    """Every completed run of the study as a flat record, ordered by run id."""
    return sorted((run_record(r) for r in study.runs), key=lambda rec: str(rec["run_id"]))


def summary_metrics(summaries: Iterable[ConfigSummary]) -> list[str]:
    """The metric names present in any summary, in order of first appearance."""
    seen: dict[str, None] = {}
    for s in summaries:
        for name in s.metrics:
            seen.setdefault(name, None)
    return list(seen)


def summary_records(study: StudyResult) -> list[dict[str, Any]]:
    """One flat record per config of the study (``summary.csv``'s rows)."""
    metrics = summary_metrics(study.summaries)
    cols = summary_columns(metrics)
    rows: list[dict[str, Any]] = []
    for s in study.summaries:
        rec: dict[str, Any] = {
            "config_hash": s.config_hash,
            "label": s.label,
            "backend": s.backend,
            "model": s.model,
            "n_completed": s.n_completed,
            "n_failed": s.n_failed,
            "run_ids": ";".join(s.run_ids),
            "n_invalid": s.n_invalid,
            "invalid_run_ids": ";".join(s.invalid_run_ids),
        }
        for metric in metrics:
            stats = s.metrics.get(metric)
            for stat in SUMMARY_STATS:
                rec[f"{metric}_{stat}"] = getattr(stats, stat) if stats is not None else None
        rec.update(config_values(s.config))
        rows.append({col: rec.get(col) for col in cols})
    return rows


# -- dataframes and files -------------------------------------------------------------------------


def runs_dataframe(study: StudyResult) -> Any:
    """One row per completed run, with the columns of ``run_columns()`` (needs pandas).

    Column dtypes are pandas' nullable types (``Int64``, ``Float64``, ``boolean``, ``string``) so a
    missing value stays missing instead of turning an integer column into floats.
    """
    pd = require("pandas")
    frame = pd.DataFrame.from_records(run_records(study), columns=run_columns())
    return frame.convert_dtypes()


def summary_dataframe(study: StudyResult) -> Any:
    """One row per config with ``<metric>_<stat>`` columns (needs pandas)."""
    pd = require("pandas")
    cols = summary_columns(summary_metrics(study.summaries))
    return pd.DataFrame.from_records(summary_records(study), columns=cols).convert_dtypes()


def summary_csv_text(study: StudyResult) -> str:
    """``summary.csv`` as text, written with the standard library only."""
    cols = summary_columns(summary_metrics(study.summaries))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for rec in summary_records(study):
        writer.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buf.getvalue()


def write_exports(study: StudyResult, study_dir: Path) -> dict[str, Path]:
    """Write ``summary.csv`` and ``results.parquet`` into ``study_dir``; returns name -> path.

    ``summary.csv`` is written first and needs nothing beyond the standard library, so a missing
    pyarrow (raised as ``ReportDependencyError``) never costs the per-config summary.
    """
    from llenergymeasure.results.io import atomic_write_text

    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"study directory {str(study_dir)!r} does not exist")
    written: dict[str, Path] = {}
    written["summary.csv"] = atomic_write_text(study_dir / SUMMARY_CSV, summary_csv_text(study))
    require("pyarrow")
    frame = runs_dataframe(study)
    target = study_dir / RESULTS_PARQUET
    tmp = study_dir / f".{RESULTS_PARQUET}.tmp"
    try:
        frame.to_parquet(tmp, index=False, engine="pyarrow")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    written["results.parquet"] = target
    return written
