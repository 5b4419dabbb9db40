"""Flattening: an ``ExperimentResult`` into one run row, a ``ConfigSummary`` into one summary row,
with exactly the columns of ``results.export_columns`` (standard library only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.labels import run_labels
from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.results.export_columns import (
    LATENCY_STATS,
    RUN_COLUMNS,
    SUMMARY_STATS,
    config_columns,
    run_columns,
    summary_columns,
)
from llenergymeasure.results.export_placement import placement_values
from llenergymeasure.results.export_serving import serving_values
from llenergymeasure.results.export_validity import VALIDITY_COLUMNS, validity_values
from llenergymeasure.results.models import (
    ConfigSummary,
    ExperimentResult,
    LatencyStats,
    StudyResult,
)
from llenergymeasure.results.quality_stats import quality_values

_RUN_ID_CYCLE = re.compile(r"_c(\d+)_")


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
    data["gpus"] = config.gpus  # hashed only as its count; the export shows which
    flat = flatten({k: v for k, v in data.items() if v is not None}, "config.")
    return {col: flat.get(col) for col in config_columns()}


def _per_device(values: Iterable[float | None]) -> str | None:
    """Comma-separated per-GPU values in ``energy.nvml_indices`` order (empty where unknown)."""
    cells = ["" if v is None else f"{v:.1f}" for v in values]
    return ",".join(cells) if any(cells) else None


def measured_gpus_label(result: ExperimentResult) -> str | None:
    """The GPUs the run's energy was measured on, as ``<count>x <model> @ <limit> W`` (groups
    joined by `` + ``): the devices of ``energy.devices``, each with its power limit from the
    environment snapshot's entry of the same NVML index (the enforced limit where read, else the
    management limit). None when no GPU was measured. Not the machine's GPUs: a 1-GPU run on an
    8-GPU node is ``1x ...``."""
    devices = result.energy.devices
    if not devices:
        return None
    env = result.environment
    gpus = {g.nvml_index: g for g in env.gpus} if env is not None else {}
    groups: dict[tuple[str, str], int] = {}
    for d in sorted(devices, key=lambda d: d.nvml_index):
        info = gpus.get(d.nvml_index)
        name = d.name or (info.name if info is not None else None) or "unknown GPU"
        limit = None
        if info is not None:
            limit = (
                info.enforced_power_limit_w
                if info.enforced_power_limit_w is not None
                else info.power_limit_w
            )
        limit_text = f" @ {limit:g} W" if limit is not None else " @ unknown limit"
        key = (name, limit_text)
        groups[key] = groups.get(key, 0) + 1
    return " + ".join(f"{n}x {name}{limit}" for (name, limit), n in groups.items())


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


def run_record(result: ExperimentResult, label: str | None = None) -> dict[str, Any]:
    """One run as a flat mapping with exactly the keys of ``run_columns()``.

    ``label``: the config's name within its study (``config.labels.study_labels``); the config's
    own ``label()`` when not given."""
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
        "config_label": label or result.config.label(),
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
        "energy.gpus": measured_gpus_label(result),
        "energy.integrated_energy_j": (
            sum(v for v in integrated if v is not None)
            if integrated and all(v is not None for v in integrated)
            else None
        ),
        "energy.peak_power_w": max(peaks) if peaks else None,
        "energy.gpu_utilization_pct": _per_device(d.mean_utilization_pct for d in devices),
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
        **placement_values(result),
        **quality_values(result),
    }
    return {col: rec.get(col) for col in run_columns()}


def run_records(study: StudyResult) -> list[dict[str, Any]]:
    """Every completed run of the study as a flat record, ordered by run id, each config named
    as the study's summaries name it."""
    labels = run_labels(study.runs)
    records = (run_record(r, labels[r.config_hash]) for r in study.runs)
    return sorted(records, key=lambda rec: str(rec["run_id"]))


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
