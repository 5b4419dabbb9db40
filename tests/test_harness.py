"""The real harness on the CPU with synthetic/tiny-llama (no GPU: the null meter, or a fake NVML)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig, ExperimentResult
from llenergymeasure.errors import ExperimentError
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from tests.helpers import tiny_experiment, write


class IdleThenLoad:
    """A fake GPU's power: ``idle_w`` until ``load_from_s``, then ``load_w`` (exact integral)."""

    def __init__(self, idle_w: float, load_w: float) -> None:
        self.idle_w, self.load_w = idle_w, load_w
        self.load_from_s = math.inf

    def power_w(self, t: float) -> float:
        return self.load_w if t >= self.load_from_s else self.idle_w

    def energy_j(self, t: float) -> float:
        t = max(t, 0.0)
        idle_s = min(t, self.load_from_s)
        return self.idle_w * idle_s + self.load_w * max(t - self.load_from_s, 0.0)


def _request(cache: Path, **overrides: object) -> HarnessRequest:
    return HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment(**overrides)),
        settings=HarnessSettings(energy_backend="auto", model_cache_dir=str(cache), run_id="t1"),
    )


def test_cpu_run_fills_every_field_or_says_why(tmp_path: Path, shared_model_cache: Path) -> None:
    out = tmp_path / "run"
    result = run_harness(_request(shared_model_cache, n=5, batch_size=2), out)
    on_disk = ExperimentResult.model_validate_json((out / "result.json").read_text())
    assert on_disk == result
    # workload: 5 prompts of exactly 8 tokens, exactly 4 new tokens each (padding never counted)
    assert (result.n_requests, result.input_tokens, result.output_tokens) == (5, 40, 20)
    assert result.duration_s > 0 and result.output_tokens_per_s == pytest.approx(
        20 / result.duration_s
    )
    assert (
        result.model.weights == "random" and result.model.parameters and result.model.parameters > 0
    )
    assert result.flops.flops == pytest.approx(2 * result.model.parameters * 60)
    assert result.load.duration_s > 0
    assert result.warmup.runs == 1 and len(result.warmup.latencies_s) == 1
    assert result.ttft_ms is not None and result.ttft_ms.n == 5
    assert result.itl_ms is not None and result.itl_ms.n == 5 * 3
    assert result.timing_source
    codes = {w.code for w in result.warnings}
    if result.model.cuda_devices:  # a GPU host: the meter measured the devices the model used
        assert result.energy.available and result.energy.meter in ("nvml", "zeus")
        assert result.total_energy_j is not None and result.total_energy_j > 0
        assert result.energy_per_output_token_j == pytest.approx(result.total_energy_j / 20)
        assert "energy_unavailable" not in codes
    else:  # the CPU: energy is null with the reason, and a warning says so
        assert result.energy.meter == "null" and not result.energy.available
        assert result.energy.unavailable_reason == "the experiment uses no GPU"
        assert result.total_energy_j is None and result.energy_per_output_token_j is None
        assert "energy_unavailable" in codes
    assert result.co2.estimate is True
    assert result.co2.co2_g is None or result.co2.co2_g >= 0
    assert result.environment.python_version and result.environment.packages.get("torch")
    assert result.config_hash == result.config.config_hash
    assert result.experiment_id == "t1"
    progress = json.loads((out / "progress.json").read_text())
    assert progress["phase"] == "done"


def test_fixed_output_length_and_padding_with_ragged_jsonl(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    lines = [
        "short",
        "a much longer prompt with many more words in it than the first",
        "mid sized prompt",
    ]
    data = write(tmp_path / "p.jsonl", "\n".join(json.dumps({"prompt": t}) for t in lines) + "\n")
    result = run_harness(
        _request(
            shared_model_cache,
            n=3,
            batch_size=3,
            dataset={"source": str(data)},
            max_output_tokens=5,
        ),
        tmp_path / "run",
    )
    assert result.output_tokens == 15 and result.n_requests == 3
    # input tokens are the tokenizer's counts of each prompt, never the padded batch width
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(result.model.path)
    expected = sum(len(tok(t)["input_ids"]) for t in lines)
    assert result.input_tokens == expected


def test_failing_phase_writes_error_json(tmp_path: Path, shared_model_cache: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(ExperimentError) as exc:
        run_harness(
            _request(shared_model_cache, dataset={"source": str(tmp_path / "missing.jsonl")}), out
        )
    assert exc.value.phase == "prompts"
    err = json.loads((out / "error.json").read_text())
    assert (
        err["phase"] == "prompts"
        and "missing.jsonl" in err["message"]
        and "Traceback" in err["traceback"]
    )
    assert not (out / "result.json").exists()


def test_load_failure_names_load_phase(tmp_path: Path, shared_model_cache: Path) -> None:
    bad_model = tmp_path / "not-a-model"
    bad_model.mkdir()
    out = tmp_path / "run"
    with pytest.raises(ExperimentError):
        run_harness(_request(shared_model_cache, model=str(bad_model)), out)
    err = json.loads((out / "error.json").read_text())
    assert err["phase"] == "load"


def test_energy_path_through_the_harness_with_a_fake_nvml(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """The whole energy path (load window, baseline, measured window, derived figures, time series)
    driven by a fake NVML whose GPU idles at 70 W until the measured window opens and then draws
    250 W, so the baseline-adjusted figures are far from zero: 180 W x the window."""
    from llenergymeasure.energy import select_meter
    from tests.fakes.nvml import FakeGpu, FakeNvml

    trace = IdleThenLoad(idle_w=70.0, load_w=250.0)
    fake = FakeNvml([FakeGpu(trace=trace, gpu_util_pct=0)])  # idle: no kernel running

    def factory(backend: str, devices: list[int]):  # the CPU run uses no GPU; measure fake GPU 0
        meter = select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)
        real_start = meter.start

        def start() -> None:  # the GPU gets busy when the measured window opens
            progress = json.loads((out / "progress.json").read_text())
            if progress["phase"] == "measure" and trace.load_from_s == math.inf:
                trace.load_from_s = fake.now()
            real_start()

        meter.start = start  # type: ignore[method-assign]
        return meter

    out = tmp_path / "run"
    req = _request(
        shared_model_cache, n=4, baseline={"enabled": True, "duration_s": 0.3, "cache_ttl_s": 0}
    )
    result = run_harness(req, out, meter_factory=factory)
    e = result.energy
    assert e.available and e.meter == "nvml" and len(e.devices) == 1
    assert e.devices[0].method == "counter"
    assert trace.load_from_s < math.inf  # the measured window opened in the measure phase
    assert result.total_energy_j == pytest.approx(250.0 * e.duration_s, rel=0.05)
    assert result.baseline is not None and result.baseline.idle_power_w[0] == pytest.approx(
        70.0, rel=0.02
    )
    idle_w = result.baseline.idle_power_w[0]
    adjusted = result.total_energy_adjusted_j
    assert adjusted == pytest.approx(result.total_energy_j - idle_w * e.duration_s)
    assert adjusted == pytest.approx(180.0 * e.duration_s, rel=0.07)
    # 4 requests of 4 new tokens: 16 output tokens
    assert result.energy_per_output_token_j == pytest.approx(result.total_energy_j / 16)
    assert result.energy_per_output_token_adjusted_j == pytest.approx(adjusted / 16)
    assert result.energy_per_request_j == pytest.approx(result.total_energy_j / 4)
    assert result.energy_per_request_adjusted_j == pytest.approx(adjusted / 4)
    assert result.load.energy_j is not None and result.load.energy_j > 0
    # the resident baseline was measured now (cache_ttl_s 0): one re-warm batch (warmup.runs 1)
    # from the 70 W idle, metered apart from the window
    rw = result.rewarm
    assert rw is not None and rw.batches == 1 and len(rw.latencies_s) == 1
    assert rw.before_power_w[0] == pytest.approx(70.0, rel=0.02)
    assert rw.energy_j is not None and rw.energy_j > 0
    # mean power is over the host's window (synchronised edges), the counter's energy over the
    # meter's slightly longer one: 250 W x (meter s / host s), whatever the machine's speed (a
    # window of 0.1 s after re-warm made the meter's start/stop a 9 % share of it)
    assert result.mean_power_w == pytest.approx(result.total_energy_j / result.duration_s)
    assert result.mean_power_w == pytest.approx(250.0 * e.duration_s / result.duration_s, rel=0.05)
    assert result.timeseries_file == "timeseries.csv" and (out / "timeseries.csv").exists()
    # short_window exactly when the window is under 10 sensor periods (10 x 0.1 s)
    assert ("short_window" in {w.code for w in result.warnings}) == (e.duration_s < 1.0)
