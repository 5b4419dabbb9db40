"""Issue 19: statistics, report points and Pareto fronts use valid runs only (invalid listed);
CI-overlap marks; the validity section of the user config; the new export columns."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.report.data import ConfigPoint, ci_overlap, config_points, overlapping_pairs
from llenergymeasure.results.export_rows import run_record
from llenergymeasure.results.models import ConfigSummary, MetricStats, StudyResult
from llenergymeasure.results.stats import summarise
from tests.report.report_builders import synthetic_result

CFG = ExperimentConfig(model="synthetic/tiny-llama", batch_size=2, n=4, max_output_tokens=8)


def _runs() -> list:
    # J/token 1.0 and 3.0 in two valid runs; 100.0 in a run that failed foreign_process
    a = synthetic_result(CFG, "001_c1", 1).model_copy(update={"energy_per_output_token_j": 1.0})
    b = synthetic_result(CFG, "002_c2", 2).model_copy(update={"energy_per_output_token_j": 3.0})
    c = synthetic_result(CFG, "003_c3", 3).model_copy(
        update={
            "energy_per_output_token_j": 100.0,
            "valid": False,
            "failed_gates": ["foreign_process"],
        }
    )
    return [a, b, c]


def test_summary_uses_valid_runs_and_lists_the_invalid() -> None:
    [s] = summarise(_runs())
    m = s.metrics["energy_per_output_token_j"]
    # mean (1 + 3) / 2 = 2; sample SD sqrt(((1-2)^2 + (3-2)^2) / 1) = sqrt(2); the invalid 100 is out
    assert (m.n, m.mean, m.values) == (2, 2.0, [1.0, 3.0])
    assert m.std == pytest.approx(math.sqrt(2))
    assert s.n_completed == 3 and s.n_invalid == 1 and s.invalid_run_ids == ["003_c3"]
    [w] = [w for w in s.warnings if w.code == "invalid_runs"]
    assert "003_c3 (foreign_process)" in w.message


def test_report_points_keep_invalid_runs_apart() -> None:
    runs = _runs()
    study = StudyResult(
        llenergymeasure_version="x",
        name="s",
        study_design_hash="h",
        started_at="t0",
        ended_at="t1",
        runs=runs,
        summaries=summarise(runs),
    )
    [p] = config_points(study)
    assert [r.experiment_id for r in p.runs] == ["001_c1", "002_c2"]
    assert [r.experiment_id for r in p.invalid] == ["003_c3"]
    assert p.run_values("energy_per_output_token_j") == [1.0, 3.0]


def _stats(mean: float, half: float | None) -> MetricStats:
    if half is None:
        return MetricStats(n=1, mean=mean)
    return MetricStats(
        n=3, mean=mean, ci95_low=mean - half, ci95_high=mean + half, ci95_half_width=half
    )


def test_ci_overlap_by_hand() -> None:
    assert ci_overlap(_stats(1.0, 0.1), _stats(1.15, 0.1))  # [0.9, 1.1] and [1.05, 1.25]
    assert not ci_overlap(_stats(1.0, 0.1), _stats(1.3, 0.1))  # [0.9, 1.1] and [1.2, 1.4]
    assert ci_overlap(_stats(1.0, 0.1), _stats(1.1, None))  # a single run: its mean, 1.1 <= 1.1
    assert not ci_overlap(_stats(1.0, None), _stats(1.2, None))
    assert not ci_overlap(MetricStats(n=0), _stats(1.0, 0.1))


def _point(key: str, energy: MetricStats, speed: MetricStats) -> ConfigPoint:
    summary = ConfigSummary(
        config_hash=key,
        label=key,
        backend="pytorch",
        model="m",
        config=CFG,
        n_completed=3,
        n_failed=0,
        metrics={"energy_per_output_token_j": energy, "output_tokens_per_s": speed},
    )
    return ConfigPoint(key, key, key, "pytorch", CFG, summary)


def test_front_pairs_whose_cis_overlap_on_both_axes() -> None:
    c1 = _point("C1", _stats(1.0, 0.1), _stats(100.0, 5.0))
    c2 = _point("C2", _stats(1.05, 0.1), _stats(104.0, 5.0))  # overlaps C1 on both axes
    c3 = _point("C3", _stats(1.05, 0.1), _stats(200.0, 5.0))  # overlaps C1 on energy only
    assert overlapping_pairs([c1, c2, c3], "output_tokens_per_s", ["C1", "C3"]) == [("C1", "C2")]


def test_user_config_validity_section() -> None:
    cfg = UserConfig.model_validate({"validity": {"min_window_s": 5, "max_slowdown_share": 0.1}})
    assert cfg.validity.min_window_s == 5.0 and cfg.validity.max_slowdown_share == 0.1
    assert UserConfig().validity.baseline_max_util_pct == 0.0
    with pytest.raises(ValidationError, match="max_counter_mismatch"):
        UserConfig.model_validate({"validity": {"max_counter_mismatch": 0}})
    with pytest.raises(ValidationError, match="min_windows"):
        UserConfig.model_validate({"validity": {"min_windows": 5}})


def test_export_columns_of_validity_and_per_gpu_metadata() -> None:
    r = synthetic_result(CFG, "001_c1", 1)
    env = r.environment.model_copy(deep=True)
    env.gpus = [
        env.gpus[0].model_copy(update={"nvml_index": 0, "persistence_mode": True, "pstate": "P0"}),
        env.gpus[0].model_copy(update={"nvml_index": 1, "persistence_mode": False, "pstate": "P8"}),
    ]
    r = r.model_copy(
        update={
            "environment": env,
            "valid": False,
            "failed_gates": ["short_window", "sampler_gap"],
            "energy_per_total_token_j": 0.5,
        }
    )
    rec = run_record(r)
    assert rec["valid"] is False and rec["failed_gates"] == "short_window,sampler_gap"
    assert rec["energy_per_total_token_j"] == 0.5
    assert json.loads(rec["env.gpus.persistence_mode"]) == [True, False]
    assert json.loads(rec["env.gpus.pstate"]) == ["P0", "P8"]


def test_strict_names_the_invalid_runs_and_their_gates() -> None:
    from typer.testing import CliRunner

    from llenergymeasure.cli import app
    from llenergymeasure.cli.run_summary import invalid_runs_line

    runs = _runs()
    study = StudyResult(
        llenergymeasure_version="x", name="s", study_design_hash="h", started_at="t0",
        ended_at="t1", runs=runs,
    )  # fmt: skip
    assert invalid_runs_line(study) == "1 run(s) failed a validity gate: 003_c3 (foreign_process)"
    assert invalid_runs_line(study.model_copy(update={"runs": runs[:2]})) is None
    help_text = CliRunner().invoke(app, ["run", "--help"]).output
    assert "--strict" in help_text
