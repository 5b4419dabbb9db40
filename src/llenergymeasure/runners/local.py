"""The local runner: each experiment in a fresh ``multiprocessing`` spawn process.

A fresh interpreter per experiment gives clean GPU state (decision I). The child leads its own
process group, so a timeout or Ctrl-C stops it together with any engine workers it started. The
child's exception, ``os._exit``, segfault or OOM kill all end as a failed ``RunOutcome`` naming the
cause, with ``error.json`` written by the child where it could, else by this runner.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

from llenergymeasure.harness.request import (
    ERROR_FILE,
    LOG_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    HarnessRequest,
)
from llenergymeasure.results.io import atomic_write_json
from llenergymeasure.runners.base import RunOutcome

KILL_GRACE_S = 10.0


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _kill_group(pid: int, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.1)


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def tail_lines(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def outcome_from_dir(
    run_dir: Path, exit_code: int | None, killed_reason: str | None = None
) -> RunOutcome:
    """Decide a run's outcome from the files it left and how its process ended.

    Shared by the local and docker runners: ``result.json`` wins; else ``error.json`` (written by
    the harness); else this writes ``error.json`` itself from the exit status and the log's tail.
    """
    result = run_dir / RESULT_FILE
    error = run_dir / ERROR_FILE
    if result.exists() and exit_code in (0, None) and killed_reason is None:
        return RunOutcome(
            status="completed", run_dir=run_dir, result_path=result, exit_code=exit_code
        )
    if error.exists() and killed_reason is None:
        try:
            payload = json.loads(error.read_text())
        except (OSError, ValueError):
            payload = {}
        return RunOutcome(
            status="failed",
            run_dir=run_dir,
            error_path=error,
            message=payload.get("message", "the experiment failed"),
            phase=payload.get("phase"),
            error_type=payload.get("error_type"),
            exit_code=exit_code,
        )
    phase = None
    with contextlib.suppress(OSError, ValueError):
        phase = json.loads((run_dir / "progress.json").read_text()).get("phase")
    if killed_reason is not None:
        message = killed_reason
        status = "timeout" if "timed out" in killed_reason else "failed"
    elif exit_code is not None and exit_code < 0:
        sig = _signal_name(-exit_code)
        message = f"the experiment process was killed by {sig}"
        if -exit_code == signal.SIGKILL:
            message += " (by a user, or by the kernel's out-of-memory killer: check `dmesg` and the memory the config needs)"
        elif -exit_code == signal.SIGSEGV:
            message += " (a segmentation fault inside the engine or a native extension)"
        status = "failed"
    else:
        message = f"the experiment process exited with status {exit_code} without writing a result"
        status = "failed"
    tail = tail_lines(run_dir / LOG_FILE)
    if tail:
        message += "\nlast lines of run.log:\n" + tail
    atomic_write_json(
        error,
        {
            "phase": phase,
            "error_type": "ProcessDied" if status == "failed" else "Timeout",
            "message": message,
            "exit_code": exit_code,
            "traceback": None,
        },
    )
    return RunOutcome(
        status=status,  # type: ignore[arg-type]
        run_dir=run_dir,
        error_path=error,
        message=message,
        phase=phase,
        error_type="ProcessDied" if status == "failed" else "Timeout",
        exit_code=exit_code,
    )


class LocalRunner:
    """Runs the harness in a fresh spawned process on this machine."""

    kind = "local"

    def __init__(self, poll_s: float = 0.2, target: Any = None) -> None:
        #: the child's entry function, ``f(request_path, output_dir)``; the harness by default
        self.target = target
        self.poll_s = poll_s

    def run(
        self, request: HarnessRequest, run_dir: Path, timeout_s: float | None = None
    ) -> RunOutcome:
        from llenergymeasure.harness.entry import spawn_child_main

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        request_path = request.write(run_dir / REQUEST_FILE)
        ctx = multiprocessing.get_context("spawn")
        proc = ctx.Process(
            target=self.target or spawn_child_main,
            args=(str(request_path), str(run_dir)),
            name=f"llem-{run_dir.name}",
            daemon=False,
        )
        deadline = time.monotonic() + timeout_s if timeout_s else None
        try:
            proc.start()  # inside the try: Ctrl-C during a slow spawn must still stop the child
            while True:
                proc.join(self.poll_s)
                if proc.exitcode is not None:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    assert proc.pid is not None
                    _kill_group(proc.pid)
                    proc.join(5)
                    return outcome_from_dir(
                        run_dir,
                        proc.exitcode,
                        killed_reason=f"the experiment timed out after {timeout_s:g} s and was stopped",
                    )
        except KeyboardInterrupt:
            if proc.pid is not None:
                _kill_group(proc.pid, grace_s=3.0)
                proc.join(5)
            raise
        # Engine workers left behind by a crashed child: stop them so they free the GPU.
        assert proc.pid is not None
        if _group_alive(proc.pid):
            _kill_group(proc.pid, grace_s=2.0)
        return outcome_from_dir(run_dir, proc.exitcode)
