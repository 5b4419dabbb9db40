"""Per-request TTFT, inter-token latencies and latency, from whatever clock an engine offers.

Three kinds of readings, one ``RequestRecord`` shape:

- **step offsets** (``record_from_step_offsets``): the time of every decoding step from the start
  of the batch (the PyTorch backend's step clock);
- **engine-step timestamps** (``RequestTrace``): tokens arriving in engine steps, each step stamped
  by the engine's own clock, plus the engine's own time to first token (vLLM);
- **a span** (``span_timings``): arrival, first-token and last-token times only
  (TensorRT-LLM's per-request perf metrics; no inter-token latencies).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from llenergymeasure.backends.base import RequestRecord


def record_from_step_offsets(
    input_tokens: int, output_tokens: int, offsets_s: list[float]
) -> RequestRecord:
    """A request whose token ``i`` came out of the step ending ``offsets_s[i]`` after the start.

    TTFT is the first step's offset, the latency the last generated token's, the inter-token
    latencies the differences between consecutive steps (``output_tokens`` > 0).
    """
    mine = offsets_s[:output_tokens]
    return RequestRecord(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        ttft_s=mine[0],
        itl_s=[b - a for a, b in itertools.pairwise(mine)],
        latency_s=mine[-1],
    )


@dataclass
class RequestTrace:
    """What one request produced, assembled from the tokens each engine step delivered."""

    index: int
    prompt_tokens: int | None = None
    token_ids: list[int] = field(default_factory=list)
    itl_s: list[float] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    ttft_s: float | None = None
    finished: bool = False
    finish_reason: str | None = None

    def add(self, new_ids: list[int], engine_ts: float | None) -> None:
        """Record one delta: ``new_ids`` produced by the engine step stamped ``engine_ts``."""
        if not new_ids:
            return
        self.token_ids.extend(new_ids)
        if engine_ts is None:
            return
        if self.last_ts is None:
            self.first_ts = engine_ts
            extra = len(new_ids) - 1
        else:
            self.itl_s.append(engine_ts - self.last_ts)
            extra = len(new_ids) - 1
        # Tokens that came out of one engine step together are 0 s apart.
        self.itl_s.extend([0.0] * extra)
        self.last_ts = engine_ts

    def record(self, timed: bool) -> RequestRecord:
        """The request's record; latency = TTFT + (last token time - first token time)."""
        latency = None
        if timed and self.ttft_s is not None and self.first_ts is not None:
            latency = self.ttft_s + ((self.last_ts or self.first_ts) - self.first_ts)
        return RequestRecord(
            input_tokens=self.prompt_tokens or 0,
            output_tokens=len(self.token_ids),
            latency_s=latency,
            ttft_s=self.ttft_s if timed else None,
            itl_s=list(self.itl_s) if timed else [],
        )


def seconds(value: Any) -> float | None:
    """A ``timedelta`` or a number of seconds as float seconds (None stays None)."""
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)


def span_timings(arrival: Any, first: Any, last: Any) -> tuple[float | None, float | None]:
    """(TTFT, latency) from a request's arrival, first-token and last-token times.

    Each may be a ``timedelta`` or seconds on the same clock; (None, None) when one is missing or
    not positive (the engine did not record it).
    """
    a, f, la = seconds(arrival), seconds(first), seconds(last)
    if a is None or f is None or la is None or f <= 0 or la <= 0:
        return None, None
    return f - a, la - a
