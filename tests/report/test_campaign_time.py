"""Issue 26: the campaign's window share, and what took the rest, from the runs' timings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.report import generate_report
from llenergymeasure.results.campaign_time import campaign_time, describe
from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.phase_records import TimingsRecord


def _timed(study: StudyResult, phases: list[dict[str, float]]) -> StudyResult:
    runs = []
    for run, parts in zip(study.runs, phases, strict=False):
        total = sum(parts.values())
        t = TimingsRecord(**parts, total_s=total, window_share=run.duration_s / total)
        runs.append(run.model_copy(update={"timings": t}))
    return study.model_copy(update={"runs": runs})


def test_shares_add_up_over_the_runs_that_recorded_timings(
    study_builder: Callable[..., tuple[Path, StudyResult]],
) -> None:
    _, study = study_builder()
    first, second = study.runs[0], study.runs[1]
    phases = [
        {"compile_s": 100.0, "warmup_s": 20.0, "window_s": first.duration_s + 1.0},
        {"compile_s": 10.0, "imports_s": 13.0, "window_s": second.duration_s + 0.5},
    ]
    timed = _timed(study, phases)  # the other runs have no timings (older results)
    spent = campaign_time(timed.runs)
    assert spent is not None and spent.runs == 2
    assert spent.total_s == pytest.approx(sum(sum(p.values()) for p in phases))
    assert spent.window_s == pytest.approx(first.duration_s + second.duration_s)
    assert list(spent.rest_s) == ["compile", "warmup", "imports", "window_edges"]
    assert spent.rest_s["compile"] == 110.0
    assert spent.rest_s["window_edges"] == pytest.approx(1.5)
    assert spent.window_share == pytest.approx(spent.window_s / spent.total_s)
    line = describe(spent)
    assert f"{100 * spent.window_share:.0f} % of" in line and "compile" in line
    assert campaign_time(study.runs) is None  # no run recorded timings


def test_the_report_names_the_window_share(
    study_builder: Callable[..., tuple[Path, StudyResult]],
) -> None:
    study_dir, study = study_builder()
    phases: list[dict[str, Any]] = [
        {"compile_s": 60.0, "window_s": r.duration_s} for r in study.runs
    ]
    timed = _timed(study, phases)
    html = generate_report(timed, study_dir).read_text()
    spent = campaign_time(timed.runs)
    assert spent is not None
    assert f"{100 * spent.window_share:.0f} % of" in html and "was measured window" in html
