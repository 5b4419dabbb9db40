"""The load driver and the arrival schedules: never early, lag recorded, bounded waits."""

from __future__ import annotations

import asyncio
import itertools
import statistics
from pathlib import Path

import pytest

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.workload import LoadConfig
from llenergymeasure.errors import ConfigError, ExperimentError
from llenergymeasure.harness.serving.driver import drive_closed_loop, drive_open_loop
from llenergymeasure.harness.serving.schedule import arrival_offsets, read_trace
from tests.fakes.virtual_loop import VirtualTimeLoop, run_virtual


class SleepingEngine:
    """Serves a request by sleeping its service time on the loop (virtual time: see
    ``tests/fakes/virtual_loop.py``); ``hold_at`` keeps the loop busy for ``hold_s`` when that
    request arrives, as CPU work on the loop's thread would on a loaded machine."""

    def __init__(
        self,
        service_s: float = 0.005,
        fail_index: int | None = None,
        hold_at: int | None = None,
        hold_s: float = 0.0,
    ) -> None:
        self.service_s = service_s
        self.fail_index = fail_index
        self.hold_at = hold_at
        self.hold_s = hold_s
        self.in_flight = 0
        self.max_in_flight = 0

    def clock_note(self) -> str:
        return "test engine"

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            timeline.started_s = loop.time()
            if index == self.hold_at:
                assert isinstance(loop, VirtualTimeLoop)
                loop.hold(self.hold_s)  # busy: nothing else on the loop runs meanwhile
            await asyncio.sleep(self.service_s)
            if index == self.fail_index:
                raise RuntimeError("engine said no")
            timeline.token_steps.append((loop.time(), prompt.max_new_tokens))
            timeline.finished_s = loop.time()
        finally:
            self.in_flight -= 1


def _prompts(n: int) -> list[Prompt]:
    return [Prompt(token_ids=[1, 2, 3], max_new_tokens=2) for _ in range(n)]


def test_poisson_schedule_is_seeded_and_has_the_rate() -> None:
    load = LoadConfig(rate_rps=50, n_requests=2000)
    a, b = arrival_offsets(load, 1), arrival_offsets(load, 1)
    assert a == b and a != arrival_offsets(load, 2)
    assert a[0] == 0.0 and all(y >= x for x, y in itertools.pairwise(a))
    gaps = [y - x for x, y in itertools.pairwise(a)]
    assert statistics.mean(gaps) == pytest.approx(1 / 50, rel=0.1)
    # exponential gaps: standard deviation about the mean (a constant process has none)
    assert statistics.stdev(gaps) == pytest.approx(1 / 50, rel=0.15)


def test_constant_burst_and_duration_bounds() -> None:
    assert arrival_offsets(LoadConfig(arrival="constant", rate_rps=4, n_requests=3), 0) == [
        0.0,
        0.25,
        0.5,
    ]
    burst = arrival_offsets(LoadConfig(arrival="burst", rate_rps=4, burst_size=2, n_requests=5), 0)
    assert burst == [0.0, 0.0, 0.5, 0.5, 1.0]
    timed = arrival_offsets(LoadConfig(arrival="constant", rate_rps=10, duration_s=1.0), 0)
    assert len(timed) == 11 and timed[-1] == pytest.approx(1.0)


def test_trace_replays_and_rescales(tmp_path: Path) -> None:
    f = tmp_path / "arrivals.txt"
    f.write_text("# seconds\n10\n10.5\n\n12\n")
    assert read_trace(str(f)) == [0.0, 0.5, 2.0]
    as_is = LoadConfig(arrival="trace", trace_file=str(f), n_requests=10)
    assert arrival_offsets(as_is, 0) == [0.0, 0.5, 2.0]
    doubled = LoadConfig(arrival="trace", trace_file=str(f), rate_rps=2.0, n_requests=10)
    assert arrival_offsets(doubled, 0) == pytest.approx([0.0, 0.25, 1.0])  # own rate 1 rps
    f.write_text("1\nsoon\n")
    with pytest.raises(ConfigError, match=r"arrivals.txt:2: 'soon'"):
        read_trace(str(f))


def test_open_loop_never_sends_early_and_records_its_lag() -> None:
    """On virtual time (the same on a quiet or a loaded machine): every request is sent at its
    time, never before, and with a lag of a few loop passes at most."""
    engine = SleepingEngine()
    offsets = arrival_offsets(LoadConfig(rate_rps=100, n_requests=40), 3)
    res, loop = run_virtual(
        lambda loop: drive_open_loop(engine, _prompts(40), offsets, clock=loop.time)
    )
    assert len(res.timelines) == len(res.lags_s) == 40
    assert min(res.lags_s) >= 0.0, "the driver sent a request before its time"
    # a free loop: each send is at most a few loop passes (TICK_S each) after its time
    assert max(res.lags_s) <= 5 * loop.tick_s
    for t, off in zip(res.timelines, offsets, strict=True):
        assert t.scheduled_s == pytest.approx(res.start_s + off)
        assert t.injected_s - t.scheduled_s == pytest.approx(res.lags_s[t.index])
    assert all(t.output_tokens == 2 and t.finished_s is not None for t in res.timelines)


def test_open_loop_records_the_lag_of_a_busy_loop() -> None:
    """A loop kept busy for 50 ms at request 2 (constant arrivals every 10 ms): requests 3-6,
    due meanwhile, go out as soon as it is free, each with its own lateness recorded."""
    engine = SleepingEngine(hold_at=2, hold_s=0.05)
    offsets = arrival_offsets(LoadConfig(arrival="constant", rate_rps=100, n_requests=10), 0)
    res, loop = run_virtual(
        lambda loop: drive_open_loop(engine, _prompts(10), offsets, clock=loop.time)
    )
    assert min(res.lags_s) >= 0.0
    # request 2 was sent at 0.02 s and held the loop to 0.07 s: 3..6 (due 0.03..0.06) are late
    # by 0.04, 0.03, 0.02, 0.01 s; 0..2 and 7..9 are on time (within a few loop passes)
    late = [0.0, 0.0, 0.0, 0.04, 0.03, 0.02, 0.01, 0.0, 0.0, 0.0]
    assert res.lags_s == pytest.approx(late, abs=10 * loop.tick_s)


def test_closed_loop_keeps_the_concurrency() -> None:
    engine = SleepingEngine(service_s=0.01)
    res, _ = run_virtual(
        lambda loop: drive_closed_loop(engine, _prompts(12), 3, None, clock=loop.time)
    )
    assert [t.index for t in res.timelines] == list(range(12))
    assert engine.max_in_flight == 3
    assert min(res.lags_s) >= 0.0


def test_closed_loop_stops_sending_after_duration() -> None:
    """2 clients, 20 ms a request, 0.2 s: each sends at 0, 0.02, ... 0.18 s (plus a few loop
    passes each) and none after the deadline: 10 each."""
    engine = SleepingEngine(service_s=0.02)
    res, _ = run_virtual(
        lambda loop: drive_closed_loop(engine, _prompts(10_000), 2, 0.2, clock=loop.time)
    )
    assert len(res.timelines) == 20
    assert max(t.injected_s for t in res.timelines) - res.start_s < 0.2


def test_a_failed_request_fails_the_run_with_its_cause() -> None:
    engine = SleepingEngine(fail_index=2)
    offsets = [0.0] * 4
    with pytest.raises(ExperimentError, match=r"1 of 4 serving requests failed.*request 2.*no"):
        run_virtual(lambda loop: drive_open_loop(engine, _prompts(4), offsets, clock=loop.time))


def test_the_default_clock_is_the_real_one() -> None:
    """Outside the tests the driver stamps with perf_counter: a run on a real loop still sends
    nothing early (no bound on the lag: that depends on the machine's load)."""
    engine = _RealClockEngine()
    res = asyncio.run(asyncio.wait_for(drive_open_loop(engine, _prompts(3), [0.0, 0.01, 0.02]), 30))
    assert min(res.lags_s) >= 0.0 and len(res.timelines) == 3


class _RealClockEngine:
    def clock_note(self) -> str:
        return "test engine"

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        import time

        timeline.started_s = time.perf_counter()
        await asyncio.sleep(0)
        timeline.token_steps.append((time.perf_counter(), prompt.max_new_tokens))
        timeline.finished_s = time.perf_counter()


class WordTokenizer:
    """One token per whitespace-separated word (enough to count reference output lengths)."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": list(range(len(text.split())))}


def test_dataset_output_lengths_come_from_the_reference_outputs(tmp_path: Path) -> None:
    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.harness.serving.schedule import (
        dataset_output_lengths,
        with_output_lengths,
    )

    data = tmp_path / "chat.jsonl"
    data.write_text(
        '{"prompt": "a b", "completion": "one two three"}\n'
        '{"prompt": "c", "completion": "' + " ".join(["w"] * 50) + '"}\n'
    )
    cfg = ExperimentConfig(
        model="synthetic/tiny-llama",
        dataset={"source": str(data)},
        max_output_tokens=20,
        workload="serving",
        load={"concurrency": 1, "n_requests": 3, "lengths": "dataset"},
    )
    lengths = dataset_output_lengths(cfg, WordTokenizer())
    assert lengths == [3, 20]  # the second is capped at max_output_tokens
    prompts = with_output_lengths(_prompts(3), lengths)
    assert [p.max_new_tokens for p in prompts] == [3, 20, 3]
    bad = cfg.model_copy(update={"load": cfg.load.model_copy(update={"output_field": "answer"})})
    with pytest.raises(ConfigError, match=r"load\.output_field"):
        dataset_output_lengths(bad, WordTokenizer())
