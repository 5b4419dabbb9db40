"""Where each gap comes from (study > user config > default, --no-gaps) for both gaps with their
source labels, and the shuffled order: reproducible without a seed (seed 0), only cycles 1..n, and
the study's seed reaching the plan."""

from __future__ import annotations

from pathlib import Path

from llenergymeasure import StudyConfig
from llenergymeasure.config.user import DEFAULT_CONFIG_GAP_S, DEFAULT_CYCLE_GAP_S, load_user_config
from llenergymeasure.study.planning import Gaps, order_pairs, plan_study, resolve_gaps
from tests.helpers import write


def _study(**execution: object) -> StudyConfig:
    return StudyConfig(
        name="s",
        base={"model": "m"},
        sweep={"batch_size": [1, 2, 3, 4, 5, 6]},
        execution={"n_cycles": 3, **execution},
    )


def test_no_gaps_zeroes_both_and_says_so() -> None:
    assert resolve_gaps(_study(config_gap_seconds=3, cycle_gap_seconds=30), None, True) == Gaps(
        0.0, "--no-gaps", 0.0, "--no-gaps"
    )


def test_without_a_user_config_the_defaults_are_used_and_labelled() -> None:
    assert resolve_gaps(_study(), None) == Gaps(
        DEFAULT_CONFIG_GAP_S, "default", DEFAULT_CYCLE_GAP_S, "default"
    )


def test_each_gap_takes_the_study_then_the_user_config(tmp_path: Path) -> None:
    uc = load_user_config(
        write(tmp_path / "c.yaml", "execution: {config_gap_seconds: 7, cycle_gap_seconds: 70}\n")
    )
    assert resolve_gaps(_study(), uc) == Gaps(
        7, "user_config:execution.config_gap_seconds", 70, "user_config:execution.cycle_gap_seconds"
    )
    assert resolve_gaps(_study(cycle_gap_seconds=45), uc) == Gaps(
        7, "user_config:execution.config_gap_seconds", 45, "study:execution.cycle_gap_seconds"
    )
    assert resolve_gaps(_study(config_gap_seconds=2, cycle_gap_seconds=20), uc) == Gaps(
        2, "study:execution.config_gap_seconds", 20, "study:execution.cycle_gap_seconds"
    )


def test_shuffled_order_without_a_seed_is_seed_zero_and_stays_in_cycles_1_to_n() -> None:
    unseeded = order_pairs(6, 3, "shuffled", None)
    assert unseeded == order_pairs(6, 3, "shuffled", 0)  # reproducible: the same every time
    assert unseeded != order_pairs(6, 3, "shuffled", 1)
    assert [y for _, y in unseeded] == [1] * 6 + [2] * 6 + [3] * 6
    for y in (1, 2, 3):
        assert sorted(c for c, cy in unseeded if cy == y) == [0, 1, 2, 3, 4, 5]


def test_the_studys_shuffle_seed_reaches_the_plan() -> None:
    gaps = Gaps(0.0, "x", 0.0, "y")
    plan = plan_study(_study(cycle_order="shuffled", shuffle_seed=11), gaps)
    assert [(r.config_index, r.cycle) for r in plan] == order_pairs(6, 3, "shuffled", 11)
    assert order_pairs(6, 3, "shuffled", 11) != order_pairs(6, 3, "shuffled", 0)


def test_cycles_given_to_the_runner_override_the_studys(tmp_path: Path) -> None:
    from llenergymeasure.config.user import UserConfig
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    options = StudyOptions(results_dir=tmp_path, n_cycles=2, no_gaps=True)
    runner = StudyRunner(_study(), options, user_config=UserConfig())
    plan = runner.plan()
    assert len(plan) == 6 * 2 and max(r.cycle for r in plan) == 2  # the study says 3
