"""`llem results list/show/query/compare/leaderboard` through the CLI, over real study directories."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

duckdb = pytest.importorskip("duckdb")


def llem(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llenergymeasure", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250", **(env or {})},
    )


def test_list_shows_every_study_and_how_it_was_read(
    cpu_root: Path, energy_root: Path, legacy_root: Path
) -> None:
    out = llem(
        "results", "list", "-r", str(cpu_root), "-r", str(energy_root), "-r", str(legacy_root)
    )
    assert out.returncode == 0, out.stderr
    for text in ("cpu-study", "energy-study", "report-fixture", "json", "parquet", "pytorch"):
        assert text in out.stdout
    data = json.loads(
        llem("results", "list", "--json", "-r", str(cpu_root), "-r", str(legacy_root)).stdout
    )
    assert [(d["name"], d["n_completed"], d["n_failed"]) for d in data] == [
        ("report-fixture", 4, 0),
        ("cpu-study", 4, 0),
    ]


def test_list_defaults_to_the_user_configs_results_dir(cpu_root: Path, tmp_path: Path) -> None:
    uc = tmp_path / "user.yaml"
    uc.write_text(f"output:\n  results_dir: {cpu_root}\n")
    out = llem("results", "list", env={"LLEM_CONFIG": str(uc)})
    assert out.returncode == 0 and "cpu-study" in out.stdout, out.stderr
    uc.write_text(f"output:\n  results_dir: {tmp_path / 'not-yet'}\n")
    out = llem("results", "list", env={"LLEM_CONFIG": str(uc)})
    assert out.returncode == 2 and f"no results folder at {tmp_path / 'not-yet'}" in out.stderr
    assert str(uc) in out.stderr, out.stderr


def test_empty_root_and_missing_root(tmp_path: Path) -> None:
    out = llem("results", "list", "-r", str(tmp_path))
    assert out.returncode == 0 and "no studies under" in out.stdout
    out = llem("results", "query", "SELECT count(*) AS n FROM runs", "-r", str(tmp_path))
    assert out.returncode == 0 and "0" in out.stdout
    out = llem("results", "list", "-r", str(tmp_path / "missing"))
    assert out.returncode == 2 and "does not exist" in out.stderr


def test_sql_errors_exit_2_with_a_clear_message(legacy_root: Path) -> None:
    out = llem("results", "query", "SELECT nope FROM runs", "-r", str(legacy_root))
    assert out.returncode == 2
    assert (
        "the query failed" in out.stderr and "nope" in out.stderr and "Traceback" not in out.stderr
    )
    out = llem("results", "query", "SELECT * FROM runs WHERE", "-r", str(legacy_root))
    assert out.returncode == 2 and "syntax error" in out.stderr.lower()


def test_query_prints_and_exports_csv_json_parquet(cpu_root: Path, tmp_path: Path) -> None:
    sql = "SELECT config_label, n_runs, output_tokens_per_s_mean FROM configs ORDER BY config_label"
    out = llem("results", "query", sql, "-r", str(cpu_root))
    assert out.returncode == 0, out.stderr
    assert "tiny-llama/pytorch/bs1" in out.stdout and "tiny-llama/pytorch/bs2" in out.stdout
    files = {
        "csv": tmp_path / "c.csv",
        "json": tmp_path / "c.json",
        "parquet": tmp_path / "c.parquet",
    }
    out = llem(
        "results", "query", sql, "-r", str(cpu_root),
        "--csv", str(files["csv"]), "--json-file", str(files["json"]), "--parquet", str(files["parquet"]),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(files["csv"].open()))
    assert [r["config_label"] for r in rows] == ["tiny-llama/pytorch/bs1", "tiny-llama/pytorch/bs2"]
    js = json.loads(files["json"].read_text())
    assert [r["n_runs"] for r in js] == [2, 2]
    pq = duckdb.connect().execute("SELECT * FROM read_parquet($f)", {"f": str(files["parquet"])})
    assert [r[0] for r in pq.fetchall()] == ["tiny-llama/pytorch/bs1", "tiny-llama/pytorch/bs2"]


def test_show_study_and_run(energy_root: Path, cpu_root: Path, legacy_root: Path) -> None:
    (study_dir,) = list(energy_root.iterdir())
    out = llem("results", "show", str(study_dir))
    assert out.returncode == 0, out.stderr
    assert "energy-study" in out.stdout and "tiny-llama/pytorch/bs4" in out.stdout
    run_dir = sorted(p for p in study_dir.iterdir() if p.is_dir())[0]
    out = llem("results", "show", run_dir.name, "-r", str(energy_root))
    assert out.returncode == 0, out.stderr
    assert str(run_dir) in out.stdout and "nvml" in out.stdout
    # the CPU study measured no energy: every run carries the energy_unavailable warning
    (cpu_study,) = list(cpu_root.iterdir())
    out = llem("results", "show", "cpu-study", "-r", str(cpu_root))
    assert out.returncode == 0, out.stderr
    assert "warning energy_unavailable in 4 run(s)" in out.stdout
    cpu_run = sorted(p for p in cpu_study.iterdir() if p.is_dir())[0]
    out = llem("results", "show", str(cpu_run))
    assert out.returncode == 0, out.stderr
    assert "[energy_unavailable]" in out.stdout and "energy_backend" in out.stdout
    out = llem("results", "show", "no-such-thing", "-r", str(legacy_root))
    assert out.returncode == 2 and "nothing in the archive matches" in out.stderr


def test_compare_two_configs_of_one_environment(cpu_root: Path) -> None:
    (study_dir,) = list(cpu_root.iterdir())
    hashes = sorted(
        {json.loads((p / "result.json").read_text())["config_hash"] for p in study_dir.iterdir()
         if (p / "result.json").exists()}
    )  # fmt: skip
    out = llem("results", "compare", hashes[0][:10], hashes[1][:10], "-r", str(cpu_root), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["environment_differs"] == []
    (pair,) = data["pairs"]
    tput = next(m for m in pair["metrics"] if m["metric"] == "output_tokens_per_s")
    assert tput["n_a"] == tput["n_b"] == 2
    assert tput["ci95_low"] <= tput["diff"] <= tput["ci95_high"]
    out = llem("results", "compare", hashes[0][:10], hashes[1][:10], "-r", str(cpu_root))
    assert "same environment" in out.stdout and "Welch 95 % CI" in out.stdout


@pytest.mark.vllm
def test_compare_flags_studies_from_different_environments(
    cpu_root: Path, vllm_env_root: Path
) -> None:
    (a,) = list(cpu_root.iterdir())
    (b,) = list(vllm_env_root.iterdir())
    out = llem("results", "compare", str(a), str(b), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "env.pkg.transformers" in data["environment_differs"]
    assert len(data["pairs"]) == 2  # the same two configs (same hashes) in both studies
    assert all(p["config_hash_a"] == p["config_hash_b"] for p in data["pairs"])
    out = llem("results", "compare", str(a), str(b))
    assert "different environments" in out.stdout and "env.pkg.transformers" in out.stdout


def test_leaderboard_command(energy_root: Path, tmp_path: Path) -> None:
    out = llem("results", "leaderboard", str(tmp_path / "lb"), "-r", str(energy_root))
    assert out.returncode == 0, out.stderr
    board = json.loads(
        (
            tmp_path / "lb" / "leaderboard_synthetic-tiny-llama_1x-fake-gpu-unknown-limit.json"
        ).read_text()
    )
    assert board["throughput_front"] and board["latency_front"] and len(board["points"]) == 3
