"""SLO search (issue 27 item 5): ``load.search`` finds the highest rate at which the SLO attainment
holds by bisection, each rate an ordinary run recorded in the manifest, fewer runs than a grid.

The engine is a fake with a known capacity: one server with a fixed service time, requests
arriving at a constant rate, computed in closed form (no clock), so every figure is exact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.config.workload import SloSearchConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.results.layout import RESULT_FILE
from llenergymeasure.results.serving_models import ServingRecord, ServingWindow
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study import runner as study_runner
from llenergymeasure.study.runner import StudyOptions, StudyRunner
from llenergymeasure.study.slo_search import Bisection, is_probe_id
from tests.report.report_builders import synthetic_result

SERVICE_S = 0.1  # one request at a time, 0.1 s each: 10 req/s sustained
N_REQUESTS = 100
TTFT_SLO_MS = 500.0
POWER_W = 100.0


def attainment_at(rate: float) -> float:
    """Share of requests meeting TTFT <= 500 ms: request i waits i * (S - 1/rate) when the
    arrivals outpace the server, and its TTFT is its wait plus S."""
    lag = max(0.0, SERVICE_S - 1.0 / rate)
    met = sum(1 for i in range(N_REQUESTS) if i * lag + SERVICE_S <= TTFT_SLO_MS / 1000 + 1e-12)
    return met / N_REQUESTS


#: 90 % attainment holds while request 89 waits at most 0.4 s: 89 (0.1 - 1/r) = 0.4
CAPACITY_RPS = 1.0 / (SERVICE_S - (TTFT_SLO_MS / 1000 - SERVICE_S) / 89)


def test_the_known_capacity() -> None:
    assert attainment_at(CAPACITY_RPS * 0.999) >= 0.9 > attainment_at(CAPACITY_RPS * 1.001)


def _search(capacity: float, **kw: Any) -> Bisection:
    b = Bisection(SloSearchConfig(**kw))
    while (rate := b.next_rate()) is not None:
        b.record(rate, rate <= capacity)
    return b


def test_bisection_brackets_the_capacity_within_the_tolerance_in_fewer_runs_than_a_grid() -> None:
    b = _search(10.47, rate_rps=(1, 32), tolerance_rps=0.25)
    assert b.stopped == "converged"
    assert b.met is not None and b.missed is not None
    assert b.met <= 10.47 < b.missed and b.missed - b.met <= 0.25
    assert b.n_runs == 9  # lo, hi, then 7 halvings of 31 down to <= 0.25; a grid: 125 runs


def test_bisection_ends_of_the_range_and_the_run_budget() -> None:
    below = _search(0.5, rate_rps=(1, 32))
    assert (below.stopped, below.n_runs, below.met) == ("below_range", 1, None)
    above = _search(100, rate_rps=(1, 32))
    assert (above.stopped, above.n_runs, above.met) == ("above_range", 2, 32)
    capped = _search(10.47, rate_rps=(1, 32), tolerance_rps=0.01, max_runs=4)
    assert (capped.stopped, capped.n_runs) == ("max_runs", 4)
    default_tol = Bisection(SloSearchConfig(rate_rps=(1, 33)))
    assert default_tol.tolerance == 2.0


def _config(**load: Any) -> dict[str, Any]:
    return {
        "model": "synthetic/tiny-llama",
        "backend": "vllm",
        "name": "search",
        "workload": "serving",
        "load": {"n_requests": N_REQUESTS, "arrival": "constant", **load},
        "slo": {"ttft_ms": TTFT_SLO_MS},
    }


def test_bad_search_input_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"load.search.rate_rps must be \[low, high\]"):
        ExperimentConfig(**_config(search={"rate_rps": [8, 2]}))
    with pytest.raises(ValueError, match=r"remove load\.rate_rps"):
        ExperimentConfig(**_config(rate_rps=4, search={"rate_rps": [1, 8]}))
    cfg = _config(search={"rate_rps": [1, 8]})
    cfg.pop("slo")
    with pytest.raises(ValueError, match="no `slo:` is given"):
        ExperimentConfig(**cfg)


def test_a_config_without_search_keeps_its_hash() -> None:
    cfg = ExperimentConfig(**_config(rate_rps=4))
    assert "search" not in cfg.hashable_dict()["load"]


class KnownCapacityExecutor:
    """Stands for the local runner: writes the result the fake engine would measure."""

    calls: ClassVar[list[float]] = []

    def run(self, request: Any, run_dir: Path, timeout_s: Any) -> RunOutcome:
        cfg = request.config
        rate = float(cfg.load.rate_rps)
        assert cfg.load.search is None
        KnownCapacityExecutor.calls.append(rate)
        attainment = attainment_at(rate)
        duration = N_REQUESTS / min(rate, 1 / SERVICE_S)
        energy = POWER_W * duration
        good = round(attainment * N_REQUESTS)
        window = ServingWindow(
            start_s=0.0,
            end_s=duration,
            duration_s=duration,
            n_requests=N_REQUESTS,
            n_good_requests=good,
            output_tokens=N_REQUESTS * 10,
            requests_per_s=N_REQUESTS / duration,
            output_tokens_per_s=N_REQUESTS * 10 / duration,
            slo_attainment=attainment,
            energy_j=energy,
            energy_per_good_request_j=energy / good if good else None,
        )
        serving = ServingRecord(
            mode="open",
            load=cfg.load.describe(),
            rate_rps=rate,
            n_requests=N_REQUESTS,
            timing_source="test",
            steady_rule="test",
            full=window,
        )
        result = synthetic_result(cfg, run_dir.name, 1).model_copy(update={"serving": serving})
        path = run_dir / RESULT_FILE
        path.write_text(result.model_dump_json())
        return RunOutcome(status="completed", run_dir=run_dir, result_path=path)


def _study(tmp_path: Path, **search: Any) -> StudyRunner:
    study = StudyConfig.from_experiment(
        ExperimentConfig(**_config(search={"rate_rps": [1, 32], **search}))
    )
    return StudyRunner(
        study, StudyOptions(results_dir=tmp_path, no_gaps=True), user_config=UserConfig()
    )


def test_study_searches_the_known_capacity_and_records_every_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(study_runner, "executor_for", lambda *a, **k: KnownCapacityExecutor())
    monkeypatch.setattr(study_runner, "DeviceLocker", lambda *a, **k: None)
    KnownCapacityExecutor.calls = []
    result = _study(tmp_path, tolerance_rps=0.25).run()
    study_dir = Path(result.study_dir)
    manifest = json.loads((study_dir / "manifest.json").read_text())
    search_id = manifest["runs"][0]["run_id"]
    probes = [r for r in manifest["runs"] if is_probe_id(r["run_id"])]
    # every rate run is in the manifest like a sweep's run, each with its own folder and config
    assert len(probes) == len(KnownCapacityExecutor.calls) == 9
    assert all(r["status"] == "completed" and r["run_dir"] for r in probes)
    assert [r["run_id"] for r in probes] == [f"{search_id}_rate{k}" for k in range(1, 10)]
    outcome = json.loads((study_dir / f"{search_id}.slo_search.json").read_text())
    assert outcome["stopped"] == "converged" and outcome["n_runs"] == 9
    assert outcome["grid_runs"] == 125
    assert outcome["max_rate_rps"] <= CAPACITY_RPS < outcome["min_missed_rate_rps"]
    assert outcome["min_missed_rate_rps"] - outcome["max_rate_rps"] <= 0.25
    # the lowest J per good request among the rates that met the SLO: above 10 req/s the run
    # lasts as long (the server is the bottleneck) and fewer requests are good, so the best is
    # the highest rate at which every request met the SLO
    met = [p for p in outcome["probes"] if p["met"]]
    best = min(met, key=lambda p: p["energy_per_good_request_j"])
    assert attainment_at(best["rate_rps"]) == 1.0 < attainment_at(outcome["max_rate_rps"]) + 0.1
    assert outcome["best_energy_rate_rps"] == best["rate_rps"]
    assert outcome["best_energy_per_good_request_j"] == best["energy_per_good_request_j"]
    assert 10 < best["rate_rps"] < outcome["max_rate_rps"]
    assert manifest["runs"][0]["status"] == "completed"
    assert f"held up to {outcome['max_rate_rps']:g} req/s" in manifest["runs"][0]["message"]
    # the study's results are the rate runs, read as one sweep by the SLO capacity
    assert len(result.runs) == 9
    capacities = {s.slo_capacity.max_rate_rps for s in result.summaries if s.slo_capacity}
    assert capacities == {outcome["max_rate_rps"]}

    # resume: the search starts again and reuses every completed rate run, measuring none
    KnownCapacityExecutor.calls = []
    resumed = StudyRunner(
        None,
        StudyOptions(no_gaps=True),
        resume_dir=study_dir,
        user_config=UserConfig(),
    ).run()
    assert KnownCapacityExecutor.calls == [] and len(resumed.runs) == 9


def test_search_refused_where_runs_are_decided_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llenergymeasure.study.slo_search import refuse_unsupported

    plan = _study(tmp_path).plan()
    with pytest.raises(ConfigError, match=r"cannot run under execution\.concurrent_runs"):
        refuse_unsupported(plan, concurrent=True, slurm=False)
    with pytest.raises(ConfigError, match="the slurm runner"):
        refuse_unsupported(plan, concurrent=False, slurm=True)
    refuse_unsupported(plan, concurrent=False, slurm=False)


def test_a_single_run_of_a_search_config_names_what_to_do() -> None:
    from llenergymeasure.harness.serving.schedule import arrival_offsets

    cfg = ExperimentConfig(**_config(search={"rate_rps": [1, 8]}))
    assert cfg.load is not None
    with pytest.raises(ConfigError, match=r"load\.search .* is a search over runs"):
        arrival_offsets(cfg.load, 0)
