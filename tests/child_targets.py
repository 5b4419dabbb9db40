"""Child entry points for local-runner tests (importable by the spawned interpreter)."""

from __future__ import annotations

import os
import signal


def exit_one(request_path: str, output_dir: str) -> None:
    os._exit(1)


def segfault_like(request_path: str, output_dir: str) -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def sleep_forever(request_path: str, output_dir: str) -> None:
    import time

    os.setsid()
    while True:
        time.sleep(1)
