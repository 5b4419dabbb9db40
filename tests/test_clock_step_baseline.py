"""A wall-clock step (NTP) during an idle baseline moves none of its neighbour overlaps (issue 30
item 4): the baseline records its window on CLOCK_MONOTONIC (``window_monotonic``) and the
controller compares it with the runs beside it there when both count from the same boot.

Times by hand, on the controller's monotonic clock m (``Timeline`` of test_clock_step_overlap):
run A's process runs 0-100 s, its idle baseline 5-15 s (settle included), the wall clock is
stepped by ``step`` at m = 10, inside the baseline. Neighbour B runs 2-8 s (the baseline's first
3 s, before the step), C 20-40 s (after the baseline: not beside it). On the wall clock the
baseline's window is ``measured_at`` (stamped at m = 15, after the step) less its duration, so it
moves by the step and B, stamped before the step, seems an hour away from it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from llenergymeasure.clocks import boot_id
from llenergymeasure.energy.baseline import CACHE_FILE, measure_idle_baseline
from llenergymeasure.energy.types import BaselineRecord, MonotonicWindow
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.study.placement import Span, amend_result, pool_from
from tests.core.test_baseline_cache_and_settle_by_hand import Clock, Windows, steady
from tests.fakes.clock import ManualClock
from tests.test_clock_step_overlap import BOOT, _result

W = 1_800_000_000.0  # the wall clock at m = 0


def _wall(m: float, step: float) -> float:
    """What the wall clock says at monotonic second ``m``: stepped by ``step`` at m = 10."""
    return W + m + (step if m >= 10.0 else 0.0)


def _amend(
    tmp_path: Path,
    step: float,
    window: tuple[float, float] = (5.0, 15.0),
    boot: str | None = BOOT,
    recorded: bool = True,
) -> ExperimentResult:
    """A's result, with its idle baseline over ``window`` (monotonic s; ``boot`` its boot, not
    recorded on the monotonic clock unless ``recorded``), amended at m = 100 as the side-by-side
    scheduler does. ``measured_at`` is stamped, in whole seconds, at the window's end."""
    start, end = window

    def span(run_id: str, gpu: int, m0: float, m1: float) -> Span:
        return Span(run_id, [gpu], m0, _wall(m0, step), m1, _wall(m1, step), boot_id=BOOT)

    spans = [span("A", 0, 0.0, 100.0), span("B", 1, 2.0, 8.0), span("C", 2, 20.0, 40.0)]
    stamp = dt.datetime.fromtimestamp(_wall(end, step), dt.timezone.utc)
    baseline = BaselineRecord(
        kind="cold",
        idle_power_w={0: 60.0},
        duration_s=end - start,
        measured_at=stamp.isoformat(timespec="seconds"),
        window_monotonic=MonotonicWindow(start_s=start, end_s=end, boot_id=boot)
        if recorded
        else None,
    )
    result = _result(_wall(60.0, step), None).model_copy(update={"cold_baseline": baseline})
    pool = pool_from([0, 1, 2])
    return amend_result(
        tmp_path / "result.json", result, spans[0], spans, pool, 3, 100.0, _wall(100.0, step)
    )


def _marked(out: ExperimentResult) -> list[str]:
    assert out.cold_baseline is not None
    return [n for w in out.cold_baseline.warnings for n in w.details["neighbours"]]


@pytest.mark.parametrize("step", [-3600.0, 3600.0])
def test_a_wall_clock_step_during_the_baseline_moves_none_of_its_neighbours(
    tmp_path: Path, step: float
) -> None:
    out = _amend(tmp_path, step)
    assert out.cold_baseline is not None
    [w] = [w for w in out.cold_baseline.warnings if w.code == "neighbour_load"]
    # B overlapped the baseline's first 3 s (on the wall clock it would be an hour away); C ran
    # after it and is not named
    assert w.details == {"neighbours": ["B"], "window_clock": "monotonic"}
    assert w.message == (
        "this cold idle baseline was measured while B (GPU(s) [1]) ran on other GPUs of this "
        "node; it was not cached"
    )
    # and the file holds what was returned
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["cold_baseline"]["warnings"][0]["details"]["neighbours"] == ["B"]


def test_the_monotonic_window_is_exact_the_wall_clock_has_a_second_of_slack(
    tmp_path: Path,
) -> None:
    """A baseline from 8 s (B's end) to 15 s, or from 15 s to 20 s (C's start), had no
    neighbour: on CLOCK_MONOTONIC none is named; on the wall clock, whose ``measured_at`` is in
    whole seconds, a second of slack each side names the one it touches."""
    assert _marked(_amend(tmp_path, 0.0, (8.0, 15.0))) == []
    assert _marked(_amend(tmp_path, 0.0, (15.0, 20.0))) == []
    assert _marked(_amend(tmp_path, 0.0, (8.0, 15.0), recorded=False)) == ["B"]
    assert _marked(_amend(tmp_path, 0.0, (15.0, 20.0), recorded=False)) == ["C"]


def test_a_baseline_without_a_monotonic_window_uses_the_wall_clock_and_says_so(
    tmp_path: Path,
) -> None:
    out = _amend(tmp_path, 0.0, recorded=False)  # no step: the wall clock is right here
    assert out.cold_baseline is not None
    [w] = out.cold_baseline.warnings
    assert w.details["neighbours"] == ["B"]
    assert w.details["window_clock"] == (
        "overlaps with the window on the wall clock, which a clock step would shift: the idle "
        "baseline records its window on the wall clock only (a result from an older "
        "llenergymeasure)"
    )


def test_a_baseline_from_another_boot_uses_the_wall_clock_with_the_boots(
    tmp_path: Path,
) -> None:
    # its monotonic 5-15 s count from another boot than the controller's spans: not compared
    out = _amend(tmp_path, 0.0, (5.0, 15.0), boot="other")
    assert out.cold_baseline is not None
    [w] = out.cold_baseline.warnings
    assert w.details["neighbours"] == ["B"]
    assert f"from boot other, the controller from boot {BOOT}" in w.details["window_clock"]


def test_a_cached_baseline_is_never_marked(tmp_path: Path) -> None:
    out = _amend(tmp_path, 0.0)
    assert _marked(out) == ["B"]  # measured beside B ...
    assert out.cold_baseline is not None
    cached = out.cold_baseline.model_copy(update={"from_cache": True, "warnings": []})
    result = out.model_copy(update={"cold_baseline": cached})
    spans = [Span("A", [0], 0.0, W, 100.0, W + 100, boot_id=BOOT)]
    spans.append(Span("B", [1], 2.0, W + 2, 8.0, W + 8, boot_id=BOOT))
    again = amend_result(
        tmp_path / "result.json", result, spans[0], spans, pool_from([0, 1]), 2, 100.0, W + 100
    )
    assert again.cold_baseline is not None and again.cold_baseline.warnings == []  # ... cached


# -- where the baseline is measured ----------------------------------------------------------------


class _Sleeping(Windows):
    """The scripted meter, with the monotonic clock moving as it sleeps."""

    def __init__(self, windows: list[tuple[float, dict[int, float]]], mono: ManualClock) -> None:
        super().__init__(windows)
        self.mono = mono

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self.mono.advance(seconds)


def test_the_idle_window_is_recorded_on_the_monotonic_clock_settle_included() -> None:
    mono = ManualClock(start=500.0)
    # resident: two 1 s settle windows (80 W then 80 W: settled), then four 1 s idle windows
    meter = _Sleeping(steady(6), mono)
    rec = measure_idle_baseline(
        meter,
        4.0,
        None,
        0,
        kind="resident",
        clock=Clock(1_000.0),
        sleep=meter.sleep,
        monotonic=mono,
        monotonic_boot_id=BOOT,
    )
    assert rec.settle_s == 2.0 and rec.duration_s == 4.0
    assert rec.window_monotonic == MonotonicWindow(start_s=500.0, end_s=506.0, boot_id=BOOT)
    # another clock than time.monotonic and no boot given: no boot to compare with
    other = _Sleeping(steady(4), ManualClock(start=0.0))
    rec = measure_idle_baseline(
        other, 4.0, None, 0, clock=Clock(0.0), sleep=other.sleep, monotonic=other.mono
    )
    assert rec.window_monotonic == MonotonicWindow(start_s=0.0, end_s=4.0, boot_id=None)
    # time.monotonic: this boot's id
    real = Windows(steady(2))
    rec = measure_idle_baseline(real, 2.0, None, 0, clock=Clock(0.0), sleep=real.sleep)
    assert rec.window_monotonic is not None and rec.window_monotonic.boot_id == boot_id()


def test_the_cache_keeps_the_window_and_reads_entries_without_one(tmp_path: Path) -> None:
    mono = ManualClock(start=500.0)
    meter = _Sleeping(steady(4), mono)
    first = measure_idle_baseline(
        meter,
        4.0,
        tmp_path,
        3600,
        clock=Clock(1_000.0),
        sleep=meter.sleep,
        monotonic=mono,
        monotonic_boot_id=BOOT,
    )
    window = MonotonicWindow(start_s=500.0, end_s=504.0, boot_id=BOOT)
    assert first.window_monotonic == window and not first.from_cache
    reader = Windows([])
    hit = measure_idle_baseline(reader, 4.0, tmp_path, 3600, clock=Clock(1_010.0))
    assert hit.from_cache and reader.calls == 0
    assert hit.window_monotonic == window  # the window that measured it, kept as recorded

    # an entry written before the window was recorded still loads, without one
    path = tmp_path / CACHE_FILE
    data = json.loads(path.read_text())
    for e in data["entries"].values():
        del e["window_monotonic"]
    path.write_text(json.dumps(data))
    old = measure_idle_baseline(Windows([]), 4.0, tmp_path, 3600, clock=Clock(1_010.0))
    assert (
        old.from_cache
        and old.window_monotonic is None
        and old.idle_power_w
        == {
            0: 80.0,
            1: 60.0,
        }
    )


def test_a_damaged_window_in_the_cache_is_ignored_and_the_baseline_measured(
    tmp_path: Path,
) -> None:
    meter = Windows(steady(4))
    measure_idle_baseline(meter, 4.0, tmp_path, 3600, clock=Clock(1_000.0), sleep=meter.sleep)
    path = tmp_path / CACHE_FILE
    data = json.loads(path.read_text())
    for e in data["entries"].values():
        e["window_monotonic"] = {"start_s": "soon", "end_s": 4.0}
    path.write_text(json.dumps(data))
    again = Windows(steady(4))
    rec = measure_idle_baseline(again, 4.0, tmp_path, 3600, clock=Clock(1_010.0), sleep=again.sleep)
    assert not rec.from_cache and again.calls == 4
    [note] = [w for w in rec.warnings if w.code == "baseline_cache_unreadable"]
    assert "an entry has a field of the wrong type" in note.message
    assert "the cache rebuilt" in note.message
