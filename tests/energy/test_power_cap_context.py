"""``power_capped`` judged against the mean power and the enforced limit, through the meters
(issue 25 item 14): each meter reads the GPU's enforced limit at the window's start and passes
its mean power, so the warning says whether the GPU ran at its limit or the cap acted on peaks."""

from __future__ import annotations

import pytest

from llenergymeasure.energy import NvmlMeter, resolve_devices
from llenergymeasure.energy.nvml import CLOCK_EVENT_SW_POWER_CAP, Nvml
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml


def _nvml_window(gpu: FakeGpu, seconds: float = 1.0):  # type: ignore[no-untyped-def]
    clock = ManualClock()
    fake = FakeNvml([gpu], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = NvmlMeter(
        nvml,
        resolve_devices([0], nvml, {}),
        sensor_period_s=0.1,
        sample_period_s=0.1,
        clock=clock,
        background_sampling=False,
    )
    meter.start()
    for _ in range(9):
        clock.advance(0.1)
        assert meter.sampler is not None
        meter.sampler.sample()
    clock.advance(seconds - 0.9)
    m = meter.stop()
    meter.close()
    return m


def _cap(m):  # type: ignore[no-untyped-def]
    [w] = [w for w in m.warnings if w.code == "power_capped"]
    return w


def test_nvml_meter_power_cap_below_the_limit_is_peaks() -> None:
    gpu = FakeGpu(
        trace=ConstantPower(450.0),
        power_limit_mw=700_000,
        clock_event_reasons=lambda t: CLOCK_EVENT_SW_POWER_CAP if t < 0.15 else 0,
    )
    w = _cap(_nvml_window(gpu))
    assert w.details["power_limit_w"] == 700.0
    assert w.details["mean_power_w"] == pytest.approx(450.0)
    assert w.details["mean_power_share_of_limit"] == pytest.approx(450 / 700)
    assert "only 64 % of the 700 W limit, so this is not time spent at the limit" in w.message


def test_nvml_meter_power_cap_at_the_limit() -> None:
    gpu = FakeGpu(
        trace=ConstantPower(690.0),
        power_limit_mw=700_000,
        clock_event_reasons=CLOCK_EVENT_SW_POWER_CAP,
    )
    w = _cap(_nvml_window(gpu))
    assert w.details["n_samples"] == 9 and w.details["sample_share"] == 1.0
    assert w.message.endswith(
        "mean power 690 W is 99 % of the 700 W limit: the GPU ran at its power limit and the "
        "clocks followed the cap (normal at TDP)"
    )
