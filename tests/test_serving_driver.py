"""The load driver and the arrival schedules: never early, lag recorded, bounded waits."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path

import pytest

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.workload import LoadConfig
from llenergymeasure.errors import ConfigError, ExperimentError
from llenergymeasure.harness.serving.driver import drive_closed_loop, drive_open_loop
from llenergymeasure.harness.serving.schedule import arrival_offsets, read_trace

#: the most the driver may lag on a loaded 2-core CI machine before the test fails (a bound on a
#: wait, not a performance target: benchmarks/serving_driver.py measures the real lag)
LAG_BOUND_S = 0.25


class SleepingEngine:
    """Serves a request by sleeping its service time on the loop, one token per 1 ms step."""

    def __init__(self, service_s: float = 0.005, fail_index: int | None = None) -> None:
        self.service_s = service_s
        self.fail_index = fail_index
        self.in_flight = 0
        self.max_in_flight = 0

    def clock_note(self) -> str:
        return "test engine"

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            timeline.started_s = time.perf_counter()
            await asyncio.sleep(self.service_s)
            if index == self.fail_index:
                raise RuntimeError("engine said no")
            timeline.token_steps.append((time.perf_counter(), prompt.max_new_tokens))
            timeline.finished_s = time.perf_counter()
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
    engine = SleepingEngine()
    offsets = arrival_offsets(LoadConfig(rate_rps=100, n_requests=40), 3)
    res = asyncio.run(asyncio.wait_for(drive_open_loop(engine, _prompts(40), offsets), 30))
    assert len(res.timelines) == len(res.lags_s) == 40
    assert min(res.lags_s) >= 0.0, "the driver sent a request before its time"
    worst = max(res.lags_s)
    assert worst < LAG_BOUND_S, (
        f"the driver sent a request {worst * 1000:.1f} ms late (bound {LAG_BOUND_S * 1000:.0f} ms "
        "on a loaded machine); run benchmarks/serving_driver.py to see the lag distribution"
    )
    assert all(t.output_tokens == 2 and t.finished_s is not None for t in res.timelines)


def test_closed_loop_keeps_the_concurrency() -> None:
    engine = SleepingEngine(service_s=0.01)
    res = asyncio.run(asyncio.wait_for(drive_closed_loop(engine, _prompts(12), 3, None), 30))
    assert [t.index for t in res.timelines] == list(range(12))
    assert engine.max_in_flight == 3
    assert min(res.lags_s) >= 0.0


def test_closed_loop_stops_sending_after_duration() -> None:
    engine = SleepingEngine(service_s=0.02)
    res = asyncio.run(asyncio.wait_for(drive_closed_loop(engine, _prompts(10_000), 2, 0.2), 30))
    assert 2 <= len(res.timelines) < 10_000
    assert max(t.injected_s for t in res.timelines) - res.start_s < 0.2 + LAG_BOUND_S


def test_a_failed_request_fails_the_run_with_its_cause() -> None:
    engine = SleepingEngine(fail_index=2)
    offsets = [0.0] * 4
    with pytest.raises(ExperimentError, match=r"1 of 4 serving requests failed.*request 2.*no"):
        asyncio.run(asyncio.wait_for(drive_open_loop(engine, _prompts(4), offsets), 30))


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
