from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llenergymeasure import StudyConfig
from llenergymeasure.config.user import load_user_config
from llenergymeasure.results.stats import describe, t_quantile_975
from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore
from llenergymeasure.study.planning import Gaps, order_pairs, plan_study, resolve_gaps
from tests.helpers import write


def test_sequential_interleaved_shuffled_orders() -> None:
    assert order_pairs(2, 2, "sequential", None) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert order_pairs(2, 2, "interleaved", None) == [(0, 1), (1, 1), (0, 2), (1, 2)]
    a = order_pairs(5, 3, "shuffled", 7)
    assert a == order_pairs(5, 3, "shuffled", 7)  # same seed, same order
    assert a != order_pairs(5, 3, "shuffled", 8)
    for cycle in (1, 2, 3):  # every config exactly once per cycle
        assert sorted(c for c, y in a if y == cycle) == [0, 1, 2, 3, 4]
    assert [y for _, y in a] == sorted(y for _, y in a)  # cycles stay in order
    with pytest.raises(ValueError, match="accepted: sequential"):
        order_pairs(1, 1, "random", None)


def _study(order: str = "interleaved", **execution: object) -> StudyConfig:
    return StudyConfig(
        name="s",
        base={"model": "m"},
        sweep={"batch_size": [1, 2]},
        execution={"n_cycles": 2, "cycle_order": order, **execution},
    )


def test_gaps_before_each_run() -> None:
    gaps = Gaps(5.0, "x", 50.0, "y")
    inter = plan_study(_study("interleaved"), gaps)
    assert [(r.gap_kind, r.gap_before_s) for r in inter] == [
        ("none", 0),
        ("config", 5),
        ("cycle", 50),
        ("config", 5),
    ]
    seq = plan_study(_study("sequential"), gaps)
    assert [(r.gap_kind, r.gap_before_s) for r in seq] == [
        ("none", 0),
        ("cycle", 50),
        ("config", 5),
        ("cycle", 50),
    ]
    assert [r.run_id[:6] for r in seq] == ["001_c1", "002_c2", "003_c1", "004_c2"]
    assert plan_study(_study(), gaps, n_cycles=3)[-1].cycle == 3  # --cycles overrides


def test_gap_sources(tmp_path: Path) -> None:
    no_user = load_user_config(environ={"XDG_CONFIG_HOME": str(tmp_path / "none")})
    g = resolve_gaps(_study(), no_user)
    assert (g.config_gap_s, g.config_gap_source, g.cycle_gap_s) == (60.0, "default", 300.0)
    uc = load_user_config(
        write(tmp_path / "c.yaml", "execution: {config_gap_seconds: 7, cycle_gap_seconds: 70}\n")
    )
    g = resolve_gaps(_study(), uc)
    assert (g.config_gap_s, g.config_gap_source) == (7, "user_config:execution.config_gap_seconds")
    g = resolve_gaps(_study(config_gap_seconds=3), uc)
    assert (g.config_gap_s, g.config_gap_source, g.cycle_gap_s) == (
        3,
        "study:execution.config_gap_seconds",
        70,
    )
    g = resolve_gaps(_study(config_gap_seconds=3), uc, no_gaps=True)
    assert (g.config_gap_s, g.cycle_gap_s, g.config_gap_source) == (0, 0, "--no-gaps")


def test_manifest_transitions_are_persisted_atomically(tmp_path: Path) -> None:
    m = Manifest(
        study_name="s",
        study_design_hash="h",
        n_cycles=1,
        runs=[
            ManifestRun(
                run_id="001", index=1, config_hash="c", config_index=0, cycle=1, backend="pytorch"
            )
        ],
    )
    store = ManifestStore(tmp_path, m)
    store.save()
    store.transition("001", "running", run_dir="001")
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["runs"][0]["status"] == "running" and on_disk["runs"][0]["attempts"] == 1
    store.transition("001", "failed", message="boom", phase="load")
    store.transition("001", "running", run_dir="001_a2")
    store.transition("001", "completed")
    again = ManifestStore.load(tmp_path).get("001")
    assert again.status == "completed" and again.attempts == 2 and again.run_dir == "001_a2"
    assert [h["status"] for h in again.history] == ["running", "failed", "running", "completed"]
    assert not list(tmp_path.glob("*.tmp"))


def test_t_quantiles_and_describe_against_hand_values() -> None:
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile_975(4) == pytest.approx(2.7764, abs=1e-4)
    assert t_quantile_975(60) == pytest.approx(2.0003, abs=1e-3)
    assert t_quantile_975(1000) == pytest.approx(1.9623, abs=1e-3)
    s = describe([10.0, 12.0, 14.0])
    # mean 12, sample sd 2, half width = 4.302653 * 2 / sqrt(3) = 4.968275
    assert s.mean == 12.0 and s.std == pytest.approx(2.0)
    assert s.ci95_half_width == pytest.approx(4.302653 * 2 / math.sqrt(3), rel=1e-6)
    assert (s.ci95_low, s.ci95_high) == pytest.approx((12 - 4.968275, 12 + 4.968275), rel=1e-6)
    assert s.cv == pytest.approx(2 / 12)
    one = describe([5.0])
    assert one.n == 1 and one.mean == 5.0 and one.std is None and one.ci95_low is None
    assert describe([]).n == 0
