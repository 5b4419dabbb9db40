"""results.parquet / summary.csv / StudyResult.to_dataframe: the flattened columns and their values."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llenergymeasure import StudyResult
from llenergymeasure.results.export import ReportDependencyError, write_exports
from llenergymeasure.results.export_columns import (
    RUN_COLUMNS,
    SUMMARY_ID_COLUMNS,
    SUMMARY_STATS,
    config_columns,
    run_columns,
    summary_columns,
)
from llenergymeasure.results.export_rows import summary_metrics

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

DOCS = Path(__file__).resolve().parents[2] / "docs" / "results.md"


def test_one_row_per_run_with_the_fixed_columns(synthetic_study: tuple[Path, StudyResult]) -> None:
    _, study = synthetic_study
    df = study.to_dataframe()
    assert list(df.columns) == run_columns()
    assert len(df) == len(study.runs) == 7
    assert df["run_id"].tolist() == sorted(r.experiment_id for r in study.runs)


def test_values_are_flattened_from_the_results(synthetic_study: tuple[Path, StudyResult]) -> None:
    _, study = synthetic_study
    df = study.to_dataframe().set_index("run_id")
    for r in study.runs:
        row = df.loc[r.experiment_id]
        assert row["config_hash"] == r.config_hash
        assert row["config.batch_size"] == r.config.batch_size
        assert row["config.backend"] == r.config.backend
        assert row["energy_per_output_token_j"] == pytest.approx(r.energy_per_output_token_j)
        assert row["total_energy_j"] == pytest.approx(r.total_energy_j)
        assert row["output_tokens_per_s"] == pytest.approx(r.output_tokens_per_s)
        assert row["ttft_p50_ms"] == pytest.approx(r.ttft_ms.p50_ms)
        assert row["request_latency_p99_ms"] == pytest.approx(r.request_latency_ms.p99_ms)
        assert row["cycle"] == int(r.experiment_id.split("_")[1][1:])
        assert row["env.gpu_model"] == "NVIDIA H200"
        assert row["env.pkg.vllm"] == "0.32.0"
        assert row["energy.nvml_indices"] == "0"
        assert row["baseline.idle_power_w"] == pytest.approx(80.0)
        # Only the run's own backend section is filled, with its defaults resolved.
        if r.config.backend == "vllm":
            assert row["config.vllm.gpu_memory_utilization"] == pytest.approx(0.9)
            assert pd.isna(row["config.pytorch.static_cache"])
        else:
            assert not row["config.pytorch.static_cache"]
            assert pd.isna(row["config.vllm.gpu_memory_utilization"])


def test_warnings_are_counted_once_with_their_codes(
    synthetic_study: tuple[Path, StudyResult],
) -> None:
    _, study = synthetic_study
    df = study.to_dataframe().set_index("run_id")
    short = [r for r in study.runs if r.duration_s < 1.0]
    assert short, "the synthetic study has one run with a window under 1 s"
    for r in short:
        # The harness copies meter warnings into the result: the export must not count them twice.
        assert len(r.warnings) == 1 and len(r.energy.warnings) == 1
        assert df.loc[r.experiment_id, "n_warnings"] == 1
        assert df.loc[r.experiment_id, "warning_codes"] == "short_window"
    clean = [r for r in study.runs if r.duration_s >= 1.0]
    assert all(df.loc[r.experiment_id, "n_warnings"] == 0 for r in clean)


def test_real_fixture_without_energy(fixture_study: Path) -> None:
    df = StudyResult.from_directory(fixture_study).to_dataframe()
    assert len(df) == 4
    assert df["energy.meter"].tolist() == ["null"] * 4
    assert df["total_energy_j"].isna().all()
    assert df["warning_codes"].tolist() == ["energy_unavailable"] * 4
    assert sorted(df["config.batch_size"].unique().tolist()) == [1, 4]
    assert df["cycle"].tolist() == [1, 1, 2, 2]
    assert (df["output_tokens"] == 128).all()
    assert str(df["config.batch_size"].dtype) == "Int64"


def test_parquet_round_trip_equals_the_dataframe(synthetic_study: tuple[Path, StudyResult]) -> None:
    study_dir, study = synthetic_study
    written = write_exports(study, study_dir)
    assert set(written) == {"results.parquet", "summary.csv"}
    back = pd.read_parquet(written["results.parquet"])
    expected = study.to_dataframe()
    assert list(expected.columns) == run_columns()  # the dataframe always has every column
    filled = [c for c in run_columns() if expected[c].notna().any()]
    empty = [c for c in run_columns() if c not in filled]
    # the file keeps exactly the columns some run fills, in run_columns() order
    assert list(back.columns) == filled
    assert "config.vllm.max_num_seqs" in empty and "config.tensorrt.max_batch_size" in empty
    assert "energy.meter" in filled and "config.pytorch.static_cache" in filled
    pd.testing.assert_frame_equal(back, expected[filled], check_dtype=False)
    # Files of studies that fill different columns still combine by name, empty where absent.
    other = back.drop(columns=["energy.meter"]).assign(**{"config.vllm.max_num_seqs": 64})
    both = pd.concat([back, other], ignore_index=True)
    assert len(both) == 14 and set(both.columns) == {*filled, "config.vllm.max_num_seqs"}
    assert both["config.vllm.max_num_seqs"].isna().sum() == 7
    assert both["energy.meter"].isna().sum() == 7


def test_parquet_of_a_study_without_completed_runs_keeps_every_column(
    synthetic_study: tuple[Path, StudyResult],
) -> None:
    study_dir, study = synthetic_study
    empty = study.model_copy(update={"runs": [], "summaries": []})
    written = write_exports(empty, study_dir)
    back = pd.read_parquet(written["results.parquet"])
    assert len(back) == 0 and list(back.columns) == run_columns()


def test_summary_csv_has_mean_and_ci_per_config(synthetic_study: tuple[Path, StudyResult]) -> None:
    study_dir, study = synthetic_study
    write_exports(study, study_dir)
    with (study_dir / "summary.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(study.summaries) == 4
    assert list(rows[0]) == summary_columns(summary_metrics(study.summaries))
    for row, s in zip(rows, study.summaries, strict=True):
        assert row["config_hash"] == s.config_hash
        assert int(row["n_completed"]) == s.n_completed
        stats = s.metrics["energy_per_output_token_j"]
        assert float(row["energy_per_output_token_j_mean"]) == pytest.approx(stats.mean)
        if stats.n >= 2:
            assert float(row["energy_per_output_token_j_ci95_low"]) == pytest.approx(stats.ci95_low)
            assert float(row["energy_per_output_token_j_ci95_high"]) == pytest.approx(
                stats.ci95_high
            )
        else:  # the config with a failed run has a single result: no interval
            assert row["energy_per_output_token_j_ci95_low"] == ""
        assert row["config.batch_size"] == str(s.config.batch_size)
    assert [int(r["n_failed"]) for r in rows] == [0, 0, 0, 1]


def test_summary_csv_is_written_without_pyarrow(
    synthetic_study: tuple[Path, StudyResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    study_dir, study = synthetic_study
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    with pytest.raises(ReportDependencyError, match=r"llenergymeasure\[report\]"):
        write_exports(study, study_dir)
    assert (study_dir / "summary.csv").read_text().startswith("config_hash,")
    assert not (study_dir / "results.parquet").exists()


def test_every_column_is_documented() -> None:
    documented = set(re.findall(r"^\| `([^`]+)` \|", DOCS.read_text(), flags=re.M))
    missing = [c for c in run_columns() if c not in documented]
    assert not missing, f"columns missing from docs/results.md: {missing}"
    assert not [c for c in SUMMARY_ID_COLUMNS if c not in documented]
    from llenergymeasure.results.stats import METRICS

    text = DOCS.read_text()
    assert not [m for m in METRICS if f"`{m}`" not in text], "summary metrics missing from the docs"
    assert all(f"`{s}`" in text for s in SUMMARY_STATS)
    assert len(config_columns()) > 40 and set(RUN_COLUMNS).isdisjoint(config_columns())


def test_importing_the_package_loads_no_plotting_or_dataframe_library() -> None:
    code = (
        "import sys, llenergymeasure, llenergymeasure.report, llenergymeasure.results.export, "
        "llenergymeasure.results.loading, llenergymeasure.cli.report; "
        "print([m for m in ('matplotlib', 'pandas', 'pyarrow') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
