"""Turning what the harness measured into an ``ExperimentResult``: derived figures and warnings."""

from __future__ import annotations

import uuid
from typing import Any

from llenergymeasure._version import __version__
from llenergymeasure.backends.base import GenerationOutput, Prompt
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.energy.types import BaselineRecord, EnergyMeasurement, ValidityWarning
from llenergymeasure.harness.records import LoadedModel, MeasuredWindow
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.harness.rewarm import rewarm_warnings
from llenergymeasure.harness.stats import latency_stats_ms
from llenergymeasure.harness.validity import (
    edge_powers,
    energy_boundary,
    evaluate_gates,
    quantisation_bound,
)
from llenergymeasure.results.models import (
    ExperimentResult,
    FlopsEstimate,
    ModelRecord,
    WarmupRecord,
)
from llenergymeasure.results.phase_records import RewarmRecord
from llenergymeasure.timestamps import utc_now


def harness_warnings(
    config: ExperimentConfig,
    out: GenerationOutput,
    prompts: list[Prompt],
    warmup: WarmupRecord,
    energy: EnergyMeasurement,
) -> list[ValidityWarning]:
    warnings: list[ValidityWarning] = []
    if not energy.available:
        warnings.append(
            ValidityWarning(
                code="energy_unavailable",
                message=f"no energy was measured: {energy.unavailable_reason}",
                severity="warning",
            )
        )
    if warmup.converged is False:
        warnings.append(
            ValidityWarning(
                code="warmup_not_converged",
                message=(
                    f"warmup stopped at its cap ({warmup.stopped_by or 'max_runs'}) after "
                    f"{warmup.runs} batches and {warmup.duration_s:.1f} s"
                    + (
                        f" with per-token latency CV {warmup.final_cv:.3f} above the threshold "
                        f"{config.warmup.cv_threshold}"
                        if warmup.final_cv is not None
                        else " without converging"
                    )
                    + "; raise warmup.max_runs / warmup.max_s, or see the window's "
                    "throughput_drift and host_bound warnings"
                ),
                details={"stopped_by": warmup.stopped_by, "final_cv": warmup.final_cv},
            )
        )
    if config.warmup.mode == "fixed" and config.warmup.runs == 0:
        warnings.append(
            ValidityWarning(
                code="no_warmup",
                message="warmup.runs is 0: first-call effects (compilation, caches) fall inside the measured window",
            )
        )
    expected_out = sum(p.max_new_tokens for p in prompts)
    if config.decoding.fixed_output_length and out.output_tokens != expected_out:
        warnings.append(
            ValidityWarning(
                code="output_length_mismatch",
                message=(
                    f"fixed_output_length is on but {out.output_tokens} output tokens were generated "
                    f"instead of {expected_out}"
                ),
                details={"expected": expected_out, "actual": out.output_tokens},
            )
        )
    if len(out.requests) != len(prompts):
        warnings.append(
            ValidityWarning(
                code="request_count_mismatch",
                message=f"{len(prompts)} prompts were sent but {len(out.requests)} results came back",
            )
        )
    return warnings


def baseline_warnings(*baselines: BaselineRecord | None) -> list[ValidityWarning]:
    """An idle window's own warnings, renamed ``baseline_<code>`` (info: they concern the
    baseline, not the measured window), and ``baseline_rejected`` when one was not accepted."""
    out: list[ValidityWarning] = []
    for b in baselines:
        if b is None or not b.available:
            continue
        label = f"{b.kind} idle baseline" if b.kind else "idle baseline"
        for w in b.warnings:
            out.append(
                w.model_copy(
                    update={
                        "code": f"baseline_{w.code}",
                        "severity": "info",
                        "message": f"{label}: {w.message}",
                    }
                )
            )
        if not b.accepted:
            out.append(
                ValidityWarning(
                    code="baseline_rejected",
                    message=(
                        f"{label} rejected ({b.rejected_reason}); energy above idle is not "
                        "computed against it"
                    ),
                    details={"kind": b.kind},
                )
            )
    return out


def build_result(
    *,
    request: HarnessRequest,
    snapshot: Any,
    started_at: str,
    model: LoadedModel,
    warmup: WarmupRecord,
    baseline: BaselineRecord | None,
    window: MeasuredWindow,
    co2: Any,
    cold_baseline: BaselineRecord | None = None,
    rewarm: RewarmRecord | None = None,
    thresholds: ValiditySettings | None = None,
) -> ExperimentResult:
    """The result of one experiment from its phases' records: derived figures per denominator,
    validity gates and warnings (``docs/results.md`` names each field)."""
    config = request.config
    energy, out, duration_s = window.energy, window.out, window.duration_s
    load_info = model.load_info
    n_requests = len(out.requests)
    out_tokens = out.output_tokens
    in_tokens = out.input_tokens
    total = energy.total_energy_j
    above = energy.total_energy_above_idle_j
    above_se = energy.total_energy_above_idle_se_j
    gates = evaluate_gates(energy, duration_s, thresholds or ValiditySettings())
    bound_j, bound_rel = quantisation_bound(energy, edge_powers(window.edges or {}))

    def per(value: float | None, denom: int) -> float | None:
        return value / denom if value is not None and denom > 0 else None

    ttfts = [r.ttft_s for r in out.requests if r.ttft_s is not None]
    itls = [x for r in out.requests for x in r.itl_s]
    lats = [r.latency_s for r in out.requests if r.latency_s is not None]
    params = load_info.parameters
    flops = (
        FlopsEstimate(flops=2.0 * params * (in_tokens + out_tokens))
        if params
        else FlopsEstimate(unavailable_reason="the backend did not report a parameter count")
    )
    warnings = (
        list(energy.warnings)
        + harness_warnings(config, out, window.prompts, warmup, energy)
        + baseline_warnings(cold_baseline, baseline)
        + rewarm_warnings(rewarm)
    )
    timing_reason = out.timing_unavailable_reason
    if not ttfts and timing_reason is None:
        timing_reason = "the backend reported no per-request timings"
    return ExperimentResult(
        llenergymeasure_version=__version__,
        experiment_id=request.settings.run_id or uuid.uuid4().hex,
        config=config,
        config_hash=config.config_hash,
        runner=request.runner,
        environment=snapshot,
        started_at=started_at,
        ended_at=utc_now(),
        model=ModelRecord(
            id=config.model,
            path=model.resolved.path,
            weights=load_info.weights
            if load_info.weights in ("random", "pretrained")
            else model.resolved.weights,
            parameters=params,
            dtype=load_info.dtype,
            device=load_info.device,
            cuda_devices=list(load_info.cuda_devices),
        ),
        load=model.load,
        warmup=warmup,
        baseline=baseline,
        cold_baseline=cold_baseline,
        rewarm=rewarm,
        energy=energy,
        cpu_energy=window.cpu_energy,
        co2=co2,
        n_requests=n_requests,
        input_tokens=in_tokens,
        output_tokens=out_tokens,
        duration_s=duration_s,
        window=window.record,
        output_tokens_per_s=out_tokens / duration_s if duration_s > 0 else 0.0,
        requests_per_s=n_requests / duration_s if duration_s > 0 else 0.0,
        total_energy_j=total,
        total_energy_above_idle_j=above,
        total_energy_above_idle_se_j=above_se,
        energy_per_output_token_j=per(total, out_tokens),
        energy_per_total_token_j=per(total, in_tokens + out_tokens),
        energy_per_output_token_above_idle_j=per(above, out_tokens),
        energy_per_output_token_above_idle_se_j=per(above_se, out_tokens),
        energy_per_request_j=per(total, n_requests),
        energy_per_request_above_idle_j=per(above, n_requests),
        mean_power_w=total / duration_s if total is not None and duration_s > 0 else None,
        energy_quantisation_bound_j=bound_j,
        energy_quantisation_bound_rel=bound_rel,
        energy_split=window.split,
        window_gpu_state=window.edges or {},
        prompt_seed=(
            request.settings.prompt_seed
            if request.settings.prompt_seed is not None
            else config.seed
        ),
        boundary=energy_boundary(energy, window.cpu_energy) if energy.available else None,
        valid=all(g.passed for g in gates),
        failed_gates=[g.name for g in gates if not g.passed],
        gates=gates,
        ttft_ms=latency_stats_ms(ttfts),
        itl_ms=latency_stats_ms(itls),
        request_latency_ms=latency_stats_ms(lats),
        timing_source=out.timing_source,
        timing_unavailable_reason=None if ttfts else timing_reason,
        peak_memory_mb=window.peak_bytes / 2**20 if window.peak_bytes is not None else None,
        flops=flops,
        warnings=warnings,
        timeseries_file=window.timeseries_file,
        extra={**load_info.extra, "engine_import_s": model.import_s},
    )
