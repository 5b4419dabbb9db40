"""A neighbour counts for the time it overlapped the measured window, not the process (issue 25
item 13): a run that loaded and warmed up beside a neighbour which had ended before its window
opened was measured alone, and its ``neighbour_load`` must not say otherwise.

Times by hand on the wall clock W + s (the controller's monotonic clock reads s): this run's
process ran 0-100 s and its measured window 60-70 s; neighbour B ran 10-50 s (load and warmup
only), neighbour C 65-150 s (the window's last 5 s), neighbour D is still running from 68 s.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import EnergyMeasurement
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.results.export_placement import placement_values
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.study.placement import (
    Span,
    amend_result,
    measured_window,
    neighbour_warning,
    placement_for,
    pool_from,
)
from tests.fakes.concurrent_doubles import result_for

W = 1_800_000_000.0


def _span(run_id: str, gpus: list[int], start: float, end: float | None) -> Span:
    return Span(
        run_id,
        gpus,
        start=start,
        start_wall=W + start,
        end=end,
        end_wall=None if end is None else W + end,
    )


def _result(window_start_s: float | None, window_s: float = 10.0) -> ExperimentResult:
    request = HarnessRequest(
        config=ExperimentConfig.from_dict({"model": "synthetic/tiny-llama"}),
        settings=HarnessSettings(run_id="A"),
    )
    started = (
        dt.datetime.fromtimestamp(W + window_start_s, dt.timezone.utc).isoformat()
        if window_start_s is not None
        else None
    )
    energy = EnergyMeasurement(
        meter="nvml", available=True, duration_s=window_s, started_at=started
    )
    return result_for(request).model_copy(update={"energy": energy})


SPANS = [
    _span("A", [0], 0.0, 100.0),
    _span("B", [1], 10.0, 50.0),
    _span("C", [2], 65.0, 150.0),
    _span("D", [3], 68.0, None),
]


def test_only_the_window_overlap_counts(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    result = _result(60.0)
    assert measured_window(result) == pytest.approx((W + 60.0, W + 70.0))
    out = amend_result(path, result, SPANS[0], SPANS, pool_from([0, 1, 2, 3]), 4, 120.0, W + 120)
    assert out.placement is not None
    got = {n.run_id: (n.overlap_s, n.window_overlap_s) for n in out.placement.neighbours}
    # every process that overlapped is listed (information), with its window overlap beside it
    assert got == {
        "B": (40.0, 0.0),
        "C": (35.0, pytest.approx(5.0)),
        "D": (32.0, pytest.approx(2.0)),
    }
    [w] = [w for w in out.warnings if w.code == "neighbour_load"]
    assert w.message == (
        "2 other run(s) ran during this run's measured window (up to 5.0 s of its 10.0 s "
        "window): C on GPU(s) [2] for 5.0 s, D on GPU(s) [3] for 2.0 s. They share the host "
        "CPU, PCIe and cooling with this run's GPUs, which can move its energy and throughput"
    )
    assert w.details["counted_over"] == "window" and w.details["max_overlap_s"] == 5.0
    assert [n["run_id"] for n in w.details["neighbours"]] == ["C", "D"]
    on_disk = json.loads(path.read_text())
    assert on_disk["placement"]["neighbours"][0]["window_overlap_s"] == 0.0
    row = placement_values(out)
    assert row["placement.neighbour_overlap_s"] == 40.0  # B, during load and warmup
    assert row["placement.neighbour_window_overlap_s"] == pytest.approx(5.0)  # C


def test_a_neighbour_only_during_load_and_warmup_leaves_no_warning(tmp_path: Path) -> None:
    spans = SPANS[:2]  # B ended 10 s before the window opened
    out = amend_result(
        tmp_path / "result.json", _result(60.0), spans[0], spans, pool_from([0, 1]), 2, 120.0, W
    )
    assert out.placement is not None and [n.run_id for n in out.placement.neighbours] == ["B"]
    assert not [w for w in out.warnings if w.code == "neighbour_load"]


def test_without_a_recorded_window_the_process_overlap_counts() -> None:
    assert measured_window(_result(None)) is None
    placement = placement_for(SPANS[0], SPANS[:2], pool_from([0, 1]), 2, 120.0)
    assert placement.neighbours[0].window_overlap_s is None
    row = placement_values(_result(None).model_copy(update={"placement": placement}))
    assert row["placement.neighbour_window_overlap_s"] is None
    w = neighbour_warning(placement, 100.0)
    assert w is not None and w.details["counted_over"] == "process"
    assert w.message.startswith(
        "1 other run(s) ran beside this one (up to 40.0 s of this run's 100.0 s): B on GPU(s) "
        "[1] for 40.0 s."
    )
