"""The docker runner: each experiment in a fresh, ephemeral container of its backend's image.

One ``docker run`` per experiment, through the docker SDK. The harness inside the container is
the same code the local runner spawns (``python -m llenergymeasure.harness``); it reads
``run_dir/request.json`` and writes ``result.json`` or ``error.json`` into ``run_dir``, which is
bind-mounted at the same absolute path it has on the host, so every path in the request means the
same thing on both sides. The model and baseline caches (and local model or dataset paths named by
the config) are mounted the same way.

Why these container settings:

- the caller's uid:gid, so no result file is left owned by root;
- host networking (the GPU hosts this runs on use it; no port mapping or bridge is needed);
- host IPC, because PyTorch and vLLM move tensors between processes through shared memory and
  Docker's default 64 MB ``/dev/shm`` breaks them;
- GPUs through device requests only when the host has NVIDIA GPUs (all of them, or the ids in the
  host's ``CUDA_VISIBLE_DEVICES``), so the same runner works on a CPU-only machine;
- secrets (``HF_TOKEN`` ...) passed through the container's environment, never written to a file;
- ``LLEM_CONTAINER_IMAGE`` / ``LLEM_CONTAINER_IMAGE_ID`` so the environment snapshot records
  exactly which image produced the result.

The container is removed in every case: success, failure, timeout, and Ctrl-C (which kills it and
re-raises ``KeyboardInterrupt``). ``docker`` is imported inside functions: importing
``llenergymeasure`` must work without it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llenergymeasure.errors import DockerUnavailableError, RunnerError
from llenergymeasure.harness.request import (
    LOG_FILE,
    REQUEST_FILE,
    HarnessRequest,
)
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.outcome import outcome_from_dir

#: label put on every container this runner starts (tests and cleanup tools select on it)
MANAGED_LABEL = "org.llenergymeasure.managed"
RUN_DIR_LABEL = "org.llenergymeasure.run_dir"

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
#: engine tuning variables, passed through by prefix
PASSTHROUGH_PREFIXES = ("VLLM_", "NCCL_", "TLLM_", "TRTLLM_")

#: grace between SIGTERM and SIGKILL when a timed-out container is stopped
STOP_GRACE_S = 5.0
#: how long to wait for the log stream to drain after the container exits
LOG_DRAIN_S = 5.0
#: the seconds one version-check container may take (an import of the package)
VERSION_CHECK_TIMEOUT_S = 120.0

GpuSelection = Literal["auto", "all"] | list[int] | list[str] | None

# Images whose build command is known (anything else: "build or pull it").
_BUILD_COMMANDS = {
    "llenergymeasure:pytorch": "make images  (or: docker/build-image.sh pytorch)",
    "llenergymeasure:vllm": "make images  (or: docker/build-image.sh vllm)",
    "llenergymeasure:trtllm": "make images  (or: docker/build-image.sh trtllm)",
    "llenergymeasure:pytorch-ci": "make images-ci  (or: docker/ci/build-ci-images.sh pytorch)",
    "llenergymeasure:vllm-ci": "make images-ci  (or: docker/ci/build-ci-images.sh vllm)",
}

_TOOLKIT_HELP = (
    "install the NVIDIA Container Toolkit "
    "(https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html), "
    "run `sudo nvidia-ctk runtime configure --runtime=docker`, restart Docker, and check with "
    "`docker run --rm --gpus all <image> nvidia-smi`"
)


# -- the daemon ---------------------------------------------------------------------------------


def _docker_host() -> str:
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
            f"cannot reach a Docker daemon at {_docker_host()}: {text.strip() or type(exc).__name__}; "
            f"{hint}. Without Docker, use the local runner (--runner local)"
        ) from exc
    return client


def check_docker_available() -> None:
    """Raise ``DockerUnavailableError`` (with the fix) unless a Docker daemon answers."""
    docker_client(timeout_s=20.0).close()


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


def gpu_device_requests(gpus: GpuSelection, environ: Mapping[str, str] | None = None) -> list[Any]:
    """Docker device requests for ``gpus``.

    ``"auto"``: every GPU when the host has any (restricted to the host's ``CUDA_VISIBLE_DEVICES``
    when that is set), none otherwise. ``"all"``: every GPU (an error on a host without one).
    A list: those device indices or UUIDs. ``None``: no GPU.
    """
    from docker.types import DeviceRequest

    env = os.environ if environ is None else environ
    if gpus is None:
        return []
    if gpus == "auto":
        if host_gpu_count() == 0:
            return []
        visible = env.get("CUDA_VISIBLE_DEVICES")
        if visible is not None and visible.strip():
            ids = [v.strip() for v in visible.split(",") if v.strip()]
            if ids and not any(v.startswith("-") for v in ids):
                return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, list):
        if not gpus:
            return []
        return [DeviceRequest(device_ids=[str(g) for g in gpus], capabilities=[["gpu"]])]
    raise RunnerError(
        f"gpus: {gpus!r} is not a GPU selection; use 'auto', 'all', a list of device ids, or None"
    )


def _is_toolkit_error(exc: BaseException) -> bool:
    text = str(exc)
    return "could not select device driver" in text or "nvidia-container-cli" in text


# -- images -------------------------------------------------------------------------------------


def build_hint(image: str) -> str:
    """The command that builds ``image`` (or how to get it when it is not one of ours)."""
    if image in _BUILD_COMMANDS:
        return _BUILD_COMMANDS[image]
    return f"docker pull {image}, or build it from docker/<backend>.Dockerfile with --tag {image}"


def get_image(client: Any, image: str) -> Any:
    """The local image ``image``; ``DockerUnavailableError`` naming the build command if absent.

    Never pulls: a measurement must run on the image the researcher built or chose, not on
    whatever a registry serves today.
    """
    from docker.errors import ImageNotFound

    try:
        return client.images.get(image)
    except ImageNotFound as exc:
        raise DockerUnavailableError(
            f"Docker image {image!r} is not on this machine; build it with: {build_hint(image)}"
        ) from exc


def host_versions() -> dict[str, str]:
    """The versions an image must match: this package's and the result schema's."""
    from llenergymeasure._version import __version__
    from llenergymeasure.results.models import SCHEMA_VERSION

    return {"llenergymeasure_version": __version__, "schema_version": SCHEMA_VERSION}


_checked_images: dict[str, dict[str, str]] = {}


def image_versions(
    image: str, client: Any | None = None, python: str = "python3", gpus: GpuSelection = "auto"
) -> dict[str, str]:
    """Run ``python -m llenergymeasure.harness --print-versions`` in a throwaway container.

    The container requests the same GPUs experiments will, so a missing NVIDIA container toolkit
    is reported here, before a study starts, rather than by its first experiment.
    """
    own = client is None
    client = client or docker_client()
    try:
        img = get_image(client, image)
        if img.id in _checked_images:
            return _checked_images[img.id]
        container = _create(
            client,
            image,
            entrypoint=[python, "-m", "llenergymeasure.harness"],
            command=["--print-versions"],
            network_mode="none",
            device_requests=gpu_device_requests(gpus),
            labels={MANAGED_LABEL: "true"},
        )
        try:
            _start(container)
            status = container.wait(timeout=VERSION_CHECK_TIMEOUT_S)
            logs = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        finally:
            _remove(container)
        code = int(status.get("StatusCode", -1))
        versions = None
        for line in reversed(logs.splitlines()):
            try:
                parsed = json.loads(line)
            except ValueError:
                continue
            if isinstance(parsed, dict) and "llenergymeasure_version" in parsed:
                versions = {k: str(v) for k, v in parsed.items()}
                break
        if code != 0 or versions is None:
            tail = "\n".join(logs.splitlines()[-15:])
            raise RunnerError(
                f"image {image!r} cannot run `{python} -m llenergymeasure.harness --print-versions` "
                f"(exit status {code}); is llenergymeasure installed in it? Rebuild it with: "
                f"{build_hint(image)}\n{tail}"
            )
        _checked_images[img.id] = versions
        return versions
    finally:
        if own:
            client.close()


def check_image_versions(
    images: Iterable[str], client: Any | None = None, gpus: GpuSelection = "auto"
) -> None:
    """Before a study: every image must carry this host's package and result-schema versions.

    A result written by another version of the harness could differ in meaning from the ones
    beside it, so a mismatch stops the study here with the command that rebuilds the image.
    """
    own = client is None
    client = client or docker_client()
    try:
        host = host_versions()
        problems = []
        for image in dict.fromkeys(images):
            got = image_versions(image, client=client, gpus=gpus)
            diff = [
                f"{key} {got.get(key, '?')} (host {want})"
                for key, want in host.items()
                if got.get(key) != want
            ]
            if diff:
                problems.append(f"{image}: {', '.join(diff)}; rebuild it with: {build_hint(image)}")
        if problems:
            raise RunnerError(
                "Docker image versions do not match this installation of llenergymeasure:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )
    finally:
        if own:
            client.close()


# -- containers ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _toolkit_errors() -> Iterator[None]:
    """Turn Docker's "no GPU driver" API errors into the toolkit guidance; others pass through."""
    from docker.errors import APIError

    try:
        yield
    except APIError as exc:
        if _is_toolkit_error(exc):
            raise DockerUnavailableError(
                f"Docker cannot give GPUs to containers on this host ({exc.explanation or exc}); "
                + _TOOLKIT_HELP
            ) from exc
        raise


def _create(client: Any, image: str, **kwargs: Any) -> Any:
    with _toolkit_errors():
        return client.containers.create(image, detach=True, **kwargs)


def _start(container: Any) -> None:
    with _toolkit_errors():
        container.start()


def _remove(container: Any) -> None:
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


@dataclass
class _Mounts:
    """Host paths bind-mounted at the same path inside the container."""

    rw: dict[str, None]
    ro: dict[str, None]

    def add(self, path: Path | str, read_only: bool = False) -> None:
        p = str(Path(path).resolve())
        if read_only:
            if p not in self.rw:
                self.ro[p] = None
        else:
            self.ro.pop(p, None)
            self.rw[p] = None

    def volumes(self) -> dict[str, dict[str, str]]:
        out = {p: {"bind": p, "mode": "ro"} for p in self.ro}
        out.update({p: {"bind": p, "mode": "rw"} for p in self.rw})
        return out


def _hf_home(environ: Mapping[str, str]) -> Path:
    if environ.get("HF_HOME"):
        return Path(os.path.expanduser(environ["HF_HOME"]))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "huggingface"


class DockerRunner:
    """Runs the harness for one request in a fresh container of ``image``.

    ``gpus``: ``"auto"`` (default: all the host's GPUs, or those in ``CUDA_VISIBLE_DEVICES``; none
    on a host without NVIDIA GPUs), ``"all"``, a list of device indices/UUIDs, or ``None``.
    ``user``: ``"uid:gid"`` the container runs as (default: the caller's). ``extra_env`` is added
    to the container's environment (secrets included: it is never written to a file).
    ``ipc_mode="host"`` shares the host's shared memory; with ``ipc_mode=None`` the container gets
    its own ``/dev/shm`` of ``shm_size``.
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
        if not image or not image.strip():
            raise RunnerError(
                "the docker runner needs an image, e.g. docker:llenergymeasure:pytorch"
            )
        if user is not None and not re.fullmatch(r"\d+(:\d+)?", user):
            raise RunnerError(f"user: {user!r} is not a numeric uid or uid:gid (e.g. '1000:1000')")
        self.image = image.strip()
        self.gpus = gpus
        self.model_cache_dir = Path(model_cache_dir) if model_cache_dir else None
        self.extra_env = dict(extra_env or {})
        self.user = user or f"{os.getuid()}:{os.getgid()}"
        self.python = python
        self.network_mode = network_mode
        self.ipc_mode = ipc_mode
        self.shm_size = shm_size
        self.mount_hf_cache = mount_hf_cache
        self._environ = environ

    # -- what the container gets ------------------------------------------------------------

    def _environment(self, image_id: str) -> dict[str, str]:
        env = os.environ if self._environ is None else self._environ
        out = {k: env[k] for k in PASSTHROUGH_ENV if env.get(k)}
        out.update({k: v for k, v in env.items() if k.startswith(PASSTHROUGH_PREFIXES)})
        # The caller's uid usually has no home directory in the image; /tmp is writable by all.
        out.update(
            {
                "HOME": "/tmp",
                "USER": "llem",
                "PYTHONUNBUFFERED": "1",
                "LLEM_CONTAINER_IMAGE": self.image,
                "LLEM_CONTAINER_IMAGE_ID": image_id,
            }
        )
        if self.mount_hf_cache:
            out["HF_HOME"] = str(_hf_home(env).resolve())
        out.update(self.extra_env)
        return out

    def _mounts(self, request: HarnessRequest, run_dir: Path) -> _Mounts:
        env = os.environ if self._environ is None else self._environ
        mounts = _Mounts(rw={}, ro={})
        mounts.add(run_dir)
        for cache in (request.settings.model_cache_dir, request.settings.baseline_cache_dir):
            if cache:
                path = Path(cache)
                self._ensure_dir(path)
                mounts.add(path)
        if self.mount_hf_cache:
            hf = _hf_home(env)
            try:
                self._ensure_dir(hf)
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
        return mounts

    def _ensure_dir(self, path: Path) -> None:
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
            uid, _, gid = self.user.partition(":")
            for d in missing:
                with contextlib.suppress(OSError):
                    os.chown(d, int(uid), int(gid or uid))

    def _request_for_container(self, request: HarnessRequest) -> HarnessRequest:
        """The request with every cache path made absolute (the container's HOME differs)."""
        settings = request.settings
        model_cache = settings.model_cache_dir or (
            str(self.model_cache_dir) if self.model_cache_dir else None
        )
        if model_cache is None:
            from llenergymeasure.config.user import OutputSettings

            model_cache = str(OutputSettings().resolved_model_cache_dir())
        model_cache = str(Path(os.path.expanduser(model_cache)).resolve())
        baseline = settings.baseline_cache_dir or str(Path(model_cache) / "baseline")
        baseline = str(Path(os.path.expanduser(baseline)).resolve())
        new_settings = settings.model_copy(
            update={"model_cache_dir": model_cache, "baseline_cache_dir": baseline}
        )
        return request.model_copy(update={"settings": new_settings})

    def container_name(self, run_dir: Path) -> str:
        stem = re.sub(r"[^a-zA-Z0-9_.-]+", "-", run_dir.name).strip("-.")[:60] or "run"
        return f"llem-{stem}-{uuid.uuid4().hex[:8]}"

    # -- one run ----------------------------------------------------------------------------

    def run(
        self, request: HarnessRequest, run_dir: Path, timeout_s: float | None = None
    ) -> RunOutcome:
        """Run one experiment; see the module docstring for the guarantees."""
        run_dir = Path(run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        request = self._request_for_container(request)
        request_path = request.write(run_dir / REQUEST_FILE)
        # Readable by the container's user even when ``user`` is not the caller (it holds no secret).
        request_path.chmod(0o644)
        mounts = self._mounts(request, run_dir)

        client = docker_client()
        container = None
        log_thread: threading.Thread | None = None
        timings: dict[str, object] = {}
        try:
            image = get_image(client, self.image)
            kwargs: dict[str, Any] = {
                "entrypoint": [self.python, "-m", "llenergymeasure.harness"],
                "command": ["--config", str(request_path), "--output", str(run_dir)],
                "user": self.user,
                "environment": self._environment(image.id),
                "volumes": mounts.volumes(),
                "working_dir": str(run_dir),
                "network_mode": self.network_mode,
                "device_requests": gpu_device_requests(self.gpus, self._environ),
                "labels": {MANAGED_LABEL: "true", RUN_DIR_LABEL: str(run_dir)},
                "name": self.container_name(run_dir),
                # tini as PID 1: forwards signals to the harness and reaps engine workers
                "init": True,
            }
            if self.ipc_mode:
                kwargs["ipc_mode"] = self.ipc_mode
            else:
                kwargs["shm_size"] = self.shm_size
            t0 = time.monotonic()
            container = _create(client, self.image, **kwargs)
            _start(container)
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
                _remove(container)
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
                    f"lost the connection to the Docker daemon at {_docker_host()} while waiting "
                    f"for container {container.name}: {exc}"
                ) from exc
            time.sleep(0.5)
            continue
        return int(status.get("StatusCode", -1)), False
