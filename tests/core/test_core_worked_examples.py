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
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.harness.result import build_result
from llenergymeasure.harness.stats import coefficient_of_variation, latency_stats_ms, percentile
from llenergymeasure.results.models import ExperimentResult, LoadRecord, WarmupRecord

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
    with pytest.raises(ValueError, match="no values"):
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


def _build(energy: EnergyMeasurement, tokens: list[int]) -> ExperimentResult:
    config = ExperimentConfig(model="synthetic/tiny-llama", n=len(tokens))
    requests = [
        RequestRecord(input_tokens=8, output_tokens=t, latency_s=0.1 * (k + 1), ttft_s=0.01)
        for k, t in enumerate(tokens)
    ]
    return build_result(
        request=HarnessRequest(config=config, settings=HarnessSettings(run_id="worked")),
        snapshot=EnvironmentSnapshot(),
        started_at="2026-01-01T00:00:00+00:00",
        resolved=SimpleNamespace(path="/models/tiny", weights="random"),
        load_info=LoadInfo(parameters=1000, weights="random"),
        load=LoadRecord(duration_s=1.0),
        warmup=WarmupRecord(mode="fixed", runs=1),
        baseline=BaselineRecord(idle_power_w={0: IDLE_W}),
        energy=energy,
        cpu_energy=CpuEnergy(),
        co2=CarbonEstimate(),
        out=GenerationOutput(requests=requests, duration_s=WINDOW_S),
        prompts=[Prompt(token_ids=[1] * 8, max_new_tokens=t) for t in tokens],
        duration_s=WINDOW_S,
        peak_bytes=3 * 2**20,
        timeseries_file=None,
        import_s=0.5,
    )


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
