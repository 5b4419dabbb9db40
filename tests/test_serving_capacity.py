"""SLO capacity of a rate sweep (issue 25 item 2, DistServe's goodput): the highest rate at which
>= 90 % of requests met the SLO, from configs that differ only in load.rate_rps; valid runs only."""

from __future__ import annotations

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.results.serving_capacity import slo_capacity, with_slo_capacity
from llenergymeasure.results.serving_models import ServingRecord, ServingWindow
from llenergymeasure.results.stats import summarise
from tests.report.report_builders import synthetic_result


def _run(
    rate: float, attainment: float, cycle: int = 1, valid: bool = True, **cfg: object
) -> ExperimentResult:
    config = ExperimentConfig(
        model="synthetic/tiny-llama",
        backend="vllm",
        name=f"rate{rate:g}",
        workload="serving",
        load={"rate_rps": rate, "n_requests": 10},
        slo={"ttft_ms": 500},
        **cfg,  # type: ignore[arg-type]
    )
    window = ServingWindow(
        start_s=0.0,
        end_s=10.0,
        duration_s=10.0,
        n_requests=10,
        output_tokens=100,
        requests_per_s=rate,
        output_tokens_per_s=10 * rate,
        slo_attainment=attainment,
    )
    serving = ServingRecord(
        mode="open",
        load=f"poisson@{rate:g}rps",
        rate_rps=rate,
        n_requests=10,
        timing_source="test",
        steady_rule="test",
        full=window,
    )
    base = synthetic_result(config, f"r{rate:g}_c{cycle}_{config.short_hash}", cycle)
    return base.model_copy(update={"serving": serving, "valid": valid})


def test_capacity_is_the_highest_rate_below_which_every_rate_meets_the_target() -> None:
    runs = [
        _run(2, 1.0),
        _run(4, 0.95),
        _run(4, 0.91, cycle=2),  # mean 0.93 >= 0.9
        _run(8, 0.7),
        _run(16, 0.92),  # a lucky high rate above a failing one does not count
        _run(8, 0.99, cycle=2, valid=False),  # invalid: left out (8 stays at 0.7)
    ]
    cap = slo_capacity(runs)
    (record,) = {id(c): c for c in cap.values()}.values()
    assert record.rates_rps == [2.0, 4.0, 8.0, 16.0]
    assert record.attainment[1] is not None and abs(record.attainment[1] - 0.93) < 1e-9
    assert record.attainment[2] == 0.7 and record.n_runs == [1, 2, 1, 1]
    assert record.max_rate_rps == 4.0 and "between the two" in record.note
    # the summaries carry it, one per config of the sweep
    summaries = with_slo_capacity(summarise(runs), runs)
    assert {s.slo_capacity.max_rate_rps for s in summaries if s.slo_capacity} == {4.0}
    assert all(s.slo_capacity is not None for s in summaries)


def test_open_ended_sweeps_and_unrelated_configs() -> None:
    cap = slo_capacity([_run(1, 0.95), _run(2, 0.9)])
    (record,) = {id(c): c for c in cap.values()}.values()
    assert record.max_rate_rps == 2.0 and "at least 2 req/s" in record.note
    cap = slo_capacity([_run(1, 0.5), _run(2, 0.95)])
    (record,) = {id(c): c for c in cap.values()}.values()
    assert record.max_rate_rps is None and "sweep lower rates" in record.note
    # configs that differ in more than the rate are separate sweeps of one rate each: no figure
    assert slo_capacity([_run(1, 0.95), _run(2, 0.95, seed=7)]) == {}
