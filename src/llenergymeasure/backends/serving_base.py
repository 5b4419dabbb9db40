"""What a serving engine hands back per request: a timeline on one clock.

A serving backend (``vllm_serving.py``, ``pytorch_serving.py``) takes one request at a time
through ``ServingEngine.submit``, a coroutine that returns once the request finished. Every time
in a ``RequestTimeline`` is on ``time.perf_counter``'s clock (CLOCK_MONOTONIC on Linux), converted
from whatever clock the engine stamps with, so the harness can line requests up against the power
time series of the meter, which uses the same clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from llenergymeasure.backends.base import Prompt


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
