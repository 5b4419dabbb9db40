"""Distributions recorded in results: latency in milliseconds and energy over requests in joules.

One definition for the offline result (``models``) and the serving record (``serving_models``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class LatencyStats(BaseModel):
    """Distribution of a latency in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    n: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float


class EnergyStats(BaseModel):
    """Distribution of an energy over requests, in joules."""

    model_config = ConfigDict(extra="forbid")

    n: int
    mean_j: float
    p50_j: float
    p90_j: float
    p99_j: float
