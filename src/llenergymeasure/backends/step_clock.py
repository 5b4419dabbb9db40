"""The step clock: a timestamp at the end of every decoding step, without synchronising.

Used as a transformers logits processor: transformers calls it once per step, right after the
forward pass that produced the step's logits (the prefill for the first token). On CUDA it records
a CUDA event there, on the logits' stream: no host-device synchronisation is added, and the
event's time is when the GPU actually finished the step; the times are read once the batch has
finished. On the CPU, where operations run synchronously, the host clock is read instead. See
``docs/backends/pytorch.md``.
"""

from __future__ import annotations

import time
from typing import Any


class StepClock:
    """Timestamps every decoding step; as a logits processor, the scores pass through unchanged."""

    def __init__(self, torch: Any, device: Any) -> None:
        self._torch = torch
        self._cuda = device.type == "cuda"
        self._device = device
        self._start: Any = None
        self._t0 = 0.0
        self._events: list[Any] = []
        self._host_times: list[float] = []

    def begin(self) -> None:
        """Mark time zero of the batch, just before generation starts."""
        self._t0 = time.perf_counter()
        if self._cuda:
            self._start = self._torch.cuda.Event(enable_timing=True)
            self._start.record(self._torch.cuda.current_stream(self._device))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record(self._torch.cuda.current_stream(scores.device))
            self._events.append(event)
        else:
            self._host_times.append(time.perf_counter())
        return scores

    @property
    def steps(self) -> int:
        return len(self._events) if self._cuda else len(self._host_times)

    def offsets_s(self) -> list[float]:
        """Seconds from ``begin`` to the end of each step (call once generation has returned)."""
        if not self._cuda:
            return [t - self._t0 for t in self._host_times]
        if not self._events:
            return []
        self._events[-1].synchronize()
        return [self._start.elapsed_time(e) / 1e3 for e in self._events]
