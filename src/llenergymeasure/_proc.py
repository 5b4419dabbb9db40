"""Process-tree helpers read from /proc (Linux); empty answers elsewhere."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def descendant_pids(root: int, include_zombies: bool = False) -> set[int]:
    """PIDs of ``root``'s descendants (engine workers and their children).

    Zombies have exited and only wait for their parent to reap them; they are left out unless
    ``include_zombies``.
    """
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            fields = stat.rsplit(")", 1)[1].split()
            state, ppid = fields[0], int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
        if state == "Z" and not include_zombies:
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def end_descendants(root: int, grace_s: float = 5.0, poll_s: float = 0.05) -> set[int]:
    """End ``root``'s descendants (an engine's workers): SIGTERM each, SIGKILL those still running
    after ``grace_s``; zombies among ``root``'s own children are reaped. Returns the pids found."""
    pids = descendant_pids(root)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 1.0)
        while True:
            for pid in pids:
                with contextlib.suppress(OSError):  # not our child, or already reaped
                    os.waitpid(pid, os.WNOHANG)
            if not any(_running(p) for p in pids) or time.monotonic() >= deadline:
                break
            time.sleep(poll_s)
        if not any(_running(p) for p in pids):
            break
    return pids


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None  # exited, waiting to be reaped
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return None


def process_record(pid: int) -> dict[str, object]:
    """What identifies a live process on this machine: pid, start time, boot, host."""
    import socket

    return {
        "pid": pid,
        "start_ticks": _start_ticks(pid),
        "boot_id": _boot_id(),
        "host": socket.gethostname(),
    }


def recorded_process_alive(record: dict[str, object]) -> bool | None:
    """Whether the process ``record`` (from ``process_record``) still runs.

    ``None`` when this machine cannot tell (another host or boot, or no /proc). A pid reused by
    another process has another start time, so it does not count as alive.
    """
    import socket

    pid, ticks = record.get("pid"), record.get("start_ticks")
    if not isinstance(pid, int) or not isinstance(ticks, int):
        return None
    if record.get("host") != socket.gethostname() or record.get("boot_id") != _boot_id():
        return None
    if _boot_id() is None:
        return None
    return _start_ticks(pid) == ticks
