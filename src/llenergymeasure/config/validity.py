"""Validity-gate thresholds (user config ``validity:``), carried to the harness in the request.

A run whose measurement fails a gate is stored with ``valid: false`` and the failed gates named;
summaries, confidence intervals and Pareto fronts use valid runs only, and ``llem run --strict``
fails the study on an invalid run. ``docs/methodology.md`` states each gate and its default.

Pure data: imports nothing from the package.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ValiditySettings(BaseModel):
    """Thresholds of the validity gates and of the idle-baseline acceptance."""

    model_config = ConfigDict(extra="forbid")

    min_window_s: float = Field(
        1.0,
        ge=0.0,
        description="gate short_window: a measured window shorter than this many seconds fails",
    )
    max_counter_mismatch: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description="gate counter_power_mismatch: |integrated power - counter| / counter above this",
    )
    max_sampler_gap_s: float = Field(
        0.5,
        gt=0.0,
        description="gate sampler_gap: a gap between power samples longer than this many seconds",
    )
    max_slowdown_share: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description=(
            "gates thermal_slowdown / hw_slowdown: share of the window's samples (or violation "
            "time) with that clock-event reason above this fails"
        ),
    )
    min_slowdown_samples: int = Field(
        2,
        ge=1,
        description="a slowdown seen in fewer samples than this never fails a gate (one 100 ms blip)",
    )
    fail_on_foreign_process: bool = Field(
        True, description="gate foreign_process: another process used a measured GPU"
    )
    max_quantisation_rel: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        description=(
            "gate quantisation: the window edges' quantisation bound over the energy above this "
            "fails (about 1 / N for N sensor periods with edges off the counter's updates)"
        ),
    )
    baseline_settle_tolerance: float = Field(
        0.02,
        gt=0.0,
        le=1.0,
        description="resident idle: power is settled when two 1 s means differ by less than this",
    )
    baseline_settle_max_s: float = Field(
        30.0, ge=0.0, description="resident idle: longest wait for power to settle"
    )
    baseline_max_drift: float = Field(
        0.03,
        gt=0.0,
        le=1.0,
        description=(
            "idle window rejected when its fitted drift exceeds this and is significant against "
            "its standard error"
        ),
    )
    baseline_max_util_pct: float = Field(
        0.0, ge=0.0, le=100.0, description="idle window rejected when GPU utilisation exceeds this"
    )
    min_running_batch_share: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description=(
            "gate saturation (endpoint backend, closed-loop or offline): the engine's mean running "
            "batch under this share of the requested concurrency (or its max_num_seqs) fails"
        ),
    )
