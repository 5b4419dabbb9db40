"""Run columns added with results schema 1.2 (issue 19): validity, uncertainty, idle baselines,
token and boundary definitions, and per-GPU metadata; ``results/export.py`` merges them into
``results.parquet``. ``docs/results.md`` documents each column (``tests/test_docs.py`` checks).

Per-GPU facts are JSON lists ordered by NVML index (one entry per GPU the snapshot saw), so a
multi-GPU run keeps every GPU's value, not only GPU 0's.
"""

from __future__ import annotations

import json
from typing import Any

from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.results.stats import baseline_identity

#: GpuInfo fields exported as ``env.gpus.<field>`` JSON lists
GPU_FIELDS = (
    "name",
    "uuid",
    "power_limit_w",
    "enforced_power_limit_w",
    "persistence_mode",
    "ecc_enabled",
    "compute_mode",
    "pstate",
    "temperature_c",
    "app_sm_clock_mhz",
    "app_mem_clock_mhz",
    "max_sm_clock_mhz",
    "vbios_version",
    "pcie_link_gen",
    "pcie_link_width",
    "nvlink_active_links",
)

VALIDITY_COLUMNS: dict[str, str] = {
    "valid": "every validity gate passed (summaries, CIs and Pareto fronts use valid runs only)",
    "failed_gates": "the gates the run failed, comma-separated (empty when valid)",
    "total_energy_above_idle_j": "total_energy_j minus resident idle power x duration (can be negative)",
    "total_energy_above_idle_se_j": "standard error of total_energy_above_idle_j from the baseline's",
    "energy_per_output_token_above_idle_j": "total_energy_above_idle_j / output_tokens",
    "energy_per_request_above_idle_j": "total_energy_above_idle_j / n_requests",
    "energy_per_total_token_j": "total_energy_j / (input_tokens + output_tokens)",
    "energy_quantisation_bound_rel": (
        "sensor period x (power at the window's start + at its end) / total_energy_j"
    ),
    "energy_split.prefill_energy_j": "estimated prefill energy (first-token times x power series)",
    "energy_split.decode_energy_j": "estimated decode energy (total_energy_j minus prefill)",
    "energy_split.prefill_share": "estimated prefill share of the window's energy",
    "boundary.cpu": "CPU package energy: rapl or not measured (never added to total_energy_j)",
    "baseline.idle_power_se_w": "standard error of baseline.idle_power_w (root-sum-square over GPUs)",
    "baseline.accepted": "the resident idle baseline passed its utilisation and drift checks",
    "baseline.identity": (
        "which resident idle measurement was subtracted (its cache key, time and idle W, joined by a vertical bar): runs with the "
        "same value share its error"
    ),
    "cold_baseline.idle_power_w": "cold idle power (before the engine started), summed over GPUs",
    "cold_baseline.idle_power_se_w": "its standard error (root-sum-square over GPUs)",
    "cold_baseline.from_cache": "the cold idle baseline came from the on-disk cache",
    "window.start_temperature_c": "GPU temperatures at the window's first sample, JSON list by GPU",
    "window.end_temperature_c": "GPU temperatures at the window's last sample, JSON list by GPU",
    "env.cpu_governor": "cpufreq scaling governor of cpu0",
    "env.cudnn_version": "cuDNN version as the engine's torch reports it",
    "env.nccl_version": "NCCL version as the engine's torch reports it",
    **{
        f"env.gpus.{f}": f"per GPU: {f.replace('_', ' ')}, JSON list by NVML index"
        for f in GPU_FIELDS
    },
}


def _idle(b: BaselineRecord | None) -> tuple[float | None, float | None]:
    if b is None or not b.available or not b.idle_power_w:
        return None, None
    se = (
        sum(v**2 for v in b.idle_power_se_w.values()) ** 0.5
        if len(b.idle_power_se_w) == len(b.idle_power_w)
        else None
    )
    return sum(b.idle_power_w.values()), se


def _gpu_values(env: EnvironmentSnapshot | None) -> dict[str, Any]:
    gpus = sorted(env.gpus, key=lambda g: g.nvml_index) if env is not None else []
    return {
        f"env.gpus.{f}": json.dumps([getattr(g, f) for g in gpus]) if gpus else None
        for f in GPU_FIELDS
    }


def _identity(result: ExperimentResult) -> str | None:
    key = baseline_identity(result)
    return "|".join(key) if key is not None else None


def validity_values(result: ExperimentResult) -> dict[str, Any]:
    """``VALIDITY_COLUMNS`` of one run."""
    split = result.energy_split
    _, resident_se = _idle(result.baseline)
    cold, cold_se = _idle(result.cold_baseline)
    state = [result.window_gpu_state[i] for i in sorted(result.window_gpu_state)]
    env = result.environment
    rec: dict[str, Any] = {
        "valid": result.valid,
        "failed_gates": ",".join(result.failed_gates) or None,
        "total_energy_above_idle_j": result.total_energy_above_idle_j,
        "total_energy_above_idle_se_j": result.total_energy_above_idle_se_j,
        "energy_per_output_token_above_idle_j": result.energy_per_output_token_above_idle_j,
        "energy_per_request_above_idle_j": result.energy_per_request_above_idle_j,
        "energy_per_total_token_j": result.energy_per_total_token_j,
        "energy_quantisation_bound_rel": result.energy_quantisation_bound_rel,
        "energy_split.prefill_energy_j": split.prefill_energy_j if split else None,
        "energy_split.decode_energy_j": split.decode_energy_j if split else None,
        "energy_split.prefill_share": split.prefill_share if split else None,
        "boundary.cpu": result.boundary.cpu if result.boundary else None,
        "baseline.idle_power_se_w": resident_se,
        "baseline.accepted": result.baseline.accepted if result.baseline else None,
        "baseline.identity": _identity(result),
        "cold_baseline.idle_power_w": cold,
        "cold_baseline.idle_power_se_w": cold_se,
        "cold_baseline.from_cache": (
            result.cold_baseline.from_cache if result.cold_baseline else None
        ),
        "window.start_temperature_c": (
            json.dumps([s.get("start_temperature_c") for s in state]) if state else None
        ),
        "window.end_temperature_c": (
            json.dumps([s.get("end_temperature_c") for s in state]) if state else None
        ),
        "env.cpu_governor": env.cpu_governor if env else None,
        "env.cudnn_version": env.cudnn_version if env else None,
        "env.nccl_version": env.nccl_version if env else None,
        **_gpu_values(env),
    }
    return rec
