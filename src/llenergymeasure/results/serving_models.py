"""Result records of a serving experiment (``ExperimentResult.serving``); data only.

Times named ``*_s`` inside a window record are seconds from the start of the measured window.
What every field means is in docs/results.md ("Serving results"); how the numbers are made, in
docs/methodology.md ("Serving mode", "Energy per request").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure.results.distributions import EnergyStats, LatencyStats


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServingWindow(_Record):
    """Serving metrics over one window (the whole run, or its steady state)."""

    start_s: float
    end_s: float
    duration_s: float
    n_requests: int = Field(..., description="requests completed inside the window")
    n_sent_requests: int | None = Field(None, description="requests sent inside the window")
    n_good_requests: int | None = Field(
        None, description="of the requests completed inside the window, the ones meeting the SLO"
    )
    output_tokens: int = Field(..., description="output tokens produced inside the window")
    requests_per_s: float = Field(..., description="requests finished inside the window per s")
    send_rate_rps: float | None = Field(None, description="requests sent inside the window per s")
    output_tokens_per_s: float
    goodput_rps: float | None = Field(
        None, description="good requests completed inside the window per s (<= requests_per_s)"
    )
    slo_attainment: float | None = Field(
        None, description="good requests / requests completed inside the window"
    )
    ttft_ms: LatencyStats | None = None
    itl_ms: LatencyStats | None = None
    e2e_ms: LatencyStats | None = None
    queue_ms: LatencyStats | None = None
    energy_j: float | None = None
    energy_above_idle_j: float | None = None
    energy_per_output_token_j: float | None = None
    energy_per_output_token_above_idle_j: float | None = None
    energy_per_good_request_j: float | None = None
    energy_per_good_request_above_idle_j: float | None = None
    request_energy_j: EnergyStats | None = Field(None, description="J per request")
    request_energy_above_idle_j: EnergyStats | None = None
    request_energy_per_output_token_j: EnergyStats | None = Field(
        None, description="each request's J / its output tokens"
    )
    request_energy_per_output_token_above_idle_j: EnergyStats | None = None


class ServingRequest(_Record):
    """One request of a serving run."""

    index: int
    scheduled_s: float
    injected_s: float
    injection_lag_ms: float
    queue_ms: float | None = None
    ttft_ms: float | None = None
    mean_itl_ms: float | None = None
    e2e_ms: float | None = None
    input_tokens: int
    output_tokens: int
    met_slo: bool | None = None
    in_steady_window: bool = Field(..., description="completed inside the steady window")
    energy_j: float | None = Field(None, description="midpoint of the attribution band")
    energy_above_idle_j: float | None = None
    energy_low_j: float | None = Field(
        None, description="the lower of the two attributions (by tokens, by requests in a step)"
    )
    energy_high_j: float | None = Field(None, description="the higher of the two attributions")


class SteadyChecks(_Record):
    """Was the window steady? Stationarity (rates, wait trend) and drift (tokens/s by thirds)."""

    window: str = Field(..., description="steady, or sending span when the run had no steady one")
    send_rate_rps: float
    completion_rate_rps: float
    completion_to_send_ratio: float | None = None
    ttft_first_half_ms: float | None = Field(
        None, description="mean TTFT of the requests sent in the window's first half"
    )
    ttft_second_half_ms: float | None = None
    overloaded: bool = Field(
        False, description="completions fell behind sends while the wait grew (warning overloaded)"
    )
    first_third_tok_s: float | None = None
    last_third_tok_s: float | None = None
    drift_relative: float | None = None
    drift_tolerance: float | None = None
    drift: bool | None = Field(None, description="None: not checked (see the reason)")
    drift_not_checked_reason: str | None = None


class ServingRecord(_Record):
    """What a ``workload: serving`` experiment measured beyond the offline fields."""

    mode: Literal["open", "closed"]
    load: str = Field(..., description="e.g. poisson@4rps, closed@8")
    rate_rps: float | None = None
    concurrency: int | None = None
    n_requests: int
    timing_source: str
    injection_lag_ms: LatencyStats | None = Field(
        None, description="actual minus scheduled send time of every request"
    )
    steady_rule: str
    full: ServingWindow
    steady: ServingWindow | None = Field(
        None, description="None when the run had no steady state by the rule"
    )
    steady_unavailable_reason: str | None = Field(
        None, description="why the run had no steady-state window"
    )
    steady_checks: SteadyChecks | None = Field(
        None, description="stationarity and drift of the steady window (else the sending span)"
    )
    attribution_unavailable_reason: str | None = None
    attribution_weighting: str | None = Field(
        None, description="how a step's energy is split between prompt and output tokens"
    )
    attribution_intervals: dict[str, int] = Field(default_factory=dict)
    requests: list[ServingRequest] = Field(default_factory=list)


class SloCapacity(_Record):
    """The highest rate of a rate sweep at which the SLO holds for enough requests (DistServe's
    goodput): configs that differ only in ``load.rate_rps``, valid runs only."""

    target_attainment: float = Field(..., description="share of requests that must meet the SLO")
    window: str = Field("full", description="the window whose slo_attainment is judged")
    rates_rps: list[float] = Field(..., description="the swept rates, ascending")
    attainment: list[float | None] = Field(
        ..., description="per rate: mean slo_attainment over its valid runs (None: none)"
    )
    n_runs: list[int] = Field(..., description="per rate: valid runs with an attainment")
    config_hashes: list[str]
    max_rate_rps: float | None = Field(
        None,
        description="highest swept rate at which this and every lower rate met the target",
    )
    note: str = Field(..., description="how to read max_rate_rps (bounded, open-ended, none)")
