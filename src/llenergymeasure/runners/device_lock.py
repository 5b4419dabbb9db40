"""One measurement per device at a time, across every ``llem`` process on this machine.

Two studies started side by side on the same GPUs would each measure the other. Before a run
starts, its controller takes an exclusive ``fcntl.flock`` on one file per measured device (the
GPU's UUID, or ``cpu`` for a run on a machine without a GPU) in a machine-wide lock directory
(``LLEM_LOCK_DIR``, default ``/tmp/llenergymeasure-locks``, created world-writable with the sticky
bit so every user's studies share it) and holds it until the run's process has ended: model load,
warm-up, baseline and measured window. Thermal gaps between runs hold nothing.

The lock file records its holder (study directory, run, pid, host, since) so a run that finds a
device taken says whose it is. By default it waits (``LLEM_DEVICE_LOCK=wait``) and records the wait
in its result (``runner.device_lock``); ``LLEM_DEVICE_LOCK=refuse`` fails the run instead. The
kernel releases a lock when its holder exits, however it exits, so a crashed study never leaves a
device locked; a lock file left behind is only a name.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from llenergymeasure.energy.devices import parse_cuda_visible_devices
from llenergymeasure.errors import RunnerError
from llenergymeasure.results.models import DeviceLockRecord
from llenergymeasure.timestamps import utc_now

DEFAULT_LOCK_DIR = Path("/tmp/llenergymeasure-locks")
LOCK_DIR_ENV = "LLEM_LOCK_DIR"
MODE_ENV = "LLEM_DEVICE_LOCK"
MODES = ("wait", "refuse")
CPU_DEVICE = "cpu"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def lock_dir(environ: Mapping[str, str]) -> Path:
    """The machine-wide lock directory (``LLEM_LOCK_DIR`` or ``/tmp/llenergymeasure-locks``)."""
    raw = environ.get(LOCK_DIR_ENV, "").strip()
    return Path(raw) if raw else DEFAULT_LOCK_DIR


def lock_mode(environ: Mapping[str, str]) -> str:
    """``wait`` (default) or ``refuse``, from ``LLEM_DEVICE_LOCK``; anything else is an error."""
    mode = environ.get(MODE_ENV, "").strip().lower() or "wait"
    if mode not in MODES:
        raise RunnerError(
            f"{MODE_ENV}={environ.get(MODE_ENV)!r}: unknown mode; use wait (wait for the other "
            "study to release the device) or refuse (fail the run at once)"
        )
    return mode


def measured_devices(
    gpus: Sequence[int] | None, environ: Mapping[str, str], snapshot: Any
) -> list[str]:
    """The lock names of the devices a run measures.

    ``gpus``: the CUDA indices the run gets (None: every GPU visible to this process).
    ``snapshot``: the controller's environment snapshot (its ``gpus`` give NVML indices and
    UUIDs). A GPU is named by its UUID, so two processes that number GPUs differently
    (``CUDA_VISIBLE_DEVICES``) still meet on the same file; ``cpu`` when there is no GPU.
    """
    snap_gpus = list(getattr(snapshot, "gpus", None) or [])
    count = getattr(snapshot, "gpu_count", None) or len(snap_gpus)
    if count == 0:
        return [CPU_DEVICE]
    uuid_of = {g.nvml_index: g.uuid for g in snap_gpus if getattr(g, "uuid", None)}
    entries = parse_cuda_visible_devices(environ.get("CUDA_VISIBLE_DEVICES"))
    visible = [str(i) for i in range(count)] if entries is None else list(entries)
    if not visible:
        return [CPU_DEVICE]
    chosen = visible if not gpus else [visible[g] for g in gpus if 0 <= g < len(visible)]
    names = []
    for entry in chosen:
        if entry.isdigit():
            names.append(uuid_of.get(int(entry)) or f"nvml{entry}")
        else:
            names.append(entry)  # already a GPU-/MIG- UUID
    return sorted(set(names))


def _open_lock_file(directory: Path, device: str) -> IO[str]:
    if not directory.exists():
        with contextlib.suppress(FileExistsError):
            directory.mkdir(parents=True)
            # every user's studies share the directory: world-writable, sticky like /tmp
            with contextlib.suppress(OSError):
                os.chmod(directory, 0o1777)
    path = directory / f"{_UNSAFE.sub('_', device)}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o666)  # another user's study must be able to open it too
    return os.fdopen(fd, "r+")


def read_holder(fh: IO[str]) -> dict[str, Any]:
    """What the lock file says about its holder ({} when it says nothing readable)."""
    try:
        fh.seek(0)
        data = json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(device: str, holder: Mapping[str, Any]) -> str:
    if not holder:
        return f"{device} is held by another llem process"
    return (
        f"{device} is held by study {holder.get('study_dir', '?')} "
        f"(run {holder.get('run_id', '?')}, pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {holder.get('since', '?')})"
    )


@contextlib.contextmanager
def hold_devices(
    devices: Sequence[str],
    *,
    study_dir: str | Path,
    run_id: str,
    environ: Mapping[str, str] | None = None,
    on_wait: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 0.25,
) -> Iterator[DeviceLockRecord]:
    """Hold an exclusive lock on each device (sorted, so two studies never deadlock) for the
    ``with`` block; yields the record of what was locked and how long this run waited.

    A device held elsewhere: ``on_wait`` gets one line naming the holder, then this waits (or,
    with ``LLEM_DEVICE_LOCK=refuse``, raises ``RunnerError`` with that line). ``should_stop``
    ends a wait early with ``KeyboardInterrupt`` (a study being stopped)."""
    env = os.environ if environ is None else environ
    mode = lock_mode(env)
    directory = lock_dir(env)
    me = {
        "study_dir": str(study_dir),
        "run_id": run_id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    held: list[IO[str]] = []
    acquired: list[IO[str]] = []
    waited_for: list[str] = []
    start = clock()
    try:
        for device in sorted(set(devices)):
            try:
                fh = _open_lock_file(directory, device)
            except OSError as exc:
                raise RunnerError(
                    f"cannot open the device lock for {device} in {directory} ({exc}); make the "
                    f"directory writable for every user (chmod 1777), or point {LOCK_DIR_ENV} at "
                    "a directory every llem process on this machine can write"
                ) from exc
            held.append(fh)
            told = False
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                if not told:
                    told = True
                    line = describe_holder(device, read_holder(fh))
                    waited_for.append(line)
                    if mode == "refuse":
                        raise RunnerError(
                            f"{line}; {MODE_ENV}=refuse, so this run does not start. Wait for "
                            f"that study to finish, or set {MODE_ENV}=wait to queue behind it"
                        )
                    if on_wait is not None:
                        on_wait(f"waiting: {line}")
                if should_stop is not None and should_stop():
                    raise KeyboardInterrupt
                sleep(poll_s)
            acquired.append(fh)
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({**me, "device": device, "since": utc_now()}))
            fh.flush()
        waited = clock() - start if waited_for else 0.0
        yield DeviceLockRecord(
            devices=sorted(set(devices)),
            lock_dir=str(directory),
            waited_s=round(waited, 3),
            waited_for=waited_for,
        )
    finally:
        for fh in reversed(held):
            with contextlib.suppress(OSError):
                if fh in acquired:  # ours: leave no holder named once it is free
                    fh.seek(0)
                    fh.truncate()
                    fh.flush()
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


def _to_stderr(line: str) -> None:
    print(f"llem: {line}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DeviceLocker:
    """What a study's controller needs to lock the devices of each of its runs.

    ``snapshot``: the controller's environment snapshot (GPU UUIDs); ``on_wait`` gets the line
    naming the other study (default: stderr, which the CLI's live view prints above itself)."""

    study_dir: Path
    environ: Mapping[str, str]
    snapshot: Any
    on_wait: Callable[[str], None] = field(default=_to_stderr)

    def devices(self, gpus: Sequence[int] | None) -> list[str]:
        return measured_devices(gpus, self.environ, self.snapshot)

    def hold(
        self,
        run_id: str,
        gpus: Sequence[int] | None,
        should_stop: Callable[[], bool] | None = None,
        devices: Sequence[str] | None = None,
    ) -> contextlib.AbstractContextManager[DeviceLockRecord]:
        """Lock ``devices`` when given (e.g. a GPU pool's labels), else those of ``gpus``."""
        return hold_devices(
            list(devices) if devices is not None else self.devices(gpus),
            study_dir=self.study_dir,
            run_id=run_id,
            environ=self.environ,
            on_wait=self.on_wait,
            should_stop=should_stop,
        )
