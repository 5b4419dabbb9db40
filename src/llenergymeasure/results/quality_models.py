"""The ``quality`` block of a result: lm-eval task scores beside the energy of scoring them.

Pure data (``quality/`` fills it, docs/quality.md and docs/results.md describe it). Each task runs
in its own energy window after the measured window, on the same engine instance, so its energy
is never part of the measured window's.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricValue(_Record):
    """One lm-eval metric of one task (after its filter, e.g. ``exact_match`` of ``strict-match``)."""

    name: str = Field(..., description="lm-eval's metric name, e.g. acc, acc_norm, exact_match")
    filter: str = Field("none", description="lm-eval's filter the metric was computed after")
    value: float | None = None
    stderr: float | None = Field(None, description="lm-eval's standard error of the value")
    higher_is_better: bool | None = None


class TaskQuality(_Record):
    """One task: its scores and the energy window that scored them."""

    task: str = Field(..., description="lm-eval's task name")
    source: str = Field(..., description="the quality.tasks entry: a task name or a YAML file")
    output_type: str | None = Field(None, description="multiple_choice, generate_until, ...")
    ok: bool = True
    error: str | None = Field(None, description="why the evaluation failed (ok false)")
    metrics: list[MetricValue] = Field(default_factory=list)
    n_items: int | None = Field(None, description="documents evaluated (after limit)")
    n_requests: int | None = Field(None, description="engine requests (a choice is one)")
    input_tokens: int | None = Field(None, description="tokens scored or used as prompts")
    output_tokens: int | None = Field(None, description="tokens generated")
    duration_s: float | None = Field(None, description="the task's energy window")
    energy_j: float | None = Field(None, description="raw energy of the task's window")
    energy_above_idle_j: float | None = Field(
        None, description="energy_j minus resident idle power x duration (never below zero)"
    )
    meter: str | None = None
    energy_unavailable_reason: str | None = None
    energy_per_item_j: float | None = None
    correct_metric: str | None = Field(
        None, description="the accuracy-type metric J per correct answer is computed from"
    )
    n_correct: float | None = Field(None, description="correct_metric's value x n_items")
    energy_per_correct_j: float | None = Field(
        None, description="energy_j / n_correct; null when no answer was correct"
    )
    energy_per_correct_note: str | None = Field(
        None, description="why energy_per_correct_j is null, when it is"
    )
    task_hash: str | None = Field(
        None,
        description="SHA-256 over the task's resolved config and its evaluated documents' hashes",
    )
    task_version: Any = Field(None, description="the task's own version (metadata.version)")
    num_fewshot: int | None = None


class QualityRecord(_Record):
    """Every task of ``quality.tasks``, evaluated after the measured window."""

    lm_eval_version: str | None = None
    adapter: str | None = Field(None, description="the llem adapter that served lm-eval's requests")
    weights: str | None = Field(
        None, description="random for synthetic models: accuracy is at chance there"
    )
    ok: bool = Field(True, description="every task evaluated")
    error: str | None = Field(None, description="why the evaluation did not run at all")
    tasks: list[TaskQuality] = Field(default_factory=list)
    duration_s: float | None = Field(None, description="the whole evaluation, task setup included")
