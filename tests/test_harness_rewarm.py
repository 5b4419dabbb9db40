"""Re-warm after the resident idle baseline (issue 25 item 5), on a fake NVML and a manual clock.

A scripted backend runs each batch at a given latency, power and temperature: the clock moves by
the latency and the test's meter takes a sample every 0.1 s of it, so every latency, joule and
degree below is exact.
"""

from __future__ import annotations

import bisect

import pytest

from llenergymeasure.backends.base import GenerationOutput, Prompt, RequestRecord
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy import NvmlMeter, resolve_devices
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.harness.rewarm import (
    Level,
    at_level,
    needs_rewarm,
    run_rewarm,
    warm_level,
)
from llenergymeasure.harness.window import run_warmup
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.helpers import tiny_experiment


class Steps:
    """A value that steps at given times: power (W, with its exact integral) or temperature."""

    def __init__(self, first: float) -> None:
        self.times, self.values = [0.0], [first]

    def set(self, t: float, value: float) -> None:
        self.times.append(t)
        self.values.append(value)

    def at(self, t: float) -> float:
        return self.values[bisect.bisect_right(self.times, t) - 1]

    power_w = at

    def energy_j(self, t: float) -> float:
        edges = [*self.times, float("inf")]
        return sum(v * max(0.0, min(t, edges[k + 1]) - edges[k]) for k, v in enumerate(self.values))


class ScriptedBackend:
    """Each ``generate`` takes the next (latency s, power W, temperature C) of its script."""

    def __init__(self, clock: ManualClock, fake: FakeNvml, meter: NvmlMeter, script) -> None:
        self.clock, self.fake, self.meter, self.script = clock, fake, meter, list(script)
        self.power, self.temperature = Steps(80.0), Steps(50.0)
        self.calls = 0

    def generate(self, batch: list[Prompt]) -> GenerationOutput:
        latency, watts, celsius = self.script[self.calls]
        self.calls += 1
        self.power.set(self.fake.now(), watts)
        self.temperature.set(self.fake.now(), celsius)
        steps = round(latency / 0.1)
        for _ in range(steps):
            self.clock.advance(latency / steps)
            if self.meter.sampler is not None and self.meter.sampler.buffer.n:
                self.meter.sampler.sample()
        return GenerationOutput(
            requests=[RequestRecord(input_tokens=8, output_tokens=4) for _ in batch],
            duration_s=latency,
        )

    def synchronize(self) -> None:
        pass


def rig(script):
    clock = ManualClock()
    gpu = FakeGpu(gpu_util_pct=0)
    fake = FakeNvml([gpu], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = NvmlMeter(
        nvml,
        resolve_devices([0], nvml, {}),
        clock=clock,
        background_sampling=False,
        check_processes=False,
        sensor_period_s=0.1,
        sample_period_s=0.1,
        counter_every=1,
    )
    backend = ScriptedBackend(clock, fake, meter, script)
    gpu.trace = backend.power
    gpu.temperature_c = lambda t: int(backend.temperature.at(t))
    return clock, meter, backend


BATCH = [Prompt(token_ids=list(range(8)), max_new_tokens=4) for _ in range(2)]
TARGET = Level(latency_s=0.5, power_w={0: 250.0}, temperature_c={0: 70.0})
MEASURED = BaselineRecord(kind="resident", idle_power_w={0: 80.0}, state={0: {"temperature_c": 50}})


def config(**warmup: object) -> ExperimentConfig:
    return ExperimentConfig.from_dict(tiny_experiment(warmup=warmup))


def test_warm_level_is_the_warmup_last_batch() -> None:
    """The target: the last warmup batch's latency, its mean sampled power, its end temperature."""
    script = [(0.8, 150.0, 55), (0.6, 230.0, 65), (0.5, 250.0, 70)]
    clock, meter, backend = rig(script)
    warmup = run_warmup(backend, BATCH, config(mode="fixed", runs=3), meter=meter, clock=clock)
    assert warmup.latencies_s == pytest.approx([0.8, 0.6, 0.5])
    assert warmup.energy_j == pytest.approx(0.8 * 150 + 0.6 * 230 + 0.5 * 250)
    level = warm_level(warmup, meter)
    assert level.latency_s == pytest.approx(0.5)
    assert level.power_w == {0: pytest.approx(250.0)}
    assert level.temperature_c == {0: 70.0}


def test_rewarm_runs_until_latency_power_and_temperature_are_back() -> None:
    # batch 2 is fast enough (0.52 <= 0.5 x 1.05) and draws enough (240 >= 250 x 0.95), but at
    # 68 C it is more than 1 C under the warmup's 70 C: only batch 3 is back at the level
    script = [(0.6, 200.0, 60), (0.52, 240.0, 68), (0.5, 250.0, 70)]
    clock, meter, backend = rig(script)
    r = run_rewarm(backend, BATCH, config(max_runs=20), TARGET, MEASURED, meter, clock=clock)
    assert (r.batches, r.reached, r.stopped_by) == (3, True, "reached")
    assert r.latencies_s == pytest.approx([0.6, 0.52, 0.5])
    assert r.duration_s == pytest.approx(1.62)
    assert r.energy_j == pytest.approx(0.6 * 200 + 0.52 * 240 + 0.5 * 250)  # the counter
    assert r.before_power_w == {0: 80.0} and r.before_temperature_c == {0: 50.0}
    assert r.after_power_w == {0: pytest.approx(250.0)} and r.after_temperature_c == {0: 70.0}
    assert r.target_latency_s == 0.5 and r.target_power_w == {0: 250.0}
    assert r.target_temperature_c == {0: 70.0}
    assert (r.tolerance, r.temperature_tolerance_c) == (0.05, 1.0)


@pytest.mark.parametrize(
    ("warmup", "batches", "stopped_by"),
    [
        ({"mode": "fixed", "runs": 2}, 2, "max_runs"),  # fixed mode: at most warmup.runs
        ({"max_runs": 4}, 4, "max_runs"),
        ({"max_runs": 20, "max_s": 1.0}, 2, "max_s"),  # 0.6 s each: past 1 s after the second
    ],
)
def test_rewarm_stops_at_its_cap_and_warns(warmup: dict, batches: int, stopped_by: str) -> None:
    from llenergymeasure.harness.rewarm import rewarm_warnings

    clock, meter, backend = rig([(0.6, 200.0, 60)] * 10)  # stays cold
    r = run_rewarm(backend, BATCH, config(**warmup), TARGET, MEASURED, meter, clock=clock)
    assert (r.batches, r.reached, r.stopped_by) == (batches, False, stopped_by)
    [w] = rewarm_warnings(r)
    assert w.code == "rewarm_incomplete" and w.details["batches"] == batches
    assert rewarm_warnings(None) == []


def test_at_least_one_batch_even_when_already_warm() -> None:
    clock, meter, backend = rig([(0.5, 250.0, 70)] * 3)
    r = run_rewarm(
        backend, BATCH, config(mode="fixed", runs=0), TARGET, MEASURED, meter, clock=clock
    )
    assert (r.batches, r.reached) == (1, True)


@pytest.mark.parametrize(
    ("now", "back"),
    [
        (Level(0.525, {0: 237.5}, {0: 69.0}), True),  # every reading exactly at its tolerance
        (Level(0.526, {0: 250.0}, {0: 70.0}), False),  # too slow
        (Level(0.5, {0: 237.0}, {0: 70.0}), False),  # draws too little
        (Level(0.5, {0: 250.0}, {0: 68.0}), False),  # too cool
        (Level(0.4, {}, {}), True),  # a meter without a series: latency alone
        (Level(0.5, {1: 10.0}, {1: 10.0}), True),  # only GPUs in both are compared
    ],
)
def test_at_level_is_one_sided_within_the_tolerances(now: Level, back: bool) -> None:
    assert at_level(TARGET, now) is back


def test_only_a_baseline_measured_now_needs_a_rewarm() -> None:
    assert needs_rewarm(MEASURED)
    assert not needs_rewarm(None)
    assert not needs_rewarm(MEASURED.model_copy(update={"from_cache": True}))
    assert not needs_rewarm(BaselineRecord(available=False, unavailable_reason="no GPU"))
