"""Issue 29 item 8: serving numbers are one definition in the CLI and the report, with the window
they cover named; the report says the SLO was met when it was, even without measured energy."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from rich.console import Console
from test_report_serving import _study

from llenergymeasure.cli.json_out import experiment_data, study_data
from llenergymeasure.cli.run_summary import print_experiment_summary, print_study_summary
from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.serving_points import serving_points, slo_verdict

pytest.importorskip("matplotlib")


def _console() -> Console:
    return Console(record=True, width=250, color_system=None)


def _steady_differs(study: StudyResult) -> StudyResult:
    """Each run's steady window twice as fast as its full window (ramp-up and drain)."""
    runs = []
    for r in study.runs:
        assert r.serving is not None
        full = r.serving.full.model_copy(
            update={"output_tokens_per_s": r.serving.full.output_tokens_per_s / 2}
        )
        runs.append(r.model_copy(update={"serving": r.serving.model_copy(update={"full": full})}))
    return study.model_copy(update={"runs": runs})


def test_the_cli_shows_the_steady_window_and_names_it() -> None:
    study = _steady_differs(_study())
    run = study.runs[0]
    c = _console()
    print_experiment_summary(c, run, None)
    text = c.export_text()
    assert "serving poisson@2rps: steady window: 9.5 s, 10 requests completed in it" in text
    assert "output tokens/s (whole measured window)" in text
    assert "goodput req/s" in text and "SLO met" in text and "100%" in text
    # the serving figure is the steady window's (200 tok/s), not the full window's (100)
    assert "200.00" in text
    data = experiment_data(run, None)
    assert data["serving"]["window"] == "steady" and data["serving"]["output_tokens_per_s"] == 200


def test_the_study_summary_prints_the_reports_points() -> None:
    study = _steady_differs(_study())
    c = _console()
    print_study_summary(c, study)
    text = c.export_text()
    points, _, _ = serving_points(study)
    assert [p.tokens_per_s for p in points] == [200.0, 400.0, 800.0]
    assert "serving: means over valid cycles" in text and "steady (1)" in text
    for p in points:
        assert f"{p.tokens_per_s:.1f}" in text
    assert study_data(study)["serving_points"] == [asdict(p) for p in points]


def test_every_request_met_the_slo_without_energy(tmp_path: Path) -> None:
    study = _study()
    runs = []
    for r in study.runs:
        assert r.serving is not None
        w = r.serving.full.model_copy(
            update={
                "slo_attainment": 1.0,
                "energy_j": None,
                "energy_per_output_token_j": None,
                "energy_per_good_request_j": None,
            }
        )
        serving = r.serving.model_copy(update={"full": w, "steady": w})
        runs.append(r.model_copy(update={"serving": serving}))
    study = study.model_copy(update={"runs": runs})
    points, _, bound = serving_points(study)
    verdict = slo_verdict(points, bound)
    assert "3 of 3 config(s) met the SLO" in verdict and "energy was not measured" in verdict
    from llenergymeasure.report import generate_report

    report = generate_report(study, tmp_path).read_text()
    assert "No config with measured energy met the SLO" not in report
    assert "3 of 3 config(s) met the SLO" in report
