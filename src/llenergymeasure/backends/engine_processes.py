"""Making sure an engine's worker processes end with it: wait, then SIGTERM, then SIGKILL.

Engines that run the model in child processes (vLLM's engine core and workers) can leave one
behind when their own shutdown fails; a process left on the GPU would distort the next
measurement. Only the processes the engine started (and their descendants) are touched, never
other children of this process. Linux ``/proc`` is read; elsewhere processes count as gone.
"""

from __future__ import annotations

import logging
import os
import signal
import time

from llenergymeasure._proc import descendant_pids

logger = logging.getLogger(__name__)


def stop_engine_processes(
    engine_pids: set[int], exit_grace_s: float, signal_grace_s: float, engine: str = "engine"
) -> None:
    """Wait ``exit_grace_s`` for ``engine_pids`` (and descendants) to exit; signal any left.

    After the grace, SIGTERM, then SIGKILL, each followed by up to ``signal_grace_s`` of waiting.
    """
    pids = set(engine_pids)
    for pid in engine_pids:
        pids |= descendant_pids(pid)
    # Python's multiprocessing resource tracker is started on first use and serves this
    # process for its whole life (it ignores SIGTERM by design); it is not the engine's.
    pids = {p for p in pids if not _is_resource_tracker(p)}
    if not pids:
        return
    left = _wait_gone(pids, exit_grace_s)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not left:
            return
        logger.warning(
            "%s processes %s still alive after shutdown; sending %s",
            engine,
            sorted(left),
            sig.name,
        )
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        left = _wait_gone(left, signal_grace_s)
    if left:
        logger.error("%s processes %s could not be stopped", engine, sorted(left))


def _is_resource_tracker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    return b"multiprocessing.resource_tracker" in cmdline


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    left = {p for p in pids if _alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if _alive(p)}
    return left
