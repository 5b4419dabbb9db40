"""The docker runner: each experiment in a fresh, ephemeral container of its backend's image.

One container per experiment, started through the docker SDK from the ``ContainerSpec`` that
``experiment_container`` builds (what the container gets, and why, is described there). This
module is its lifecycle: create and start, stream its output into the run's log file, wait with
the experiment's timeout, stop it on timeout, kill it on Ctrl-C, and decide the outcome from the
files the harness left and how the container ended.

The container is removed in every case: success, failure, timeout, and Ctrl-C (which kills it and
re-raises ``KeyboardInterrupt``). ``docker`` is imported inside functions: importing
``llenergymeasure`` must work without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llenergymeasure.errors import DockerUnavailableError
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.results.layout import LOG_FILE
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.docker.container_spec import GpuSelection, host_gpu_count
from llenergymeasure.runners.docker.daemon import (
    create_container,
    docker_client,
    docker_host,
    remove_container,
    start_container,
)
from llenergymeasure.runners.docker.experiment_container import (
    ContainerSettings,
    container_environment,
    experiment_container_spec,
    experiment_mounts,
    relative_inputs_dir,
    write_container_request,
)
from llenergymeasure.runners.docker.images import get_image
from llenergymeasure.runners.outcome import outcome_from_dir
from llenergymeasure.runners.placement import device_entries

#: grace between SIGTERM and SIGKILL when a timed-out container is stopped
STOP_GRACE_S = 5.0
#: how long to wait for the log stream to drain after the container exits
LOG_DRAIN_S = 5.0


class DockerRunner:
    """Runs the harness for one request in a fresh container of ``image``.

    The keyword arguments are those of ``ContainerSettings`` (GPUs, user, caches, environment,
    network, shared memory), checked here, before anything runs. A ``gpus`` list of integers holds
    CUDA indices as this process sees them, mapped through its ``CUDA_VISIBLE_DEVICES``
    (``runners/placement.py``); with ``gpus="auto"`` an experiment's own ``gpus`` field, when set,
    picks the container's GPUs the same way.
    """

    kind = "docker"

    def __init__(
        self,
        image: str,
        *,
        gpus: GpuSelection = "auto",
        model_cache_dir: Path | str | None = None,
        extra_env: Mapping[str, str] | None = None,
        user: str | None = None,
        python: str = "python3",
        network_mode: str = "host",
        ipc_mode: str | None = "host",
        shm_size: str = "16g",
        mount_hf_cache: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(gpus, list) and gpus and all(isinstance(g, int) for g in gpus):
            indices = [int(g) for g in gpus]
            gpus = device_entries(indices, os.environ if environ is None else environ)
        self.settings = ContainerSettings(
            image=image,
            gpus=gpus,
            model_cache_dir=Path(model_cache_dir) if model_cache_dir else None,
            extra_env=dict(extra_env or {}),
            user=user,
            python=python,
            network_mode=network_mode,
            ipc_mode=ipc_mode,
            shm_size=shm_size,
            mount_hf_cache=mount_hf_cache,
            environ=environ,
        )
        self.image = self.settings.image

    def settings_for(self, request: HarnessRequest) -> ContainerSettings:
        """The settings one request's container gets: the experiment's ``gpus`` where this runner
        was left to choose (``gpus="auto"``)."""
        selected = request.config.gpus
        if self.settings.gpus != "auto" or selected is None:
            return self.settings
        entries = device_entries(selected, self.settings.caller_environ, host_gpu_count)
        return dataclasses.replace(self.settings, gpus=entries)

    def _environment(self, image_id: str) -> dict[str, str]:
        """The container's environment for an image of id ``image_id``."""
        return container_environment(self.settings, image_id)[0]

    def run(
        self, request: HarnessRequest, run_dir: Path, timeout_s: float | None = None
    ) -> RunOutcome:
        """Run one experiment; see the module docstring for the guarantees."""
        run_dir = Path(run_dir).resolve()
        settings = self.settings_for(request)  # a bad GPU selection fails before anything starts
        request, request_path = write_container_request(settings, request, run_dir)
        mounts = experiment_mounts(settings, request, run_dir)

        client = docker_client()
        container = None
        log_thread: threading.Thread | None = None
        timings: dict[str, object] = {}
        try:
            image = get_image(client, self.image)
            spec = experiment_container_spec(
                settings,
                run_dir,
                request_path,
                image.id,
                mounts,
                working_dir=relative_inputs_dir(request),
            )
            t0 = time.monotonic()
            container = create_container(client, spec)
            start_container(container)
            t_started = time.monotonic()
            timings["container_create_start_s"] = round(t_started - t0, 4)
            log_thread = threading.Thread(
                target=_stream_logs,
                args=(container, run_dir / LOG_FILE),
                name=f"llem-logs-{run_dir.name}",
                daemon=True,
            )
            log_thread.start()
            exit_code, timed_out = _wait(container, timeout_s)
            timings["container_run_s"] = round(time.monotonic() - t_started, 4)
            oom = False
            if timed_out:
                with contextlib.suppress(Exception):
                    container.stop(timeout=STOP_GRACE_S)
            try:
                container.reload()
                oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
                if exit_code is None:
                    exit_code = int(container.attrs.get("State", {}).get("ExitCode", -1))
            except Exception:
                pass
            if log_thread is not None:
                log_thread.join(LOG_DRAIN_S)
            extra: dict[str, object] = {
                "container_name": container.name,
                "container_id": container.id,
                "image": self.image,
                "image_id": image.id,
                **timings,
            }
            return self._outcome(run_dir, exit_code, timed_out, timeout_s, oom, extra)
        except KeyboardInterrupt:
            if container is not None:
                with contextlib.suppress(Exception):
                    container.kill()
            raise
        finally:
            if container is not None:
                remove_container(container)
            client.close()

    def _outcome(
        self,
        run_dir: Path,
        exit_code: int | None,
        timed_out: bool,
        timeout_s: float | None,
        oom: bool,
        extra: dict[str, object],
    ) -> RunOutcome:
        """Decide the outcome from the files the harness left and how the container ended."""
        where = f"container {extra.get('container_name')} (image {self.image})"
        if timed_out:
            ended = f"the experiment timed out after {timeout_s:g} s; {where} was stopped"
        else:
            code = "unknown" if exit_code is None else str(exit_code)
            ended = f"{where} exited with status {code}"
            if exit_code is not None:
                ended += _signal_description(exit_code)
            if oom:
                ended += "; Docker reports it was killed for using too much memory (OOMKilled)"
            ended += " without writing a result"
        return outcome_from_dir(
            run_dir,
            exit_code,
            ended=ended,
            timed_out=timed_out,
            error_type="ContainerExited",
            extra=extra,
        )


def _signal_description(code: int) -> str:
    if code <= 128:
        return ""
    import signal

    try:
        name = signal.Signals(code - 128).name
    except ValueError:
        return ""
    text = f" (killed by {name}"
    if name == "SIGKILL":
        text += ": `docker kill`, or the out-of-memory killer"
    elif name == "SIGSEGV":
        text += ": a segmentation fault inside the engine or a native extension"
    return text + ")"


def _stream_logs(container: Any, path: Path) -> None:
    """Append the container's stdout and stderr to ``path`` as they come (until it exits)."""
    try:
        with open(path, "ab", buffering=0) as fh:
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                fh.write(chunk)
    except Exception as exc:  # the container vanished mid-stream: keep what was written
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"\n[llem] log stream ended: {type(exc).__name__}: {exc}\n")
        except OSError:
            pass


def _wait(container: Any, timeout_s: float | None, poll_s: float = 1.0) -> tuple[int | None, bool]:
    """Wait for the container to exit: (exit status, timed out?). Ctrl-C propagates.

    Waits in slices of ``poll_s`` so the deadline is honoured; a slice that ends early with a
    connection error (rather than by running out its time) means the daemon is gone, and after a
    few in a row that is a ``DockerUnavailableError`` rather than an endless loop.
    """
    import requests

    deadline = time.monotonic() + timeout_s if timeout_s else None
    lost = 0
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return None, True
        wait_s = poll_s if remaining is None else max(0.05, min(poll_s, remaining))
        t0 = time.monotonic()
        try:
            status = container.wait(timeout=wait_s)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
            if time.monotonic() - t0 >= 0.5 * wait_s:
                lost = 0
                continue  # the slice ran out: the container is still running
            lost += 1
            if lost >= 10:
                raise DockerUnavailableError(
                    f"lost the connection to the Docker daemon at {docker_host()} while waiting "
                    f"for container {container.name}: {exc}"
                ) from exc
            time.sleep(0.5)
            continue
        return int(status.get("StatusCode", -1)), False
