"""A fake ``zeus.monitor`` (ZeusMonitor, PowerMonitor) reading the fake NVML's energy counter.

``ZeusMonitor.end_window`` returns the counter difference like Zeus does on Volta and newer GPUs,
so when the fake GPU's counter resets inside a window the energy it reports goes negative, as the
real one would. ``PowerMonitor`` reports one deduplicated (timestamp, W) sample per GPU, as Zeus
does for a constant power. Both take a ``clock`` (``time.time`` by default; Zeus uses wall time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from tests.fakes.nvml import FakeNvml


class FakeZeusMonitor:
    """Zeus's ZeusMonitor interface (begin_window/end_window/gpus), reading the fake counter."""

    def __init__(
        self,
        fake: FakeNvml,
        gpu_indices: list[int],
        cpu_indices: list[int],
        clock: Callable[[], float] = time.time,
    ):
        self.fake = fake
        self.gpus = list(range(len(fake.gpus)))
        self.gpu_indices = gpu_indices
        self.clock = clock
        self.windows: dict[str, tuple[float, dict[int, int]]] = {}

    def _read(self) -> dict[int, int]:
        return {
            i: self.fake.nvmlDeviceGetTotalEnergyConsumption(
                self.fake.nvmlDeviceGetHandleByIndex(i)
            )
            for i in self.gpu_indices
        }

    def begin_window(self, key: str, sync_execution: bool = True) -> None:
        assert not sync_execution  # syncing is the harness's job
        self.windows[key] = (self.clock(), self._read())

    def end_window(self, key: str, sync_execution: bool = True) -> Any:
        t0, e0 = self.windows.pop(key)
        e1 = self._read()
        return SimpleNamespace(
            time=self.clock() - t0, gpu_energy={i: (e1[i] - e0[i]) / 1000 for i in e1}
        )


class FakePowerMonitor:
    """Zeus's PowerMonitor interface: deduplicated (timestamp, W) samples per GPU."""

    def __init__(
        self,
        watts: float,
        gpu_indices: list[int],
        update_period: float,
        power_domains: Any,
        clock: Callable[[], float] = time.time,
    ):
        self.t0 = clock()
        self.watts = watts
        self.gpu_indices = gpu_indices
        self.stopped = False

    def get_power_timeline(self, domain: str, start_time: Any = None, end_time: Any = None) -> Any:
        assert domain == "device_instant"
        return {i: [(self.t0, self.watts)] for i in self.gpu_indices}  # constant: one sample

    def stop(self) -> None:
        self.stopped = True


def fake_zeus(
    fake: FakeNvml,
    watts: float = 250.0,
    fail: bool = False,
    clock: Callable[[], float] = time.time,
) -> Any:
    """A stand-in for the ``zeus.monitor`` module, for ``select_meter(zeus_module=...)``."""

    def monitor(gpu_indices: list[int], cpu_indices: list[int]) -> FakeZeusMonitor:
        if fail:
            raise ValueError("no GPU for Zeus")
        return FakeZeusMonitor(fake, gpu_indices, cpu_indices, clock)

    def power(**kw: Any) -> FakePowerMonitor:
        return FakePowerMonitor(watts, clock=clock, **kw)

    return SimpleNamespace(ZeusMonitor=monitor, PowerMonitor=power)
