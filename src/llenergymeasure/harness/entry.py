"""The function both runners call: read a request file, run the harness, map the outcome to an exit code."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from llenergymeasure.results.layout import LOG_FILE, PROCESS_FILE


def run_request_file(request_path: Path, output_dir: Path) -> int:
    from pydantic import ValidationError

    from llenergymeasure.errors import ExperimentError
    from llenergymeasure.harness.core import run_harness, write_error
    from llenergymeasure.harness.request import HarnessRequest

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    try:
        request = HarnessRequest.read(Path(request_path))
    except (OSError, ValidationError, ValueError) as exc:
        write_error(output_dir, "request", exc)
        print(f"[llem] cannot read the request {request_path}: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        run_harness(request, output_dir, own_process=True)
    except ExperimentError as exc:
        print(f"[llem] experiment failed in phase {exc.phase}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def spawn_child_main(request_path: str, output_dir: str, controller_pid: int | None = None) -> None:
    """Target of the local runner's spawned process.

    It leads its own process group (so the controller can stop it and every engine worker it
    started with one signal), dies with its controller, records its pid and start time in
    ``process.json`` (so ``--resume`` can tell whether it still runs) and sends its stdout/stderr to
    the run's log file.
    """
    with contextlib.suppress(OSError):
        os.setsid()
    _die_with_parent()
    # The controller may have died while this interpreter was starting, before the death signal
    # was armed: then nothing would ever stop this process. Its parent is then no longer the
    # controller (the orphan was handed to init or a subreaper): end before touching anything.
    if controller_pid is not None and os.getppid() != controller_pid:
        os._exit(ORPHANED_EXIT)
    from llenergymeasure._proc import process_record
    from llenergymeasure.results.io import atomic_write_json

    with contextlib.suppress(OSError):  # a full disk is reported by the run itself
        atomic_write_json(
            Path(output_dir) / PROCESS_FILE,
            {**process_record(os.getpid()), "controller_pid": controller_pid},
        )
    log_path = Path(output_dir) / LOG_FILE
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    # The controller handles Ctrl-C; the child ends when the controller signals its group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = run_request_file(Path(request_path), Path(output_dir))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


#: exit status of an experiment process whose controller died before it could start
ORPHANED_EXIT = 3


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when the controller dies (no orphaned runs).

    The signal is armed only from here on: ``spawn_child_main`` checks afterwards that the
    controller was still alive when it was armed.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
