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


def _with_runs(study: StudyResult, extra: list) -> StudyResult:
    return study.model_copy(update={"runs": [*study.runs, *extra]})


def test_invalid_runs_never_reach_a_point_and_are_listed(tmp_path: Path) -> None:
    """Issue 25 item 1: a run marked invalid at 100x the throughput and 1/100 the J/token of its
    config's valid run leaves the point, the best pick and the figure untouched, and is named."""
    study = _study()
    rate8 = study.runs[2]  # misses the SLO; cheapest
    rate4 = study.runs[1]
    assert rate4.serving is not None
    steady = rate4.serving.steady
    assert steady is not None and steady.energy_per_output_token_j is not None
    fake = steady.model_copy(
        update={
            "output_tokens_per_s": steady.output_tokens_per_s * 100,
            "energy_per_output_token_j": steady.energy_per_output_token_j / 100,
        }
    )
    bad = rate4.model_copy(
        update={
            "experiment_id": "009_c2_vllm_" + rate4.config.short_hash,
            "valid": False,
            "failed_gates": ["foreign_process"],
            "serving": rate4.serving.model_copy(update={"full": fake, "steady": fake}),
        }
    )
    points, _, _ = serving_points(_with_runs(study, [bad]))
    by_load = {p.load: p for p in points}
    p4 = by_load["poisson@4rps"]
    assert p4.n_runs == 1 and p4.tokens_per_s == 400.0 and p4.j_per_token == 0.3
    best = best_point(points)
    assert best is not None and best.load == "poisson@4rps" and best.j_per_token == 0.3
    assert by_load["poisson@8rps"].n_runs == 1 and rate8.valid
    from llenergymeasure.report import generate_report

    html = generate_report(_with_runs(study, [bad]), tmp_path).read_text()
    assert "1 run(s) failed a validity gate and are left out of every point" in html
    assert "009_c2_vllm_" in html and "foreign_process" in html


def test_a_point_never_mixes_steady_and_full_windows() -> None:
    """Two cycles of one config, one without a steady window: the point averages both full
    windows (not one steady and one full), and says so."""
    study = _study()
    run = study.runs[0]  # rate 2: steady window = full window in _study
    assert run.serving is not None
    full = run.serving.full.model_copy(
        update={"output_tokens_per_s": 100.0, "energy_per_output_token_j": 0.9}
    )
    steady = run.serving.full.model_copy(
        update={"output_tokens_per_s": 300.0, "energy_per_output_token_j": 0.5}
    )
    cycle1 = run.model_copy(
        update={"serving": run.serving.model_copy(update={"full": full, "steady": steady})}
    )
    cycle2 = run.model_copy(
        update={
            "experiment_id": "010_c2_vllm_" + run.config.short_hash,
            "serving": run.serving.model_copy(
                update={"full": full, "steady": None, "steady_unavailable_reason": "too short"}
            ),
        }
    )
    mixed = study.model_copy(update={"runs": [cycle1, cycle2, *study.runs[1:]]})
    p2 = next(p for p in serving_points(mixed)[0] if p.load == "poisson@2rps")
    # before: mean of steady 300 and full 100 = 200 tokens/s; now both full windows: 100
    assert (p2.window, p2.n_runs, p2.tokens_per_s, p2.j_per_token) == ("full", 2, 100.0, 0.9)
    both = study.model_copy(update={"runs": [cycle1, cycle1, *study.runs[1:]]})
    p2 = next(p for p in serving_points(both)[0] if p.load == "poisson@2rps")
    assert (p2.window, p2.tokens_per_s) == ("steady", 300.0)
