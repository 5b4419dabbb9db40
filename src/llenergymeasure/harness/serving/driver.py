"""The load driver: sends requests to a serving engine on their arrival times, in one asyncio loop.

**Open loop.** One injector coroutine walks the schedule: it sleeps until a request's send time,
then starts the request's task, which stamps ``injected_s`` as its first act, right before the
engine call. The difference ``injected_s - scheduled_s`` is the driver's *injection lag*; the
result records its distribution, so a driver that could not keep up is visible, never hidden.
The injector never sends early (a request whose time has not come waits).

**Closed loop.** ``concurrency`` worker coroutines each send a request, wait for it to finish and
send the next, until ``n_requests`` were sent or ``duration_s`` has passed. A request's scheduled
time is the moment its worker became free, so the lag measures the driver's own turnaround.

The engine's tasks run on the same loop (vLLM's output handler, the transformers manager's result
callbacks), so a request's tokens are handed over as soon as the engine has them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.serving_base import RequestTimeline, ServingEngine
from llenergymeasure.errors import ExperimentError

#: the injector wakes this long before a send time and yields to the loop until it comes
EARLY_WAKE_S = 0.002


@dataclass
class DriveResult:
    """What the driver did: every request's timeline and the span of the run (perf_counter s)."""

    timelines: list[RequestTimeline]
    start_s: float
    end_s: float
    mode: str
    lags_s: list[float] = field(default_factory=list)
    #: requests that failed, left out of ``timelines`` (engines that tolerate failed requests)
    failed: list[RequestTimeline] = field(default_factory=list)

    @property
    def last_injection_s(self) -> float:
        return max((t.injected_s for t in self.timelines), default=self.start_s)


async def _run_one(
    engine: ServingEngine,
    timeline: RequestTimeline,
    prompt: Prompt,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    timeline.injected_s = clock()
    try:
        await engine.submit(timeline.index, prompt, timeline)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # recorded per request; the driver raises once all are done
        if isinstance(exc, ExperimentError) and _tolerates_failures(engine):
            raise  # such an engine raises this only when the run is lost (its server died)
        timeline.error = f"{type(exc).__name__}: {exc}"
        if timeline.finished_s is None:
            timeline.finished_s = clock()


def _tolerates_failures(engine: ServingEngine) -> bool:
    """An engine over a network (backends/openai) loses single requests without losing the run:
    its failed requests are counted apart, and only a run where every request failed fails."""
    return bool(getattr(engine, "tolerates_failed_requests", False))


def _split_failures(
    engine: ServingEngine, timelines: list[RequestTimeline]
) -> tuple[list[RequestTimeline], list[RequestTimeline]]:
    """(completed, failed) for a tolerant engine with at least one completed request; else raise
    when any failed."""
    failed = [t for t in timelines if t.error]
    done = [t for t in timelines if not t.error]
    if failed and done and _tolerates_failures(engine):
        return done, failed
    _raise_failures(timelines)
    return timelines, []


def _raise_failures(timelines: list[RequestTimeline]) -> None:
    failed = [t for t in timelines if t.error]
    if failed:
        raise ExperimentError(
            f"{len(failed)} of {len(timelines)} serving requests failed; the first (request "
            f"{failed[0].index}): {failed[0].error}",
            phase="measure",
        )


async def drive_open_loop(
    engine: ServingEngine,
    prompts: list[Prompt],
    offsets_s: list[float],
    clock: Callable[[], float] = time.perf_counter,
) -> DriveResult:
    """Send ``prompts[i]`` at ``offsets_s[i]`` after the start; return when all finished."""
    if len(prompts) != len(offsets_s):
        raise ValueError(f"{len(prompts)} prompts for {len(offsets_s)} arrival times")
    start = clock()
    timelines = [
        RequestTimeline(index=i, input_tokens=len(p.token_ids), scheduled_s=start + off)
        for i, (p, off) in enumerate(zip(prompts, offsets_s, strict=True))
    ]
    tasks: list[asyncio.Task[None]] = []
    try:
        for timeline, prompt in zip(timelines, prompts, strict=True):
            delay = timeline.scheduled_s - clock()
            if delay > EARLY_WAKE_S:
                await asyncio.sleep(delay - EARLY_WAKE_S)
            # the last stretch yielding to the loop in a tight loop (asyncio's timers round to
            # about a millisecond and fire late under load); never send before the time
            while clock() < timeline.scheduled_s:
                await asyncio.sleep(0)
            tasks.append(asyncio.ensure_future(_run_one(engine, timeline, prompt, clock)))
            await asyncio.sleep(0)  # let the task reach the engine now, not after the next sleep
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    end = clock()
    timelines, failed = _split_failures(engine, timelines)
    lags = [t.injected_s - t.scheduled_s for t in timelines]
    return DriveResult(
        timelines=timelines, start_s=start, end_s=end, mode="open", lags_s=lags, failed=failed
    )


async def drive_closed_loop(
    engine: ServingEngine,
    prompts: list[Prompt],
    concurrency: int,
    duration_s: float | None,
    clock: Callable[[], float] = time.perf_counter,
) -> DriveResult:
    """``concurrency`` clients sending back to back, at most ``len(prompts)`` requests in all,
    none sent after ``duration_s``; return when all finished."""
    start = clock()
    deadline = start + duration_s if duration_s is not None else float("inf")
    timelines: list[RequestTimeline] = []
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < len(prompts):
            now = clock()
            if now >= deadline:
                return
            i = next_index
            next_index += 1
            timeline = RequestTimeline(
                index=i, input_tokens=len(prompts[i].token_ids), scheduled_s=now
            )
            timelines.append(timeline)
            await _run_one(engine, timeline, prompts[i], clock)
            if timeline.error and not _tolerates_failures(engine):
                return

    workers = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        raise
    end = clock()
    timelines.sort(key=lambda t: t.index)
    timelines, failed = _split_failures(engine, timelines)
    lags = [t.injected_s - t.scheduled_s for t in timelines]
    return DriveResult(
        timelines=timelines, start_s=start, end_s=end, mode="closed", lags_s=lags, failed=failed
    )
