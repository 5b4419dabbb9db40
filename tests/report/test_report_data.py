"""The choices behind the figures: swept axes, Pareto fronts, per-config statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.report.data import config_points, latency_metric, swept_axes
from llenergymeasure.report.figures import read_power_series
from llenergymeasure.results.loading import load_study_dir
from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.pareto import pareto_front

FIXTURES = Path(__file__).parent / "fixtures"


def _cfg(**kw: object) -> ExperimentConfig:
    return ExperimentConfig.model_validate({"model": "synthetic/tiny-llama", **kw})


def test_axes_are_the_fields_that_differ() -> None:
    configs = [_cfg(batch_size=b, precision=p) for b in (1, 8) for p in ("bf16", "fp16")]
    assert swept_axes(configs) == ["precision", "batch_size"]
    assert swept_axes([_cfg(batch_size=4)]) == []


def test_backend_section_fields_compare_within_their_backend() -> None:
    configs = [
        _cfg(backend="pytorch"),
        _cfg(backend="vllm", vllm={"max_num_seqs": 64}),
        _cfg(backend="vllm", vllm={"max_num_seqs": 256}),
    ]
    # pytorch.* exists only for the pytorch config and vllm.* defaults agree: neither is an axis.
    assert swept_axes(configs) == ["backend", "vllm.max_num_seqs"]


def test_pareto_front_maximising_x() -> None:
    # (throughput, energy per token): higher x and lower y are better.
    pts = [(100.0, 1.0), (200.0, 0.8), (150.0, 0.9), (300.0, 1.2), (50.0, 0.5), (200.0, 0.9)]
    assert pareto_front(pts, maximise_x=True) == [4, 1, 3]


def test_pareto_front_minimising_x_keeps_ties() -> None:
    # (latency, energy per token): lower is better for both.
    pts = [(10.0, 2.0), (20.0, 1.0), (20.0, 1.0), (30.0, 1.5), (5.0, 3.0)]
    assert pareto_front(pts, maximise_x=False) == [4, 0, 1, 2]


def test_config_points_use_the_stored_summary_and_fall_back_to_the_runs(
    synthetic_study: tuple[Path, StudyResult],
) -> None:
    _, study = synthetic_study
    points = config_points(study)
    assert [p.key for p in points] == ["C1", "C2", "C3", "C4"]
    assert [len(p.runs) for p in points] == [2, 2, 2, 1]
    assert [p.n_failed for p in points] == [0, 0, 0, 1]
    p = points[0]
    assert p.stats("energy_per_output_token_j") is p.summary.metrics["energy_per_output_token_j"]
    # request_latency_p50_ms is not among the stored summary metrics: computed from the runs.
    assert "request_latency_p50_ms" not in p.summary.metrics
    values = [r.request_latency_ms.p50_ms for r in p.runs]
    stats = p.stats("request_latency_p50_ms")
    assert stats.n == 2 and stats.mean == pytest.approx(sum(values) / 2)
    assert latency_metric(points) == "ttft_p50_ms"


def test_no_energy_means_no_latency_front() -> None:
    study = load_study_dir(FIXTURES / "study")
    assert latency_metric(config_points(study)) is None


def test_power_series_reader_skips_gaps() -> None:
    series = read_power_series(FIXTURES / "synthetic_timeseries.csv")
    assert sorted(series) == [0, 1]
    t0, p0 = series[0]
    t1, _ = series[1]
    assert len(t0) == len(t1) + 1  # GPU 1 has one sample without a power reading
    assert t0[0] == pytest.approx(-1.0) and max(p0) > 500 and min(p0) < 90


def test_power_series_reader_names_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "timeseries.csv"
    bad.write_text("time,watts\n0,1\n")
    with pytest.raises(ValueError, match="needs columns t_s and power_w, has time, watts"):
        read_power_series(bad)
