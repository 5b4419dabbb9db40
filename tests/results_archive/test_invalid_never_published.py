"""Issue 25 item 1: a run marked ``valid: false`` never reaches a published number.

One study (synthetic results, ``tests/report/report_builders.py``) in which run 005 — config C1's
second cycle — failed ``foreign_process`` and reports 100x the throughput and 1/100 the energy per
token of its valid twin 001. Each output is checked against the valid run alone: ``llem results
compare``, ``llem results show``, the archive's ``configs`` view, the leaderboard, ``summary.csv``,
the study summaries and the report's Pareto front. Before the fix ``compare`` averaged 005 in
(n = 2, mean moved ~50x).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from llenergymeasure.results.export import write_exports
from llenergymeasure.results.loading import load_study_dir
from llenergymeasure.results.models import ExperimentResult
from tests.report.report_builders import build_study_dir

duckdb = pytest.importorskip("duckdb")

from llenergymeasure.results.archive.compare import Target, compare, resolve  # noqa: E402
from llenergymeasure.results.archive.store import Archive, ArchiveError  # noqa: E402
from llenergymeasure.results.leaderboard import leaderboards  # noqa: E402

INVALID = "005"  # plan position 5: config 0 (pytorch, bs 1), cycle 2


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("invalid") / "results"
    study_dir, _ = build_study_dir(root, fail_run=None, write_aggregate=False)
    (bad_dir,) = [p for p in study_dir.iterdir() if p.name.startswith(INVALID)]
    (twin_dir,) = [p for p in study_dir.iterdir() if p.name.startswith("001")]
    bad = ExperimentResult.model_validate_json((bad_dir / "result.json").read_text())
    twin = ExperimentResult.model_validate_json((twin_dir / "result.json").read_text())
    assert bad.config_hash == twin.config_hash
    assert twin.energy_per_output_token_j and twin.output_tokens_per_s
    bad = bad.model_copy(
        update={
            "valid": False,
            "failed_gates": ["foreign_process"],
            "energy_per_output_token_j": twin.energy_per_output_token_j / 100,
            "output_tokens_per_s": twin.output_tokens_per_s * 100,
        }
    )
    (bad_dir / "result.json").write_text(bad.model_dump_json(indent=2))
    loaded = load_study_dir(study_dir)
    write_exports(loaded, study_dir)
    return {"root": root, "dir": study_dir, "bad": bad, "twin": twin, "loaded": loaded}


def _other_hash(study: dict) -> str:
    twin = study["twin"]
    return next(
        r.config_hash
        for r in study["loaded"].runs
        if r.config_hash != twin.config_hash and r.config.backend == twin.config.backend
    )


def test_compare_averages_valid_runs_only_and_lists_the_excluded(study: dict) -> None:
    archive = Archive([study["root"]], cache_dir=None, cache=False)
    twin, bad = study["twin"], study["bad"]
    a = resolve(archive, twin.config_hash[:12])
    b = resolve(archive, _other_hash(study)[:12])
    result = compare(archive, a, b)
    (pair,) = result.pairs
    by_metric = {m.metric: m for m in pair.metrics}
    tput = by_metric["output_tokens_per_s"]
    assert tput.n_a == 1 and tput.mean_a == pytest.approx(twin.output_tokens_per_s)
    energy = by_metric["energy_per_output_token_j"]
    assert energy.n_a == 1 and energy.mean_a == pytest.approx(twin.energy_per_output_token_j)
    assert tput.n_b == 2  # B's two runs are both valid
    ((side, run_id, gates),) = [(e.side, e.run_id, e.failed_gates) for e in result.excluded]
    assert (side, run_id, gates) == ("A", bad.experiment_id, ["foreign_process"])
    assert result.to_dict()["excluded"][0]["run_id"] == bad.experiment_id
    # the invalid run alone cannot be compared: an error naming it and its gate
    with pytest.raises(ArchiveError, match=rf"no valid run.*{bad.experiment_id}: foreign_process"):
        compare(archive, Target("run", str(study["dir"]), run_id=bad.experiment_id), b)


def test_configs_view_and_leaderboard_leave_the_invalid_run_out(study: dict) -> None:
    archive = Archive([study["root"]], cache_dir=None, cache=False)
    twin, bad = study["twin"], study["bad"]
    (row,) = archive.records(
        "SELECT n_runs, n_invalid, invalid_runs, output_tokens_per_s_mean, "
        "output_tokens_per_s_n, energy_per_output_token_j_mean FROM configs "
        "WHERE config_hash = $h",
        {"h": twin.config_hash},
    )
    assert row["n_runs"] == 2 and row["n_invalid"] == 1 and row["output_tokens_per_s_n"] == 1
    assert row["invalid_runs"] == f"{bad.experiment_id} (foreign_process)"
    assert row["output_tokens_per_s_mean"] == pytest.approx(twin.output_tokens_per_s)
    assert row["energy_per_output_token_j_mean"] == pytest.approx(twin.energy_per_output_token_j)
    points = [p for b in leaderboards(archive) for p in b["points"]]
    (point,) = [p for p in points if p["config_hash"] == twin.config_hash]
    assert point["output_tokens_per_s_mean"] == pytest.approx(twin.output_tokens_per_s)
    assert bad.experiment_id not in point["run_ids"]
    assert point["invalid_runs"] == {bad.experiment_id: ["foreign_process"]}
    # with 005 averaged in, C1 would sit on the throughput front; without it, it does not
    (board,) = [b for b in leaderboards(archive) if point in b["points"]]
    assert not point["on_throughput_front"]
    assert all(not k.endswith(twin.config_hash) for k in board["throughput_front"])


def test_summary_csv_and_summaries_use_the_valid_run(study: dict) -> None:
    twin, bad = study["twin"], study["bad"]
    rows = list(csv.DictReader((study["dir"] / "summary.csv").open()))
    (row,) = [r for r in rows if r["config_hash"] == twin.config_hash]
    assert float(row["output_tokens_per_s_mean"]) == pytest.approx(twin.output_tokens_per_s)
    assert row["output_tokens_per_s_n"] == "1" and row["invalid_run_ids"] == bad.experiment_id
    (summary,) = [s for s in study["loaded"].summaries if s.config_hash == twin.config_hash]
    assert summary.metrics["output_tokens_per_s"].values == [twin.output_tokens_per_s]


def test_report_pareto_front_leaves_the_invalid_run_out(study: dict) -> None:
    pytest.importorskip("matplotlib")
    from llenergymeasure.report.data import THROUGHPUT_METRIC, config_points
    from llenergymeasure.report.figures import pareto_figure

    points = config_points(study["loaded"])
    (c1,) = [p for p in points if p.config_hash == study["twin"].config_hash]
    assert [r.experiment_id for r in c1.invalid] == [study["bad"].experiment_id]
    assert c1.stats(THROUGHPUT_METRIC).values == [study["twin"].output_tokens_per_s]
    _, keys = pareto_figure(points, THROUGHPUT_METRIC, maximise_x=True)
    assert c1.key not in keys


def test_show_counts_and_names_the_invalid_run(study: dict) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "results", "show", str(study["dir"])],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert out.returncode == 0, out.stderr
    bad = study["bad"].experiment_id
    assert f"invalid {bad}: failed foreign_process; left out of the means" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "results", "compare", "--json",
         study["twin"].config_hash[:12], _other_hash(study)[:12], "-r", str(study["root"])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [e["run_id"] for e in data["excluded"]] == [bad]
