"""The output of an engine's own processes, kept so that a failure can say what they said.

Engines such as vLLM start worker processes that inherit this process's stdout and stderr; when
one of them fails, the exception the caller sees is only "initialization failed, see root cause
above" and the root cause is in those processes' output. ``OutputTail`` tees file descriptors 1
and 2 through pipes while the engine starts: every byte still reaches the original destination
(``run.log``, the container log, the terminal), unchanged and in order per stream, and the last
lines are kept. Processes started meanwhile inherit the pipes, so a pump thread per stream runs
until every holder has exited (the engine's close). ``root_cause`` picks the exception lines out
of the kept text.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections import deque

#: log prefixes engines put before each line: ``(EngineCore pid=12) ERROR 12-01 22:28:18 [f.py:9] ``
_PREFIX = re.compile(
    r"^(\([^)]*\)\s+)?((DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\s+"
    r"\[[^\]]*\]\s?)?"
)
#: the last line of a Python traceback: ``ValueError: ...``, ``torch.OutOfMemoryError: ...``
_EXCEPTION = re.compile(r"^(?=[A-Za-z_])[\w.]*(?:Error|Exception|Exit|Interrupt)(?:: .*)?$")


def strip_prefix(line: str) -> str:
    """A line without the engine's process and logging prefix."""
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1)


def root_cause(lines: list[str], limit: int = 3) -> list[str]:
    """The exception lines (``SomethingError: message``) in ``lines``, first seen first, distinct.

    The first exception raised in a worker is the root cause; the ones after it are the same
    failure re-raised by the processes above it.
    """
    found: list[str] = []
    for raw in lines:
        text = strip_prefix(raw).strip()
        if _EXCEPTION.match(text) and text not in found:
            found.append(text)
            if len(found) >= limit:
                break
    return found


def failure_report(exc: BaseException, lines: list[str], tail: int = 15) -> tuple[str, str]:
    """(cause, details) of an engine that failed: the engine processes' root-cause exception (or
    the caller's exception when they printed none), and a block with the caller's exception, the
    other exceptions and the last lines of the processes' output, for the failure's record."""
    causes = root_cause(lines)
    caller = f"{exc.__class__.__name__}: {exc}"
    cause = causes[0] if causes else caller
    details = []
    if causes:
        details.append(f"The engine raised {caller}")
        details += [f"then: {c}" for c in causes[1:]]
    last = [strip_prefix(line) for line in lines if line.strip()][-tail:]
    if last:
        details.append("Last lines of the engine processes' output:")
        details += [f"  {line}" for line in last]
    return cause, "\n".join(details)


class OutputTail:
    """Tee stdout and stderr (file descriptors 1 and 2) and keep their last ``max_lines`` lines.

    ``start()`` before the engine starts its processes, ``restore()`` right after (this process's
    own output goes straight to the original descriptors again; the engine's processes keep the
    pipes), ``lines(wait_s)`` when a failure needs them.
    """

    def __init__(self, max_lines: int = 400) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._partial: dict[int, str] = {}
        self._lock = threading.Lock()
        self._saved: dict[int, int] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._saved:
            return
        _flush_python_streams()
        for fd in (1, 2):
            try:
                saved = os.dup(fd)
            except OSError:  # no such descriptor (a daemon without stdout): nothing to tee
                continue
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            self._saved[fd] = saved
            pump = threading.Thread(
                target=self._pump, args=(fd, read_end, saved), daemon=True, name=f"tee-fd{fd}"
            )
            pump.start()
            self._threads.append(pump)

    def restore(self) -> None:
        """Point descriptors 1 and 2 at their original destinations again (idempotent)."""
        _flush_python_streams()
        saved, self._saved = self._saved, {}
        for fd, original in saved.items():
            os.dup2(original, fd)

    def lines(self, wait_s: float = 0.0) -> list[str]:
        """The kept lines, after waiting up to ``wait_s`` for the pipes to drain (their holders
        to exit)."""
        for thread in self._threads:
            thread.join(timeout=wait_s)
        with self._lock:
            tail = [*self._lines, *(p for p in self._partial.values() if p)]
        return tail

    def _pump(self, fd: int, read_end: int, destination: int) -> None:
        try:
            while True:
                try:
                    chunk = os.read(read_end, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                _write_all(destination, chunk)
                self._keep(fd, chunk.decode("utf-8", errors="replace"))
        finally:
            os.close(read_end)
            os.close(destination)

    def _keep(self, fd: int, text: str) -> None:
        with self._lock:
            pending = self._partial.get(fd, "") + text
            *complete, rest = pending.split("\n")
            self._lines.extend(complete)
            self._partial[fd] = rest[-4096:]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError:  # the destination went away: keep draining the pipe regardless
            return
        view = view[written:]


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
