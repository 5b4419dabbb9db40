"""Background NVML sampler: power, temperature, SM clock, utilisation, clock-event reasons, the
energy counter and device memory in use, at about the sensor's own update period.

The sampler shares the CPU with the workload it measures (a Python generate loop is often
CPU-bound), so its loop does nothing but the NVML reads: the readers are bound once, samples go
into preallocated numpy arrays that grow by doubling, and the thread sleeps on an Event between
samples. Samples exist for the time series saved beside the result and for validity checks
(integrated-power cross-check, gaps, throttling); the primary energy number is the counter.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from llenergymeasure.energy.errors import DEVICE_LOST_CODES, NvmlDeviceLostError
from llenergymeasure.energy.nvml import (
    NVML_CLOCK_SM,
    NVML_FI_DEV_POWER_INSTANT,
    NVML_POWER_SCOPE_GPU,
    NVML_TEMPERATURE_GPU,
    Nvml,
)

COLUMNS: tuple[str, ...] = (
    "power_w",
    "temperature_c",
    "sm_clock_mhz",
    "gpu_util_pct",
    "throttle_reasons",
    "energy_counter_mj",
    "memory_used_mb",
)
POWER, TEMPERATURE, SM_CLOCK, UTIL, REASONS, COUNTER, MEMORY = range(len(COLUMNS))

Reader = Callable[[], float]

#: the NVML function behind each column's reader, to name it when a read fails
READ_CALLS: dict[int, str] = {
    TEMPERATURE: "nvmlDeviceGetTemperature",
    SM_CLOCK: "nvmlDeviceGetClockInfo",
    UTIL: "nvmlDeviceGetUtilizationRates",
    REASONS: "nvmlDeviceGetCurrentClocksEventReasons",
    COUNTER: "nvmlDeviceGetTotalEnergyConsumption",
    MEMORY: "nvmlDeviceGetMemoryInfo",
}


class SampleBuffer:
    """Rows of (time, per-device columns) in preallocated arrays; grows by doubling. Each row
    also holds each device's own read time (``device_t``: when its power reading returned),
    since the devices of one row are read one after another or side by side."""

    def __init__(self, n_devices: int, capacity: int = 1024):
        self.n_devices = n_devices
        self.t = np.empty(capacity, dtype=np.float64)
        self.device_t = np.full((capacity, n_devices), np.nan, dtype=np.float64)  # power read
        self.values = np.full((capacity, n_devices, len(COLUMNS)), np.nan, dtype=np.float64)
        self.n = 0

    def reset(self) -> None:
        self.n = 0

    def next_row(self, t: float) -> int:
        """Reserve the next row at time ``t`` (NaN-filled) and return its index."""
        row = self.n
        if row == self.t.shape[0]:
            cap = 2 * row
            t_new = np.empty(cap, dtype=np.float64)
            t_new[:row] = self.t
            d_new = np.full((cap, self.n_devices), np.nan, dtype=np.float64)
            d_new[:row] = self.device_t
            v_new = np.full((cap, self.n_devices, len(COLUMNS)), np.nan, dtype=np.float64)
            v_new[:row] = self.values
            self.t, self.device_t, self.values = t_new, d_new, v_new
        self.t[row] = t
        self.device_t[row] = np.nan
        self.values[row] = np.nan
        self.n = row + 1
        return row

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """(times, values) of the rows so far (views, not copies)."""
        return self.t[: self.n], self.values[: self.n]

    def device_times(self) -> np.ndarray:
        """Each device's read time per row so far, ``[rows, devices]`` (a view)."""
        return self.device_t[: self.n]


def bind_readers(
    nvml: Nvml, index: int, read_counter: bool, extras: bool
) -> list[tuple[int, Reader]]:
    """Readers for one device: plain closures over the raw module function and handle, tried
    once here so that a reading the GPU lacks is left out instead of failing every sample."""
    m = nvml.module
    h = nvml.handle(index)
    readers: list[tuple[int, Reader]] = []

    if nvml.power_source(index) == "instant":
        get_fields = m.nvmlDeviceGetFieldValues
        fields = [
            (
                getattr(m, "NVML_FI_DEV_POWER_INSTANT", NVML_FI_DEV_POWER_INSTANT),
                getattr(m, "NVML_POWER_SCOPE_GPU", NVML_POWER_SCOPE_GPU),
            )
        ]
        lost_error = nvml.error_type

        def power() -> float:
            v = get_fields(h, fields)[0]
            if v.nvmlReturn in DEVICE_LOST_CODES:  # the field's own status: the GPU is gone
                raise lost_error(v.nvmlReturn)
            return v.value.uiVal / 1000.0 if v.nvmlReturn == 0 else math.nan

    else:
        get_power = m.nvmlDeviceGetPowerUsage

        def power() -> float:
            return float(get_power(h)) / 1000.0

    candidates: list[tuple[int, Reader]] = [(POWER, power)]
    if read_counter:
        get_energy = m.nvmlDeviceGetTotalEnergyConsumption
        candidates.append((COUNTER, lambda: float(get_energy(h))))
    if extras:
        get_temp = m.nvmlDeviceGetTemperature
        sensor = getattr(m, "NVML_TEMPERATURE_GPU", NVML_TEMPERATURE_GPU)
        get_clock = m.nvmlDeviceGetClockInfo
        clock = getattr(m, "NVML_CLOCK_SM", NVML_CLOCK_SM)
        get_util = m.nvmlDeviceGetUtilizationRates
        get_memory = m.nvmlDeviceGetMemoryInfo
        get_reasons = (
            getattr(m, "nvmlDeviceGetCurrentClocksEventReasons", None)
            or m.nvmlDeviceGetCurrentClocksThrottleReasons
        )
        candidates += [
            (TEMPERATURE, lambda: float(get_temp(h, sensor))),
            (SM_CLOCK, lambda: float(get_clock(h, clock))),
            (UTIL, lambda: float(get_util(h).gpu)),
            (REASONS, lambda: float(get_reasons(h))),
            (MEMORY, lambda: get_memory(h).used / 2**20),  # bytes -> MiB, every process's
        ]
    err = nvml.error_type
    for col, read in candidates:
        try:
            read()
        except err:
            continue  # not supported here: the column stays empty
        readers.append((col, read))
    return readers


class Sampler:
    """Samples the given NVML devices every ``period_s`` on a daemon thread.

    ``begin()`` takes the first row synchronously and starts the threads; ``end()`` stops and
    joins them, then takes a last row, so the time series always spans the window.

    In the background each device has its own reader thread on the shared schedule (slot ``k``
    at ``t0 + k * period`` is row ``k``): every NVML call releases the GIL and must take it back
    on return, which from a busy main thread (a CPU-bound generate loop) takes up to the 5 ms
    switch interval, so 6 calls x 8 GPUs read one after another by one thread cost 48 such
    waits per sample; threads of their own overlap them (``benchmarks/sampler_many_gpus.py``,
    ``docs/performance.md``). Each device's read time is kept (``SampleBuffer.device_times``).

    A read that fails with a code of ``DEVICE_LOST_CODES`` (GPU is lost, reset required, GPU not
    found, unknown error) is not a gap: the first one is kept as ``lost`` (an
    ``NvmlDeviceLostError`` naming the call and the GPU) and every reader thread stops, so the
    meter's ``stop()`` fails the window instead of computing energy over a dead device. Other
    failed reads are counted (``read_errors``) and leave a gap.

    Test seams: ``clock`` stamps the rows (``time.perf_counter`` by default); with
    ``background=False`` no thread runs and rows are taken only by ``begin``, ``end`` and explicit
    ``sample()`` calls, so a test can drive a fake clock without sleeping.
    """

    def __init__(
        self,
        nvml: Nvml,
        nvml_indices: Sequence[int],
        period_s: float,
        read_counter: Sequence[bool] | None = None,
        extras: bool = True,
        counter_every: int = 10,
        clock: Callable[[], float] = time.perf_counter,
        background: bool = True,
    ):
        if not period_s > 0:
            raise ValueError(f"sampler period_s must be > 0 seconds, got {period_s!r}")
        self.period_s = float(period_s)
        self.nvml_indices = list(nvml_indices)
        counters = (
            list(read_counter) if read_counter is not None else [True] * len(self.nvml_indices)
        )
        if counter_every < 1:
            raise ValueError(f"counter_every must be >= 1 sample, got {counter_every!r}")
        self.counter_every = int(counter_every)
        bound = [
            bind_readers(nvml, idx, counters[k], extras) for k, idx in enumerate(self.nvml_indices)
        ]
        # The energy counter is by far the slowest read (about 3 ms on an H200, the others a few
        # microseconds), so the sampler reads it only every ``counter_every`` samples.
        self._readers = [[(c, r) for c, r in rs if c != COUNTER] for rs in bound]
        self._counter_readers = [[(c, r) for c, r in rs if c == COUNTER] for rs in bound]
        self._ticks = 0
        self._nvml = nvml
        self.lost: NvmlDeviceLostError | None = None
        self._error_type: type[BaseException] = nvml.error_type
        self.buffer = SampleBuffer(len(self.nvml_indices))
        self.read_errors = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.t0 = 0.0
        self.clock = clock
        self.background = background
        self._device_errors = [0] * len(self.nvml_indices)

    @property
    def columns_read(self) -> list[set[str]]:
        """Which columns each device actually provides."""
        return [
            {COLUMNS[c] for c, _ in fast + slow}
            for fast, slow in zip(self._readers, self._counter_readers, strict=True)
        ]

    def sample(self) -> None:
        """Take one row now, reading the devices one after another. Only the reads."""
        row = self.buffer.next_row(self.clock())
        counter = self._ticks % self.counter_every == 0
        for d in range(len(self._readers)):
            got, at = self._read_values(d, counter)
            self._write(row, d, got, at)
        self._ticks += 1

    def _read_values(self, d: int, counter: bool) -> tuple[list[tuple[int, float]], float]:
        """Device ``d``'s readings as ``(column, value)`` (a failed read is counted and left out),
        and the device's read time: when its first reading (power) returned, the moment that
        value was seen (a stalled read shows as the gap before it)."""
        err = self._error_type
        readers = self._readers[d] + self._counter_readers[d] if counter else self._readers[d]
        out: list[tuple[int, float]] = []
        at: float | None = None
        for col, read in readers:
            try:
                out.append((col, read()))
            except err as exc:
                code = getattr(exc, "value", None)
                if code in DEVICE_LOST_CODES:
                    self._device_lost(d, col, code, exc)
                    break
                self._device_errors[d] += 1
            if at is None:
                at = self.clock()
        return out, at if at is not None else self.clock()

    def _device_lost(self, d: int, col: int, code: int, exc: BaseException) -> None:
        """Keep the first lost-device error (naming the NVML call and the GPU) and stop every
        reader thread: nothing read after it belongs to a measurement."""
        index = self.nvml_indices[d]
        call = READ_CALLS.get(col)
        if call is None:  # POWER: which call depends on the GPU's power source
            instant = self._nvml.power_source(index) == "instant"
            call = "nvmlDeviceGetFieldValues" if instant else "nvmlDeviceGetPowerUsage"
        with self._lock:
            if self.lost is None:
                self.lost = NvmlDeviceLostError(call, code, str(exc) or type(exc).__name__, index)
        self._stop.set()

    def _write(self, row: int, d: int, got: list[tuple[int, float]], at: float) -> None:
        """Store device ``d``'s readings in ``row`` (creating the rows up to it, each at its slot's
        time, for the reader threads), under the lock: a row added by one reader thread may
        reallocate the arrays another is about to write to."""
        with self._lock:
            buf = self.buffer
            while buf.n <= row:
                buf.next_row(self.t0 + buf.n * self.period_s)
            for col, value in got:
                buf.values[row, d, col] = value
            buf.device_t[row, d] = at
            self.read_errors = sum(self._device_errors)

    def _run_device(self, d: int) -> None:
        """One device's reader thread: slot ``k`` at ``t0 + k * period`` goes to row ``k``; a
        slot already past when the reads end is skipped (its row has no value of this device,
        which the sampler-gap check sees)."""
        period, t0, stop, clock = self.period_s, self.t0, self._stop, self.clock
        k = 1
        while not stop.is_set():
            delay = t0 + k * period - clock()
            if delay > 0 and stop.wait(delay):
                break
            got, at = self._read_values(d, k % self.counter_every == 0)
            self._write(k, d, got, at)
            k = max(k + 1, int((clock() - t0) / period) + 1)

    def begin(self, t0: float) -> None:
        """Start a window at ``t0`` (perf_counter seconds): first row now, then the threads."""
        if self._threads:
            raise RuntimeError("sampler already running; call end() first")
        self.buffer.reset()
        self.lost = None
        self.read_errors = 0
        self._device_errors = [0] * len(self.nvml_indices)
        self._ticks = 0
        self.t0 = t0
        self._stop.clear()
        self.sample()
        if not self.background or self.lost is not None:
            return
        self._threads = [
            threading.Thread(
                target=self._run_device, args=(d,), name=f"llem-nvml-sampler-{i}", daemon=True
            )
            for d, i in enumerate(self.nvml_indices)
        ]
        for thread in self._threads:
            thread.start()

    def end(self) -> None:
        """Stop the threads, wait for them, take the last row (none after a lost device)."""
        threads, self._threads = self._threads, []
        self._stop.set()
        for thread in threads:
            thread.join()
        if self.lost is None:
            self.sample()

    @property
    def running(self) -> bool:
        return bool(self._threads)


def busy_stats(util_pct: np.ndarray, memory_mb: np.ndarray) -> tuple[float | None, float | None]:
    """How busy one GPU was over a window's samples: (mean NVML utilisation %, highest memory in
    use MiB), each None where no sample read it. A GPU held but left idle shows about 0 %."""
    util = util_pct[~np.isnan(util_pct)]
    memory = memory_mb[~np.isnan(memory_mb)]
    return (
        float(np.mean(util)) if util.size else None,
        float(np.max(memory)) if memory.size else None,
    )


def integrate_power(t: np.ndarray, p: np.ndarray, t_start: float, t_end: float) -> float | None:
    """Trapezoidal integral (J) of power ``p`` (W) over [t_start, t_end].

    NaN samples are dropped; the boundaries are interpolated from the neighbouring samples (or
    held from the nearest one), so edge samples taken a few ms outside the window do not count.
    """
    ok = ~np.isnan(p)
    t, p = t[ok], p[ok]
    if t.size == 0 or t_end <= t_start:
        return None
    if t.size == 1:
        return float(p[0] * (t_end - t_start))
    inside = (t > t_start) & (t < t_end)
    tt = np.concatenate(([t_start], t[inside], [t_end]))
    pp = np.concatenate(([np.interp(t_start, t, p)], p[inside], [np.interp(t_end, t, p)]))
    return float(np.sum((pp[1:] + pp[:-1]) * np.diff(tt)) / 2.0)
