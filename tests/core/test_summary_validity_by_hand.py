"""A config's summary leaves runs that failed a validity gate out of its statistics and says which
ones and why; a config without failures counts none. Hand-computed means."""

from __future__ import annotations

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.results.models import (
    ExperimentResult,
    RunFailure,
)
from llenergymeasure.results.stats import invalid_warnings, summarise, t_quantile_975
from tests.builders import make_result


def _result(
    config: ExperimentConfig, run_id: str, j_per_token: float, failed: list[str] | None = None
) -> ExperimentResult:
    return make_result(
        config,
        experiment_id=run_id,
        energy_per_output_token_j=j_per_token,
        valid=not failed,
        failed_gates=failed or [],
    )


def test_invalid_runs_are_left_out_and_named_with_their_gates() -> None:
    a = ExperimentConfig(model="m", batch_size=1)
    b = ExperimentConfig(model="m", batch_size=2)
    runs = [
        _result(a, "r1", 1.0),
        _result(a, "r2", 9.0, ["short_window", "thermal_drift"]),
        _result(b, "r3", 4.0),
        _result(a, "r4", 3.0),
        _result(a, "r5", 50.0, ["power_capped"]),
    ]
    sa, sb = summarise(
        runs, [RunFailure(run_id="r6", config_hash=a.config_hash, cycle=3, message="x")]
    )
    assert (sa.n_completed, sa.n_invalid, sa.n_failed) == (4, 2, 1)
    assert sa.run_ids == ["r1", "r2", "r4", "r5"] and sa.invalid_run_ids == ["r2", "r5"]
    # only the valid runs r1 and r4: mean (1 + 3) / 2 = 2
    e = sa.metrics["energy_per_output_token_j"]
    assert e.n == 2 and e.values == [1.0, 3.0] and e.mean == pytest.approx(2.0)
    [w] = [w for w in sa.warnings if w.code == "invalid_runs"]
    assert w.message == (
        "2 run(s) failed a validity gate and are left out of the statistics: "
        "r2 (short_window, thermal_drift); r5 (power_capped)"
    )
    assert w.details == {"runs": {"r2": ["short_window", "thermal_drift"], "r5": ["power_capped"]}}
    # config b: nothing invalid, nothing failed
    assert (sb.n_completed, sb.n_invalid, sb.n_failed, sb.invalid_run_ids) == (1, 0, 0, [])
    assert not [w for w in sb.warnings if w.code == "invalid_runs"]


def test_no_invalid_run_no_warning() -> None:
    assert invalid_warnings([]) == []


def test_the_table_is_used_up_to_30_degrees_of_freedom() -> None:
    # the exact table value, not the expansion (2.0422705 at 30, off by 2e-6)
    assert t_quantile_975(30) == 2.042272456
    assert t_quantile_975(29) == 2.045229642
