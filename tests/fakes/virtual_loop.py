"""An asyncio event loop on virtual time, for tests of code that waits (the serving driver).

``loop.time()`` is a number that moves only when the loop would wait: where a real loop blocks in
``select(timeout)`` until its next timer, this one moves its clock by ``timeout`` at once, so
``asyncio.sleep(0.25)`` takes 0.25 virtual seconds and no real time. Every pass through the loop
that waits for nothing (``asyncio.sleep(0)``, a ready callback) costs ``tick_s`` of virtual time,
the loop's own overhead, so a busy-wait on ``loop.time()`` ends. ``hold(seconds)`` stands for a
callback that keeps the loop busy (CPU work on the loop's thread): the clock jumps and every timer
due in between fires late, as on a loaded machine. Results are the same on a quiet or a loaded
machine: nothing here reads a real clock.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable
from typing import Any

#: virtual seconds one pass of the loop costs when it has nothing to wait for
TICK_S = 1e-5


class _VirtualSelector:
    """The real selector (the loop's self-pipe) polled without blocking; waiting moves time."""

    def __init__(self, inner: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = self._inner.select(0)
        if ready:
            return ready
        if timeout is None:
            raise RuntimeError("virtual-time loop: nothing scheduled, the loop would wait forever")
        self._loop.hold(max(timeout, self._loop.tick_s))
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is virtual (see the module docstring)."""

    def __init__(self, start_s: float = 1000.0, tick_s: float = TICK_S) -> None:
        super().__init__()
        self._now = float(start_s)
        self.tick_s = tick_s
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[assignment]

    def time(self) -> float:
        return self._now

    def hold(self, seconds: float) -> None:
        """Move virtual time forward (a wait, or the loop kept busy for ``seconds``)."""
        if seconds < 0:
            raise ValueError(f"time does not go back: hold({seconds})")
        self._now += seconds


def run_virtual(
    make: Callable[[VirtualTimeLoop], Awaitable[Any]], start_s: float = 1000.0
) -> tuple[Any, VirtualTimeLoop]:
    """Run ``make(loop)`` to completion on a fresh virtual-time loop; (its result, the loop)."""
    loop = VirtualTimeLoop(start_s)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(make(loop)), loop
    finally:
        asyncio.set_event_loop(None)
        loop.close()
