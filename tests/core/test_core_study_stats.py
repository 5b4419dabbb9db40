"""Statistics across cycles (results/stats.py) with hand-computed values: what is dropped, the
sample SD, the Student-t interval, the CV, and the grouping of runs into config summaries."""

from __future__ import annotations

import math

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.results.models import (
    ExperimentResult,
    LatencyStats,
    RunFailure,
)
from llenergymeasure.results.stats import METRICS, describe, summarise, t_quantile_975
from tests.builders import make_result


def test_describe_drops_missing_values_and_keeps_the_rest() -> None:
    s = describe([1.0, float("nan"), 3.0, None])  # type: ignore[list-item]
    assert s.n == 2 and s.values == [1.0, 3.0]
    # mean 2, sample sd sqrt(2), half width 12.706205 x sqrt(2) / sqrt(2) = 12.706205
    assert s.mean == 2.0 and s.std == pytest.approx(math.sqrt(2))
    assert s.ci95_half_width == pytest.approx(12.706204736)
    assert (s.ci95_low, s.ci95_high) == pytest.approx((2 - 12.706204736, 2 + 12.706204736))
    assert s.cv == pytest.approx(math.sqrt(2) / 2)
    one = describe([4.0, float("nan")])
    assert (one.n, one.mean, one.values, one.std, one.cv) == (1, 4.0, [4.0], None, None)
    assert describe([float("nan")]).n == 0


def test_describe_cv_edges() -> None:
    assert describe([-1.0, 1.0]).cv is None  # zero mean: no CV
    s = describe([0.5, 1.5])  # mean exactly 1: CV = sd = sqrt(0.5)
    assert s.cv == pytest.approx(math.sqrt(0.5))
    neg = describe([-2.0, -4.0])  # negative mean: CV over |mean| = sqrt(2) / 3
    assert neg.cv == pytest.approx(math.sqrt(2) / 3)


def test_t_quantiles_at_the_table_edge_and_beyond() -> None:
    assert t_quantile_975(30) == pytest.approx(2.042272456)  # last table entry
    assert t_quantile_975(2) == pytest.approx(4.302652730)
    # beyond the table, the Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5, three terms)
    # pinned to 12 digits, and within 2e-6 of the exact quantiles 2.0395134464 (31),
    # 2.0210753903 (40), 2.0002978220 (60) and 1.9799304050 (120)
    exact = {31: 2.0395134464, 40: 2.0210753903, 60: 2.0002978220, 120: 1.9799304050}
    pinned = {
        31: 2.0395116989197106,
        40: 2.0210747620835976,
        60: 2.0002976984090295,
        120: 1.9799303973871998,
    }
    for df, value in pinned.items():
        assert t_quantile_975(df) == pytest.approx(value, abs=1e-12)
        assert abs(t_quantile_975(df) - exact[df]) < 2e-6
    with pytest.raises(ValueError, match=r"^degrees of freedom must be at least 1$"):
        t_quantile_975(0)
    assert t_quantile_975(1) == pytest.approx(12.706204736)


def _result(config: ExperimentConfig, run_id: str, j_per_token: float | None) -> ExperimentResult:
    return make_result(
        config,
        experiment_id=run_id,
        energy_per_output_token_j=j_per_token,
        ttft_ms=LatencyStats(
            n=1, mean_ms=7.0, p50_ms=7.0, p90_ms=7.0, p99_ms=8.0, min_ms=7.0, max_ms=8.0
        ),
    )


def test_summarise_groups_runs_by_config_in_first_seen_order() -> None:
    a = ExperimentConfig(model="m", batch_size=1)
    b = ExperimentConfig(model="m", batch_size=2, name="bs2")
    runs = [
        _result(a, "r1", 1.0),
        _result(b, "r2", 5.0),
        _result(a, "r3", 2.0),
        _result(a, "r4", None),  # energy unavailable in this run: not counted in that metric
    ]
    failures = [
        RunFailure(run_id="r5", config_hash=b.config_hash, cycle=2, message="x"),
        RunFailure(run_id="r6", config_hash=b.config_hash, cycle=3, message="y"),
        RunFailure(run_id="r7", config_hash=a.config_hash, cycle=3, message="z"),
    ]
    out = summarise(runs, failures)
    assert [s.config_hash for s in out] == [a.config_hash, b.config_hash]
    sa, sb = out
    assert (sa.n_completed, sa.n_failed, sa.run_ids) == (3, 1, ["r1", "r3", "r4"])
    assert (sb.n_completed, sb.n_failed, sb.run_ids) == (1, 2, ["r2"])
    assert (sa.label, sb.label) == ("m/pytorch/bs1", "bs2")
    assert (sa.backend, sa.model, sa.config) == ("pytorch", "m", a)
    e = sa.metrics["energy_per_output_token_j"]
    assert e.n == 2 and e.mean == pytest.approx(1.5) and e.values == [1.0, 2.0]
    assert sa.metrics["output_tokens_per_s"].n == 3
    assert sa.metrics["ttft_p99_ms"].mean == pytest.approx(8.0)
    assert sa.metrics["ttft_p50_ms"].mean == pytest.approx(7.0)
    assert sa.metrics["itl_mean_ms"].n == 0  # no ITL recorded
    assert set(sa.metrics) == set(METRICS)
    assert summarise([]) == []
