"""The NVML device layer (``energy.nvml.Nvml``) call by call against the fake NVML.

Every reading returns the fake GPU's value in the unit its name says, addressed to the right GPU
(two GPUs with different values), and every NVML failure becomes an ``NvmlError`` naming the
call, the GPU and a remedy: that text is what a failed experiment's JSON shows a researcher.
Older nvidia-ml-py releases lack some constants and functions; a view of the fake without them
(``Older``) checks the fallbacks.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import pytest

from llenergymeasure.energy.errors import (
    NvmlError,
    NvmlNotSupportedError,
    NvmlUnavailableError,
)
from llenergymeasure.energy.nvml import Nvml, import_pynvml, throttle_reason_names
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml, FakeNVMLError


class Older:
    """The fake NVML as an older nvidia-ml-py would show it: without the names in ``missing``."""

    def __init__(self, fake: FakeNvml, *missing: str):
        self._fake = fake
        self._missing = set(missing)

    def __getattr__(self, name: str) -> Any:
        if name in self._missing:
            raise AttributeError(name)
        return getattr(self._fake, name)


def failing(fake: Any, call: str, code: int) -> None:
    def fail(*args: Any) -> Any:
        raise FakeNVMLError(code)

    setattr(fake, call, fail)


def two_gpus() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(name="GPU zero", trace=ConstantPower(100.0), power_limit_mw=300_000),
            FakeGpu(
                name="GPU one",
                trace=ConstantPower(250.5),
                power_limit_mw=700_000,
                temperature_c=71,
                sm_clock_mhz=1410,
                gpu_util_pct=37,
                clock_event_reasons=0x4 | 0x40,
                pids=[4242, 77],
                has_instant_power=False,
            ),
        ],
        driver_version="580.65.06",
    )


def opened(module: Any) -> Nvml:
    nvml = Nvml(module)
    nvml.init()
    return nvml


def test_each_reading_is_the_addressed_gpus_value() -> None:
    fake = two_gpus()
    nvml = opened(fake)
    assert nvml.initialised is True
    assert nvml.device_count() == 2 and nvml.driver_version() == "580.65.06"
    assert [nvml.name(0), nvml.name(1)] == ["GPU zero", "GPU one"]
    assert nvml.uuid(1) == fake.gpus[1].uuid
    assert [nvml.power_limit_mw(0), nvml.power_limit_mw(1)] == [300_000, 700_000]
    assert nvml.temperature_c(1) == 71 and nvml.sm_clock_mhz(1) == 1410
    assert nvml.gpu_util_pct(1) == 37
    assert nvml.clock_event_reasons(1) == 0x44 and nvml.clock_event_reasons(0) == 0
    assert throttle_reason_names(nvml.clock_event_reasons(1)) == [
        "sw_power_cap",
        "hw_thermal_slowdown",
    ]
    assert nvml.running_pids(1) == {4242, 77} and nvml.running_pids(0) == set()
    assert nvml.average_power_mw(1) == 250_500 and nvml.average_power_mw(0) == 100_000
    assert nvml.instant_power_mw(0) == 100_000
    # GPU 1 has no instant-power field: power_mw reads nvmlDeviceGetPowerUsage, once decided
    assert [nvml.power_source(0), nvml.power_source(1)] == ["instant", "power_usage"]
    fake.calls.clear()
    assert [nvml.power_mw(0), nvml.power_mw(1), nvml.power_mw(1)] == [100_000, 250_500, 250_500]
    assert fake.calls["nvmlDeviceGetFieldValues"] == 1  # GPU 1's field is not retried
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 2


def test_handles_are_cached_per_index() -> None:
    fake = two_gpus()
    nvml = opened(fake)
    h1 = nvml.handle(1)
    fake.calls.clear()
    assert nvml.handle(1) is h1 and nvml.handle(0) is not h1
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 1  # only GPU 0's
    assert nvml.index_of(h1) == 1 and nvml.index_of(nvml.handle_by_uuid(fake.gpus[0].uuid)) == 0


def test_mig_handles_and_their_parent() -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(mig_uuids=["MIG-a"])])
    nvml = opened(fake)
    mig = nvml.handle_by_uuid("MIG-a")
    assert nvml.is_mig_handle(mig) is True and nvml.is_mig_handle(nvml.handle(1)) is False
    assert nvml.index_of(nvml.parent_of_mig(mig)) == 1
    # real pynvml returns a ctypes c_uint here, not an int
    older = Older(fake, "nvmlDeviceIsMigDeviceHandle")
    older.nvmlDeviceIsMigDeviceHandle = lambda h: ctypes.c_uint(1 if h.mig_uuid else 0)  # type: ignore[attr-defined]
    nvml = opened(older)
    assert nvml.is_mig_handle(nvml.handle_by_uuid("MIG-a")) is True
    assert nvml.is_mig_handle(nvml.handle(0)) is False


@pytest.mark.parametrize(
    ("method", "args", "call"),
    [
        ("uuid", (1,), "nvmlDeviceGetUUID"),
        ("name", (1,), "nvmlDeviceGetName"),
        ("power_limit_mw", (1,), "nvmlDeviceGetEnforcedPowerLimit"),
        ("total_energy_mj", (1,), "nvmlDeviceGetTotalEnergyConsumption"),
        ("average_power_mw", (1,), "nvmlDeviceGetPowerUsage"),
        ("instant_power_mw", (1,), "nvmlDeviceGetFieldValues"),
        ("temperature_c", (1,), "nvmlDeviceGetTemperature"),
        ("sm_clock_mhz", (1,), "nvmlDeviceGetClockInfo"),
        ("gpu_util_pct", (1,), "nvmlDeviceGetUtilizationRates"),
        ("clock_event_reasons", (1,), "nvmlDeviceGetCurrentClocksEventReasons"),
        ("violation_time_ns", (1, 0), "nvmlDeviceGetViolationStatus"),
        ("running_pids", (1,), "nvmlDeviceGetComputeRunningProcesses"),
        ("handle", (1,), "nvmlDeviceGetHandleByIndex"),
    ],
)
def test_a_failed_reading_names_the_call_the_gpu_and_the_code(
    method: str, args: tuple[int, ...], call: str
) -> None:
    fake = two_gpus()
    nvml = opened(fake)
    failing(fake, call, 999)
    with pytest.raises(NvmlError) as info:
        getattr(nvml, method)(*args)
    err = info.value
    assert (err.call, err.code, err.device, err.detail) == (call, 999, 1, "Unknown Error")
    assert (
        str(err) == f"NVML call {call} on GPU 1 (NVML index) failed: Unknown Error (NVML code 999)"
    )


def test_error_codes_become_typed_errors_with_a_remedy() -> None:
    fake = two_gpus()
    nvml = opened(fake)
    failing(fake, "nvmlDeviceGetTemperature", 3)
    with pytest.raises(NvmlNotSupportedError) as info:
        nvml.temperature_c(0)
    assert str(info.value) == (
        "NVML call nvmlDeviceGetTemperature on GPU 0 (NVML index) failed: Not Supported "
        "(NVML code 3); this GPU or driver does not provide that reading"
    )

    # an error without an integer code, and without text, still names the call and its type
    class Silent(FakeNVMLError):
        def __str__(self) -> str:
            return ""

    def silent(*args: Any) -> Any:
        e = Silent(999)
        e.value = "n/a"  # type: ignore[assignment]
        raise e

    fake.nvmlDeviceGetClockInfo = silent  # type: ignore[method-assign,assignment]
    with pytest.raises(NvmlError) as plain:
        nvml.sm_clock_mhz(0)
    assert type(plain.value) is NvmlError and plain.value.code is None
    assert (
        str(plain.value) == "NVML call nvmlDeviceGetClockInfo on GPU 0 (NVML index) failed: Silent"
    )


def test_the_instant_power_field_reports_its_own_error() -> None:
    fake = two_gpus()
    nvml = opened(fake)
    with pytest.raises(NvmlNotSupportedError) as info:
        nvml.instant_power_mw(1)  # GPU 1 has no instant-power field
    assert str(info.value) == (
        "NVML call nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT) on GPU 1 (NVML index) "
        "failed: field not available (NVML code 3); this GPU or driver does not provide that "
        "reading"
    )


def test_a_missing_function_says_to_upgrade_nvidia_ml_py() -> None:
    fake = two_gpus()
    nvml = opened(Older(fake, "nvmlDeviceGetUtilizationRates"))
    with pytest.raises(NvmlError) as info:
        nvml.gpu_util_pct(1)
    err = info.value
    assert (err.call, err.code, err.device) == ("nvmlDeviceGetUtilizationRates", None, 1)
    assert str(err) == (
        "NVML call nvmlDeviceGetUtilizationRates on GPU 1 (NVML index) failed: the installed "
        "nvidia-ml-py lacks this function; upgrade nvidia-ml-py"
    )


def test_older_nvidia_ml_py_without_constants_or_the_new_reasons_call() -> None:
    fake = two_gpus()
    constants = (
        "NVML_FI_DEV_POWER_INSTANT",
        "NVML_POWER_SCOPE_GPU",
        "NVML_TEMPERATURE_GPU",
        "NVML_CLOCK_SM",
    )
    older = Older(fake, *constants, "nvmlDeviceGetCurrentClocksEventReasons")
    older.nvmlDeviceGetCurrentClocksThrottleReasons = (  # type: ignore[attr-defined]
        lambda h: fake.nvmlDeviceGetCurrentClocksEventReasons(h)
    )
    nvml = opened(older)
    assert nvml.instant_power_mw(0) == 100_000
    assert nvml.temperature_c(1) == 71 and nvml.sm_clock_mhz(1) == 1410
    assert nvml.clock_event_reasons(1) == 0x44  # through the pre-12 name
    older.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: (_ for _ in ()).throw(  # type: ignore[attr-defined]
        FakeNVMLError(999)
    )
    with pytest.raises(NvmlError, match="nvmlDeviceGetCurrentClocksThrottleReasons on GPU 1"):
        nvml.clock_event_reasons(1)


def test_graphics_processes_count_and_unsupported_lists_are_skipped() -> None:
    fake = two_gpus()
    nvml = opened(fake)
    fake.nvmlDeviceGetGraphicsRunningProcesses = lambda h: [  # type: ignore[method-assign,assignment]
        type("P", (), {"pid": 9})()
    ]
    failing(fake, "nvmlDeviceGetComputeRunningProcesses", 3)
    assert nvml.running_pids(1) == {9}  # compute list unsupported: graphics still read


def test_init_and_shutdown_lifecycle() -> None:
    fake = two_gpus()
    nvml = Nvml(fake)
    assert nvml.initialised is False
    nvml.shutdown()  # before init: nothing to release
    assert fake.calls["nvmlShutdown"] == 0
    nvml.init()
    nvml.init()  # idempotent: one NVML reference
    assert fake.init_depth == 1 and nvml.initialised is True
    h = nvml.handle(0)
    nvml.shutdown()
    assert fake.init_depth == 0 and nvml.initialised is False
    nvml.shutdown()
    assert fake.calls["nvmlShutdown"] == 1
    nvml.init()
    assert nvml.handle(0) is not h  # handles are dropped with the NVML session
    failing(fake, "nvmlShutdown", 999)
    nvml.shutdown()  # never raises
    assert nvml.initialised is False


def test_init_failures_are_unavailable_errors() -> None:
    with pytest.raises(NvmlUnavailableError) as info:
        Nvml(FakeNvml(init_error=999)).init()
    assert (info.value.call, info.value.code, info.value.detail) == (
        "nvmlInit",
        999,
        "Unknown Error",
    )
    with pytest.raises(NvmlUnavailableError) as info:
        Nvml(FakeNvml(init_error=9)).init()
    assert str(info.value) == (
        "NVML call nvmlInit failed: Driver Not Loaded (NVML code 9); load the NVIDIA kernel "
        "driver (nvidia-smi should work)"
    )

    def broken_library() -> None:
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    fake = FakeNvml()
    fake.nvmlInit = broken_library  # type: ignore[method-assign]
    nvml = Nvml(fake)
    with pytest.raises(NvmlUnavailableError) as info:
        nvml.init()
    assert (info.value.call, info.value.code, info.value.detail) == (
        "nvmlInit",
        12,
        "libnvidia-ml.so.1: cannot open shared object file",
    )
    assert nvml.initialised is False


def test_bytes_from_old_pynvml_are_decoded() -> None:
    fake = two_gpus()
    older = Older(fake, "nvmlDeviceGetName", "nvmlSystemGetDriverVersion")
    older.nvmlDeviceGetName = lambda h: fake.nvmlDeviceGetName(h).encode()  # type: ignore[attr-defined]
    older.nvmlSystemGetDriverVersion = lambda: b"470.1"  # type: ignore[attr-defined]
    nvml = opened(older)
    assert nvml.name(1) == "GPU one" and nvml.driver_version() == "470.1"


def test_the_module_defaults_to_pynvml_and_its_absence_is_explained(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pynvml

    assert Nvml().module is pynvml and import_pynvml() is pynvml
    assert Nvml().error_type is pynvml.NVMLError
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    with pytest.raises(NvmlUnavailableError) as info:
        import_pynvml()
    err = info.value
    assert (err.call, err.code) == ("import pynvml", None)
    assert str(err).startswith("NVML call import pynvml failed: the nvidia-ml-py package is not ")
    assert str(err).endswith("; pip install nvidia-ml-py")
