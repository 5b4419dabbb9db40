"""Every field ``harness/result.py::build_result`` derives, against a value computed by hand in the
comment beside it: the figures above idle with their SE, J per total token, the quantisation
bound, the gates, the prefill/decode split and window records it passes through, the prompt seed,
the boundary, and the unit edges (windows shorter than a second, no output, no timings)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.config.experiment import ExperimentConfig, canonical_hash, canonical_json
from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.energy.baseline import apply_baseline
from llenergymeasure.energy.types import (
    BaselineRecord,
    CarbonEstimate,
    CpuEnergy,
    DeviceEnergy,
    EnergyMeasurement,
    ValidityWarning,
)
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.harness.records import LoadedModel, MeasuredWindow
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.harness.result import build_result
from llenergymeasure.results.models import (
    EnergySplit,
    ExperimentResult,
    LoadRecord,
    RunnerRecord,
    WarmupRecord,
    WindowRecord,
)


def _energy(
    duration_s: float = 0.5, energy_j: float = 100.0, period: float | None = 0.1, **dev: Any
) -> EnergyMeasurement:
    """One GPU (index 3) that drew ``energy_j`` over ``duration_s``; mean power = E / t."""
    return EnergyMeasurement(
        meter="nvml",
        duration_s=duration_s,
        sensor_period_s=period,
        total_energy_j=energy_j,
        devices=[
            DeviceEnergy(
                nvml_index=3,
                name="H200",
                uuid="GPU-abc",
                energy_j=energy_j,
                mean_power_w=energy_j / duration_s,
                **dev,
            )
        ],
    )


def _build(
    energy: EnergyMeasurement,
    *,
    duration_s: float = 0.5,
    tokens: tuple[int, ...] = (3, 5),
    ttfts: tuple[float | None, ...] | None = None,
    latencies: tuple[float | None, ...] | None = None,
    baseline: BaselineRecord | None = None,
    cold: BaselineRecord | None = None,
    settings: HarnessSettings | None = None,
    config: ExperimentConfig | None = None,
    load_weights: str = "pretrained",
    resolved_weights: str = "random",
    cpu: CpuEnergy | None = None,
    peak_bytes: int | None = None,
    **kw: Any,
) -> ExperimentResult:
    config = config or ExperimentConfig(model="synthetic/tiny-llama", n=len(tokens), seed=11)
    ttfts = ttfts if ttfts is not None else tuple(0.01 for _ in tokens)
    latencies = latencies if latencies is not None else tuple(0.1 for _ in tokens)
    requests = [
        RequestRecord(input_tokens=7, output_tokens=t, ttft_s=f, latency_s=lat)
        for t, f, lat in zip(tokens, ttfts, latencies, strict=True)
    ]
    return build_result(
        request=HarnessRequest(
            config=config,
            runner=RunnerRecord(kind="local", source="cli"),
            settings=settings or HarnessSettings(run_id="fields"),
        ),
        snapshot=EnvironmentSnapshot(hostname="h"),
        started_at="2026-01-01T00:00:00+00:00",
        model=LoadedModel(
            resolved=SimpleNamespace(path="/m", weights=resolved_weights),
            load_info=LoadInfo(
                parameters=None, weights=load_weights, device="cpu", cuda_devices=[3]
            ),
            load=LoadRecord(duration_s=1.0),
            import_s=0.0,
        ),
        warmup=WarmupRecord(mode="fixed", runs=1),
        baseline=baseline,
        cold_baseline=cold,
        window=MeasuredWindow(
            energy=energy,
            cpu_energy=cpu or CpuEnergy(available=False, unavailable_reason="no RAPL"),
            out=GenerationOutput(requests=requests, duration_s=duration_s),
            prompts=[Prompt(token_ids=[1] * 7, max_new_tokens=t) for t in tokens],
            duration_s=duration_s,
            peak_bytes=peak_bytes,
            timeseries_file=None,
            record=kw.pop("window", None),
            edges=kw.pop("edges", None),
            split=kw.pop("split", None),
        ),
        co2=CarbonEstimate(co2_g=None),
        **kw,
    )


def test_rates_and_mean_power_over_a_window_shorter_than_a_second() -> None:
    # 100 J over 0.5 s; requests of 3 and 5 output tokens and 7 input tokens each
    r = _build(_energy(), thresholds=ValiditySettings(min_window_s=0.25))
    assert r.mean_power_w == pytest.approx(200.0)  # 100 J / 0.5 s
    assert r.output_tokens_per_s == pytest.approx(16.0)  # 8 tokens / 0.5 s
    assert r.requests_per_s == pytest.approx(4.0)  # 2 requests / 0.5 s
    assert r.energy_per_total_token_j == pytest.approx(100.0 / 22)  # 14 input + 8 output
    assert r.energy_per_output_token_j == pytest.approx(12.5)  # 100 / 8
    assert r.energy_per_request_j == pytest.approx(50.0)  # 100 / 2


def test_a_zero_length_window_gives_zero_rates_and_no_mean_power() -> None:
    r = _build(_energy(duration_s=0.5), duration_s=0.0)
    assert r.output_tokens_per_s == 0.0 and r.requests_per_s == 0.0
    assert r.mean_power_w is None
    assert r.energy_per_output_token_j == pytest.approx(12.5)  # energy still counts per token


def test_energy_above_idle_and_its_se_per_output_token_and_request() -> None:
    # idle 80 W +- SE 4 W over 0.5 s: above idle 100 - 40 = 60 J, SE 0.5 x 4 = 2 J
    base = BaselineRecord(idle_power_w={3: 80.0}, idle_power_se_w={3: 4.0}, kind="resident")
    r = _build(apply_baseline(_energy(), base), baseline=base)
    assert r.total_energy_above_idle_j == pytest.approx(60.0)
    assert r.total_energy_above_idle_se_j == pytest.approx(2.0)
    assert r.energy_per_output_token_above_idle_j == pytest.approx(7.5)  # 60 / 8 tokens
    assert r.energy_per_output_token_above_idle_se_j == pytest.approx(0.25)  # 2 / 8
    assert r.energy_per_request_above_idle_j == pytest.approx(30.0)  # 60 / 2 requests
    assert r.baseline == base and r.cold_baseline is None


def test_apply_baseline_se_is_root_sum_square_over_gpus() -> None:
    two = EnergyMeasurement(
        meter="nvml",
        duration_s=2.0,
        total_energy_j=300.0,
        devices=[
            DeviceEnergy(nvml_index=0, energy_j=200.0),
            DeviceEnergy(nvml_index=1, energy_j=100.0),
        ],
    )
    # SE per GPU: 2 s x 1.5 W = 3 J and 2 s x 2 W = 4 J; total sqrt(9 + 16) = 5 J
    base = BaselineRecord(idle_power_w={0: 50.0, 1: 20.0}, idle_power_se_w={0: 1.5, 1: 2.0})
    out = apply_baseline(two, base)
    assert [d.energy_above_idle_se_j for d in out.devices] == [
        pytest.approx(3.0),
        pytest.approx(4.0),
    ]
    assert out.total_energy_above_idle_se_j == pytest.approx(5.0)
    assert out.total_energy_above_idle_j == pytest.approx(160.0)  # (200 - 50 x 2) + (100 - 20 x 2)
    # a GPU with an idle mean but no SE recorded: SE 0 for it, the other's alone counts
    only0 = apply_baseline(two, base.model_copy(update={"idle_power_se_w": {1: 2.0}}))
    assert only0.devices[0].energy_above_idle_se_j == 0.0
    assert only0.total_energy_above_idle_se_j == pytest.approx(4.0)
    # a rejected baseline is not applied; neither is one without devices to apply it to
    rejected = base.model_copy(update={"accepted": False, "rejected_reason": "drift"})
    assert apply_baseline(two, rejected).total_energy_above_idle_j is None
    empty = EnergyMeasurement(meter="nvml", duration_s=2.0, total_energy_j=0.0)
    assert apply_baseline(empty, base).total_energy_above_idle_j is None
    assert apply_baseline(empty, base).total_energy_above_idle_se_j is None
    # a device whose raw energy is NaN (counter lost) has no above-idle figure, nor the total
    nan = two.model_copy(
        update={"devices": [DeviceEnergy(nvml_index=0, energy_j=math.nan), two.devices[1]]}
    )
    lost = apply_baseline(nan, base)
    assert lost.devices[0].energy_above_idle_j is None and lost.devices[0].idle_power_w is None
    assert lost.devices[1].energy_above_idle_j == pytest.approx(60.0)
    assert lost.total_energy_above_idle_j is None and lost.total_energy_above_idle_se_j is None


def test_quantisation_bound_from_window_edges_or_mean_power() -> None:
    # edges sampled, not aligned: 0.1 s x max(150 W, 250 W) = 25 J, relative 25 / 100 = 0.25
    r = _build(_energy(), edges={3: {"start_power_w": 150.0, "end_power_w": 250.0}})
    assert r.energy_quantisation_bound_j == pytest.approx(25.0)
    assert r.energy_quantisation_bound_rel == pytest.approx(0.25)
    assert r.window_gpu_state == {3: {"start_power_w": 150.0, "end_power_w": 250.0}}
    # no edges: the mean power (200 W) at both ends: 0.1 x 200 = 20 J; 0.2 s period: 40
    r = _build(_energy(period=0.2))
    assert r.energy_quantisation_bound_j == pytest.approx(40.0)
    assert r.energy_quantisation_bound_rel == pytest.approx(0.4)
    assert r.window_gpu_state == {}
    # no period known: no bound
    r = _build(_energy(period=None))
    assert r.energy_quantisation_bound_j is None and r.energy_quantisation_bound_rel is None
    # the meter's own bound (edges on counter updates) wins over the edges: 1.5 J
    r = _build(_energy(quantisation_bound_j=1.5), edges={3: {"start_power_w": 150.0}})
    assert r.energy_quantisation_bound_j == pytest.approx(1.5)


def test_gates_use_the_thresholds_given_and_the_defaults_otherwise() -> None:
    # a 0.5 s window fails the default 1 s minimum, and its quantisation bound (0.1 x 200 W
    # = 20 J of 100 J) the default 5 % ...
    r = _build(_energy())
    assert r.valid is False and r.failed_gates == ["short_window", "quantisation"]
    short = next(g for g in r.gates if g.name == "short_window")
    assert (short.value, short.threshold) == (0.5, 1.0)
    # ... and passes a 0.25 s one; every gate is recorded either way
    lax = ValiditySettings(min_window_s=0.25, max_quantisation_rel=0.2)
    r = _build(_energy(), thresholds=lax)
    assert r.valid is True and r.failed_gates == []
    assert [g.name for g in r.gates][:3] == ["short_window", "foreign_process", "counter_reset"]
    assert all(g.passed for g in r.gates) and len(r.gates) == 8
    # a counter reset fails its own gate as well
    r = _build(_energy(counter_resets=2), thresholds=lax)
    assert r.valid is False and r.failed_gates == ["counter_reset"]


def test_split_window_boundary_and_cold_baseline_are_recorded() -> None:
    split = EnergySplit(prefill_energy_j=30.0, decode_energy_j=70.0, prefill_share=0.3)
    window = WindowRecord(min_window_s=0.25, passes=3, pass_durations_s=[0.2, 0.15, 0.15])
    cold = BaselineRecord(
        idle_power_w={3: 60.0},
        kind="cold",
        warnings=[ValidityWarning(code="foreign_process", message="pid 9 on GPU 3")],
    )
    cpu = CpuEnergy(available=True, package_j=4.0, dram_j=1.0)
    r = _build(_energy(), split=split, window=window, cold=cold, cpu=cpu)
    assert r.energy_split == split and r.window == window and r.cold_baseline == cold
    assert r.boundary is not None
    assert r.boundary.gpu_boards == ["GPU 3 H200 GPU-abc"]
    assert (r.boundary.cpu, r.boundary.dram) == ("rapl", "rapl")
    codes = {w.code: w for w in r.warnings}
    assert codes["baseline_foreign_process"].severity == "info"
    assert codes["baseline_foreign_process"].message == "cold idle baseline: pid 9 on GPU 3"
    # no energy: no boundary
    null = EnergyMeasurement(meter="null", available=False, unavailable_reason="no GPU")
    assert _build(null).boundary is None


def test_warnings_keep_the_meters_own_then_the_harness_then_the_baselines() -> None:
    meter_w = ValidityWarning(code="sampler_gap", message="gap", details={"max_gap_s": 0.05})
    cold = BaselineRecord(
        idle_power_w={3: 60.0},
        kind="cold",
        warnings=[ValidityWarning(code="drift", message="cold drift")],
    )
    resident = BaselineRecord(
        idle_power_w={3: 70.0},
        kind="resident",
        warnings=[ValidityWarning(code="drift", message="resident drift")],
    )
    energy = _energy().model_copy(update={"warnings": [meter_w]})
    r = _build(energy, tokens=(3, 5), baseline=resident, cold=cold, latencies=(0.1, 0.1))
    assert [(w.code, w.message) for w in r.warnings] == [
        ("sampler_gap", "gap"),
        ("baseline_drift", "cold idle baseline: cold drift"),
        ("baseline_drift", "resident idle baseline: resident drift"),
    ]


def test_prompt_seed_is_the_runs_own_or_the_configs() -> None:
    assert _build(_energy()).prompt_seed == 11  # config seed
    seeded = HarnessSettings(run_id="fields", prompt_seed=13)
    assert _build(_energy(), settings=seeded).prompt_seed == 13
    zero = HarnessSettings(run_id="fields", prompt_seed=0)
    assert _build(_energy(), settings=zero).prompt_seed == 0  # 0 is a seed, not "unset"


def test_model_weights_the_backend_reports_win_over_the_resolution() -> None:
    r = _build(_energy(), load_weights="pretrained", resolved_weights="random")
    assert r.model.weights == "pretrained"
    r = _build(_energy(), load_weights="random", resolved_weights="pretrained")
    assert r.model.weights == "random"
    r = _build(_energy(), load_weights="", resolved_weights="random")
    assert r.model.weights == "random"


def test_timings_skip_requests_without_them_and_memory_is_in_mib() -> None:
    # TTFT only on the second request; latency only on the first (200 ms)
    r = _build(_energy(), ttfts=(None, 0.03), latencies=(0.2, None), peak_bytes=5 * 2**19)
    assert r.ttft_ms is not None and (r.ttft_ms.n, r.ttft_ms.mean_ms) == (1, pytest.approx(30.0))
    assert r.request_latency_ms is not None
    assert (r.request_latency_ms.n, r.request_latency_ms.mean_ms) == (1, pytest.approx(200.0))
    assert r.timing_unavailable_reason is None
    assert r.peak_memory_mb == pytest.approx(2.5)  # 5 x 512 KiB
    assert _build(_energy()).peak_memory_mb is None  # not measured: None, not 0
    assert r.ended_at is not None and r.ended_at >= r.started_at
    assert r.started_at == "2026-01-01T00:00:00+00:00" and r.duration_s == 0.5
    assert r.load == LoadRecord(duration_s=1.0)
    assert r.warmup == WarmupRecord(mode="fixed", runs=1)
    assert (r.input_tokens, r.output_tokens, r.n_requests) == (14, 8, 2)


def test_canonical_json_is_compact_sorted_and_ascii() -> None:
    # the config hash is sha256 of this exact text: any change breaks resume of existing studies
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"\\u00e9","b":1}'
    assert json.loads(canonical_json({"b": 1, "a": "é"})) == {"a": "é", "b": 1}
    # sha256 of the 15 bytes {"a":"\u00e9"} (computed once with hashlib and pinned)
    assert canonical_hash({"a": "é"}) == (
        "57e512a1ff02f75e939e93d2196b8d29ad3721b70ce25a601402d26410f453a2"
    )
