"""Serving mode through the whole harness on the CPU: transformers' continuous batching on
synthetic/tiny-llama, energy from the fake NVML (tests/fakes/nvml.py) so that per-request energy
is attributed from a real power time series written by the real meter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig, ExperimentResult
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from tests.helpers import tiny_experiment
from tests.test_harness import IdleThenLoad


def _request(cache: Path, load: dict, **overrides: object) -> HarnessRequest:
    data = tiny_experiment(
        workload="serving", load=load, slo={"ttft_ms": 60_000, "itl_ms": 60_000}, **overrides
    )
    return HarnessRequest(
        config=ExperimentConfig.from_dict(data),
        settings=HarnessSettings(energy_backend="auto", model_cache_dir=str(cache), run_id="s1"),
    )


def _fake_meter_factory(out: Path, trace: IdleThenLoad):
    from llenergymeasure.energy import select_meter
    from tests.fakes.nvml import FakeGpu, FakeNvml

    fake = FakeNvml([FakeGpu(trace=trace, gpu_util_pct=0)])

    def factory(backend: str, devices: list[int]):
        meter = select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)
        real_start = meter.start

        def start() -> None:
            progress = json.loads((out / "progress.json").read_text())
            if progress["phase"] == "measure" and trace.load_from_s == math.inf:
                trace.load_from_s = fake.now()
            real_start()

        meter.start = start  # type: ignore[method-assign]
        return meter

    return factory


@pytest.mark.parametrize(
    "load",
    [
        {"arrival": "poisson", "rate_rps": 20, "n_requests": 8},
        {"concurrency": 3, "n_requests": 7},
    ],
    ids=["poisson", "closed-loop"],
)
def test_pytorch_serving_attributes_the_window_energy_to_requests(
    tmp_path: Path, shared_model_cache: Path, load: dict
) -> None:
    out = tmp_path / "run"
    trace = IdleThenLoad(idle_w=70.0, load_w=250.0)
    req = _request(
        shared_model_cache,
        load,
        baseline={"enabled": True, "duration_s": 0.3, "cache_ttl_s": 0},
    )
    result = run_harness(req, out, meter_factory=_fake_meter_factory(out, trace))
    assert ExperimentResult.model_validate_json((out / "result.json").read_text()) == result
    s = result.serving
    assert s is not None, "a serving experiment must carry its serving record"
    n = load["n_requests"]
    assert s.n_requests == n == result.n_requests == len(s.requests)
    assert s.mode == ("closed" if "concurrency" in load else "open")
    # every request generated exactly max_output_tokens (fixed_output_length)
    assert all(r.output_tokens == 4 for r in s.requests)
    assert s.full.output_tokens == 4 * n
    # the driver never sends early; its lag is recorded for every request
    assert s.injection_lag_ms is not None and s.injection_lag_ms.n == n
    assert min(r.injection_lag_ms for r in s.requests) >= 0.0
    # per-request energy: every joule of the window goes to one request, none negative
    assert s.attribution_unavailable_reason is None
    energies = [r.energy_j for r in s.requests]
    assert all(e is not None and e >= 0 for e in energies)
    assert sum(energies) == pytest.approx(result.total_energy_j, rel=1e-6)  # type: ignore[arg-type]
    # the band: by tokens and per request; the midpoint inside it
    assert s.attribution_weighting is not None and "midpoint" in s.attribution_weighting
    for r in s.requests:
        assert r.energy_low_j is not None and r.energy_high_j is not None
        assert r.energy_low_j - 1e-9 <= r.energy_j <= r.energy_high_j + 1e-9  # type: ignore[operator]
    # the window was checked for steadiness, and the serving run gives no prefill split
    assert s.steady_checks is not None
    assert result.energy_split is not None and "overlapped" in (
        result.energy_split.unavailable_reason or ""
    )
    assert s.full.energy_j == pytest.approx(result.total_energy_j)
    assert s.full.request_energy_j is not None and s.full.request_energy_j.n == n
    assert s.full.energy_per_output_token_j == pytest.approx(result.total_energy_j / (4 * n))  # type: ignore[operator]
    # the idle share is the resident idle power over the window, split the same way
    idle_w = result.baseline.idle_power_w[0]  # type: ignore[union-attr]
    above = [r.energy_above_idle_j for r in s.requests]
    assert sum(above) == pytest.approx(  # type: ignore[arg-type]
        result.total_energy_j - idle_w * result.duration_s,  # type: ignore[operator]
        rel=0.02,
    )
    # latencies and the generous SLO: every request is good
    assert s.full.ttft_ms is not None and s.full.ttft_ms.n == n
    assert s.full.n_good_requests == n and s.full.slo_attainment == 1.0
    assert s.full.energy_per_good_request_j == pytest.approx(result.total_energy_j / n)  # type: ignore[operator]
    # the steady window lies inside the full window and counts only requests sent inside it
    if s.steady is not None:
        assert 0.0 <= s.steady.start_s < s.steady.end_s <= s.full.end_s
        assert s.steady.n_requests == sum(r.in_steady_window for r in s.requests)
        assert s.steady.goodput_rps is None or s.steady.goodput_rps <= s.steady.requests_per_s


def test_serving_config_errors_name_the_field() -> None:
    bad = [
        ({"workload": "serving"}, "needs a `load:` section"),
        ({"load": {"rate_rps": 1, "n_requests": 2}}, "workload is 'offline'"),
        ({"workload": "serving", "load": {"rate_rps": 1}}, "load.n_requests"),
        (
            {"workload": "serving", "load": {"rate_rps": 1, "concurrency": 2, "n_requests": 3}},
            "load.rate_rps",
        ),
        ({"workload": "serving", "load": {"n_requests": 3}}, "load.concurrency"),
        (
            {
                "workload": "serving",
                "backend": "tensorrt",
                "load": {"concurrency": 1, "n_requests": 1},
            },
            "not available for backend 'tensorrt'",
        ),
        (
            {"workload": "serving", "load": {"arrival": "trace", "n_requests": 3}},
            "load.trace_file",
        ),
        ({"workload": "serving", "load": {"concurrency": 1, "n_requests": 1}, "slo": {}}, "slo"),
        (
            {
                "workload": "serving",
                "load": {"concurrency": 1, "n_requests": 1, "lengths": "dataset"},
            },
            "lengths: dataset",
        ),
    ]
    from llenergymeasure.errors import ConfigError

    for overrides, needle in bad:
        data = {**tiny_experiment(), **overrides}
        with pytest.raises(ConfigError) as info:
            ExperimentConfig.from_dict(data)
        assert needle in str(info.value), (overrides, str(info.value))


def test_offline_hash_ignores_the_serving_fields() -> None:
    base = ExperimentConfig.from_dict(tiny_experiment())
    explicit = ExperimentConfig.from_dict(tiny_experiment(workload="offline"))
    assert base.config_hash == explicit.config_hash
    serving = ExperimentConfig.from_dict(
        tiny_experiment(workload="serving", load={"rate_rps": 2, "n_requests": 4})
    )
    other_rate = ExperimentConfig.from_dict(
        tiny_experiment(workload="serving", load={"rate_rps": 3, "n_requests": 4})
    )
    assert len({base.config_hash, serving.config_hash, other_rate.config_hash}) == 3
