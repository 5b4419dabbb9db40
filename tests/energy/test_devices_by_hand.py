"""CUDA index -> NVML device mapping, every error and warning checked word for word.

A wrong mapping measures another GPU and reports a plausible number, so each refusal must say
which index, what ``CUDA_VISIBLE_DEVICES`` exposes and what would work; the warnings are stored in
the result, so their code, device, severity and details are checked whole.
"""

from __future__ import annotations

from typing import Any

import pytest

from llenergymeasure.energy import DeviceMappingError, resolve_devices
from llenergymeasure.energy.devices import DeviceTarget
from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.types import ValidityWarning
from tests.fakes.nvml import FakeGpu, FakeNvml, FakeNVMLError


def opened(fake: FakeNvml) -> Nvml:
    nvml = Nvml(fake)
    nvml.init()
    return nvml


def failing(fake: FakeNvml, call: str, code: int) -> None:
    """Make the fake's pynvml function ``call`` raise NVML error ``code`` from now on."""

    def fail(*args: Any) -> Any:
        raise FakeNVMLError(code)

    setattr(fake, call, fail)


def error_of(cuda: list[int], nvml: Nvml, env: dict[str, str]) -> str:
    with pytest.raises(DeviceMappingError) as info:
        resolve_devices(cuda, nvml, env)
    return str(info.value)


def test_targets_carry_uuid_and_name_of_the_mapped_gpu() -> None:
    fake = FakeNvml([FakeGpu(name="H200 a"), FakeGpu(name="H200 a"), FakeGpu(name="H200 a")])
    m = resolve_devices([0, 1], opened(fake), {"CUDA_VISIBLE_DEVICES": "2,0"})
    assert m.targets == [
        DeviceTarget(0, 2, fake.gpus[2].uuid, "H200 a", None),
        DeviceTarget(1, 0, fake.gpus[0].uuid, "H200 a", None),
    ]
    assert m.warnings == []


def test_index_equal_to_the_gpu_count_is_refused() -> None:
    nvml = opened(FakeNvml([FakeGpu(), FakeGpu()]))
    assert error_of([2], nvml, {}) == (
        "CUDA device 2 does not exist: NVML sees 2 GPU(s) and CUDA_VISIBLE_DEVICES is unset; "
        "use an index below 2"
    )
    assert error_of([0], nvml, {"CUDA_VISIBLE_DEVICES": "2"}) == (
        "CUDA_VISIBLE_DEVICES='2' names GPU 2 but NVML sees only 2 GPU(s) (0..1)"
    )
    assert resolve_devices([1], nvml, {}).nvml_indices == [1]  # the last one is fine


def test_negative_and_invisible_indices_name_what_would_work() -> None:
    nvml = opened(FakeNvml([FakeGpu(), FakeGpu()]))
    assert error_of([-1], nvml, {}) == "CUDA device index -1 is negative; use 0, 1, ..."
    assert error_of([2], nvml, {"CUDA_VISIBLE_DEVICES": "1,0"}) == (
        "CUDA device 2 is not visible: CUDA_VISIBLE_DEVICES='1,0' exposes 2 device(s) (1, 0); "
        "use an index below 2 or widen CUDA_VISIBLE_DEVICES"
    )
    assert error_of([0], nvml, {"CUDA_VISIBLE_DEVICES": "-1"}) == (
        "CUDA device 0 is not visible: CUDA_VISIBLE_DEVICES='-1' exposes 0 device(s) (none); "
        "use an index below 0 or widen CUDA_VISIBLE_DEVICES"
    )


def test_uuid_errors_list_the_uuids_nvml_sees() -> None:
    fake = FakeNvml([FakeGpu(uuid="GPU-aa-1"), FakeGpu(uuid="GPU-ab-2")])
    nvml = opened(fake)
    assert error_of([0], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-a"}) == (
        "CUDA_VISIBLE_DEVICES entry 'GPU-a' matches 2 GPU UUID(s); NVML sees GPU-aa-1, GPU-ab-2"
    )
    assert error_of([0], nvml, {"CUDA_VISIBLE_DEVICES": "GPU-zz"}) == (
        "CUDA_VISIBLE_DEVICES entry 'GPU-zz' matches no GPU UUID(s); NVML sees GPU-aa-1, GPU-ab-2"
    )
    assert error_of([0], opened(FakeNvml([])), {"CUDA_VISIBLE_DEVICES": "GPU-zz"}) == (
        "CUDA_VISIBLE_DEVICES entry 'GPU-zz' matches no GPU UUID(s); NVML sees none"
    )


def test_a_failing_gpu_count_is_a_mapping_error_naming_the_call() -> None:
    fake = FakeNvml([FakeGpu()])
    nvml = opened(fake)
    failing(fake, "nvmlDeviceGetCount", 15)
    msg = error_of([0], nvml, {})
    assert msg.startswith(
        "cannot count GPUs through NVML: NVML call nvmlDeviceGetCount failed: "
        "GPU is lost (NVML code 15); the GPU fell off the bus"  # pynvml's text for code 15
    )


def test_mig_slices_warnings_in_full_and_later_devices_still_mapped() -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(mig_uuids=["MIG-s1", "MIG-s2"])])
    m = resolve_devices([0, 1, 2], opened(fake), {"CUDA_VISIBLE_DEVICES": "MIG-s1,MIG-s2,0"})
    # the second slice is on the same GPU: counted once, and the device after it is still mapped
    assert m.targets == [
        DeviceTarget(0, 1, fake.gpus[1].uuid, "Fake GPU", "MIG-s1"),
        DeviceTarget(2, 0, fake.gpus[0].uuid, "Fake GPU", None),
    ]
    assert m.warnings == [
        ValidityWarning(
            code="mig_whole_gpu",
            message=(
                "CUDA device 0 is a MIG slice (MIG-s1); NVML has no energy counter per slice, so "
                "this is the energy of the whole GPU 1, including other slices' work"
            ),
            severity="warning",
            device=1,
            details={"mig_uuid": "MIG-s1"},
        ),
        ValidityWarning(
            code="shared_gpu",
            message=(
                "CUDA device 1 is on GPU 1, already measured for another CUDA device; it is "
                "counted once"
            ),
            severity="info",
            device=1,
        ),
    ]


def test_mixed_models_warning_in_full() -> None:
    fake = FakeNvml([FakeGpu(name="H200"), FakeGpu(name="A100"), FakeGpu(name="H200")])
    m = resolve_devices([0], opened(fake), {"CUDA_DEVICE_ORDER": "pci_bus_id_not"})
    assert m.warnings == [
        ValidityWarning(
            code="device_order",
            message=(
                "this machine mixes GPU models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA "
                "numbers GPUs fastest-first, NVML by PCI bus, so integer indices may name "
                "different GPUs; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU UUIDs"
            ),
            details={"models": ["A100", "H200"]},
        )
    ]
    # lower-case pci_bus_id is accepted like CUDA does; UUID entries need no order
    assert resolve_devices([0], opened(fake), {"CUDA_DEVICE_ORDER": "pci_bus_id"}).warnings == []
    uuid_env = {"CUDA_VISIBLE_DEVICES": fake.gpus[1].uuid}
    assert resolve_devices([0], opened(fake), uuid_env).warnings == []


def test_a_gpu_whose_name_cannot_be_read_is_still_mapped_without_a_name() -> None:
    fake = FakeNvml([FakeGpu(name="H200"), FakeGpu(name="A100")])
    nvml = opened(fake)
    failing(fake, "nvmlDeviceGetName", 999)
    m = resolve_devices([1], nvml, {})
    assert m.targets == [DeviceTarget(1, 1, fake.gpus[1].uuid, None, None)]
    assert m.warnings == []  # models unknown: no mixed-model warning, and no crash
