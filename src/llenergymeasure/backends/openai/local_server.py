"""Which local processes serve a TCP port: the attached server's PIDs, for the foreign_process gate.

In attach mode the server is not llem's child, so the energy meter would count it as another
process on a measured GPU and fail the ``foreign_process`` gate on every run. When the server
listens on this host (and its processes are visible: same PID namespace, or a container started
with ``--pid=host``), its PIDs are found from the kernel's socket tables: the inode of the socket
listening on the port in ``/proc/net/tcp`` or ``tcp6``, then the processes holding that inode open
(``/proc/PID/fd``). The meter then treats those PIDs and their descendants (engine workers) as the
experiment's own; any other process on the GPUs still fails the gate.
"""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"


def listening_inodes(port: int, proc: str = "/proc") -> set[str]:
    """Socket inodes listening on ``port`` (any local address, IPv4 or IPv6)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(proc, "net", table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(fields[9])
    return inodes


def listening_pids(port: int, proc: str = "/proc") -> set[int]:
    """PIDs of the processes holding a socket that listens on ``port`` (empty when none is
    visible: another host, another PID namespace, or no permission to read their fds)."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return set()
    targets = {f"socket:[{inode}]" for inode in inodes}
    found: set[int] = set()
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(os.path.join(entry.path, "fd"))
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    if os.readlink(fd.path) in targets:
                        found.add(int(entry.name))
                        break
                except OSError:
                    continue
    return found


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine (loopback, or one of its own addresses)."""
    import socket

    if host in ("localhost", "0.0.0.0", "::", "::1") or host.startswith("127."):
        return True
    try:
        return host in {socket.gethostname(), socket.getfqdn()} or host in {
            info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)
        }
    except OSError:
        return False
