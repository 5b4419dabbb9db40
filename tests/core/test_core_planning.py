"""The study protocol record and the duration estimate, by hand."""

from __future__ import annotations

from llenergymeasure import StudyConfig
from llenergymeasure.study.planning import (
    Gaps,
    estimate_duration_s,
    measurement_protocol,
    plan_study,
)


def _study(order: str, **execution: object) -> StudyConfig:
    return StudyConfig(
        name="p",
        base={"model": "m"},
        sweep={"batch_size": [1, 2]},
        execution={"n_cycles": 2, "cycle_order": order, **execution},
    )


def test_measurement_protocol_records_what_was_used() -> None:
    gaps = Gaps(5.0, "study:execution.config_gap_seconds", 50.0, "default")
    p = measurement_protocol(_study("shuffled", shuffle_seed=7), gaps, 3)
    assert p == {
        "n_cycles": 3,
        "cycle_order": "shuffled",
        "shuffle_seed": 7,
        "vary_prompt_seed": p["vary_prompt_seed"],
        "config_gap_seconds": 5.0,
        "config_gap_source": "study:execution.config_gap_seconds",
        "cycle_gap_seconds": 50.0,
        "cycle_gap_source": "default",
        "concurrent_runs": 1,  # one run at a time unless execution.concurrent_runs says more
    }
    # a seed means nothing without the shuffled order: not recorded then
    assert (
        measurement_protocol(_study("interleaved", shuffle_seed=7), gaps, 2)["shuffle_seed"] is None
    )


def test_duration_estimate_adds_gaps_and_runs() -> None:
    plan = plan_study(_study("interleaved"), Gaps(5.0, "x", 50.0, "y"))
    # gaps before the 4 runs: none, config 5, cycle 50, config 5 = 60 s
    assert estimate_duration_s(plan) == (60.0, 60.0)
    assert estimate_duration_s(plan, per_run_s=10.0) == (60.0, 100.0)
    assert estimate_duration_s([], per_run_s=10.0) == (0.0, 0.0)
