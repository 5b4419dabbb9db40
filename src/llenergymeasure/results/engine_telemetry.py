"""``EngineTelemetry``: the serving engine's own state during the measured window (endpoint mode).

Filled from the server's Prometheus ``/metrics`` page, scraped about once a second
(``backends/openai/telemetry.py``); the full series is a file beside the result. Pure data.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EngineTelemetry(BaseModel):
    """Summary of the engine's scraped state over the window (None: the page lacks the figure)."""

    model_config = ConfigDict(extra="forbid")

    dialect: str = Field(..., description="whose metric names the page used: vllm or sglang")
    period_s: float = Field(..., description="the scrape period asked for")
    n_scrapes: int = Field(..., description="pages read and parsed during the window")
    n_scrape_errors: int = 0
    last_scrape_error: str | None = None
    running_requests_mean: float | None = None
    running_requests_max: float | None = None
    waiting_requests_mean: float | None = None
    waiting_requests_max: float | None = None
    kv_cache_usage_mean: float | None = Field(None, description="fraction 0-1")
    kv_cache_usage_max: float | None = None
    preemptions: float | None = Field(None, description="increase of the counter over the window")
    prompt_tokens: float | None = Field(None, description="increase over the window")
    generation_tokens: float | None = Field(None, description="increase over the window")
    #: the running batch the load asked for: min(concurrency or batch, the engine's max_num_seqs)
    saturation_target: float | None = None
    #: running_requests_mean / saturation_target
    saturation_ratio: float | None = None
    timeseries_file: str | None = Field(
        None, description="CSV of every scrape beside the result (time_s from the window start)"
    )
