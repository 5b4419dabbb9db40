"""The results archive (real DuckDB) over real study directories: views, types, sources, leaderboard."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llenergymeasure import StudyResult
from llenergymeasure.results.archive.store import Archive, ArchiveError
from llenergymeasure.results.archive.views import (
    STUDY_COLUMNS,
    configs_view_columns,
    run_column_types,
)
from llenergymeasure.results.export_columns import run_columns
from llenergymeasure.results.leaderboard import leaderboards, write_leaderboards
from llenergymeasure.results.pareto import pareto_front
from llenergymeasure.results.stats import describe

duckdb = pytest.importorskip("duckdb")


def _archive(*roots: Path, cache: Path | None = None) -> Archive:
    return Archive(list(roots), cache_dir=cache, cache=cache is not None)


def test_runs_view_has_every_documented_column_from_parquet_and_json(
    cpu_root: Path, energy_root: Path, legacy_root: Path, tmp_path: Path
) -> None:
    archive = _archive(cpu_root, energy_root, legacy_root, cache=tmp_path / "cache")
    cols, rows = archive.query("SELECT * FROM runs")
    assert cols == [*STUDY_COLUMNS, *run_columns()]
    assert len(rows) == 4 + 6 + 4
    sources = dict(archive.query('SELECT "study.name", any_value(source) FROM runs GROUP BY 1')[1])
    assert sources == {"cpu-study": "parquet", "energy-study_20261201-120000": "parquet",
                       "report-fixture": "json"}  # fmt: skip
    # every run row points at its own folder, and the folder's result.json is that run
    for run_id, run_dir, config_hash in archive.query(
        "SELECT run_id, run_dir, config_hash FROM runs"
    )[1]:
        data = json.loads((Path(run_dir) / "result.json").read_text())
        assert data["experiment_id"] == run_id and data["config_hash"] == config_hash
    # the schema cache was written and a second archive reads the same rows through it
    assert (tmp_path / "cache" / "archive-schemas.json").exists()
    again = _archive(cpu_root, energy_root, legacy_root, cache=tmp_path / "cache")
    assert sorted(again.query("SELECT * FROM runs")[1], key=str) == sorted(rows, key=str)


def test_runs_values_are_the_study_results_values(
    cpu_root: Path, energy_root: Path, legacy_root: Path
) -> None:
    archive = _archive(cpu_root, energy_root, legacy_root)
    for root in (cpu_root, energy_root, legacy_root):
        (study_dir,) = list(root.iterdir())
        study = StudyResult.from_directory(study_dir)
        got = dict(
            archive.query(
                "SELECT run_id, [output_tokens_per_s, energy_per_output_token_j, ttft_p50_ms] "
                'FROM runs WHERE "study.dir" = $d',
                {"d": str(study_dir)},
            )[1]
        )
        want = {
            r.experiment_id: [
                r.output_tokens_per_s,
                r.energy_per_output_token_j,
                r.ttft_ms.p50_ms if r.ttft_ms else None,
            ]
            for r in study.runs
        }
        assert got == want


def test_configs_view_statistics_are_the_study_statistics(
    energy_root: Path, cpu_root: Path
) -> None:
    archive = _archive(energy_root, cpu_root)
    cols, rows = archive.query("SELECT * FROM configs")
    assert cols == list(configs_view_columns())
    assert len(rows) == 3 + 2
    for root in (energy_root, cpu_root):
        (study_dir,) = list(root.iterdir())
        study = StudyResult.from_directory(study_dir)
        for s in study.summaries:
            (row,) = archive.records(
                'SELECT * FROM configs WHERE "study.dir" = $d AND config_hash = $h',
                {"d": str(study_dir), "h": s.config_hash},
            )
            assert row["n_runs"] == s.n_completed == 2 and row["n_failed"] == 0
            assert row["run_ids"].split(";") == sorted(s.run_ids)
            for metric in ("energy_per_output_token_j", "output_tokens_per_s", "ttft_p50_ms"):
                want = describe(s.metrics[metric].values)
                for stat in ("mean", "std", "ci95_low", "ci95_high", "ci95_half_width"):
                    value = getattr(want, stat)
                    got = row[f"{metric}_{stat}"]
                    assert (got is None and value is None) or got == pytest.approx(value), (
                        metric,
                        stat,
                    )
                assert row[f"{metric}_n"] == want.n


def test_column_types_come_from_what_the_files_hold_and_never_lose_a_value(
    cpu_root: Path, energy_root: Path
) -> None:
    archive = _archive(cpu_root, energy_root)
    view = {name: typ for name, typ, *_ in archive.query("DESCRIBE runs")[1]}
    con = duckdb.connect()
    widened = {("BIGINT", "DOUBLE"), ("DOUBLE", "DOUBLE"), ("BIGINT", "BIGINT")}
    checked = 0
    for root in (cpu_root, energy_root):
        (study_dir,) = list(root.iterdir())
        parquet = str(study_dir / "results.parquet")
        for name, typ, *_ in con.execute(
            "DESCRIBE SELECT * FROM read_parquet($f)", {"f": parquet}
        ).fetchall():
            if typ == '"NULL"':  # empty in every run of this study (energy on the CPU)
                continue
            typ = {"INTEGER": "BIGINT"}.get(typ, typ)
            assert typ == view[name] or (typ, view[name]) in widened, (name, typ, view[name])
            checked += 1
        # every value of the file is in the view: no cast turned a value into NULL
        present = [
            r[0]
            for r in con.execute(
                "DESCRIBE SELECT * FROM read_parquet($f)", {"f": parquet}
            ).fetchall()
        ]
        nulls = ", ".join(f'"{c}" IS NULL' for c in present)
        mine = archive.query(
            f'SELECT {nulls} FROM runs WHERE "study.dir" = $d ORDER BY run_id',
            {"d": str(study_dir)},
        )[1]
        raw = con.execute(
            f"SELECT {nulls} FROM read_parquet($f) ORDER BY run_id", {"f": parquet}
        ).fetchall()
        assert mine == raw
    assert view["total_energy_j"] == "DOUBLE" and view["energy.available"] == "BOOLEAN"
    assert checked > 100


def test_stale_parquet_and_unreadable_studies_are_read_from_json_or_reported(
    cpu_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "results"
    (study_dir,) = list(cpu_root.iterdir())
    stale = shutil.copytree(study_dir, root / "stale")
    parquet = stale / "results.parquet"
    os.utime(parquet, (1_000_000, 1_000_000))  # written long before its runs (a resume since)
    broken = root / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    archive = _archive(root)
    by_name = {s.path.name: s for s in archive.studies}
    assert by_name["stale"].source == "json" and "older than its runs" in by_name["stale"].note
    assert by_name["broken"].source == "skipped" and "cannot be read" in by_name["broken"].note
    assert [s.path.name for s in archive.skipped] == ["broken"]
    assert archive.query("SELECT count(*), any_value(source) FROM runs")[1] == [(4, "json")]


def test_empty_and_missing_roots(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    archive = _archive(empty)
    assert archive.studies == []
    assert archive.query("SELECT count(*) FROM runs")[1] == [(0,)]
    assert archive.query("SELECT count(*) FROM configs")[1] == [(0,)]
    assert archive.query("SELECT count(*) FROM studies")[1] == [(0,)]
    with pytest.raises(ArchiveError, match="does not exist"):
        _archive(tmp_path / "nowhere")


def test_sql_errors_are_archive_errors_naming_the_problem(legacy_root: Path) -> None:
    archive = _archive(legacy_root)
    with pytest.raises(ArchiveError, match=r"the query failed.*no_such_column") as exc:
        archive.query("SELECT no_such_column FROM runs")
    assert exc.value.exit_code == 2
    with pytest.raises(ArchiveError, match="syntax error"):
        archive.query("SELEC 1")


#: the board of the energy study: one fake NVML GPU, measured (issue 25 item 10)
BOARD = "1x Fake GPU @ unknown limit"
BOARD_SLUG = "1x-fake-gpu-unknown-limit"


def test_leaderboard_fronts_and_traceability(
    energy_root: Path, cpu_root: Path, tmp_path: Path
) -> None:
    archive = _archive(energy_root, cpu_root)
    # one model (tiny-llama); boards by the GPUs the runs measured: the fake NVML GPU (the CPU
    # machine's snapshot has no power limit for it), and none for the CPU study
    boards = {b["gpu"]: b for b in leaderboards(archive)}
    assert sorted(boards) == [BOARD, "no measured GPU"]
    board = boards[BOARD]
    assert board["model"] == "synthetic/tiny-llama"
    assert len(board["points"]) == 3  # the energy study's configs
    cpu = boards["no measured GPU"]
    assert cpu["points"] == [] and len(cpu["excluded"]) == 2  # no energy: said, not dropped
    assert all("energy was not measured" in e["reason"] for e in cpu["excluded"])
    pts = board["points"]
    for name, metric, maximise in (
        ("throughput", "output_tokens_per_s", True),
        ("latency", "ttft_p50_ms", False),
    ):
        idx = pareto_front(
            [(p[f"{metric}_mean"], p["energy_per_output_token_j_mean"]) for p in pts], maximise
        )
        assert board[f"{name}_front"] == [
            f"{pts[i]['study_dir']}#{pts[i]['config_hash']}" for i in idx
        ]
        assert [p[f"on_{name}_front"] for p in pts] == [i in idx for i in range(len(pts))]
        assert board[f"{name}_front"]
    for p in pts:
        assert len(p["run_dirs"]) == 2
        for run_dir in p["run_dirs"]:
            assert (
                json.loads((Path(run_dir) / "result.json").read_text())["config_hash"]
                == (p["config_hash"])
            )
    paths = write_leaderboards(archive, tmp_path / "lb")
    assert sorted(p.name for p in paths) == [
        f"leaderboard_synthetic-tiny-llama_{BOARD_SLUG}.csv",
        f"leaderboard_synthetic-tiny-llama_{BOARD_SLUG}.json",
        "leaderboard_synthetic-tiny-llama_no-measured-gpu.csv",
        "leaderboard_synthetic-tiny-llama_no-measured-gpu.json",
    ]
    csv_text = (tmp_path / "lb" / f"leaderboard_synthetic-tiny-llama_{BOARD_SLUG}.csv").read_text()
    assert len(csv_text.strip().splitlines()) == 1 + 3
    assert math.isfinite(pts[0]["energy_per_output_token_j_mean"])


def test_importing_the_package_and_cli_does_not_import_duckdb() -> None:
    code = (
        "import sys, llenergymeasure, llenergymeasure.cli; "
        "assert 'duckdb' not in sys.modules, 'duckdb imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_docs_list_every_column_of_the_archive_views() -> None:
    from llenergymeasure.results.archive.views import (
        CONFIG_ID_COLUMNS,
        CONFIG_METRICS,
        CONFIG_STATS,
        RUN_STATUS_COLUMNS,
        STUDIES_COLUMNS,
    )

    doc = (Path(__file__).resolve().parents[2] / "docs" / "results.md").read_text()
    section = doc.split("## The archive", 1)[1].split("\n## ", 1)[0]

    def table(heading: str) -> set[str]:
        body = section.split(heading, 1)[1].split("\n### ", 1)[0]
        return {line.split("`")[1] for line in body.splitlines() if line.startswith("| `")}

    assert table("### View `runs`") == set(STUDY_COLUMNS)
    assert table("### Table `studies`") == set(STUDIES_COLUMNS)
    assert table("### Table `run_status`") == set(RUN_STATUS_COLUMNS)
    documented = table("### View `configs`")
    assert documented == {*CONFIG_ID_COLUMNS, "n_runs", "n_failed", "run_ids", "run_dirs",
                          "n_invalid", "invalid_runs", "<metric>_<stat>", "config.*"}  # fmt: skip
    configs_row = next(line for line in section.splitlines() if "`<metric>_<stat>`" in line)
    for name in (*CONFIG_METRICS, *CONFIG_STATS):
        assert f"`{name}`" in configs_row, name
    assert set(configs_view_columns()) == {
        *CONFIG_ID_COLUMNS, "n_runs", "n_failed", "run_ids", "run_dirs", "n_invalid", "invalid_runs",
        *(f"{m}_{s}" for m in CONFIG_METRICS for s in CONFIG_STATS),
        *(c for c in run_column_types() if c.startswith("config.")),
    }  # fmt: skip
