"""A GPU lost during a window (issue 30 item 3), on the fake NVML raising at chosen points.

NVML's "GPU is lost" (15), "Unknown Error" (999), a measured GPU gone from the device count, or
Zeus failing: the meter's ``stop()`` raises ``DeviceLostError`` (phase ``energy``) naming the GPU's
UUID and the NVML error, with the sampler's threads stopped; a reading the GPU merely lacks, or a
GPU the window does not measure leaving the machine, is not a loss.
"""

from __future__ import annotations

import threading

import pytest

from llenergymeasure.energy import NvmlMeter, resolve_devices
from llenergymeasure.energy.errors import (
    DeviceLostError,
    NvmlDeviceLostError,
    NvmlError,
    nvml_error_class,
)
from llenergymeasure.energy.nvml import Nvml, missing_uuids
from llenergymeasure.energy.zeus_meter import ZeusMeter
from llenergymeasure.errors import ExperimentError
from tests.fakes.clock import ManualClock
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml
from tests.fakes.zeus import fake_zeus


def make(
    gpus: list[FakeGpu], clock: ManualClock, measured: list[int] | None = None, **kw: object
) -> tuple[NvmlMeter, FakeNvml]:
    fake = FakeNvml(gpus, clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    mapping = resolve_devices(measured if measured is not None else [0], nvml, {})
    kw.setdefault("sample_period_s", 0.1)
    meter = NvmlMeter(nvml, mapping, clock=clock, background_sampling=False, **kw)  # type: ignore[arg-type]
    return meter, fake


def sampled_window(meter: NvmlMeter, clock: ManualClock, steps: int, lose: object = None) -> None:
    """Start, take ``steps`` samples 0.1 s apart (calling ``lose()`` after the second), stop."""
    meter.start()
    for k in range(steps):
        clock.advance(0.1)
        assert meter.sampler is not None
        meter.sampler.sample()
        if k == 1 and callable(lose):
            lose()
    clock.advance(0.1)
    meter.stop()


def test_the_fake_raises_pynvmls_classes_and_codes() -> None:
    err = FakeNvml.NVMLError_GpuIsLost()
    assert (type(err).__name__, err.value, str(err)) == ("NVMLError_GpuIsLost", 15, "GPU is lost")
    unknown = FakeNvml.NVMLError(999)  # pynvml: NVMLError(code) is that code's subclass
    assert type(unknown).__name__ == "NVMLError_Unknown" and str(unknown) == "Unknown Error"
    assert isinstance(unknown, FakeNvml.NVMLError)
    assert FakeNvml.NVML_ERROR_GPU_IS_LOST == 15 and FakeNvml.NVML_ERROR_UNKNOWN == 999


@pytest.mark.parametrize("code", [15, 16, 28, 999])
def test_device_lost_codes_are_errors_of_phase_energy(code: int) -> None:
    cls = nvml_error_class(code)
    assert cls is NvmlDeviceLostError
    err = cls("nvmlDeviceGetPowerUsage", code, "x", 0)
    assert isinstance(err, NvmlError) and isinstance(err, ExperimentError)
    assert err.phase == "energy"
    assert nvml_error_class(3) is not NvmlDeviceLostError  # a reading the GPU lacks: not a loss


def test_gpu_lost_mid_window_fails_it_naming_the_call_the_uuid_and_the_code() -> None:
    clock = ManualClock()
    gpu = FakeGpu(trace=ConstantPower(200.0))
    meter, fake = make([gpu], clock)

    def lose() -> None:  # Xid 79: from now on every call on the GPU says "GPU is lost"
        gpu.fails_from_s = fake.now()

    with pytest.raises(DeviceLostError) as info:
        sampled_window(meter, clock, 5, lose)
    err = info.value
    assert err.phase == "energy"
    [lost] = err.lost_gpus
    assert (lost["uuid"], lost["nvml_index"]) == (gpu.uuid, 0)
    # the sampler met it first (its power read), then the end edge's counter read: the first
    assert lost["reason"] == (
        "NVML call nvmlDeviceGetFieldValues on GPU 0 (NVML index) failed: GPU is lost "
        "(NVML code 15); the GPU fell off the bus; the machine needs attention (nvidia-smi, dmesg)"
    )
    assert gpu.uuid in str(err) and "llem run --resume" in str(err)
    assert meter.sampler is not None and not meter.sampler.running
    meter.close()


def test_unknown_error_in_the_sampler_alone_fails_the_window() -> None:
    """Only the sampler's power read fails (999); the counter still answers at the end edge:
    the window still fails, naming the sampler's call."""
    clock = ManualClock()
    gpu = FakeGpu(fails_with=999, fails_calls=("nvmlDeviceGetFieldValues",))
    meter, fake = make([gpu], clock)

    def lose() -> None:
        gpu.fails_from_s = fake.now()

    with pytest.raises(
        DeviceLostError, match=r"nvmlDeviceGetFieldValues .* Unknown Error \(NVML code 999\)"
    ):
        sampled_window(meter, clock, 4, lose)
    meter.close()


def test_unknown_error_at_the_end_edge_without_a_sampler() -> None:
    clock = ManualClock()
    gpu = FakeGpu(fails_with=999, fails_calls=("nvmlDeviceGetTotalEnergyConsumption",))
    meter, fake = make([gpu], clock, sample=False)
    meter.start()
    gpu.fails_from_s = fake.now()
    clock.advance(1.0)
    with pytest.raises(DeviceLostError) as info:
        meter.stop()
    assert info.value.lost_gpus[0]["reason"].startswith(
        "NVML call nvmlDeviceGetTotalEnergyConsumption on GPU 0 (NVML index) failed: Unknown "
        "Error (NVML code 999)"
    )
    meter.close()


def test_a_measured_gpu_gone_from_the_count_fails_the_window() -> None:
    clock = ManualClock()
    gpus = [FakeGpu(), FakeGpu()]
    meter, fake = make(gpus, clock, measured=[0, 1])
    meter.start()
    clock.advance(0.5)
    gpus[1].gone_from_s = fake.now()  # off the bus: the count falls to 1, its UUID is unknown
    clock.advance(0.5)
    with pytest.raises(DeviceLostError) as info:
        meter.stop()
    [lost] = info.value.lost_gpus
    assert (lost["uuid"], lost["nvml_index"]) == (gpus[1].uuid, 1)
    assert lost["reason"] == (
        "it left NVML's device count (2 GPUs at the window's start, 1 at its end) and its UUID "
        "no longer resolves (NVML call nvmlDeviceGetHandleByUUID failed: Not Found (NVML code 6))"
    )
    meter.close()


def test_a_gpu_the_window_does_not_measure_leaving_is_not_a_loss() -> None:
    clock = ManualClock()
    gpus = [FakeGpu(trace=ConstantPower(100.0)), FakeGpu()]
    meter, fake = make(gpus, clock, measured=[0], sample=False)
    meter.start()
    gpus[1].gone_from_s = fake.now()
    clock.advance(1.0)
    m = meter.stop()
    assert m.devices[0].energy_j == pytest.approx(100.0)
    meter.close()


def test_sampler_threads_stop_on_a_lost_gpu_before_stop_is_called() -> None:
    """Real reader threads: once a read says the GPU is lost every thread of the sampler ends by
    itself (waited for by condition, not by time), and stop() then fails the window."""
    gpus = [FakeGpu(), FakeGpu()]
    fake = FakeNvml(gpus)
    nvml = Nvml(fake)
    nvml.init()
    meter = NvmlMeter(nvml, resolve_devices([0, 1], nvml, {}), sample_period_s=0.01)
    meter.start()
    sampler = meter.sampler
    assert sampler is not None and sampler.running
    gpus[1].fails_from_s = fake.now()
    threads = [t for t in threading.enumerate() if t.name.startswith("llem-nvml-sampler-")]
    assert len(threads) == 2
    for t in threads:
        t.join(timeout=60)  # a bound against a hang only; they end at their next read
    assert not any(t.is_alive() for t in threads)
    assert sampler.lost is not None and sampler.lost.device == 1
    with pytest.raises(DeviceLostError) as info:
        meter.stop()
    assert [g["uuid"] for g in info.value.lost_gpus] == [gpus[1].uuid]
    assert not sampler.running
    meter.close()


def test_zeus_failing_in_the_window_fails_it_naming_its_gpus() -> None:
    clock = ManualClock()
    gpu = FakeGpu()
    fake = FakeNvml([gpu], clock=clock)
    nvml = Nvml(fake)
    nvml.init()
    meter = ZeusMeter(
        fake_zeus(fake, clock=clock),
        resolve_devices([0], nvml, {}),
        nvml,
        timeseries=False,
        sample=False,
        clock=clock,
        wall_clock=clock,
    )
    meter.start()
    gpu.fails_from_s = fake.now()  # Zeus's end_window reads the counter through NVML
    clock.advance(1.0)
    with pytest.raises(DeviceLostError) as info:
        meter.stop()
    assert info.value.phase == "energy"
    assert info.value.lost_gpus == [
        {
            "uuid": gpu.uuid,
            "nvml_index": 0,
            "reason": "Zeus's ZeusMonitor.end_window failed: NVMLError_GpuIsLost: GPU is lost",
        }
    ]
    meter.close()


def test_missing_uuids_names_each_gpu_that_does_not_answer() -> None:
    gpus = [FakeGpu(), FakeGpu(), FakeGpu()]
    fake = FakeNvml(gpus)
    gpus[1].gone_from_s = 0.0
    gpus[2].fails_from_s = 0.0
    wanted = [g.uuid for g in gpus]
    missing = missing_uuids(wanted, fake)
    assert list(missing) == wanted[1:]
    assert "Not Found (NVML code 6)" in missing[wanted[1]]
    assert "GPU is lost (NVML code 15)" in missing[wanted[2]]
    assert fake.init_depth == 0  # NVML shut down again
    assert missing_uuids(wanted, FakeNvml(init_error=9))[wanted[0]].startswith(
        "NVML cannot start on this machine"
    )
