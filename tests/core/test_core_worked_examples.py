"""Worked examples for the figures a paper quotes: every expected value is computed by hand in the
comment beside it, so a one-line fault in the arithmetic (a reversed interpolation, a population
variance, a wrong denominator) changes a number these tests pin."""

from __future__ import annotations

import math
import statistics
from types import SimpleNamespace

import pytest

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.baseline import apply_baseline
from llenergymeasure.energy.types import (
    BaselineRecord,
    CarbonEstimate,
    CpuEnergy,
    DeviceEnergy,
    EnergyMeasurement,
)
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.harness.records import LoadedModel, MeasuredWindow
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.harness.result import build_result
from llenergymeasure.harness.stats import coefficient_of_variation, latency_stats_ms, percentile
from llenergymeasure.results.models import ExperimentResult, LoadRecord, RunnerRecord, WarmupRecord

# -- percentiles (harness/stats.py) ------------------------------------------------------------


def test_percentile_interpolates_from_the_lower_neighbour() -> None:
    v = [10.0, 20.0, 40.0, 80.0, 160.0]
    # position = (n - 1) * q / 100 = 4q/100; value = v[lo] + (v[hi] - v[lo]) * (pos - lo)
    assert percentile(v, 0) == 10.0
    assert percentile(v, 50) == 40.0  # pos 2.0: exactly v[2]
    assert percentile(v, 90) == pytest.approx(128.0)  # pos 3.6: 80 + 80 * 0.6
    assert percentile(v, 99) == pytest.approx(156.8)  # pos 3.96: 80 + 80 * 0.96
    assert percentile(v, 100) == 160.0
    assert percentile(v, 25) == pytest.approx(20.0)  # pos 1.0
    assert percentile(v, 30) == pytest.approx(24.0)  # pos 1.2: 20 + 20 * 0.2
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)  # pos 1.5
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match=r"^percentile of no values$"):
        percentile([], 50)


def test_percentile_matches_numpy_default_method() -> None:
    np = pytest.importorskip("numpy")
    v = sorted([3.1, 0.4, 9.9, 2.2, 5.0, 7.7, 1.3])
    for q in (1, 10, 33, 50, 66.6, 90, 99):
        assert percentile(v, q) == pytest.approx(float(np.percentile(v, q)))


def test_latency_stats_are_in_milliseconds_from_unsorted_seconds() -> None:
    s = latency_stats_ms([0.160, 0.010, 0.080, 0.020, 0.040])  # given out of order, in seconds
    assert s is not None
    assert s.n == 5
    assert s.mean_ms == pytest.approx(62.0)  # (10 + 20 + 40 + 80 + 160) / 5
    assert (s.p50_ms, s.p90_ms, s.p99_ms) == pytest.approx((40.0, 128.0, 156.8))
    assert (s.min_ms, s.max_ms) == pytest.approx((10.0, 160.0))
    assert latency_stats_ms([]) is None


# -- coefficient of variation (warmup convergence) ------------------------------------------------


def test_cv_uses_the_sample_standard_deviation() -> None:
    # mean 2, sample variance ((1 + 0 + 1) / (3 - 1)) = 1, so CV = 1 / 2; the population
    # variance (2 / 3) would give 0.408
    assert coefficient_of_variation([1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert coefficient_of_variation([1.0, 2.0, 3.0]) == pytest.approx(
        statistics.stdev([1.0, 2.0, 3.0]) / 2.0
    )
    # two values 0.9 and 1.1: sample sd = sqrt(0.02) = 0.141421, mean 1.0
    assert coefficient_of_variation([0.9, 1.1]) == pytest.approx(math.sqrt(0.02))
    assert coefficient_of_variation([-1.0, -2.0, -3.0]) == pytest.approx(0.5)  # |mean|
    assert coefficient_of_variation([5.0]) is None  # fewer than two values
    assert coefficient_of_variation([]) is None
    assert coefficient_of_variation([-1.0, 1.0]) is None  # zero mean
    assert coefficient_of_variation([4.0, 4.0, 4.0]) == 0.0


# -- baseline-adjusted energy and the per-token / per-request figures ---------------------------

LOAD_W = 250.0
IDLE_W = 70.0
WINDOW_S = 2.0


def _measurement() -> EnergyMeasurement:
    raw = LOAD_W * WINDOW_S  # 500 J drawn by a GPU that idles at 70 W and draws 250 W under load
    return EnergyMeasurement(
        meter="nvml",
        duration_s=WINDOW_S,
        total_energy_j=raw,
        devices=[DeviceEnergy(nvml_index=0, energy_j=raw, mean_power_w=LOAD_W)],
    )


def test_apply_baseline_subtracts_idle_power_times_duration() -> None:
    adjusted = apply_baseline(_measurement(), BaselineRecord(idle_power_w={0: IDLE_W}))
    # 500 J - 70 W x 2 s = 360 J
    assert adjusted.total_energy_adjusted_j == pytest.approx(360.0)
    assert adjusted.devices[0].energy_adjusted_j == pytest.approx(360.0)
    assert adjusted.devices[0].idle_power_w == IDLE_W
    assert adjusted.total_energy_j == 500.0  # raw kept beside it
    unchanged = apply_baseline(_measurement(), None)
    assert unchanged.total_energy_adjusted_j is None


def test_apply_baseline_edge_cases() -> None:
    lost = BaselineRecord(available=False, unavailable_reason="idle window failed")
    assert apply_baseline(_measurement(), lost).total_energy_adjusted_j is None
    null = EnergyMeasurement(meter="null", available=False, duration_s=2.0)
    assert (
        apply_baseline(null, BaselineRecord(idle_power_w={0: IDLE_W})).total_energy_adjusted_j
        is None
    )
    two = EnergyMeasurement(
        meter="nvml",
        duration_s=2.0,
        total_energy_j=700.0,
        devices=[
            DeviceEnergy(nvml_index=0, energy_j=500.0),
            DeviceEnergy(nvml_index=1, energy_j=200.0),
        ],
    )
    # GPU 0 has no baseline value: it stays unadjusted, GPU 1 is still adjusted, no total
    out = apply_baseline(two, BaselineRecord(idle_power_w={1: 40.0}))
    assert out.devices[0].energy_adjusted_j is None and out.devices[0].idle_power_w is None
    assert out.devices[1].energy_adjusted_j == pytest.approx(120.0)  # 200 - 40 x 2
    assert out.total_energy_adjusted_j is None
    # both: 500 - 70 x 2 = 360; 200 - 120 x 2 = -40 (not clamped since schema 1.2); total 320
    both = apply_baseline(two, BaselineRecord(idle_power_w={0: 70.0, 1: 120.0}))
    assert [d.energy_adjusted_j for d in both.devices] == [pytest.approx(360.0), -40.0]
    assert both.total_energy_adjusted_j == pytest.approx(320.0)
    assert two.total_energy_adjusted_j is None  # the input is not modified


def _build(
    energy: EnergyMeasurement,
    tokens: list[int],
    *,
    ttft_s: float | None = 0.01,
    timing_reason: str | None = None,
    parameters: int | None = 1000,
    run_id: str | None = "worked",
    weights: str = "random",
) -> ExperimentResult:
    config = ExperimentConfig(model="synthetic/tiny-llama", n=len(tokens))
    requests = [
        RequestRecord(
            input_tokens=8,
            output_tokens=t,
            latency_s=0.1 * (k + 1),
            ttft_s=ttft_s,
            itl_s=[0.02, 0.04] if ttft_s is not None else [],
        )
        for k, t in enumerate(tokens)
    ]
    return build_result(
        request=HarnessRequest(
            config=config,
            runner=RunnerRecord(kind="docker", image="img:1", source="cli"),
            settings=HarnessSettings(run_id=run_id),
        ),
        snapshot=EnvironmentSnapshot(hostname="h1"),
        started_at="2026-01-01T00:00:00+00:00",
        model=LoadedModel(
            resolved=SimpleNamespace(path="/models/tiny", weights="pretrained"),
            load_info=LoadInfo(
                parameters=parameters,
                weights=weights,
                dtype="float32",
                device="cuda:0",
                cuda_devices=[0],
                extra={"engine": "x"},
            ),
            load=LoadRecord(duration_s=1.0),
            import_s=0.5,
        ),
        warmup=WarmupRecord(mode="fixed", runs=1),
        baseline=BaselineRecord(idle_power_w={0: IDLE_W}),
        window=MeasuredWindow(
            energy=energy,
            cpu_energy=CpuEnergy(available=True, package_j=12.0),
            out=GenerationOutput(
                requests=requests,
                duration_s=WINDOW_S,
                timing_source="streamer" if ttft_s is not None else None,
                timing_unavailable_reason=timing_reason,
            ),
            prompts=[Prompt(token_ids=[1] * 8, max_new_tokens=t) for t in tokens],
            duration_s=WINDOW_S,
            peak_bytes=3 * 2**20,
            timeseries_file="timeseries.csv",
        ),
        co2=CarbonEstimate(co2_g=1.5),
    )


def test_the_result_records_what_it_was_given() -> None:
    energy = apply_baseline(_measurement(), BaselineRecord(idle_power_w={0: IDLE_W}))
    r = _build(energy, tokens=[4, 4])
    assert r.experiment_id == "worked"
    assert r.runner == RunnerRecord(kind="docker", image="img:1", source="cli")
    assert r.environment.hostname == "h1"
    assert r.config_hash == r.config.config_hash
    assert (r.model.id, r.model.path, r.model.weights) == (
        "synthetic/tiny-llama",
        "/models/tiny",
        "random",
    )
    assert (r.model.parameters, r.model.dtype, r.model.device) == (1000, "float32", "cuda:0")
    assert r.model.cuda_devices == [0]
    assert r.baseline == BaselineRecord(idle_power_w={0: IDLE_W})
    assert r.cpu_energy.package_j == 12.0 and r.co2.co2_g == 1.5
    assert r.timeseries_file == "timeseries.csv"
    assert r.extra == {"engine": "x", "engine_import_s": 0.5}
    assert r.timing_source == "streamer" and r.timing_unavailable_reason is None
    assert r.ttft_ms is not None and (r.ttft_ms.n, r.ttft_ms.p50_ms) == (2, pytest.approx(10.0))
    assert r.itl_ms is not None and r.itl_ms.n == 4 and r.itl_ms.mean_ms == pytest.approx(30.0)
    assert r.flops.unavailable_reason is None
    # a backend that does not say which weights it loaded: the model resolution decides
    assert _build(energy, tokens=[4], weights="unknown").model.weights == "pretrained"
    # no run id: a fresh random one
    ids = {_build(energy, tokens=[4], run_id=None).experiment_id for _ in range(2)}
    assert len(ids) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_missing_timings_and_parameters_say_why() -> None:
    energy = apply_baseline(_measurement(), BaselineRecord(idle_power_w={0: IDLE_W}))
    r = _build(energy, tokens=[4, 4], ttft_s=None, parameters=None)
    assert r.ttft_ms is None and r.itl_ms is None
    assert r.timing_unavailable_reason == "the backend reported no per-request timings"
    assert r.flops.flops is None
    assert r.flops.unavailable_reason == "the backend did not report a parameter count"
    r = _build(energy, tokens=[4], ttft_s=None, timing_reason="engine metrics off")
    assert r.timing_unavailable_reason == "engine metrics off"  # the backend's own reason wins
    r = _build(energy, tokens=[4], timing_reason="engine metrics off")
    assert r.timing_unavailable_reason is None  # timings were there after all


def test_per_unit_figures_at_the_edges() -> None:
    energy = apply_baseline(_measurement(), BaselineRecord(idle_power_w={0: IDLE_W}))
    one = _build(energy, tokens=[1])  # one request, one token: per-unit = the total
    assert one.energy_per_output_token_j == pytest.approx(500.0)
    assert one.energy_per_request_adjusted_j == pytest.approx(360.0)
    none = _build(energy, tokens=[0])  # no output token: no per-token figure, not a division
    assert none.energy_per_output_token_j is None
    assert none.energy_per_output_token_adjusted_j is None
    assert none.energy_per_request_j == pytest.approx(500.0)


def test_adjusted_energy_per_output_token_and_per_request() -> None:
    energy = apply_baseline(_measurement(), BaselineRecord(idle_power_w={0: IDLE_W}))
    r = _build(energy, tokens=[10, 12, 14, 4])  # 4 requests, 40 output tokens
    assert r.n_requests == 4 and r.output_tokens == 40 and r.input_tokens == 32
    assert r.total_energy_j == pytest.approx(500.0)
    assert r.total_energy_adjusted_j == pytest.approx(360.0)
    assert r.energy_per_output_token_j == pytest.approx(12.5)  # 500 / 40
    assert r.energy_per_output_token_adjusted_j == pytest.approx(9.0)  # 360 / 40
    assert r.energy_per_request_j == pytest.approx(125.0)  # 500 / 4
    assert r.energy_per_request_adjusted_j == pytest.approx(90.0)  # 360 / 4
    assert r.mean_power_w == pytest.approx(250.0)  # 500 J / 2 s
    assert r.output_tokens_per_s == pytest.approx(20.0)  # 40 / 2 s
    assert r.requests_per_s == pytest.approx(2.0)
    # FLOPs estimate: 2 x parameters x (input + output tokens) = 2 x 1000 x 72
    assert r.flops.flops == pytest.approx(144_000.0)
    assert r.peak_memory_mb == pytest.approx(3.0)
    # request latencies 100, 200, 300, 400 ms: p50 at position 1.5 = 250 ms
    assert r.request_latency_ms.p50_ms == pytest.approx(250.0)


def test_no_energy_means_no_per_token_figures() -> None:
    null = EnergyMeasurement(meter="null", available=False, unavailable_reason="no GPU")
    r = _build(null, tokens=[4, 4])
    assert r.total_energy_j is None and r.energy_per_output_token_j is None
    assert r.energy_per_request_adjusted_j is None and r.mean_power_w is None
    assert "energy_unavailable" in {w.code for w in r.warnings}


# -- the harness's own validity warnings -------------------------------------------------------


def _warnings(config: ExperimentConfig, tokens: list[int], sent: int, warmup: WarmupRecord):
    from llenergymeasure.harness.result import harness_warnings

    out = GenerationOutput(
        requests=[RequestRecord(input_tokens=8, output_tokens=t) for t in tokens], duration_s=1.0
    )
    prompts = [Prompt(token_ids=[1] * 8, max_new_tokens=4) for _ in range(sent)]
    energy = EnergyMeasurement(meter="nvml", duration_s=1.0, total_energy_j=1.0)
    return {w.code: w for w in harness_warnings(config, out, prompts, warmup, energy)}


def test_harness_warnings_each_with_its_numbers() -> None:
    fixed = ExperimentConfig(model="m", warmup={"mode": "fixed", "runs": 1})
    ok = WarmupRecord(mode="fixed", runs=1)
    assert _warnings(fixed, [4, 4], 2, ok) == {}  # all as asked: no warning
    w = _warnings(fixed, [4, 3], 2, ok)  # fixed length asked: 8 tokens expected, 7 came
    assert set(w) == {"output_length_mismatch"}
    assert w["output_length_mismatch"].details == {"expected": 8, "actual": 7}
    assert "7 output tokens were generated instead of 8" in w["output_length_mismatch"].message
    w = _warnings(fixed, [4], 2, ok)  # two prompts sent, one result back
    assert w["request_count_mismatch"].message == "2 prompts were sent but 1 results came back"
    loose = ExperimentConfig(
        model="m", warmup={"mode": "fixed", "runs": 1}, decoding={"fixed_output_length": False}
    )
    assert "output_length_mismatch" not in _warnings(loose, [4, 3], 2, ok)
    none = ExperimentConfig(model="m", warmup={"mode": "fixed", "runs": 0})
    assert "first-call effects" in _warnings(none, [4], 1, ok)["no_warmup"].message
    cv = ExperimentConfig(model="m", warmup={"mode": "cv", "runs": 3, "cv_threshold": 0.05})
    assert _warnings(cv, [4], 1, WarmupRecord(mode="cv", runs=3, converged=True)) == {}
    stuck = WarmupRecord(mode="cv", runs=20, converged=False, final_cv=0.1234)
    msg = _warnings(cv, [4], 1, stuck)["warmup_not_converged"].message
    assert msg == (
        "warmup stopped at its cap (max_runs) after 20 batches and 0.0 s with per-token latency "
        "CV 0.123 above the threshold 0.05; raise warmup.max_runs / warmup.max_s, or see the "
        "window's throughput_drift and host_bound warnings"
    )
    bare = WarmupRecord(mode="cv", runs=1, converged=False)
    assert _warnings(cv, [4], 1, bare)["warmup_not_converged"].message == (
        "warmup stopped at its cap (max_runs) after 1 batches and 0.0 s without converging; raise "
        "warmup.max_runs / warmup.max_s, or see the window's throughput_drift and host_bound "
        "warnings"
    )
    assert _warnings(cv, [4], 1, bare)["warmup_not_converged"].severity == "warning"
