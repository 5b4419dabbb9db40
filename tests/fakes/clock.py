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


class SteppedWallClock:
    """Wall time (``time.time``'s stand-in) over a ``ManualClock``: it moves with it, and
    ``step`` jumps it forward or back as an NTP correction does, while the monotonic clock
    underneath does not move."""

    def __init__(self, monotonic: ManualClock, start: float = 1_800_000_000.0) -> None:
        self.monotonic = monotonic
        self.offset = start - monotonic()

    def __call__(self) -> float:
        return self.monotonic() + self.offset

    def step(self, seconds: float) -> None:
        self.offset += seconds
