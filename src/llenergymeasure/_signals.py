"""Stop signals for the CLI: Ctrl-C (SIGINT) and SIGTERM end a study the same clean way.

A process started as a background job of a non-interactive shell (``llem run ... &`` in a script,
CI wrappers) inherits SIGINT *ignored*, and Python then installs no Ctrl-C handler: the CLI installs
one explicitly. SIGTERM (what SLURM, systemd and ``docker stop`` send) raises ``StopRequested``, a
``KeyboardInterrupt``, so every cleanup path written for Ctrl-C (stop the experiment's process
group or container, mark the run interrupted, print the resume command) serves both; the exit
status is 128 + the signal number (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
from types import FrameType


class StopRequested(KeyboardInterrupt):
    """A stop signal other than SIGINT arrived (SIGTERM)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


_received: list[int] = []


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise StopRequested(signum)


def install_stop_handlers() -> None:
    """Ctrl-C and SIGTERM raise in the main thread, whatever dispositions ``llem`` inherited."""
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)


def last_stop_signal() -> int | None:
    """The stop signal received last by a handler of this module, if any."""
    return _received[-1] if _received else None


def stop_description(exc: BaseException) -> tuple[str, int]:
    """(how the stop is described, exit status) for an interrupt exception."""
    if isinstance(exc, StopRequested):
        return f"stopped by {signal.Signals(exc.signum).name}", 128 + exc.signum
    return "stopped by the user (Ctrl-C)", 128 + signal.SIGINT
