"""A fake NVML for tests on machines without a GPU: synthetic power traces behind pynvml's names.

``FakeNvml`` has the pynvml functions the energy layer calls, with the same arguments and
return shapes, driven by a clock (real time by default) and per-GPU power traces: constant,
ramp, counter resets, no counter, stalled reads (sampler gaps), throttling, other processes,
MIG slices, and a GPU lost at a chosen time (every call, or chosen calls, raising an NVML code;
off the device count). Inject it (``select_meter(..., nvml_module=FakeNvml([...]))`` or ``Nvml(fake)``);
never patch the real pynvml. It counts every call so tests can assert who polled NVML.

It lives under ``tests/``, not in the installed package: the product never imports a double, so a
fake power reading cannot reach a published result. The tests import it as ``tests.fakes.nvml``
(pytest puts the repository root on ``sys.path``); ``benchmarks/gpu_energy_validation.py
--cpu-smoke`` adds the repository root itself.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar, Protocol


class PowerTrace(Protocol):
    """Power (W) and its exact integral (J) as functions of seconds since the fake started."""

    def power_w(self, t: float) -> float: ...

    def energy_j(self, t: float) -> float: ...


@dataclass(frozen=True)
class ConstantPower:
    watts: float

    def power_w(self, t: float) -> float:
        return self.watts

    def energy_j(self, t: float) -> float:
        return self.watts * max(t, 0.0)


@dataclass(frozen=True)
class RampPower:
    """Linear from ``start_w`` to ``end_w`` over ``over_s`` seconds, then held."""

    start_w: float
    end_w: float
    over_s: float

    def power_w(self, t: float) -> float:
        if t >= self.over_s:
            return self.end_w
        return self.start_w + (self.end_w - self.start_w) * max(t, 0.0) / self.over_s

    def energy_j(self, t: float) -> float:
        t = max(t, 0.0)
        s = min(t, self.over_s)
        ramp = self.start_w * s + (self.end_w - self.start_w) * s * s / (2 * self.over_s)
        return ramp + self.end_w * max(t - self.over_s, 0.0)


class SteppedPower:
    """Piecewise-constant power: ``watts[k]`` over [k * step_s, (k + 1) * step_s), the last value
    held after; exact energy. For idle noise from a seeded generator, with or without a trend."""

    def __init__(self, watts: Sequence[float], step_s: float = 0.1):
        self.watts = [float(w) for w in watts]
        self.step_s = float(step_s)
        self._cum = [0.0]
        for w in self.watts:
            self._cum.append(self._cum[-1] + w * self.step_s)

    def power_w(self, t: float) -> float:
        k = min(max(int(t // self.step_s), 0), len(self.watts) - 1)
        return self.watts[k]

    def energy_j(self, t: float) -> float:
        t = max(t, 0.0)
        k = int(t // self.step_s)
        if k >= len(self.watts):
            return self._cum[-1] + self.watts[-1] * (t - len(self.watts) * self.step_s)
        return self._cum[k] + self.watts[k] * (t - k * self.step_s)


class FakeNVMLError(Exception):
    """Same shape as pynvml.NVMLError: ``value`` holds the NVML return code, and
    ``FakeNVMLError(code)`` is an instance of that code's subclass, named as pynvml names them
    (``NVMLError_GpuIsLost`` for 15, ``NVMLError_Unknown`` for 999, ...), whose constructor takes
    no code (``FakeNvml.NVMLError_GpuIsLost()``), as pynvml's do."""

    _text: ClassVar[dict[int, str]] = {
        1: "Uninitialized",
        2: "Invalid Argument",
        3: "Not Supported",
        4: "Insufficient Permissions",
        6: "Not Found",
        9: "Driver Not Loaded",
        10: "Timeout",
        12: "NVML Shared Library Not Found",
        15: "GPU is lost",
        16: "GPU requires restart",
        28: "GPU not found",
        999: "Unknown Error",
    }
    _classes: ClassVar[dict[int, type[FakeNVMLError]]] = {}
    value: int

    def __new__(cls, value: int | None = None, *args: Any) -> FakeNVMLError:
        if cls is FakeNVMLError and value is not None:
            cls = FakeNVMLError._classes.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = getattr(cls, "code", value)
        return obj

    def __init__(self, value: int | None = None, *args: Any):
        super().__init__(self.value)

    def __str__(self) -> str:
        return self._text.get(self.value, f"NVML Error with code {self.value}")


#: pynvml's NVML_ERROR_* names and codes (nvml.h), as the fake module's constants and classes
NVML_ERROR_CODES: dict[str, int] = {
    "UNINITIALIZED": 1,
    "INVALID_ARGUMENT": 2,
    "NOT_SUPPORTED": 3,
    "NO_PERMISSION": 4,
    "NOT_FOUND": 6,
    "DRIVER_NOT_LOADED": 9,
    "TIMEOUT": 10,
    "LIBRARY_NOT_FOUND": 12,
    "GPU_IS_LOST": 15,
    "RESET_REQUIRED": 16,
    "GPU_NOT_FOUND": 28,
    "UNKNOWN": 999,
}


def _error_class(name: str, code: int) -> type[FakeNVMLError]:
    # pynvml: NVML_ERROR_GPU_IS_LOST -> NVMLError_GpuIsLost
    class_name = "NVMLError_" + "".join(part.capitalize() for part in name.split("_"))
    cls = type(class_name, (FakeNVMLError,), {"code": code})
    FakeNVMLError._classes[code] = cls
    return cls


NVML_ERROR_CLASSES: dict[str, type[FakeNVMLError]] = {
    cls.__name__: cls for cls in (_error_class(n, c) for n, c in NVML_ERROR_CODES.items())
}


@dataclass
class FakeGpu:
    """One fake GPU. Times are seconds since the FakeNvml was created."""

    uuid: str = ""
    name: str = "Fake GPU"
    trace: PowerTrace = field(default_factory=lambda: ConstantPower(100.0))
    has_counter: bool = True
    has_instant_power: bool = True
    counter_offset_mj: int = 5_000_000
    counter_scale: float = 1.0  # the counter reads this much more than the trace's energy
    counter_resets_at_s: tuple[float, ...] = ()
    update_period_s: float = 0.0  # readings change only every this many seconds (0: continuous)
    power_limit_mw: int = 700_000
    temperature_c: int | Callable[[float], int] = 45  # or a function of seconds
    sm_clock_mhz: int = 1980
    gpu_util_pct: int = 100
    memory_used_mib: int = 1024
    memory_total_mib: int = 143_771  # an H200
    clock_event_reasons: int | Callable[[float], int] = 0
    violation_ns_per_s: dict[int, float] = field(default_factory=dict)  # policy -> ns per second
    pids: list[int] = field(default_factory=list)
    stalls: list[tuple[float, float]] = field(default_factory=list)  # (at_s, for_s) on power reads
    mig_uuids: list[str] = field(default_factory=list)
    # A GPU lost mid-run: from ``fails_from_s`` on, its calls raise NVML code ``fails_with``
    # (15 GPU is lost, 999 Unknown Error, ...): every device call, or only those named in
    # ``fails_calls`` (e.g. the sampler's reads but not the counter). From ``gone_from_s`` on it
    # is also off the device count and its UUID no longer resolves (Not Found).
    fails_from_s: float | None = None
    fails_with: int = 15
    fails_calls: tuple[str, ...] = ()
    gone_from_s: float | None = None


@dataclass(frozen=True)
class _Handle:
    index: int
    mig_uuid: str | None = None


class FakeNvml:
    """A pynvml stand-in. Pass ``init_error`` (an NVML code) to make nvmlInit fail."""

    NVMLError = FakeNVMLError
    locals().update(NVML_ERROR_CLASSES)  # NVMLError_GpuIsLost, ... as pynvml's module has them
    locals().update({f"NVML_ERROR_{n}": c for n, c in NVML_ERROR_CODES.items()})
    NVML_SUCCESS = 0
    NVML_ERROR_NOT_SUPPORTED = 3
    NVML_ERROR_LIBRARY_NOT_FOUND = 12
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_POWER_SCOPE_GPU = 0
    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_PERF_POLICY_POWER = 0
    NVML_PERF_POLICY_THERMAL = 1

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
        init_error: int | None = None,
        driver_version: str = "580.00.00",
        read_latency_s: float = 0.0,
        advance: Callable[[float], object] | None = None,
    ):
        self.gpus = gpus if gpus is not None else [FakeGpu()]
        for k, g in enumerate(self.gpus):
            if not g.uuid:
                g.uuid = f"GPU-fake{k:04d}-0000-0000-0000-000000000000"
        self.clock = clock
        self.t_start = clock()
        self.init_error = init_error
        self.driver = driver_version
        self.calls: Counter[str] = Counter()
        self.init_depth = 0
        self._lock = threading.Lock()
        self._stalls_done: set[tuple[int, int]] = set()
        # Each device call costs ``read_latency_s`` on the clock (``advance``, e.g. a ManualClock's):
        # a fake-clock model of NVML's few-ms reads, taken before the value is read.
        self.read_latency_s = read_latency_s
        self.advance = advance

    # -- helpers ----------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock() - self.t_start

    def _t(self, gpu: FakeGpu) -> float:
        t = self.now()
        if gpu.update_period_s > 0:
            t = math.floor(t / gpu.update_period_s) * gpu.update_period_s
        return t

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def _gpu(self, handle: Any) -> FakeGpu:
        if not isinstance(handle, _Handle) or not 0 <= handle.index < len(self.gpus):
            raise FakeNVMLError(2)
        if self.init_depth <= 0:
            raise FakeNVMLError(1)
        if self.advance is not None and self.read_latency_s > 0:
            self.advance(self.read_latency_s)
        gpu = self.gpus[handle.index]
        if gpu.fails_from_s is not None and self.now() >= gpu.fails_from_s:
            # the pynvml function that asked (one frame up, or two through _power_mw)
            calls = {sys._getframe(1).f_code.co_name, sys._getframe(2).f_code.co_name}
            if not gpu.fails_calls or calls & set(gpu.fails_calls):
                raise FakeNVMLError(gpu.fails_with)
        return gpu

    def _gone(self, gpu: FakeGpu) -> bool:
        return gpu.gone_from_s is not None and self.now() >= gpu.gone_from_s

    def _maybe_stall(self, handle: _Handle) -> None:
        gpu = self.gpus[handle.index]
        t = self.now()
        for k, (at, dur) in enumerate(gpu.stalls):
            key = (handle.index, k)
            if t >= at and key not in self._stalls_done:
                with self._lock:
                    if key in self._stalls_done:
                        continue
                    self._stalls_done.add(key)
                time.sleep(dur)

    def polling_calls(self) -> int:
        """How many periodic-reading calls (power, temperature, clocks, utilisation) were made."""
        names = (
            "nvmlDeviceGetFieldValues",
            "nvmlDeviceGetPowerUsage",
            "nvmlDeviceGetTemperature",
            "nvmlDeviceGetClockInfo",
            "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetMemoryInfo",
        )
        return sum(self.calls[n] for n in names)

    # -- pynvml API -------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if self.init_error is not None:
            raise FakeNVMLError(self.init_error)
        self.init_depth += 1

    def nvmlShutdown(self) -> None:
        self._count("nvmlShutdown")
        if self.init_depth <= 0:
            raise FakeNVMLError(1)
        self.init_depth -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._count("nvmlDeviceGetCount")
        if self.init_depth <= 0:
            raise FakeNVMLError(1)
        return sum(not self._gone(g) for g in self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._count("nvmlDeviceGetHandleByIndex")
        h = _Handle(index)
        self._gpu(h)
        return h

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        self._count("nvmlDeviceGetHandleByUUID")
        for k, g in enumerate(self.gpus):
            if self._gone(g):
                continue
            if g.uuid == uuid:
                return _Handle(k)
            if uuid in g.mig_uuids:
                return _Handle(k, mig_uuid=uuid)
        raise FakeNVMLError(6)

    def nvmlDeviceIsMigDeviceHandle(self, handle: _Handle) -> int:
        return 1 if handle.mig_uuid else 0

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: _Handle) -> _Handle:
        if not handle.mig_uuid:
            raise FakeNVMLError(2)
        return _Handle(handle.index)

    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:
        self._gpu(handle)
        return handle.index

    def nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return self._gpu(handle).uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._gpu(handle).name

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._gpu(handle).power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        self._count("nvmlDeviceGetTotalEnergyConsumption")
        gpu = self._gpu(handle)
        if not gpu.has_counter:
            raise FakeNVMLError(3)
        t = self._t(gpu)
        resets = [r for r in gpu.counter_resets_at_s if r <= t]
        if resets:
            since = gpu.trace.energy_j(t) - gpu.trace.energy_j(max(resets))
            return int(since * gpu.counter_scale * 1000)
        return int(gpu.counter_offset_mj + gpu.trace.energy_j(t) * gpu.counter_scale * 1000)

    def _power_mw(self, handle: _Handle, gpu: FakeGpu | None = None) -> int:
        gpu = gpu if gpu is not None else self._gpu(handle)
        self._maybe_stall(handle)
        return round(gpu.trace.power_w(self._t(gpu)) * 1000)

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        self._count("nvmlDeviceGetPowerUsage")
        return self._power_mw(handle)

    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: list[Any]) -> list[Any]:
        self._count("nvmlDeviceGetFieldValues")
        gpu = self._gpu(handle)
        out = []
        for fid in field_ids:
            scope = self.NVML_POWER_SCOPE_GPU
            if isinstance(fid, tuple):
                fid, scope = fid
                if not isinstance(fid, int) or not isinstance(scope, int):  # ctypes refuses them
                    raise TypeError(f"field id and scope must be integers, not {fid!r}, {scope!r}")
            if (
                fid == self.NVML_FI_DEV_POWER_INSTANT
                and scope == self.NVML_POWER_SCOPE_GPU  # other scopes (module, memory): not faked
                and gpu.has_instant_power
            ):
                out.append(
                    SimpleNamespace(
                        nvmlReturn=0, value=SimpleNamespace(uiVal=self._power_mw(handle, gpu))
                    )
                )
            else:
                out.append(SimpleNamespace(nvmlReturn=3, value=SimpleNamespace(uiVal=0)))
        return out

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        self._count("nvmlDeviceGetTemperature")
        gpu = self._gpu(handle)
        if sensor != self.NVML_TEMPERATURE_GPU:  # the only sensor NVML defines
            raise FakeNVMLError(2)
        if callable(gpu.temperature_c):
            return int(gpu.temperature_c(self._t(gpu)))
        return gpu.temperature_c

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock: int) -> int:
        self._count("nvmlDeviceGetClockInfo")
        gpu = self._gpu(handle)
        if clock != self.NVML_CLOCK_SM:  # graphics/memory/video clocks are not faked
            raise FakeNVMLError(2)
        return gpu.sm_clock_mhz

    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        self._count("nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self._gpu(handle).gpu_util_pct, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: _Handle) -> Any:
        self._count("nvmlDeviceGetMemoryInfo")
        gpu = self._gpu(handle)
        used, total = gpu.memory_used_mib * 2**20, gpu.memory_total_mib * 2**20
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        self._count("nvmlDeviceGetCurrentClocksEventReasons")
        gpu = self._gpu(handle)
        r = gpu.clock_event_reasons
        return r(self.now()) if callable(r) else r

    def nvmlDeviceGetViolationStatus(self, handle: _Handle, policy: int) -> Any:
        self._count("nvmlDeviceGetViolationStatus")
        gpu = self._gpu(handle)
        if policy not in gpu.violation_ns_per_s:
            return SimpleNamespace(referenceTime=0, violationTime=0)
        ns = int(gpu.violation_ns_per_s[policy] * self.now())
        return SimpleNamespace(referenceTime=int(self.now() * 1e9), violationTime=ns)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[Any]:
        self._count("nvmlDeviceGetComputeRunningProcesses")
        return [SimpleNamespace(pid=p, usedGpuMemory=0) for p in self._gpu(handle).pids]

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[Any]:
        return []
