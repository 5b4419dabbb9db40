"""A clock that moves only when a test says so, for meters and fakes that take a ``clock``."""

from __future__ import annotations


class ManualClock:
    """Seconds as a float; ``advance`` moves it forward. Start far from 0 like perf_counter."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = float(start)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        self.t += seconds
        return self.t
