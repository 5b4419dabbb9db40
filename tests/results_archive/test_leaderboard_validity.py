"""The leaderboard over runs the validity gates marked invalid: left out of the points and fronts,
and listed under ``excluded`` with the gates they failed — never silently dropped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.results_archive.conftest import energy_study

duckdb = pytest.importorskip("duckdb")

from llenergymeasure.results.archive.store import Archive  # noqa: E402
from llenergymeasure.results.leaderboard import leaderboards  # noqa: E402

#: a short-window threshold no toy window reaches: the run fails the gate for a real reason
STRICT = 3600.0


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory, shared_model_cache: Path) -> Path:
    root = tmp_path_factory.mktemp("mixed") / "results"
    plan = [
        (1, 1, 150.0, 1.0),  # bs1: one valid run ...
        (2, 1, 150.0, STRICT),  # ... and one invalid
        (1, 2, 200.0, STRICT),  # bs2: every run invalid
        (2, 2, 200.0, STRICT),
        (1, 4, 320.0, 1.0),  # bs4: both valid
        (2, 4, 320.0, 1.0),
    ]
    energy_study(root / "mixed-study_20261201-120000", shared_model_cache, plan)
    return root


def test_invalid_runs_are_listed_as_excluded_not_dropped(mixed_root: Path) -> None:
    (study_dir,) = list(mixed_root.iterdir())
    results = {
        p.parent.name: json.loads(p.read_text()) for p in sorted(study_dir.glob("*/result.json"))
    }
    invalid_ids = sorted(i for i, r in results.items() if r["valid"] is False)
    assert len(invalid_ids) == 3
    assert all(results[i]["failed_gates"] == ["short_window"] for i in invalid_ids)

    (board,) = leaderboards(Archive([mixed_root], cache_dir=None, cache=False))
    points = {p["batch_size"]: p for p in board["points"]}
    assert sorted(points) == [1, 4]  # bs2 has no valid run: no point
    # bs1's point stands on its valid run only, and names it
    bs1 = points[1]
    (valid_bs1,) = [
        i for i, r in results.items() if r["config_hash"] == bs1["config_hash"] and r["valid"]
    ]
    assert bs1["run_ids"] == [valid_bs1] and len(bs1["run_dirs"]) == 1
    assert bs1["energy_per_output_token_j_mean"] == pytest.approx(
        results[valid_bs1]["energy_per_output_token_j"]
    )
    assert list(bs1["invalid_runs"].values()) == [["short_window"]]
    assert points[4]["invalid_runs"] == {} and len(points[4]["run_ids"]) == 2

    excluded = {e["config_hash"]: e for e in board["excluded"]}
    assert len(excluded) == 2
    partial = excluded[bs1["config_hash"]]
    assert not partial["whole_config"] and partial["run_ids"] == list(bs1["invalid_runs"])
    assert "1 of 2 runs invalid" in partial["reason"] and "short_window" in partial["reason"]
    (bs2_hash,) = set(excluded) - {bs1["config_hash"]}
    whole = excluded[bs2_hash]
    assert whole["whole_config"] and len(whole["run_ids"]) == 2
    assert "every run invalid" in whole["reason"] and "short_window" in whole["reason"]
    assert sorted(partial["run_ids"] + whole["run_ids"]) == invalid_ids
    # the fronts are drawn from valid points only
    for front in (board["throughput_front"], board["latency_front"]):
        assert all(not key.endswith(bs2_hash) for key in front)
