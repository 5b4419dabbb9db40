"""One container, described as plain data, and its two renderings: docker SDK kwargs and ``docker run``.

``ContainerSpec`` says everything about a container llenergymeasure starts (image, entrypoint and
command, user, environment, bind mounts, working directory, network, IPC/shared memory, GPUs,
labels, name, init). It imports nothing from the docker SDK, so any runner can build one and then
start it either through the SDK (``docker_sdk_kwargs``, what the docker runner does) or through
the ``docker`` command line (``docker_run_argv``, e.g. from a batch-job script): both renderings
describe the same container.

GPUs are resolved once, on the host that starts the container, from a ``GpuSelection`` to
``GpuDevices`` (none, all, or named device ids) by ``resolve_gpus``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from llenergymeasure.errors import RunnerError

#: label put on every container llenergymeasure starts (tests and cleanup tools select on it)
MANAGED_LABEL = "org.llenergymeasure.managed"
#: label naming the run directory an experiment container writes into
RUN_DIR_LABEL = "org.llenergymeasure.run_dir"

#: what a caller asks for: "auto", "all", a list of device indices/UUIDs, or None (no GPU)
GpuSelection = Literal["auto", "all"] | list[int] | list[str] | None
#: what a container gets: no GPU (None), every GPU ("all"), or these device ids
GpuDevices = Literal["all"] | tuple[str, ...] | None


@dataclass(frozen=True)
class BindMount:
    """A host path mounted at the same absolute path inside the container."""

    path: str
    read_only: bool = False

    @property
    def mode(self) -> str:
        return "ro" if self.read_only else "rw"


@dataclass(frozen=True)
class ContainerSpec:
    """Everything about one container, independent of how it is started.

    ``environment`` holds every variable the container gets; the names in ``caller_env`` are
    values taken from the caller (secrets such as ``HF_TOKEN`` among them), which the command-line
    rendering passes by name so they never appear in an argument list or a script.
    ``ipc_mode`` set: the container shares that IPC namespace (``"host"``); otherwise, when
    ``shm_size`` is set, it gets its own ``/dev/shm`` of that size. ``pid_mode="host"``: the
    container sees the host's processes (``--pid=host``), so the PIDs NVML lists on a GPU can be
    told apart from this experiment's own (the ``foreign_process`` check).
    """

    image: str
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    user: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    caller_env: frozenset[str] = frozenset()
    mounts: tuple[BindMount, ...] = ()
    working_dir: str | None = None
    network_mode: str | None = None
    ipc_mode: str | None = None
    shm_size: str | None = None
    pid_mode: str | None = None
    gpus: GpuDevices = None
    labels: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    init: bool = False


# -- GPUs ---------------------------------------------------------------------------------------


def host_gpu_count() -> int:
    """NVIDIA GPUs on this host: NVML first, then ``nvidia-smi -L``; 0 when neither answers."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def resolve_gpus(gpus: GpuSelection, environ: Mapping[str, str] | None = None) -> GpuDevices:
    """The GPUs a container gets for ``gpus`` on this host.

    ``"auto"``: every GPU when the host has any (restricted to the host's ``CUDA_VISIBLE_DEVICES``
    when that is set), none otherwise. ``"all"``: every GPU (an error on a host without one,
    reported by Docker when the container starts). A list: those device indices or UUIDs.
    ``None``: no GPU.
    """
    env = os.environ if environ is None else environ
    if gpus is None:
        return None
    if gpus == "auto":
        if host_gpu_count() == 0:
            return None
        visible = env.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and visible.strip():
            ids = [v.strip() for v in visible.split(",") if v.strip()]
            if ids and not any(v.startswith("-") for v in ids):
                return tuple(ids)
        return "all"
    if gpus == "all":
        return "all"
    if isinstance(gpus, list):
        return tuple(str(g) for g in gpus) or None
    raise RunnerError(
        f"gpus: {gpus!r} is not a GPU selection; use 'auto', 'all', a list of device ids, or None"
    )


def device_requests(devices: GpuDevices) -> list[Any]:
    """Docker SDK device requests giving a container ``devices``."""
    if devices is None:
        return []
    from docker.types import DeviceRequest

    if devices == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(devices), capabilities=[["gpu"]])]


def gpu_device_requests(gpus: GpuSelection, environ: Mapping[str, str] | None = None) -> list[Any]:
    """Docker SDK device requests for the selection ``gpus`` (see ``resolve_gpus``)."""
    return device_requests(resolve_gpus(gpus, environ))


# -- renderings ---------------------------------------------------------------------------------


def docker_sdk_kwargs(spec: ContainerSpec) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create(spec.image, **kwargs)``."""
    kwargs: dict[str, Any] = {}
    if spec.entrypoint:
        kwargs["entrypoint"] = list(spec.entrypoint)
    if spec.command:
        kwargs["command"] = list(spec.command)
    if spec.user is not None:
        kwargs["user"] = spec.user
    if spec.environment:
        kwargs["environment"] = dict(spec.environment)
    if spec.mounts:
        kwargs["volumes"] = {m.path: {"bind": m.path, "mode": m.mode} for m in spec.mounts}
    if spec.working_dir is not None:
        kwargs["working_dir"] = spec.working_dir
    if spec.network_mode is not None:
        kwargs["network_mode"] = spec.network_mode
    kwargs["device_requests"] = device_requests(spec.gpus)
    if spec.labels:
        kwargs["labels"] = dict(spec.labels)
    if spec.name is not None:
        kwargs["name"] = spec.name
    if spec.init:
        kwargs["init"] = True
    if spec.ipc_mode:
        kwargs["ipc_mode"] = spec.ipc_mode
    elif spec.shm_size is not None:
        kwargs["shm_size"] = spec.shm_size
    if spec.pid_mode:
        kwargs["pid_mode"] = spec.pid_mode
    return kwargs


def docker_run_argv(
    spec: ContainerSpec, docker: str = "docker", subcommand: str = "run", remove: bool = True
) -> tuple[list[str], dict[str, str]]:
    """The ``docker run`` command for ``spec``, and the variables its process must have.

    Variables named in ``spec.caller_env`` appear in the command as ``--env NAME`` only (the
    ``docker`` client copies their values from its own environment), so the second element, a
    mapping of those names to their values, must be in the environment the command runs with
    (``subprocess.run(argv, env={**os.environ, **env})``, or the environment a batch job
    inherits). ``subcommand="create"`` gives the matching ``docker create``.
    """
    argv = [docker, subcommand]
    if remove and subcommand == "run":
        argv.append("--rm")
    if spec.name is not None:
        argv += ["--name", spec.name]
    if spec.init:
        argv.append("--init")
    if spec.user is not None:
        argv += ["--user", spec.user]
    if spec.network_mode is not None:
        argv += ["--network", spec.network_mode]
    if spec.ipc_mode:
        argv += ["--ipc", spec.ipc_mode]
    elif spec.shm_size is not None:
        argv += ["--shm-size", spec.shm_size]
    if spec.pid_mode:
        argv += ["--pid", spec.pid_mode]
    if spec.gpus == "all":
        argv += ["--gpus", "all"]
    elif spec.gpus:
        # The CLI reads --gpus as CSV: quoted, so the commas separate device ids, not options.
        argv += ["--gpus", '"device=' + ",".join(spec.gpus) + '"']
    if spec.working_dir is not None:
        argv += ["--workdir", spec.working_dir]
    for key, value in spec.labels.items():
        argv += ["--label", f"{key}={value}"]
    for mount in spec.mounts:
        argv += ["--volume", f"{mount.path}:{mount.path}:{mount.mode}"]
    from_caller: dict[str, str] = {}
    for key, value in spec.environment.items():
        if key in spec.caller_env:
            argv += ["--env", key]
            from_caller[key] = value
        else:
            argv += ["--env", f"{key}={value}"]
    # --entrypoint takes one executable; the rest of the entrypoint leads the command.
    if spec.entrypoint:
        argv += ["--entrypoint", spec.entrypoint[0], spec.image, *spec.entrypoint[1:]]
    else:
        argv.append(spec.image)
    argv += list(spec.command)
    return argv, from_caller
