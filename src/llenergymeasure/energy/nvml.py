"""The NVML device layer: one method per NVML call, typed errors, nothing clever.

Everything in the energy layer that talks to NVML goes through ``Nvml``. It wraps a module with
pynvml's function names (the real ``pynvml`` from ``nvidia-ml-py``, or a test double such as
``tests.fakes.nvml.FakeNvml``, outside the package) so tests inject a fake instead of patching globals,
and so each NVML failure becomes an ``NvmlError`` naming the call, the GPU and a remedy.

Devices are addressed by NVML index. Mapping CUDA indices to NVML indices lives in
``energy.devices`` and nowhere else.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from llenergymeasure.energy.errors import (
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NvmlError,
    NvmlNotSupportedError,
    NvmlUnavailableError,
    nvml_error_class,
)

# Field ids and enums from nvml.h, used when the wrapped module lacks the constant.
NVML_FI_DEV_POWER_INSTANT = 186
NVML_POWER_SCOPE_GPU = 0
NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_PERF_POLICY_POWER = 0
NVML_PERF_POLICY_THERMAL = 1

# Clock-event ("throttle") reason bits that mean power or thermal limits slowed the clocks.
CLOCK_EVENT_SW_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_SW_THERMAL = 0x20
CLOCK_EVENT_HW_THERMAL = 0x40
CLOCK_EVENT_HW_POWER_BRAKE = 0x80
THROTTLE_REASON_NAMES: dict[int, str] = {
    CLOCK_EVENT_SW_POWER_CAP: "sw_power_cap",
    CLOCK_EVENT_HW_SLOWDOWN: "hw_slowdown",
    CLOCK_EVENT_SW_THERMAL: "sw_thermal_slowdown",
    CLOCK_EVENT_HW_THERMAL: "hw_thermal_slowdown",
    CLOCK_EVENT_HW_POWER_BRAKE: "hw_power_brake_slowdown",
}
THROTTLE_MASK = sum(THROTTLE_REASON_NAMES)


def throttle_reason_names(mask: int) -> list[str]:
    """Names of the power/thermal clock-event bits set in ``mask``."""
    return [name for bit, name in THROTTLE_REASON_NAMES.items() if mask & bit]


def import_pynvml() -> Any:
    """Import the real pynvml module, or raise NvmlUnavailableError saying how to get it."""
    try:
        import pynvml
    except ImportError as exc:
        raise NvmlUnavailableError(
            "import pynvml",
            None,
            f"the nvidia-ml-py package is not installed ({exc}); pip install nvidia-ml-py",
        ) from exc
    return pynvml


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Nvml:
    """NVML, one call per method, addressed by NVML index.

    ``init()`` must succeed before any other call; ``shutdown()`` releases it (NVML counts
    init/shutdown pairs, so several ``Nvml`` objects in one process are safe).
    """

    def __init__(self, module: Any | None = None):
        self._module = module
        self._handles: dict[int, Any] = {}
        self._initialised = False
        self._lock = threading.Lock()
        self._power_via_field: dict[int, bool] = {}

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def module(self) -> Any:
        """The wrapped pynvml-like module (imported lazily)."""
        if self._module is None:
            self._module = import_pynvml()
        return self._module

    @property
    def error_type(self) -> type[BaseException]:
        """The module's NVMLError base class, for callers that catch it in hot loops."""
        return getattr(self.module, "NVMLError", Exception)

    def _wrap(self, call: str, exc: BaseException, device: int | None) -> NvmlError:
        code = getattr(exc, "value", None)
        code = code if isinstance(code, int) else None
        detail = str(exc) or type(exc).__name__
        return nvml_error_class(code)(call, code, detail, device)

    def call(self, name: str, *args: Any, device: int | None = None) -> Any:
        """Call ``module.<name>(*args)``, turning NVML errors into typed ``NvmlError``."""
        fn = getattr(self.module, name, None)
        if fn is None:
            raise NvmlError(
                name,
                None,
                "the installed nvidia-ml-py lacks this function; upgrade nvidia-ml-py",
                device,
            )
        try:
            return fn(*args)
        except self.error_type as exc:
            raise self._wrap(name, exc, device) from exc

    # -- lifecycle --------------------------------------------------------------------------

    def init(self) -> None:
        """nvmlInit; raises NvmlUnavailableError when there is no library, driver or GPU access."""
        if self._initialised:
            return
        try:
            self.call("nvmlInit")
        except NvmlUnavailableError:
            raise
        except NvmlError as exc:
            raise NvmlUnavailableError(exc.call, exc.code, exc.detail) from exc
        except OSError as exc:  # a broken libnvidia-ml can raise from ctypes
            raise NvmlUnavailableError("nvmlInit", NVML_ERROR_LIBRARY_NOT_FOUND, str(exc)) from exc
        self._initialised = True

    def shutdown(self) -> None:
        """nvmlShutdown; idempotent, never raises."""
        if not self._initialised:
            return
        self._initialised = False
        self._handles.clear()
        with contextlib.suppress(NvmlError):
            self.call("nvmlShutdown")

    @property
    def initialised(self) -> bool:
        return self._initialised

    # -- system -----------------------------------------------------------------------------

    def device_count(self) -> int:
        return int(self.call("nvmlDeviceGetCount"))

    def driver_version(self) -> str:
        return _decode(self.call("nvmlSystemGetDriverVersion"))

    # -- handles ----------------------------------------------------------------------------

    def handle(self, index: int) -> Any:
        """The device handle of NVML index ``index`` (cached)."""
        h = self._handles.get(index)
        if h is None:
            with self._lock:
                h = self.call("nvmlDeviceGetHandleByIndex", index, device=index)
                self._handles[index] = h
        return h

    def handle_by_uuid(self, uuid: str) -> Any:
        return self.call("nvmlDeviceGetHandleByUUID", uuid)

    def index_of(self, handle: Any) -> int:
        return int(self.call("nvmlDeviceGetIndex", handle))

    def is_mig_handle(self, handle: Any) -> bool:
        value = self.call("nvmlDeviceIsMigDeviceHandle", handle)
        return bool(getattr(value, "value", value))

    def parent_of_mig(self, handle: Any) -> Any:
        return self.call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)

    # -- identity ---------------------------------------------------------------------------

    def uuid(self, index: int) -> str:
        return _decode(self.call("nvmlDeviceGetUUID", self.handle(index), device=index))

    def name(self, index: int) -> str:
        return _decode(self.call("nvmlDeviceGetName", self.handle(index), device=index))

    def power_limit_mw(self, index: int) -> int:
        return int(self.call("nvmlDeviceGetEnforcedPowerLimit", self.handle(index), device=index))

    # -- readings ---------------------------------------------------------------------------

    def total_energy_mj(self, index: int) -> int:
        """Energy since the driver loaded, in millijoules (Volta and newer)."""
        h = self.handle(index)
        return int(self.call("nvmlDeviceGetTotalEnergyConsumption", h, device=index))

    def has_energy_counter(self, index: int) -> bool:
        try:
            self.total_energy_mj(index)
        except NvmlNotSupportedError:
            return False
        return True

    def instant_power_mw(self, index: int) -> int:
        """Instantaneous board power (field NVML_FI_DEV_POWER_INSTANT), in milliwatts."""
        m = self.module
        fid = getattr(m, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT)
        scope = getattr(m, "NVML_POWER_SCOPE_GPU", NVML_POWER_SCOPE_GPU)
        values = self.call(
            "nvmlDeviceGetFieldValues", self.handle(index), [(fid, scope)], device=index
        )
        value = values[0]
        ret = int(getattr(value, "nvmlReturn", 0))
        if ret != 0:
            raise nvml_error_class(ret)(
                "nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)",
                ret,
                "field not available",
                index,
            )
        return int(value.value.uiVal)

    def average_power_mw(self, index: int) -> int:
        """nvmlDeviceGetPowerUsage: on Ampere and newer a 1 s average, older GPUs instantaneous."""
        return int(self.call("nvmlDeviceGetPowerUsage", self.handle(index), device=index))

    def power_source(self, index: int) -> str:
        """Which reading ``power_mw`` uses here: ``instant`` (field) or ``power_usage``."""
        via_field = self._power_via_field.get(index)
        if via_field is None:
            try:
                self.instant_power_mw(index)
                via_field = True
            except NvmlError:
                via_field = False
            self._power_via_field[index] = via_field
        return "instant" if via_field else "power_usage"

    def power_mw(self, index: int) -> int:
        """Board power in milliwatts: the instantaneous field where the GPU has it, else
        nvmlDeviceGetPowerUsage. The choice is made once per device (``power_source``)."""
        if self.power_source(index) == "instant":
            return self.instant_power_mw(index)
        return self.average_power_mw(index)

    def temperature_c(self, index: int) -> int:
        sensor = getattr(self.module, "NVML_TEMPERATURE_GPU", NVML_TEMPERATURE_GPU)
        return int(self.call("nvmlDeviceGetTemperature", self.handle(index), sensor, device=index))

    def sm_clock_mhz(self, index: int) -> int:
        clock = getattr(self.module, "NVML_CLOCK_SM", NVML_CLOCK_SM)
        return int(self.call("nvmlDeviceGetClockInfo", self.handle(index), clock, device=index))

    def gpu_util_pct(self, index: int) -> int:
        return int(self.call("nvmlDeviceGetUtilizationRates", self.handle(index), device=index).gpu)

    def clock_event_reasons(self, index: int) -> int:
        """Current clock-event (throttle) reason bitmask."""
        h = self.handle(index)
        if hasattr(self.module, "nvmlDeviceGetCurrentClocksEventReasons"):
            return int(self.call("nvmlDeviceGetCurrentClocksEventReasons", h, device=index))
        return int(self.call("nvmlDeviceGetCurrentClocksThrottleReasons", h, device=index))

    def violation_time_ns(self, index: int, policy: int) -> int:
        """Cumulative time the clocks were held down by ``policy`` (power or thermal), in ns."""
        v = self.call("nvmlDeviceGetViolationStatus", self.handle(index), policy, device=index)
        return int(v.violationTime)

    def running_pids(self, index: int) -> set[int]:
        """PIDs of compute and graphics processes on the GPU, as NVML reports them."""
        h = self.handle(index)
        pids: set[int] = set()
        for call in (
            "nvmlDeviceGetComputeRunningProcesses",
            "nvmlDeviceGetGraphicsRunningProcesses",
        ):
            try:
                pids.update(int(p.pid) for p in self.call(call, h, device=index))
            except NvmlNotSupportedError:
                continue
        return pids


def missing_uuids(uuids: list[str], module: Any | None = None) -> dict[str, str]:
    """Which of ``uuids`` this machine's GPUs do not answer for now, each with why: NVML cannot
    start here, it finds no GPU of that UUID, or the GPU is found but does not answer (lost).
    ``module`` replaces pynvml (tests pass the fake NVML)."""
    nvml = Nvml(module)
    try:
        nvml.init()
    except NvmlUnavailableError as exc:
        return {u: f"NVML cannot start on this machine ({exc})" for u in uuids}
    missing: dict[str, str] = {}
    try:
        for uuid in uuids:
            try:
                handle = nvml.handle_by_uuid(uuid)
                nvml.call("nvmlDeviceGetName", handle)
            except NvmlError as exc:
                missing[uuid] = f"NVML does not find a GPU that answers to it ({exc})"
    finally:
        nvml.shutdown()
    return missing
