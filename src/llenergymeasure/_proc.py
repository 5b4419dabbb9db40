"""Process-tree helpers read from /proc (Linux); empty answers elsewhere."""

from __future__ import annotations

import os


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
