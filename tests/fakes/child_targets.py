"""Child entry points for local-runner tests (importable by the spawned interpreter)."""

from __future__ import annotations

import os
import signal


def exit_one(request_path: str, output_dir: str) -> None:
    os._exit(1)


def segfault_like(request_path: str, output_dir: str) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def sleep_forever(request_path: str, output_dir: str) -> None:
    import contextlib
    import time

    with contextlib.suppress(OSError):  # the local runner's child already leads its session
        os.setsid()
    while True:
        time.sleep(1)


def report_env(request_path: str, output_dir: str) -> None:
    """Writes the CUDA variables this child process sees to ``env.json``, then exits 0."""
    import json
    from pathlib import Path

    keys = ("CUDA_VISIBLE_DEVICES", "NCCL_NVLS_ENABLE")
    seen = {k: os.environ.get(k) for k in keys}
    (Path(output_dir) / "env.json").write_text(json.dumps({"pid": os.getpid(), **seen}))
