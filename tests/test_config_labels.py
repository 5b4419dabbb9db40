"""Issue 29 item 2: a study's configs are named by the fields that vary in it, so two configs that
differ only in precision (or ``load.rate_rps``, or any axis) never share a name in the summaries,
``results.parquet`` / the archive, or the report."""

from __future__ import annotations

from pathlib import Path

import yaml

from llenergymeasure.config.labels import study_labels
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.report.data import config_points
from llenergymeasure.results.export_rows import run_records
from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.stats import summarise
from tests.helpers import write
from tests.report.report_builders import synthetic_result

PRECISION_STUDY = {
    "name": "precision",
    "base": {"model": "synthetic/tiny-llama", "backend": "pytorch", "n": 4},
    "sweep": {"precision": ["fp32", "bf16"], "batch_size": [1, 2]},
}


def _configs(tmp_path: Path, data: dict) -> list:
    study = StudyConfig.from_yaml(write(tmp_path / "s.yaml", yaml.safe_dump(data)))
    return study.expand()


def test_configs_differing_in_precision_get_distinct_labels(tmp_path: Path) -> None:
    configs = _configs(tmp_path, PRECISION_STUDY)
    labels = study_labels(configs)
    assert len(set(labels.values())) == len(configs) == 4
    # the base label keeps model/backend/batch size; the precision is added as field=value
    assert sorted(labels.values()) == [
        "tiny-llama/pytorch/bs1 precision=bf16",
        "tiny-llama/pytorch/bs1 precision=fp32",
        "tiny-llama/pytorch/bs2 precision=bf16",
        "tiny-llama/pytorch/bs2 precision=fp32",
    ]


def test_a_single_config_keeps_its_short_label(tmp_path: Path) -> None:
    (cfg,) = _configs(tmp_path, {**PRECISION_STUDY, "sweep": {"precision": ["fp32"]}})
    assert study_labels([cfg]) == {cfg.config_hash: "tiny-llama/pytorch/bs1"}


def test_a_unique_name_is_the_label_a_shared_one_is_not(tmp_path: Path) -> None:
    data = {
        "base": {"model": "synthetic/tiny-llama", "backend": "pytorch", "n": 4},
        "experiments": [
            {"name": "fast", "precision": "fp32"},
            {"name": "same", "precision": "bf16"},
            {"name": "same", "precision": "fp16"},
        ],
    }
    labels = list(study_labels(_configs(tmp_path, data)).values())
    assert labels[0] == "fast"
    assert labels[1] != labels[2]
    assert labels[1].endswith("precision=bf16") and labels[2].endswith("precision=fp16")


def test_summaries_parquet_rows_and_report_name_each_config_apart(tmp_path: Path) -> None:
    configs = _configs(tmp_path, {**PRECISION_STUDY, "sweep": {"precision": ["fp32", "bf16"]}})
    runs = [
        synthetic_result(cfg, f"{i:03d}_c1_pytorch_{cfg.short_hash}", 1)
        for i, cfg in enumerate(configs, start=1)
    ]
    summaries = summarise(runs)
    # was "tiny-llama/pytorch/bs1" twice
    assert sorted(s.label for s in summaries) == [
        "tiny-llama/pytorch/bs1 precision=bf16",
        "tiny-llama/pytorch/bs1 precision=fp32",
    ]
    study = StudyResult(
        llenergymeasure_version="0",
        name="precision",
        study_design_hash="0" * 16,
        started_at="2026-12-01T10:00:00Z",
        ended_at="2026-12-01T10:01:00Z",
        runs=runs,
        summaries=summaries,
    )
    by_hash = {s.config_hash: s.label for s in summaries}
    records = run_records(study)
    assert {r["config_hash"]: r["config_label"] for r in records} == by_hash
    points = config_points(study.model_copy(update={"summaries": []}))
    assert {p.config_hash: p.label for p in points} == by_hash
