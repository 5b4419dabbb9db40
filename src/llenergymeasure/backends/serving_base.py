"""What a serving engine hands back per request: a timeline on one clock.

A serving backend (``vllm_serving.py``, ``pytorch_serving.py``) takes one request at a time
through ``ServingEngine.submit``, a coroutine that returns once the request finished. Every time
in a ``RequestTimeline`` is on ``time.perf_counter``'s clock (CLOCK_MONOTONIC on Linux), converted
from whatever clock the engine stamps with, so the harness can line requests up against the power
time series of the meter, which uses the same clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from llenergymeasure.backends.base import GenerationOutput, Prompt, RequestRecord


@dataclass
class RequestTimeline:
    """One request, as the engine saw it (all times ``perf_counter`` seconds)."""

    index: int
    input_tokens: int
    #: when the driver meant to send the request, and when the engine call was actually made
    scheduled_s: float = 0.0
    injected_s: float = 0.0
    #: the engine's own stamps: request queued, first scheduled (prefill starts), finished
    queued_s: float | None = None
    started_s: float | None = None
    #: (time, tokens) for every engine step that produced output tokens for this request
    token_steps: list[tuple[float, int]] = field(default_factory=list)
    #: the engine's own time to first token (arrival to first token), when it reports one
    engine_ttft_s: float | None = None
    finished_s: float | None = None
    finish_reason: str | None = None
    error: str | None = None

    @property
    def output_tokens(self) -> int:
        return sum(n for _, n in self.token_steps)

    @property
    def first_token_s(self) -> float | None:
        return self.token_steps[0][0] if self.token_steps else None

    @property
    def last_token_s(self) -> float | None:
        return self.token_steps[-1][0] if self.token_steps else None

    @property
    def end_s(self) -> float:
        """When the request stopped occupying the engine (finish, else its last token)."""
        for value in (self.finished_s, self.last_token_s, self.started_s):
            if value is not None:
                return value
        return self.injected_s

    def token_times(self) -> list[float]:
        """One time per output token (tokens of one step share its time)."""
        return [t for t, n in self.token_steps for _ in range(n)]


class ServingEngine(Protocol):
    """A loaded engine that takes requests one at a time while it runs."""

    def clock_note(self) -> str:
        """Which engine timestamps the timelines are built from (recorded in the result)."""
        ...

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        """Send one request now, fill ``timeline`` as tokens arrive, return when it finished."""
        ...


def generate_through(engine: ServingEngine, loop: Any, prompts: list[Prompt]) -> GenerationOutput:
    """All ``prompts`` sent at once through ``engine.submit`` on ``loop`` (a serving backend's
    ``generate``, used for warmup); TTFT and latency from the send time."""
    import asyncio

    timelines = [
        RequestTimeline(index=i, input_tokens=len(p.token_ids)) for i, p in enumerate(prompts)
    ]

    async def run_all() -> None:
        for t in timelines:
            t.injected_s = time.perf_counter()
        await asyncio.gather(
            *(engine.submit(t.index, p, t) for t, p in zip(timelines, prompts, strict=True))
        )

    t0 = time.perf_counter()
    loop.run_until_complete(run_all())
    duration = time.perf_counter() - t0
    records = []
    for t in timelines:
        first, last = t.first_token_s, t.last_token_s
        records.append(
            RequestRecord(
                input_tokens=t.input_tokens,
                output_tokens=t.output_tokens,
                latency_s=last - t.injected_s if last is not None else None,
                ttft_s=first - t.injected_s if first is not None else None,
            )
        )
    return GenerationOutput(
        requests=records, duration_s=duration, timing_source=engine.clock_note()
    )
