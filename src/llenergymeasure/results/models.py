"""Result models: one ``ExperimentResult`` per run, one ``StudyResult`` per study.

Field names carry their units (``_j``, ``_w``, ``_s``, ``_ms``) and derived figures name their
denominator (``energy_per_output_token_j``). ``SCHEMA_VERSION`` changes whenever a field changes
meaning or is removed; readers refuse results of an unknown major version.

Pure data: this module imports no loader, exporter, statistics or harness module; those import
it. The ``StudyResult`` the package exports (``llenergymeasure.StudyResult``) is the subclass in
``results/study_result.py``, which adds ``from_directory`` and ``to_dataframe`` on top of the
loader and the exporter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import (
    BaselineRecord,
    CarbonEstimate,
    CpuEnergy,
    EnergyMeasurement,
    ValidityWarning,
    rename_old_fields,
)
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.results.distributions import LatencyStats
from llenergymeasure.results.engine_telemetry import EngineTelemetry
from llenergymeasure.results.phase_records import CompileRecord, RewarmRecord, TimingsRecord
from llenergymeasure.results.quality_models import QualityRecord
from llenergymeasure.results.serving_models import ServingRecord, SloCapacity

# 1.1: measurement window by time, warmup by convergence (issue 14)
# 1.2: *_adjusted_j renamed *_above_idle_j (unclamped, with SE); cold/resident baselines, validity
#      gates, quantisation bound, J per total token, prefill/decode estimate, boundary (issue 19).
#      Older results load: the old names are read into the new fields.
# 1.3: placement (the GPUs a run held, neighbours that ran beside it) and the neighbour_load
#      warning; per-device busy-ness (issue 18). Additive: older results load unchanged.
SCHEMA_VERSION = "1.3"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeviceLockRecord(_Record):
    """The machine-wide device locks a run held (``runners/device_lock.py``) and any wait."""

    devices: list[str] = Field(
        default_factory=list, description="GPU UUIDs, or 'cpu' on a machine without a GPU"
    )
    lock_dir: str | None = None
    waited_s: float = Field(0.0, description="time spent waiting for another study's run")
    waited_for: list[str] = Field(
        default_factory=list, description="who held each device this run waited for"
    )


class RunnerRecord(_Record):
    kind: str = "local"
    image: str | None = None
    source: str = "default"
    #: the device locks held for the run (None: none taken, e.g. a SLURM job or an older result)
    device_lock: DeviceLockRecord | None = None


class ModelRecord(_Record):
    id: str = Field(..., description="as given in the config")
    path: str | None = Field(None, description="directory or hub id actually loaded")
    weights: Literal["pretrained", "random"] = "pretrained"
    parameters: int | None = None
    dtype: str | None = None
    device: str | None = None
    cuda_devices: list[int] = Field(default_factory=list)


class LoadRecord(_Record):
    duration_s: float
    energy_j: float | None = Field(
        None, description="GPU energy during model load, apart from inference"
    )
    meter: str | None = None


class WarmupRecord(_Record):
    mode: str
    runs: int
    latencies_s: list[float] = Field(default_factory=list)
    converged: bool | None = Field(
        None, description="cv mode: reached the threshold; fixed mode: None"
    )
    final_cv: float | None = None
    final_trend_per_run: float | None = Field(
        None,
        description="cv mode: least-squares slope of the last window's per-token latencies per "
        "batch, over their mean (a steady fall is negative)",
    )
    duration_s: float = 0.0
    stopped_by: Literal["runs", "converged", "max_runs", "max_s"] | None = Field(
        None, description="what ended warmup: the fixed count, convergence, or a cap"
    )
    energy_j: float | None = Field(None, description="GPU energy over the whole warmup")
    meter: str | None = None


class WindowRecord(_Record):
    """How the measured window was filled: whole passes over the prompts, repeated by time."""

    min_window_s: float = Field(..., description="the minimum that applied (resolved default)")
    max_window_s: float | None = None
    passes: int = Field(..., description="whole passes over the prompts inside the window")
    pass_durations_s: list[float] = Field(default_factory=list)
    pass_output_tokens: list[int] = Field(default_factory=list)


class FlopsEstimate(_Record):
    estimate: Literal[True] = True
    flops: float | None = None
    method: str = "2 * parameters * (input_tokens + output_tokens)"
    unavailable_reason: str | None = None


class GateResult(_Record):
    """One validity gate of a run: what was measured against which threshold."""

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str | None = None


class EnergySplit(_Record):
    """Prefill/decode energy, an estimate: each batch's prefill runs from the batch's start to its
    last first token; the integrated power's shares scale the counter's energy."""

    estimate: Literal[True] = True
    method: str = (
        "power integrated over each batch's [start, last first token] vs the rest of the pass"
    )
    prefill_energy_j: float | None = None
    decode_energy_j: float | None = None
    prefill_share: float | None = None
    prefill_s: float | None = None
    energy_per_input_token_prefill_j: float | None = None
    energy_per_output_token_decode_j: float | None = None
    unavailable_reason: str | None = None


class EnergyBoundary(_Record):
    """What the energy figures cover. CO2 covers only this boundary (times PUE)."""

    gpu_boards: list[str] = Field(default_factory=list, description="the GPU boards measured")
    cpu: Literal["rapl", "not measured"] = "not measured"
    dram: Literal["rapl", "not measured"] = "not measured"
    headline: str = "GPU boards only; CPU and DRAM (RAPL) are reported apart, never added"
    pue: str = "applied only in the CO2 estimate, never to energy"


class NeighbourRecord(_Record):
    """Another run of the same study that ran beside this one (on other GPUs of this node)."""

    run_id: str
    gpus: list[int] = Field(default_factory=list, description="the GPUs the neighbour held")
    overlap_s: float = Field(..., description="seconds both runs' processes ran at once")
    window_overlap_s: float | None = Field(
        None,
        description="seconds the neighbour's process ran during this run's measured window "
        "(what neighbour_load counts; null: the window's time was not recorded)",
    )


class PlacementRecord(_Record):
    """Where a study run ran, filled by the study controller when the run ends."""

    gpus: list[int] = Field(
        default_factory=list,
        description="GPUs the run held, as CUDA indices of the controller (entries of its "
        "CUDA_VISIBLE_DEVICES, or NVML indices when that is unset)",
    )
    devices: list[str] = Field(
        default_factory=list, description="each held GPU's UUID where known, else its label"
    )
    concurrent: bool = Field(False, description="the study ran runs side by side")
    concurrent_runs: int = Field(1, description="execution.concurrent_runs of the study")
    started_at: str | None = Field(None, description="the run's process started (controller)")
    ended_at: str | None = Field(None, description="the run's process ended (controller)")
    neighbours: list[NeighbourRecord] = Field(
        default_factory=list, description="runs that overlapped this one in time"
    )


class ExperimentResult(_Record):
    """A complete, self-describing record of one experiment run."""

    schema_version: str = SCHEMA_VERSION
    llenergymeasure_version: str
    experiment_id: str
    config: ExperimentConfig
    config_hash: str
    runner: RunnerRecord = Field(default_factory=RunnerRecord)
    environment: EnvironmentSnapshot
    started_at: str
    ended_at: str
    model: ModelRecord
    load: LoadRecord
    warmup: WarmupRecord
    baseline: BaselineRecord | None = Field(
        None, description="resident idle: the one energy above idle is taken against"
    )
    cold_baseline: BaselineRecord | None = Field(
        None, description="cold idle: the GPUs before the engine started (reported, not applied)"
    )
    rewarm: RewarmRecord | None = Field(
        None,
        description="re-warm after a resident baseline measured in this run; null when the "
        "baseline came from the cache or was off (no idle pause before the window)",
    )
    compile: CompileRecord | None = Field(
        None, description="the engine's compile and its persistent cache (null: older result)"
    )
    timings: TimingsRecord | None = Field(
        None, description="where the process's wall time went (null: older result)"
    )
    energy: EnergyMeasurement
    cpu_energy: CpuEnergy = Field(default_factory=CpuEnergy)
    co2: CarbonEstimate = Field(default_factory=CarbonEstimate)
    # workload
    n_requests: int
    input_tokens: int
    output_tokens: int
    duration_s: float = Field(..., description="measured window, synchronised at both ends")
    window: WindowRecord | None = Field(None, description="passes that filled the window")
    # derived
    output_tokens_per_s: float
    requests_per_s: float
    total_energy_j: float | None = None
    total_energy_above_idle_j: float | None = None
    total_energy_above_idle_se_j: float | None = None
    energy_per_output_token_j: float | None = None
    energy_per_total_token_j: float | None = Field(
        None, description="total energy / (input + output tokens)"
    )
    energy_per_output_token_above_idle_j: float | None = None
    energy_per_output_token_above_idle_se_j: float | None = None
    energy_per_request_j: float | None = None
    energy_per_request_above_idle_j: float | None = None
    mean_power_w: float | None = None
    energy_quantisation_bound_j: float | None = Field(
        None, description="sensor period x (power at the window's start + at its end), over GPUs"
    )
    energy_quantisation_bound_rel: float | None = Field(
        None, description="energy_quantisation_bound_j / total_energy_j"
    )
    energy_split: EnergySplit | None = None
    window_gpu_state: dict[int, dict[str, float]] = Field(
        default_factory=dict,
        description="per GPU: start/end power W, temperature C, SM clock MHz of the window's samples",
    )
    boundary: EnergyBoundary | None = None
    prompt_seed: int | None = Field(
        None, description="seed the prompts were drawn with (config.seed + cycle - 1 by default)"
    )
    valid: bool = Field(True, description="every validity gate passed")
    failed_gates: list[str] = Field(default_factory=list)
    gates: list[GateResult] = Field(default_factory=list)
    ttft_ms: LatencyStats | None = None
    itl_ms: LatencyStats | None = None
    request_latency_ms: LatencyStats | None = None
    timing_source: str | None = None
    timing_unavailable_reason: str | None = None
    peak_memory_mb: float | None = None
    flops: FlopsEstimate = Field(default_factory=FlopsEstimate)
    warnings: list[ValidityWarning] = Field(default_factory=list)
    timeseries_file: str | None = Field(None, description="power time series beside result.json")
    extra: dict[str, Any] = Field(default_factory=dict, description="backend-specific facts")
    serving: ServingRecord | None = Field(
        None, description="workload: serving only: windows, goodput, per-request energy"
    )
    placement: PlacementRecord | None = Field(
        None, description="study runs side by side: the GPUs held and the neighbours (1.3)"
    )
    quality: QualityRecord | None = Field(
        None, description="lm-eval tasks after the measured window, each in its own energy window"
    )
    engine_telemetry: EngineTelemetry | None = Field(
        None, description="a server measured over HTTP: its /metrics over the window, summarised"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        data = rename_old_fields(data)
        data = _engine_telemetry_from_extra(data)
        if isinstance(data, dict) and "energy_per_total_token_j" not in data:
            # results before 1.2: the figure is exactly derivable from what they stored
            total, tin, tout = (
                data.get("total_energy_j"),
                data.get("input_tokens"),
                data.get("output_tokens"),
            )
            if (
                isinstance(total, (int, float))
                and isinstance(tin, int)
                and isinstance(tout, int)
                and tin + tout > 0
            ):
                data = {**data, "energy_per_total_token_j": total / (tin + tout)}
        return data

    @property
    def total_energy_adjusted_j(self) -> float | None:
        """Pre-1.2 name of ``total_energy_above_idle_j``."""
        return self.total_energy_above_idle_j

    @property
    def energy_per_output_token_adjusted_j(self) -> float | None:
        """Pre-1.2 name of ``energy_per_output_token_above_idle_j``."""
        return self.energy_per_output_token_above_idle_j

    @property
    def energy_per_request_adjusted_j(self) -> float | None:
        """Pre-1.2 name of ``energy_per_request_above_idle_j``."""
        return self.energy_per_request_above_idle_j


def _engine_telemetry_from_extra(data: Any) -> Any:
    """Results written before ``engine_telemetry`` was a field kept it in ``extra``: lift it."""
    if not isinstance(data, dict) or data.get("engine_telemetry") is not None:
        return data
    extra = data.get("extra")
    if not isinstance(extra, dict) or extra.get("engine_telemetry") is None:
        return data
    rest = {k: v for k, v in extra.items() if k != "engine_telemetry"}
    return {**data, "engine_telemetry": extra["engine_telemetry"], "extra": rest}


class RunFailure(_Record):
    """A run that produced no result: where it failed and why."""

    run_id: str
    config_hash: str
    cycle: int
    status: Literal["failed", "interrupted", "timeout"] = "failed"
    phase: str | None = None
    error_type: str | None = None
    message: str
    error_file: str | None = None


class MetricStats(_Record):
    """A metric across the cycles of one config: mean, sd, Student-t 95 % CI, CV."""

    n: int
    mean: float | None = None
    std: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    ci95_half_width: float | None = None
    cv: float | None = None
    values: list[float] = Field(default_factory=list)


class ConfigSummary(_Record):
    config_hash: str
    label: str
    backend: str
    model: str
    config: ExperimentConfig
    n_completed: int
    n_failed: int
    run_ids: list[str] = Field(default_factory=list)
    n_invalid: int = Field(0, description="completed runs that failed a validity gate")
    invalid_run_ids: list[str] = Field(
        default_factory=list, description="those runs: listed, left out of metrics"
    )
    metrics: dict[str, MetricStats] = Field(default_factory=dict)
    warnings: list[ValidityWarning] = Field(
        default_factory=list, description="e.g. cycles_disagree: J/token CV above the threshold"
    )
    slo_capacity: SloCapacity | None = Field(
        None, description="serving rate sweeps: the sweep's highest rate meeting the SLO target"
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_metrics(cls, data: Any) -> Any:
        """Summaries before 1.2 named their metrics ``*_adjusted_j``: read them under the new names."""
        if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
            data = {**data, "metrics": rename_old_fields(data["metrics"])}
        return data


class StudyResult(_Record):
    """A study's aggregate. ``runs`` keeps each ``ExperimentResult``; ``summaries`` one per config.

    The record as the study runner and the loader build it; ``llenergymeasure.StudyResult`` (a
    subclass with no fields of its own) is what the public API hands out.
    """

    schema_version: str = SCHEMA_VERSION
    llenergymeasure_version: str
    name: str
    study_design_hash: str
    study_dir: str | None = None
    started_at: str
    ended_at: str
    measurement_protocol: dict[str, Any] = Field(
        default_factory=dict, description="the execution block actually used (cycles, order, gaps)"
    )
    environment: EnvironmentSnapshot | None = None
    runners: dict[str, dict[str, Any]] = Field(default_factory=dict)
    runs: list[ExperimentResult] = Field(default_factory=list)
    summaries: list[ConfigSummary] = Field(default_factory=list)
    failures: list[RunFailure] = Field(default_factory=list)
    invalid_points: list[str] = Field(default_factory=list)
    invalid_runs: list[str] = Field(
        default_factory=list,
        description="runs that failed a validity gate: kept in runs, left out of summaries",
    )
    interrupted: bool = False

    @property
    def n_completed(self) -> int:
        return len(self.runs)
