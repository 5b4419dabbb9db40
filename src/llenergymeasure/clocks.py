"""Which clock for what, in one place.

Wall time (``timestamps.utc_now``) is for timestamps only: NTP may step it at any moment, so two
wall readings never make a duration. Durations inside one process come from ``time.perf_counter``
or ``time.monotonic``. Times compared between two processes (the study controller and a run's
harness) come from CLOCK_MONOTONIC, which on Linux is one clock for the whole machine, counted
from boot: two readings are comparable only when both processes say the same ``boot_id``.

At the bottom of the import graph (standard library only).
"""

from __future__ import annotations

BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def boot_id(path: str = BOOT_ID_FILE) -> str | None:
    """This machine's boot (a UUID the kernel draws at boot), or None where it cannot be read."""
    try:
        with open(path) as fh:
            return fh.read().strip() or None
    except OSError:
        return None
