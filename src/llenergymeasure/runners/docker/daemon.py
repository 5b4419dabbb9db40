"""Reaching the Docker daemon: a connected client, and container create/start/remove.

Every failure to reach the daemon, or to give a container the GPUs it asks for, becomes a
``DockerUnavailableError`` saying how to fix it. ``docker`` is imported inside functions:
importing ``llenergymeasure`` must work without it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Iterator
from typing import Any

from llenergymeasure.errors import DockerUnavailableError
from llenergymeasure.runners.docker.container_spec import ContainerSpec, docker_sdk_kwargs

TOOLKIT_HELP = (
    "install the NVIDIA Container Toolkit "
    "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), "
    "run `sudo nvidia-ctk runtime configure --runtime=docker`, restart Docker, and check with "
    "`docker run --rm --gpus all <image> nvidia-smi`"
)


def docker_host() -> str:
    """Where the client looks for the daemon (``DOCKER_HOST``, or the default socket)."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def docker_client(timeout_s: float = 60.0) -> Any:
    """A connected ``docker.DockerClient``, or ``DockerUnavailableError`` saying how to get one."""
    try:
        # importlib, not `import docker`: type checkers run from the checkout would otherwise take
        # the repository's docker/ directory (Dockerfiles) for the SDK.
        docker = importlib.import_module("docker")
    except ImportError as exc:  # pragma: no cover - docker is a core dependency
        raise DockerUnavailableError(
            "the docker runner needs the `docker` Python package: pip install 'docker>=7.0'"
        ) from exc
    try:
        client = docker.from_env(timeout=int(timeout_s))
        client.ping()
    except Exception as exc:
        text = str(exc)
        if "Permission denied" in text or "PermissionError" in text:
            hint = (
                "your user may not use the Docker socket: add it to the docker group "
                "(`sudo usermod -aG docker $USER`, then log in again) or run rootless Docker"
            )
        else:
            hint = (
                "start the daemon (`sudo systemctl start docker`, or `sudo dockerd &` where there is "
                "no systemd), or point DOCKER_HOST at a running one"
            )
        raise DockerUnavailableError(
            f"cannot reach a Docker daemon at {docker_host()}: {text.strip() or type(exc).__name__}; "
            f"{hint}. Without Docker, use the local runner (--runner local)"
        ) from exc
    return client


def check_docker_available() -> None:
    """Raise ``DockerUnavailableError`` (with the fix) unless a Docker daemon answers."""
    docker_client(timeout_s=20.0).close()


def is_toolkit_error(exc: BaseException) -> bool:
    """Whether ``exc`` is Docker saying it cannot give GPUs to containers (no NVIDIA toolkit)."""
    text = str(exc)
    return "could not select device driver" in text or "nvidia-container-cli" in text


@contextlib.contextmanager
def _toolkit_errors() -> Iterator[None]:
    """Turn Docker's "no GPU driver" API errors into the toolkit guidance; others pass through."""
    from docker.errors import APIError

    try:
        yield
    except APIError as exc:
        if is_toolkit_error(exc):
            raise DockerUnavailableError(
                f"Docker cannot give GPUs to containers on this host ({exc.explanation or exc}); "
                + TOOLKIT_HELP
            ) from exc
        raise


def create_container(client: Any, spec: ContainerSpec) -> Any:
    """Create (not start) the container ``spec`` describes."""
    with _toolkit_errors():
        return client.containers.create(spec.image, detach=True, **docker_sdk_kwargs(spec))


def start_container(container: Any) -> None:
    with _toolkit_errors():
        container.start()


def remove_container(container: Any) -> None:
    """Force-remove ``container``; a container already gone is fine, a lost daemon is not fatal."""
    import requests
    from docker.errors import APIError, NotFound

    for _ in range(3):
        try:
            container.remove(force=True, v=True)
            return
        except NotFound:
            return
        except APIError as exc:
            if "removal of container" in str(exc) and "already in progress" in str(exc):
                return
            time.sleep(0.5)
        except requests.exceptions.RequestException:
            time.sleep(0.5)
