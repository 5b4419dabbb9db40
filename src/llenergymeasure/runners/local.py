"""The local runner: each experiment in a fresh interpreter on this machine.

A fresh interpreter per experiment gives clean GPU state (decision I). It is started as
``python -m llenergymeasure.runners.local_child`` (``subprocess``, not a ``multiprocessing``
spawn, which re-imports the caller's ``__main__``: a user's unguarded script would run again in
the child). The child leads its own session and process group, so a timeout or Ctrl-C stops it
together with any engine workers it started. The child's exception, ``os._exit``, segfault or OOM
kill all end as a failed ``RunOutcome`` naming the cause, with ``error.json`` written by the child
where it could, else by this runner.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.results.layout import LOG_FILE, REQUEST_FILE
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.outcome import outcome_from_dir
from llenergymeasure.runners.placement import device_entries

KILL_GRACE_S = 10.0


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def _signal_tree(pid: int, sig: int) -> bool:
    """Signal the child's process group; a child still starting (no ``setsid()`` yet, so no group
    of its own) is signalled by pid. False when neither exists any more."""
    try:
        os.killpg(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        pass
    try:
        os.kill(pid, sig)
        return _process_alive(pid)
    except (ProcessLookupError, PermissionError):
        return False


def _process_alive(pid: int) -> bool:
    """True while ``pid`` runs (an exited child waiting to be reaped does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False


def _kill_group(pid: int, grace_s: float = KILL_GRACE_S) -> None:
    """SIGTERM the child's process group, then SIGKILL what is left after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        if not _signal_tree(pid, sig):
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _group_alive(pid) and not _process_alive(pid):
                return
            time.sleep(0.1)


def _group_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _how_it_ended(exit_code: int | None) -> str:
    if exit_code is not None and exit_code < 0:
        message = f"the experiment process was killed by {_signal_name(-exit_code)}"
        if -exit_code == signal.SIGKILL:
            message += (
                " (by a user, or by the kernel's out-of-memory killer: check `dmesg` and the "
                "memory the config needs)"
            )
        elif -exit_code == signal.SIGSEGV:
            message += " (a segmentation fault inside the engine or a native extension)"
        return message
    return f"the experiment process exited with status {exit_code} without writing a result"


def target_spec(target: Callable[..., Any]) -> str:
    """``module:qualified.name`` of an importable entry function (the child imports it)."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"the local runner's target {target!r} must be a module-level function of an "
            "importable module (the child interpreter imports it by name)"
        )
    return f"{module}:{qualname}"


def child_argv(request_path: Path, run_dir: Path, target: Callable[..., Any] | None) -> list[str]:
    """The child's command line: this interpreter, the child module, the request and folder."""
    argv = [sys.executable, "-m", "llenergymeasure.runners.local_child"]
    argv += [str(request_path), str(run_dir)]
    if target is None:
        return [*argv, "--controller-pid", str(os.getpid())]
    return [*argv, "--target", target_spec(target)]


def child_environ(extra: Mapping[str, str], target: Callable[..., Any] | None) -> dict[str, str]:
    """This process's variables, the child's own on top; with a custom target, this process's
    ``sys.path`` too (a spawn passed it on; the target's module must be importable there)."""
    env = {**os.environ, **extra}
    if target is not None:
        paths = [p for p in sys.path if p] + env.get("PYTHONPATH", "").split(os.pathsep)
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    return env


class LocalRunner:
    """Runs the harness in a fresh spawned process on this machine.

    ``gpus``: CUDA indices (as this process sees them) the child gets as its
    ``CUDA_VISIBLE_DEVICES`` (``runners/placement.py``); None: the experiment's ``gpus``, and when
    that is unset too, the child sees what this process sees. ``environ`` is where this process's
    ``CUDA_VISIBLE_DEVICES`` is read (``os.environ`` by default).
    """

    kind = "local"

    def __init__(
        self,
        poll_s: float = 0.2,
        target: Any = None,
        *,
        gpus: list[int] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        #: the child's entry function, ``f(request_path, output_dir)``, a module-level function the
        #: child imports by name; the harness by default
        self.target = target
        self.poll_s = poll_s
        self.gpus = list(gpus) if gpus is not None else None
        self.environ = environ

    def child_env(self, request: HarnessRequest) -> dict[str, str]:
        """Variables the child gets on top of this process's: its GPUs, when any are selected."""
        gpus = self.gpus if self.gpus is not None else request.config.gpus
        if gpus is None:
            return {}
        from llenergymeasure.runners.docker.container_spec import host_gpu_count

        environ = os.environ if self.environ is None else self.environ
        return {"CUDA_VISIBLE_DEVICES": ",".join(device_entries(gpus, environ, host_gpu_count))}

    def run(
        self, request: HarnessRequest, run_dir: Path, timeout_s: float | None = None
    ) -> RunOutcome:
        run_dir = Path(run_dir)
        env = self.child_env(request)  # a bad GPU selection fails before anything starts
        run_dir.mkdir(parents=True, exist_ok=True)
        request_path = request.write(run_dir / REQUEST_FILE)
        argv = child_argv(request_path, run_dir, self.target)
        deadline = time.monotonic() + timeout_s if timeout_s else None
        proc: subprocess.Popen[bytes] | None = None
        # What the interpreter prints before the harness takes its output over (an import error)
        # goes to the run's log too.
        with (run_dir / LOG_FILE).open("ab") as log:
            try:
                # inside the try: Ctrl-C during a slow start must still stop the child
                proc = subprocess.Popen(
                    argv,
                    env=child_environ(env, self.target),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
                while True:
                    try:
                        proc.wait(self.poll_s)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    if deadline is not None and time.monotonic() > deadline:
                        _kill_group(proc.pid)
                        _reap(proc)
                        return outcome_from_dir(
                            run_dir,
                            proc.returncode,
                            ended=f"the experiment timed out after {timeout_s:g} s and was stopped",
                            timed_out=True,
                        )
            except KeyboardInterrupt:
                if proc is not None:
                    _kill_group(proc.pid, grace_s=3.0)
                    _reap(proc)
                raise
        # Engine workers left behind by a crashed child: stop them so they free the GPU.
        if _group_alive(proc.pid):
            _kill_group(proc.pid, grace_s=2.0)
        return outcome_from_dir(run_dir, proc.returncode, ended=_how_it_ended(proc.returncode))


def _reap(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """Collect the child's exit status once it was signalled (None stays when it will not end)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout_s)
