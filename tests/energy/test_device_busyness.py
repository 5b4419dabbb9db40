"""One experiment on two GPUs, one of them held but idle: per-device energy and busy-ness, and the
total (idle draw included) behind every per-token figure. Numbers worked by hand in the comments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from llenergymeasure import ExperimentConfig
from llenergymeasure.energy import NvmlMeter, resolve_devices
from llenergymeasure.energy.baseline import apply_baseline
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.sampler import busy_stats
from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml
from tests.helpers import tiny_experiment


def _two_gpus() -> list[FakeGpu]:
    busy = FakeGpu(trace=ConstantPower(250.0), gpu_util_pct=95, memory_used_mib=40_000)
    idle = FakeGpu(trace=ConstantPower(60.0), gpu_util_pct=0, memory_used_mib=512)
    return [busy, idle]


def test_two_gpus_at_different_powers_exact_totals_on_a_fake_clock() -> None:
    clock = ManualClock()
    fake = FakeNvml(_two_gpus(), clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = NvmlMeter(
        nvml,
        resolve_devices([0, 1], nvml, {}),
        sensor_period_s=0.1,
        sample_period_s=0.1,
        counter_every=1,
        clock=clock,
        background_sampling=False,
        check_processes=False,
    )
    meter.start()
    for _ in range(19):  # samples every 0.1 s, window closed at 2.0 s
        clock.advance(0.1)
        assert meter.sampler is not None
        meter.sampler.sample()
    clock.advance(0.1)
    m = meter.stop()
    busy, idle = m.devices
    assert m.duration_s == pytest.approx(2.0)
    assert busy.energy_j == pytest.approx(500.0)  # 250 W x 2 s
    assert idle.energy_j == pytest.approx(120.0)  # 60 W x 2 s: held, idle, still drawing
    assert m.total_energy_j == pytest.approx(620.0)  # the total has both
    assert (busy.mean_utilization_pct, idle.mean_utilization_pct) == (95.0, 0.0)
    assert (busy.max_memory_used_mb, idle.max_memory_used_mb) == (40_000.0, 512.0)
    assert busy.integrated_energy_j == pytest.approx(500.0)
    assert idle.integrated_energy_j == pytest.approx(120.0)
    # idle baselines of 70 W and 60 W: above idle (250-70) x 2 = 360 J and (60-60) x 2 = 0 J
    base = BaselineRecord(idle_power_w={0: 70.0, 1: 60.0}, kind="resident")
    adjusted = apply_baseline(m, base)
    assert [d.energy_above_idle_j for d in adjusted.devices] == pytest.approx(
        [360.0, 0.0], abs=1e-6
    )
    assert adjusted.total_energy_above_idle_j == pytest.approx(360.0)
    meter.close()


def test_busy_stats_skip_unread_samples() -> None:
    nan = math.nan
    util = np.array([nan, 40.0, 60.0, nan])
    memory = np.array([100.0, nan, 300.0, 200.0])
    assert busy_stats(util, memory) == (50.0, 300.0)
    assert busy_stats(np.array([nan]), np.array([])) == (None, None)


def test_the_harness_charges_the_idle_gpu_to_every_token(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """A real (CPU) run spread with device_map over gpus [0, 1], metered on two fake GPUs that
    draw 250 W (busy) and 60 W (held, idle): J/token is the total's, not the busy GPU's alone."""
    from llenergymeasure.energy import select_meter

    fake = FakeNvml(_two_gpus())
    seen_devices: list[list[int]] = []

    def factory(backend: str, devices: list[int]):  # type: ignore[no-untyped-def]
        seen_devices.append(list(devices))
        return select_meter("nvml", [0, 1], {}, nvml_module=fake, sample_period_s=0.02)

    # a window of at least 1 s (passes repeat), so that the few ms a loaded machine may take
    # between the meter's clock reading and its counter readings are a small part of it
    config = ExperimentConfig.from_dict(
        tiny_experiment(
            n=4, gpus=[0, 1], pytorch={"device_map": "auto"}, measurement={"min_window_s": 1.0}
        )
    )
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(energy_backend="nvml", model_cache_dir=str(shared_model_cache)),
    )
    result = run_harness(request, tmp_path / "run", meter_factory=factory)
    e = result.energy
    assert e.available and [d.nvml_index for d in e.devices] == [0, 1]
    busy, idle = e.devices
    assert e.duration_s >= 1.0
    assert result.total_energy_j == pytest.approx(busy.energy_j + idle.energy_j)
    # both counters are read back to back at the window's ends: their ratio is the traces' own
    assert idle.energy_j / busy.energy_j == pytest.approx(60.0 / 250.0, rel=0.02)
    assert busy.energy_j == pytest.approx(250.0 * e.duration_s, rel=0.08)
    assert idle.energy_j == pytest.approx(60.0 * e.duration_s, rel=0.08)
    assert idle.mean_utilization_pct == 0.0 and busy.mean_utilization_pct == 95.0
    assert idle.max_memory_used_mb == 512.0
    tokens = result.output_tokens
    assert tokens > 0 and tokens % 16 == 0  # passes of 4 prompts x 4 new tokens
    assert result.energy_per_output_token_j == pytest.approx(result.total_energy_j / tokens)
    assert result.energy_per_output_token_j > busy.energy_j / tokens  # the idle GPU's share is in
    assert result.mean_power_w == pytest.approx(310.0, rel=0.08)  # 250 + 60 W
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["energy"]["devices"][1]["mean_utilization_pct"] == 0.0
    header = (tmp_path / "run" / "timeseries.csv").read_text().splitlines()[0]
    assert header.endswith("energy_counter_mj,memory_used_mb")


def test_held_gpus_stay_metered_whatever_the_engine_put_on_them(
    tmp_path: Path, shared_model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner made GPUs 0 and 1 visible (gpus: [0, 1]); the engine (here on the CPU) holds
    parameters on neither, yet the measured window is opened on both: no re-planned meter."""
    from llenergymeasure.energy import select_meter

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # what LocalRunner(gpus=[0, 1]) sets
    fake = FakeNvml(_two_gpus())
    asked: list[list[int]] = []

    def factory(backend: str, devices: list[int]):  # type: ignore[no-untyped-def]
        asked.append(list(devices))
        return select_meter("nvml", devices, {}, nvml_module=fake, sample_period_s=0.02)

    config = ExperimentConfig.from_dict(
        tiny_experiment(n=2, gpus=[0, 1], pytorch={"device_map": "auto"})
    )
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(energy_backend="nvml", model_cache_dir=str(shared_model_cache)),
    )
    result = run_harness(request, tmp_path / "run", meter_factory=factory)
    assert asked == [[0, 1]], "one meter, on both held GPUs, for load and measured window"
    assert [d.cuda_index for d in result.energy.devices] == [0, 1]
    assert result.energy.devices[1].mean_utilization_pct == 0.0
