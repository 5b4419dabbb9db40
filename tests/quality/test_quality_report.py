"""The report's quality section: accuracy against J/token, J per correct answer, random weights said."""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.stats import summarise
from tests.quality.test_quality_outputs import _result

pytest.importorskip("matplotlib")


def _study(weights: str) -> StudyResult:
    runs = []
    for i, energy in enumerate((40.0, 44.0), start=1):
        r = _result(f"00{i}_c{i}_pytorch_abcd1234", 0.5, 0.25, energy)
        assert r.quality is not None
        r.quality.weights = weights
        r.model.weights = weights  # type: ignore[assignment]
        r.energy_per_output_token_j = 1.0 + i / 10
        runs.append(r)
    return StudyResult(
        llenergymeasure_version="x",
        name="s",
        study_design_hash="h",
        started_at="t0",
        ended_at="t1",
        runs=runs,
        summaries=summarise(runs),
    )


def test_report_plots_accuracy_against_j_per_token_and_says_weights_are_random(
    tmp_path: Path,
) -> None:
    from llenergymeasure.report import generate_report

    html = generate_report(_study("random"), tmp_path).read_text()
    assert '<h2 id="quality">Quality beside energy</h2>' in html
    assert "weights of m are random" in html and "accuracy is at chance" in html
    assert (tmp_path / "figures" / "pareto_quality.png").is_file()
    assert "J per correct answer" in html and "quality.mc.energy_per_correct_j" in html


def test_pretrained_weights_get_no_chance_warning(tmp_path: Path) -> None:
    from llenergymeasure.report import generate_report

    html = generate_report(_study("pretrained"), tmp_path).read_text()
    assert '<h2 id="quality">' in html and "accuracy is at chance" not in html


def test_no_quality_no_section(tmp_path: Path) -> None:
    from llenergymeasure.report import generate_report

    study = _study("pretrained")
    study.runs = [r.model_copy(update={"quality": None}) for r in study.runs]
    study.summaries = summarise(study.runs)
    html = generate_report(study, tmp_path).read_text()
    assert 'id="quality"' not in html and not (tmp_path / "figures" / "pareto_quality.png").exists()
