"""The harness tells a backend when the measured window starts and ends (``window_started`` /
``window_ended``): the openai backend scrapes the server's ``/metrics`` exactly over the window."""

from __future__ import annotations

from llenergymeasure.backends.base import GenerationOutput, Prompt, RequestRecord
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import EnergyMeasurement


class _Backend:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    def synchronize(self) -> None:
        pass

    def window_started(self, t0: float) -> None:
        self.events.append("window_started")

    def window_ended(self) -> None:
        self.events.append("window_ended")

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        self.events.append("generate")
        requests = [RequestRecord(input_tokens=len(p.token_ids), output_tokens=1) for p in prompts]
        return GenerationOutput(requests=requests, duration_s=0.0)


class _Meter:
    available = True

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def start(self) -> None:
        self.events.append("meter.start")

    def stop(self) -> EnergyMeasurement:
        self.events.append("meter.stop")
        return EnergyMeasurement(meter="fake", started_at="2027-01-15T08:00:00+00:00")


class _Phases:
    def enter(self, phase: str, detail: str | None = None) -> None:
        pass


def test_the_window_hooks_bracket_the_measured_passes() -> None:
    from llenergymeasure.harness.phases import measure_window

    events: list[str] = []
    config = ExperimentConfig.from_dict({"model": "synthetic/tiny-llama"})
    measure_window(
        _Backend(events),  # type: ignore[arg-type]
        _Meter(events),
        [Prompt(token_ids=[1, 2, 3], max_new_tokens=1)],
        config,
        False,
        _Phases(),  # type: ignore[arg-type]
    )
    assert events[:2] == ["meter.start", "window_started"]
    assert events[-2:] == ["meter.stop", "window_ended"]
    assert set(events[2:-2]) == {"generate"}
