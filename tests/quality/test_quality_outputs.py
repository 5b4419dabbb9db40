"""Quality in study outputs: aggregated across cycles like energy, and as Parquet/CSV columns."""

from __future__ import annotations

import json
import math

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.results.export_columns import run_columns
from llenergymeasure.results.export_rows import run_record
from llenergymeasure.results.models import (
    ExperimentResult,
)
from llenergymeasure.results.quality_models import MetricValue, QualityRecord, TaskQuality
from llenergymeasure.results.quality_stats import quality_metric_values
from llenergymeasure.results.stats import summarise
from tests.builders import make_result
from tests.quality.conftest import GEN_TASK, MC_TASK

CONFIG = ExperimentConfig(model="m", quality={"tasks": [str(MC_TASK), str(GEN_TASK)]})


def _task(
    name: str, metric: str, value: float, n: int, energy: float | None, ok: bool = True
) -> TaskQuality:
    correct = value * n
    return TaskQuality(
        task=name,
        source=name,
        ok=ok,
        metrics=[MetricValue(name=metric, value=value, stderr=0.1)],
        n_items=n,
        energy_j=energy,
        energy_per_item_j=energy / n if energy is not None else None,
        correct_metric=metric,
        n_correct=correct,
        energy_per_correct_j=energy / correct if energy is not None and correct else None,
    )


def _result(run_id: str, mc_acc: float, gen_em: float, mc_energy: float = 40.0) -> ExperimentResult:
    return make_result(
        CONFIG,
        experiment_id=run_id,
        quality=QualityRecord(
            weights="pretrained",
            tasks=[
                _task("mc", "acc", mc_acc, 8, mc_energy),
                _task("gen", "exact_match", gen_em, 4, 20.0),
            ],
        ),
    )


def test_run_figures_by_hand() -> None:
    # mc: acc 0.5 of 8 = 4 correct for 40 J; gen: 0.25 of 4 = 1 correct for 20 J
    values = quality_metric_values(_result("r1", 0.5, 0.25))
    assert values["quality.mc.acc"] == 0.5 and values["quality.gen.exact_match"] == 0.25
    assert values["quality.mc.energy_per_correct_j"] == 10.0
    assert values["quality.gen.energy_per_correct_j"] == 20.0
    assert values["quality.mc.energy_per_item_j"] == 5.0
    # over both: 5 correct of 12 items, 60 J / 5 correct = 12 J per correct answer
    assert values["quality_accuracy"] == pytest.approx(5 / 12)
    assert values["quality_energy_per_correct_j"] == pytest.approx(12.0)


def test_a_failed_task_is_left_out_of_the_figures() -> None:
    r = _result("r1", 0.5, 0.25)
    assert r.quality is not None
    r.quality.tasks[1] = _task("gen", "exact_match", 0.25, 4, 20.0, ok=False)
    values = quality_metric_values(r)
    assert not any(k.startswith("quality.gen.") for k in values)
    assert values["quality_energy_per_correct_j"] == 10.0 and values["quality_accuracy"] == 0.5


def test_aggregated_across_cycles_with_cis_like_energy() -> None:
    runs = [
        _result("r1", 0.5, 0.25, 40.0),
        _result("r2", 0.5, 0.25, 44.0),
        _result("r3", 0.5, 0.25, 48.0),
    ]
    (summary,) = summarise(runs)
    per_correct = summary.metrics["quality.mc.energy_per_correct_j"]
    # 10, 11, 12 J per correct answer: mean 11, sd 1, half width t(2) x 1 / sqrt(3)
    assert per_correct.n == 3 and per_correct.mean == pytest.approx(11.0)
    assert per_correct.ci95_half_width == pytest.approx(4.302652730 / math.sqrt(3))
    acc = summary.metrics["quality.mc.acc"]
    assert acc.mean == 0.5 and acc.std == 0.0  # same items, greedy: the same accuracy each cycle
    overall = summary.metrics["quality_energy_per_correct_j"]
    assert overall.values == pytest.approx([60 / 5, 64 / 5, 68 / 5])


def test_a_config_without_quality_has_no_quality_metrics() -> None:
    plain = _result("r1", 0.5, 0.25).model_copy(update={"quality": None})
    (summary,) = summarise([plain])
    assert not [k for k in summary.metrics if k.startswith("quality")]


def test_parquet_run_columns() -> None:
    row = run_record(_result("001_c1_pytorch_abcd1234", 0.5, 0.25))
    assert set(row) == set(run_columns())
    assert row["quality.ok"] is True and row["quality.tasks"] == "mc,gen"
    assert (row["quality.n_items"], row["quality.n_correct"]) == (12, 5.0)
    assert row["quality.energy_j"] == 60.0 and row["quality_energy_per_correct_j"] == 12.0
    tasks = json.loads(row["quality.tasks_json"])
    assert [t["task"] for t in tasks] == ["mc", "gen"] and tasks[0]["metrics"][0]["stderr"] == 0.1
    assert json.loads(row["config.quality.tasks"]) == [str(MC_TASK), str(GEN_TASK)]
    plain = run_record(
        _result("002_c1_pytorch_abcd1234", 0.5, 0.25).model_copy(update={"quality": None})
    )
    assert plain["quality.ok"] is None and plain["quality_energy_per_correct_j"] is None


def test_leaderboard_ranks_by_j_per_correct_answer_and_draws_the_quality_front() -> None:
    from llenergymeasure.results.leaderboard import _quality_boards

    def point(h: str, acc: float | None, j_token: float, j_correct: float | None) -> dict:
        return {
            "study_dir": "/s",
            "config_hash": h,
            "quality_accuracy_mean": acc,
            "energy_per_output_token_j_mean": j_token,
            "quality_energy_per_correct_j_mean": j_correct,
        }

    # a: accurate and frugal; b: less accurate, cheaper per token; c: dominated by a; d: no quality
    points = [
        point("a", 0.8, 1.0, 5.0),
        point("b", 0.5, 0.5, 4.0),
        point("c", 0.6, 1.2, 9.0),
        point("d", None, 0.1, None),
    ]
    front, ranking = _quality_boards(points)
    assert set(front) == {"/s#a", "/s#b"}
    assert ranking == ["/s#b", "/s#a", "/s#c"]
    assert [p["quality_rank"] for p in points] == [2, 1, 3, None]
    assert [p["on_quality_front"] for p in points] == [True, True, False, None]
