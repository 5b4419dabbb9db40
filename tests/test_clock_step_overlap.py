"""A wall-clock step (NTP) during a run corrupts no overlap or duration (issue 30 item 4).

The controller's spans and the harness's measured window are compared on CLOCK_MONOTONIC when
both recorded it from the same boot. Times by hand: the monotonic clock reads m seconds; the
wall clock (``SteppedWallClock``) reads W + m until it is stepped back 3600 s just before the
window opens (m = 59) and forward 30 s in the middle of it (m = 65). Run A's process runs
0-100 s, its window 60-70 s; neighbour B runs 10-62 s (the window's first 2 s), C from 66 s
(its last 4 s) and D from 68 s (2 s), both still running when A's result is amended at m = 100.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from llenergymeasure.backends.base import GenerationOutput, Prompt, RequestRecord
from llenergymeasure.clocks import boot_id
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import EnergyMeasurement, MonotonicWindow
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.study.placement import Span, amend_result, pool_from, window_of
from tests.fakes.clock import ManualClock, SteppedWallClock
from tests.fakes.concurrent_doubles import result_for

BOOT = "0f6c4c1e-0000-4000-8000-000000000001"
STEPS = {59.0: -3600.0, 65.0: 30.0}


class Timeline:
    """The controller's two clocks, moved to monotonic second ``m`` with the steps on the way."""

    def __init__(self, steps: dict[float, float]) -> None:
        self.mono = ManualClock(start=0.0)
        self.wall = SteppedWallClock(self.mono, start=1_800_000_000.0)
        self.steps = steps

    def at(self, m: float) -> tuple[float, float]:
        for when, step in sorted(self.steps.items()):
            if self.mono() < when <= m:
                self.mono.advance(when - self.mono())
                self.wall.step(step)
        self.mono.advance(m - self.mono())
        return self.mono(), self.wall()


def _result(start_wall: float, mono: MonotonicWindow | None) -> ExperimentResult:
    request = HarnessRequest(
        config=ExperimentConfig.from_dict({"model": "synthetic/tiny-llama"}),
        settings=HarnessSettings(run_id="A"),
    )
    energy = EnergyMeasurement(
        meter="nvml",
        available=True,
        duration_s=10.0,  # the meter's own perf_counter duration
        started_at=dt.datetime.fromtimestamp(start_wall, dt.timezone.utc).isoformat(),
        window_monotonic=mono,
    )
    return result_for(request).model_copy(update={"energy": energy})


def _amend(
    tmp_path: Path, steps: dict[float, float], window_boot: str | None, recorded: bool = True
) -> ExperimentResult:
    """A's result amended at m = 100, as the side-by-side scheduler does when A's process ends."""
    t = Timeline(steps)
    spans: list[Span] = []

    def start(run_id: str, gpu: int, m: float) -> Span:
        spans.append(Span(run_id, [gpu], *t.at(m), boot_id=BOOT))
        return spans[-1]

    def end(span: Span, m: float) -> None:
        span.end, span.end_wall = t.at(m)

    a = start("A", 0, 0.0)
    b = start("B", 1, 10.0)
    window_wall = t.at(60.0)[1]  # the meter stamps the window's start on the wall clock
    end(b, 62.0)
    start("C", 2, 66.0)
    start("D", 3, 68.0)
    end(a, 100.0)
    mono = MonotonicWindow(start_s=60.0, end_s=70.0, boot_id=window_boot) if recorded else None
    return amend_result(
        tmp_path / "result.json",
        _result(window_wall, mono),
        a,
        spans,
        pool_from([0, 1, 2, 3]),
        4,
        t.mono(),
        t.wall(),
    )


def test_a_stepped_wall_clock_moves_no_overlap_or_duration(tmp_path: Path) -> None:
    out = _amend(tmp_path, STEPS, BOOT)
    assert out.placement is not None
    got = {n.run_id: (n.overlap_s, n.window_overlap_s) for n in out.placement.neighbours}
    # on the wall clock B would seem to end before the window and C, D to start after it
    assert got == {"B": (52.0, 2.0), "C": (34.0, 4.0), "D": (32.0, 2.0)}
    [w] = [w for w in out.warnings if w.code == "neighbour_load"]
    assert w.details["run_s"] == 100.0 and w.details["window_s"] == 10.0
    assert w.details["max_overlap_s"] == 4.0 and w.details["window_clock"] == "monotonic"
    assert w.message.startswith(
        "3 other run(s) ran during this run's measured window (up to 4.0 s of its 10.0 s window)"
    )
    # timestamps stay wall time: the placement's start and end are what the wall clock said
    assert out.placement.started_at == "2027-01-15T08:00:00+00:00"
    assert out.placement.ended_at == "2027-01-15T07:02:10+00:00"


def test_an_old_result_falls_back_to_the_wall_clock_and_says_so(tmp_path: Path) -> None:
    out = _amend(tmp_path, {}, None, recorded=False)  # no step: the wall clock is right here
    assert out.placement is not None
    got = {n.run_id: n.window_overlap_s for n in out.placement.neighbours}
    assert got == {"B": pytest.approx(2.0), "C": pytest.approx(4.0), "D": pytest.approx(2.0)}
    [w] = [w for w in out.warnings if w.code == "neighbour_load"]
    assert w.details["window_clock"].startswith(
        "overlaps with the window on the wall clock, which a clock step would shift: the result "
        "records its window on the wall clock only"
    )


def test_the_wall_clock_is_used_across_boots_or_clocks_with_the_reason() -> None:
    result = _result(1_800_000_060.0, MonotonicWindow(start_s=60.0, end_s=70.0, boot_id="other"))
    span = Span("A", [0], 0.0, 1_800_000_000.0, boot_id=BOOT)
    window = window_of(result, span)
    assert window is not None and window.clock == "wall"
    assert (window.start, window.end) == pytest.approx((1_800_000_060.0, 1_800_000_070.0))
    assert f"from boot other, the controller from boot {BOOT}" in (window.note or "")
    unknown = window_of(result, Span("A", [0], 0.0, 1_800_000_000.0))
    assert unknown is not None and "not CLOCK_MONOTONIC" in (unknown.note or "")
    same = window_of(result, Span("A", [0], 0.0, 1_800_000_000.0, boot_id="other"))
    assert same is not None and (same.clock, same.start, same.end) == ("monotonic", 60.0, 70.0)


class _Backend:
    def synchronize(self) -> None:
        pass

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        requests = [RequestRecord(input_tokens=len(p.token_ids), output_tokens=1) for p in prompts]
        return GenerationOutput(requests=requests, duration_s=0.0)


class _Meter:
    """Notes the monotonic time of its start and stop, as a real meter's window."""

    available = True

    def start(self) -> None:
        self.started = time.monotonic()

    def stop(self) -> EnergyMeasurement:
        self.stopped = time.monotonic()
        return EnergyMeasurement(meter="fake", started_at="2027-01-15T08:00:00+00:00")


class _Phases:
    def enter(self, phase: str, detail: str | None = None) -> None:
        pass


def test_the_harness_records_its_window_on_the_monotonic_clock_with_its_boot() -> None:
    from llenergymeasure.harness.phases import measure_window

    meter = _Meter()
    config = ExperimentConfig.from_dict({"model": "synthetic/tiny-llama"})
    run = measure_window(
        _Backend(),  # type: ignore[arg-type]
        meter,
        [Prompt(token_ids=[1, 2, 3], max_new_tokens=1)],
        config,
        False,
        _Phases(),  # type: ignore[arg-type]
    )
    mono = run.energy.window_monotonic
    assert mono is not None and mono.boot_id == boot_id()
    assert mono.start_s <= meter.started <= meter.stopped <= mono.end_s


def test_the_scheduler_marks_spans_on_the_monotonic_clock_with_its_boot() -> None:
    from llenergymeasure.study.concurrent import ConcurrentScheduler

    def make(**clocks: object) -> ConcurrentScheduler:
        return ConcurrentScheduler(
            None,  # type: ignore[arg-type]
            [],
            limit=2,
            pool=pool_from([0, 1]),
            make_request=None,  # type: ignore[arg-type]
            make_executor=None,  # type: ignore[arg-type]
            observer=None,  # type: ignore[arg-type]
            **clocks,  # type: ignore[arg-type]
        )

    assert make().clock_boot_id == boot_id()  # time.monotonic: this boot
    assert make(clock=ManualClock()).clock_boot_id is None  # another clock: no boot to compare
    assert make(clock=ManualClock(), clock_boot_id=BOOT).clock_boot_id == BOOT
