"""The report's serving section: curves, SLO line and the lowest-energy config meeting the SLO."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_builders import synthetic_result

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.report.serving_sections import best_point, serving_points
from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.serving_models import LatencyStats, ServingRecord, ServingWindow

pytest.importorskip("matplotlib")

# rate -> (J per output token, SLO attainment, p90 TTFT ms): the cheapest (rate 8) misses the SLO
POINTS = {2.0: (0.5, 1.0, 40.0), 4.0: (0.3, 0.95, 120.0), 8.0: (0.2, 0.5, 900.0)}


def _lat(p90: float) -> LatencyStats:
    return LatencyStats(
        n=10, mean_ms=p90 / 2, p50_ms=p90 / 2, p90_ms=p90, p99_ms=p90, min_ms=1.0, max_ms=p90
    )


def _study() -> StudyResult:
    runs = []
    for i, (rate, (jpt, att, ttft)) in enumerate(POINTS.items()):
        cfg = ExperimentConfig(
            model="synthetic/tiny-llama",
            backend="vllm",
            name=f"rate{rate:g}",
            workload="serving",
            load={"rate_rps": rate, "n_requests": 10},
            slo={"ttft_ms": 500},
        )
        window = ServingWindow(
            start_s=0.5,
            end_s=10.0,
            duration_s=9.5,
            n_requests=10,
            n_good_requests=round(10 * att),
            output_tokens=1000,
            requests_per_s=rate,
            output_tokens_per_s=100 * rate,
            goodput_rps=rate * att,
            slo_attainment=att,
            ttft_ms=_lat(ttft),
            itl_ms=_lat(20.0),
            energy_j=jpt * 1000,
            energy_per_output_token_j=jpt,
            energy_per_good_request_j=jpt * 1000 / (10 * att),
        )
        serving = ServingRecord(
            mode="open",
            load=f"poisson@{rate:g}rps",
            rate_rps=rate,
            n_requests=10,
            timing_source="test",
            steady_rule="test",
            full=window,
            steady=window,
        )
        base = synthetic_result(cfg, f"00{i + 1}_c1_vllm_{cfg.short_hash}", 1)
        runs.append(base.model_copy(update={"serving": serving}))
    return StudyResult(
        llenergymeasure_version="test",
        name="serving",
        study_design_hash="x",
        started_at="2026-12-01T00:00:00+00:00",
        ended_at="2026-12-01T00:01:00+00:00",
        runs=runs,
    )


def test_the_lowest_energy_config_meeting_the_slo_is_chosen() -> None:
    points, latency, bound = serving_points(_study())
    assert latency == "time to first token" and bound == 500
    assert [p.load for p in points] == ["poisson@2rps", "poisson@4rps", "poisson@8rps"]
    best = best_point(points)
    assert best is not None and best.load == "poisson@4rps"  # rate 8 is cheaper but misses


def test_the_report_draws_the_serving_section(tmp_path: Path) -> None:
    from llenergymeasure.report import generate_report

    report = generate_report(_study(), tmp_path).read_text()
    assert 'id="serving"' in report
    assert "Lowest energy meeting the SLO: rate4 (poisson@4rps)" in report
    assert (tmp_path / "figures" / "serving_curves.png").stat().st_size > 1000
