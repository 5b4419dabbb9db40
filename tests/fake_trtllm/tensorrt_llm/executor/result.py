"""Mirror of ``CompletionOutput`` (``tensorrt_llm/executor/result.py``) and of the
``RequestPerfMetrics`` binding (``tensorrt_llm.bindings.executor``): timing fields are
``datetime.timedelta`` readings of the runtime's steady clock, as in the real binding."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class TimingMetrics:
    arrival_time: datetime.timedelta = datetime.timedelta(0)
    first_scheduled_time: datetime.timedelta = datetime.timedelta(0)
    first_token_time: datetime.timedelta = datetime.timedelta(0)
    last_token_time: datetime.timedelta = datetime.timedelta(0)


@dataclass
class RequestPerfMetrics:
    timing_metrics: TimingMetrics = field(default_factory=TimingMetrics)
    first_iter: int | None = None
    last_iter: int | None = None
    iter: int | None = None


@dataclass(slots=True)
class CompletionOutput:
    index: int
    text: str = ""
    token_ids: list[int] | None = field(default_factory=list)
    cumulative_logprob: float | None = None
    finish_reason: Literal["stop", "length", "timeout", "cancelled"] | None = None
    stop_reason: int | str | None = None
    request_perf_metrics: RequestPerfMetrics | None = None

    @property
    def length(self) -> int:
        return len(self.token_ids or [])
