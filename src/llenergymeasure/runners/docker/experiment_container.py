"""The container that runs one experiment's harness: built from its request, as a ``ContainerSpec``.

The harness inside the container is the same code the local runner spawns
(``python -m llenergymeasure.harness``); it reads ``run_dir/request.json`` and writes
``result.json`` or ``error.json`` into ``run_dir``, which is bind-mounted at the same absolute path
it has on the host, so every path in the request means the same thing on both sides. The model and
baseline caches (and local model or dataset paths named by the config) are mounted the same way.

Why these container settings:

- the caller's uid:gid, so no result file is left owned by root;
- host networking (the GPU hosts this runs on use it; no port mapping or bridge is needed);
- host IPC, because PyTorch and vLLM move tensors between processes through shared memory and
  Docker's default 64 MB ``/dev/shm`` breaks them;
- GPUs only when the host has NVIDIA GPUs (all of them, or the ids in the host's
  ``CUDA_VISIBLE_DEVICES``), so the same settings work on a CPU-only machine;
- secrets (``HF_TOKEN`` ...) passed through the container's environment, never written to a file;
- ``LLEM_CONTAINER_IMAGE`` / ``LLEM_CONTAINER_IMAGE_ID`` so the environment snapshot records
  exactly which image produced the result;
- tini as PID 1 (``init``): it forwards signals to the harness and reaps engine workers.

Any runner that starts experiment containers (the docker runner, or a batch job running
``docker run``) builds them here, so they are the same container whichever way they start.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from llenergymeasure.backends import registry
from llenergymeasure.errors import RunnerError
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.results.layout import REQUEST_FILE
from llenergymeasure.runners.docker.container_spec import (
    MANAGED_LABEL,
    RUN_DIR_LABEL,
    BindMount,
    ContainerSpec,
    GpuSelection,
    resolve_gpus,
)

#: variables copied from the caller's environment into the container when set (never to a file)
PASSTHROUGH_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "LLEM_CARBON_INTENSITY",
    "LLEM_DATACENTER_PUE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "CUDA_LAUNCH_BLOCKING",
    "OMP_NUM_THREADS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
#: engine tuning variables, passed through by prefix (NCCL's, and each backend's registry entry's)
PASSTHROUGH_PREFIXES = ("NCCL_", *registry.env_prefixes())


@dataclass(frozen=True)
class ContainerSettings:
    """How experiment containers of ``image`` run on this host.

    ``gpus``: ``"auto"`` (default: all the host's GPUs, or those in ``CUDA_VISIBLE_DEVICES``; none
    on a host without NVIDIA GPUs), ``"all"``, a list of device indices/UUIDs, or ``None``.
    ``user``: ``"uid:gid"`` the container runs as (default: the caller's). ``extra_env`` is added
    to the container's environment (secrets included: it is never written to a file).
    ``ipc_mode="host"`` shares the host's shared memory; with ``ipc_mode=None`` the container gets
    its own ``/dev/shm`` of ``shm_size``. ``pid_mode="host"`` (default) runs the container in the
    host's PID namespace, the one NVML reports GPU processes in, so the ``foreign_process`` check
    can tell another process on a measured GPU from this experiment's own; ``None`` isolates it
    (the check then reports such PIDs as not visible, at severity info). ``environ``: the
    caller's environment (default ``os.environ``).
    """

    image: str
    gpus: GpuSelection = "auto"
    model_cache_dir: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    python: str = "python3"
    network_mode: str = "host"
    ipc_mode: str | None = "host"
    shm_size: str = "16g"
    pid_mode: str | None = "host"
    mount_hf_cache: bool = True
    environ: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.image or not self.image.strip():
            raise RunnerError(
                f"the docker runner needs an image, e.g. docker:{registry.EXAMPLE_IMAGE}"
            )
        if self.user is not None and not re.fullmatch(r"\d+(:\d+)?", self.user):
            raise RunnerError(
                f"user: {self.user!r} is not a numeric uid or uid:gid (e.g. '1000:1000')"
            )
        object.__setattr__(self, "image", self.image.strip())
        object.__setattr__(self, "extra_env", dict(self.extra_env))

    @property
    def run_as(self) -> str:
        """The ``uid:gid`` the container runs as."""
        return self.user or f"{os.getuid()}:{os.getgid()}"

    @property
    def caller_environ(self) -> Mapping[str, str]:
        return os.environ if self.environ is None else self.environ


def hf_home(environ: Mapping[str, str]) -> Path:
    """The Hugging Face cache directory ``environ`` points at."""
    if environ.get("HF_HOME"):
        return Path(os.path.expanduser(environ["HF_HOME"]))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface"


def container_environment(
    settings: ContainerSettings, image_id: str
) -> tuple[dict[str, str], frozenset[str]]:
    """The container's environment, and the names whose values come from the caller."""
    env = settings.caller_environ
    out = {k: env[k] for k in PASSTHROUGH_ENV if env.get(k)}
    out.update({k: v for k, v in env.items() if k.startswith(PASSTHROUGH_PREFIXES)})
    from_caller = set(out)
    # The caller's uid usually has no home directory in the image; /tmp is writable by all.
    own = {
        "HOME": "/tmp",
        "USER": "llem",
        "PYTHONUNBUFFERED": "1",
        "LLEM_CONTAINER_IMAGE": settings.image,
        "LLEM_CONTAINER_IMAGE_ID": image_id,
    }
    if settings.pid_mode == "host":
        # --init's tini is not PID 1 in the host's namespace: as a subreaper it still reaps the
        # engine's orphaned workers (and does not warn that it cannot)
        own["TINI_SUBREAPER"] = "1"
    if settings.mount_hf_cache:
        own["HF_HOME"] = str(hf_home(env).resolve())
    out.update(own)
    from_caller -= set(own)
    out.update(settings.extra_env)
    from_caller |= set(settings.extra_env)
    return out, frozenset(from_caller)


def request_for_container(settings: ContainerSettings, request: HarnessRequest) -> HarnessRequest:
    """The request with every cache path made absolute (the container's HOME differs)."""
    s = request.settings
    model_cache = s.model_cache_dir or (
        str(settings.model_cache_dir) if settings.model_cache_dir else None
    )
    if model_cache is None:
        from llenergymeasure.config.user import OutputSettings

        model_cache = str(OutputSettings().resolved_model_cache_dir())
    model_cache = str(Path(os.path.expanduser(model_cache)).resolve())
    baseline = s.baseline_cache_dir or str(Path(model_cache) / "baseline")
    baseline = str(Path(os.path.expanduser(baseline)).resolve())
    new_settings = s.model_copy(
        update={"model_cache_dir": model_cache, "baseline_cache_dir": baseline}
    )
    return request.model_copy(update={"settings": new_settings})


def write_container_request(
    settings: ContainerSettings, request: HarnessRequest, run_dir: Path
) -> tuple[HarnessRequest, Path]:
    """Create ``run_dir`` and write the container's request into it: (that request, its path)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    request = request_for_container(settings, request)
    request_path = request.write(run_dir / REQUEST_FILE)
    # Readable by the container's user even when ``user`` is not the caller (it holds no secret).
    request_path.chmod(0o644)
    return request, request_path


class _Mounts:
    """Host paths bind-mounted at the same path inside the container (read-write wins)."""

    def __init__(self) -> None:
        self.rw: dict[str, None] = {}
        self.ro: dict[str, None] = {}

    def add(self, path: Path | str, read_only: bool = False) -> None:
        p = str(Path(path).resolve())
        if read_only:
            if p not in self.rw:
                self.ro[p] = None
        else:
            self.ro.pop(p, None)
            self.rw[p] = None

    def mounts(self) -> tuple[BindMount, ...]:
        return tuple(BindMount(p, read_only=True) for p in self.ro) + tuple(
            BindMount(p) for p in self.rw
        )


def _ensure_dir(path: Path, user: str) -> None:
    """Create a missing mount source (Docker would create it root-owned).

    Directories created here belong to the container's user, so that a root controller running
    containers as another user (``user=...``) leaves nothing that user cannot write.
    """
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0 and missing:
        uid, _, gid = user.partition(":")
        for d in missing:
            with contextlib.suppress(OSError):
                os.chown(d, int(uid), int(gid or uid))


def experiment_mounts(
    settings: ContainerSettings, request: HarnessRequest, run_dir: Path
) -> tuple[BindMount, ...]:
    """What the container mounts: ``run_dir``, the caches (created if missing), local inputs."""
    mounts = _Mounts()
    mounts.add(run_dir)
    for cache in (request.settings.model_cache_dir, request.settings.baseline_cache_dir):
        if cache:
            path = Path(cache)
            _ensure_dir(path, settings.run_as)
            mounts.add(path)
    if settings.mount_hf_cache:
        hf = hf_home(settings.caller_environ)
        try:
            _ensure_dir(hf, settings.run_as)
            mounts.add(hf)
        except OSError:
            pass
    # A local model directory or dataset file named in the config, read-only.
    config = request.config
    for candidate in (config.model, config.dataset.source):
        if candidate and candidate != "synthetic":
            path = Path(os.path.expanduser(candidate))
            if path.exists() and path.resolve() != Path("/"):
                mounts.add(path, read_only=True)
    return mounts.mounts()


def relative_inputs_dir(request: HarnessRequest) -> Path | None:
    """The caller's current directory when the config names a local input by a relative path.

    Files load relative paths against the YAML file (they arrive here absolute); a config built
    in Python may still say ``data/prompts.jsonl``, meaning the current directory. The input is
    mounted at its absolute path, and the container starts in this directory, so the relative
    path reaches the same file inside.
    """
    config = request.config
    for candidate in (config.model, config.dataset.source):
        relative = candidate and not os.path.isabs(candidate) and not candidate.startswith("~")
        if relative and candidate != "synthetic" and Path(candidate).exists():
            return Path.cwd()
    return None


def container_name(run_dir: Path) -> str:
    """A unique container name that says which run it belongs to."""
    stem = re.sub(r"[^a-zA-Z0-9_.-]+", "-", run_dir.name).strip("-.")[:60] or "run"
    return f"llem-{stem}-{uuid.uuid4().hex[:8]}"


def experiment_container_spec(
    settings: ContainerSettings,
    run_dir: Path,
    request_path: Path,
    image_id: str,
    mounts: tuple[BindMount, ...],
    working_dir: Path | None = None,
) -> ContainerSpec:
    """The container running the harness on ``request_path`` with ``run_dir`` as its output.

    ``run_dir`` absolute; ``request_path`` and ``mounts`` from ``write_container_request`` and
    ``experiment_mounts``; ``image_id``: the id of ``settings.image`` on the host that runs it;
    ``working_dir``: where the harness starts (``run_dir`` by default; ``relative_inputs_dir``).
    """
    environment, from_caller = container_environment(settings, image_id)
    return ContainerSpec(
        image=settings.image,
        entrypoint=(settings.python, "-m", "llenergymeasure.harness"),
        command=("--config", str(request_path), "--output", str(run_dir)),
        user=settings.run_as,
        environment=environment,
        caller_env=from_caller,
        mounts=mounts,
        working_dir=str(working_dir or run_dir),
        network_mode=settings.network_mode,
        ipc_mode=settings.ipc_mode,
        shm_size=None if settings.ipc_mode else settings.shm_size,
        pid_mode=settings.pid_mode,
        gpus=resolve_gpus(settings.gpus, settings.environ),
        labels={MANAGED_LABEL: "true", RUN_DIR_LABEL: str(run_dir)},
        name=container_name(run_dir),
        init=True,
    )
