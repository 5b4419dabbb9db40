"""The experiment container as data: what it gets, and that ``docker run`` and the SDK agree on it."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.runners.docker import container_spec
from llenergymeasure.runners.docker.container_spec import (
    MANAGED_LABEL,
    RUN_DIR_LABEL,
    BindMount,
    ContainerSpec,
    docker_run_argv,
    docker_sdk_kwargs,
    resolve_gpus,
)
from llenergymeasure.runners.docker.experiment_container import (
    ContainerSettings,
    experiment_container_spec,
    experiment_mounts,
    write_container_request,
)
from tests.docker.docker_helpers import tiny_experiment

SECRET = "hf_llem_spec_secret_0123456789"


def _spec() -> ContainerSpec:
    return ContainerSpec(
        image="img:tag",
        entrypoint=("python3", "-m", "llenergymeasure.harness"),
        command=("--config", "/r/request.json"),
        user="1000:1001",
        environment={"HOME": "/tmp", "HF_TOKEN": SECRET},
        caller_env=frozenset({"HF_TOKEN"}),
        mounts=(BindMount("/data", read_only=True), BindMount("/r")),
        working_dir="/r",
        network_mode="host",
        ipc_mode="host",
        shm_size=None,
        pid_mode="host",
        gpus=("0", "2"),
        labels={MANAGED_LABEL: "true"},
        name="llem-x",
        init=True,
    )


def test_docker_run_argv_spells_out_every_setting_and_names_secrets_only() -> None:
    argv, env = docker_run_argv(_spec())
    assert argv == [
        "docker", "run", "--rm", "--name", "llem-x", "--init", "--user", "1000:1001",
        "--network", "host", "--ipc", "host", "--pid", "host", "--gpus", '"device=0,2"',
        "--workdir", "/r",
        "--label", f"{MANAGED_LABEL}=true",
        "--volume", "/data:/data:ro", "--volume", "/r:/r:rw",
        "--env", "HOME=/tmp", "--env", "HF_TOKEN",
        "--entrypoint", "python3", "img:tag", "-m", "llenergymeasure.harness",
        "--config", "/r/request.json",
    ]  # fmt: skip
    assert env == {"HF_TOKEN": SECRET}, "the secret travels in the environment, not the argv"


def test_shm_size_applies_only_without_shared_ipc() -> None:
    spec = ContainerSpec(image="i", ipc_mode=None, shm_size="8g", gpus="all")
    argv, env = docker_run_argv(spec, subcommand="create")
    assert argv == ["docker", "create", "--shm-size", "8g", "--gpus", "all", "i"] and env == {}
    assert docker_sdk_kwargs(spec)["shm_size"] == "8g"
    assert "shm_size" not in docker_sdk_kwargs(_spec())
    assert docker_sdk_kwargs(_spec())["ipc_mode"] == "host"
    assert "pid_mode" not in docker_sdk_kwargs(spec) and "--pid" not in argv
    assert docker_sdk_kwargs(_spec())["volumes"] == {
        "/data": {"bind": "/data", "mode": "ro"},
        "/r": {"bind": "/r", "mode": "rw"},
    }


def test_gpu_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container_spec, "host_gpu_count", lambda: 0)
    assert resolve_gpus("auto", environ={"CUDA_VISIBLE_DEVICES": "0"}) is None
    monkeypatch.setattr(container_spec, "host_gpu_count", lambda: 2)
    assert resolve_gpus("auto", environ={"CUDA_VISIBLE_DEVICES": "1, 0"}) == ("1", "0")
    assert resolve_gpus("auto", environ={"CUDA_VISIBLE_DEVICES": "-1"}) == "all"
    assert resolve_gpus([3, 5]) == ("3", "5")
    assert resolve_gpus([]) is None


def _experiment(tmp_path: Path, environ: dict[str, str]) -> tuple[ContainerSpec, ContainerSettings]:
    dataset = tmp_path / "prompts.jsonl"
    dataset.write_text('{"prompt": "hello"}\n')
    request = HarnessRequest(
        config=ExperimentConfig.from_dict(
            tiny_experiment(dataset={"source": str(dataset), "input_tokens": 16})
        ),
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(tmp_path / "cache")),
    )
    settings = ContainerSettings(
        "img:tag", gpus=None, user="1000:1000", environ=environ, extra_env={"EXTRA": "x"}
    )
    run_dir = (tmp_path / "run").resolve()
    request, request_path = write_container_request(settings, request, run_dir)
    mounts = experiment_mounts(settings, request, run_dir)
    return experiment_container_spec(settings, run_dir, request_path, "sha256:1", mounts), settings


def test_experiment_container_for_a_request(tmp_path: Path) -> None:
    environ = {"HF_TOKEN": SECRET, "VLLM_X": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/x"}
    spec, _ = _experiment(tmp_path, environ)
    run_dir = str((tmp_path / "run").resolve())
    cache = str((tmp_path / "cache").resolve())
    assert spec.entrypoint == ("python3", "-m", "llenergymeasure.harness")
    assert spec.command == ("--config", f"{run_dir}/request.json", "--output", run_dir)
    assert (tmp_path / "run" / "request.json").is_file()
    assert {m.path: m.read_only for m in spec.mounts} == {
        str((tmp_path / "prompts.jsonl").resolve()): True,
        run_dir: False,
        cache: False,
        f"{cache}/baseline": False,
        str((tmp_path / "hf").resolve()): False,
    }
    assert spec.environment == {
        "HF_TOKEN": SECRET,
        "VLLM_X": "1",
        "HOME": "/tmp",
        "USER": "llem",
        "PYTHONUNBUFFERED": "1",
        "TINI_SUBREAPER": "1",
        "LLEM_CONTAINER_IMAGE": "img:tag",
        "LLEM_CONTAINER_IMAGE_ID": "sha256:1",
        "HF_HOME": str((tmp_path / "hf").resolve()),
        "EXTRA": "x",
    }
    assert spec.caller_env == {"HF_TOKEN", "VLLM_X", "EXTRA"}
    assert spec.labels == {MANAGED_LABEL: "true", RUN_DIR_LABEL: run_dir}
    assert spec.user == "1000:1000" and spec.init and spec.gpus is None
    assert (spec.network_mode, spec.ipc_mode, spec.shm_size) == ("host", "host", None)
    argv, _ = docker_run_argv(spec)
    assert not any(SECRET in a for a in argv)


def test_experiment_containers_share_the_host_pid_namespace(tmp_path: Path) -> None:
    """NVML lists a GPU's processes by host PID: only in the host's PID namespace can the
    ``foreign_process`` check tell another process from this experiment's own (issue 25, 13)."""
    spec, settings = _experiment(tmp_path, {})
    assert spec.pid_mode == "host"
    assert docker_sdk_kwargs(spec)["pid_mode"] == "host"
    argv, _ = docker_run_argv(spec)
    assert argv[argv.index("--pid") + 1] == "host"
    # tini (--init) is not PID 1 there: it must reap as a subreaper
    assert spec.init and spec.environment["TINI_SUBREAPER"] == "1"
    # opting out isolates the container again, and drops the subreaper variable
    isolated = dataclasses.replace(settings, pid_mode=None)
    _, request_path = write_container_request(
        isolated,
        HarnessRequest.model_validate_json((tmp_path / "run" / "request.json").read_text()),
        (tmp_path / "run").resolve(),
    )
    alone = experiment_container_spec(
        isolated, (tmp_path / "run").resolve(), request_path, "sha256:1", spec.mounts
    )
    assert alone.pid_mode is None and "TINI_SUBREAPER" not in alone.environment
    assert "pid_mode" not in docker_sdk_kwargs(alone)
    assert "--pid" not in docker_run_argv(alone)[0]


def _inspect_view(attrs: dict[str, Any]) -> dict[str, Any]:
    """The parts of ``docker inspect`` a ContainerSpec decides."""
    config, host = attrs["Config"], attrs["HostConfig"]
    return {
        "Image": config["Image"],
        "argv": (config.get("Entrypoint") or []) + (config.get("Cmd") or []),
        "User": config["User"],
        "Env": sorted(e for e in config["Env"] if not e.startswith("PATH=")),
        "WorkingDir": config["WorkingDir"],
        "Labels": config["Labels"],
        "Binds": sorted(host["Binds"]),
        "NetworkMode": host["NetworkMode"],
        "IpcMode": host["IpcMode"],
        "PidMode": host["PidMode"],
        "ShmSize": host["ShmSize"],
        "Init": host["Init"],
        "DeviceRequests": host["DeviceRequests"] or [],  # None and [] both: no GPU
    }


@pytest.mark.docker
@pytest.mark.parametrize("gpus", [None, ["0", "1"]])
def test_docker_run_argv_and_the_sdk_create_the_same_container(
    pytorch_image: str, docker_client: Any, tmp_path: Path, gpus: list[str] | None
) -> None:
    """Created, not started: the same settings whether the SDK or the ``docker`` CLI makes it."""
    cli = shutil.which("docker")
    if cli is None:
        pytest.fail("the docker CLI is not on PATH (docker/ci/provision.sh installs docker.io)")
    spec, _ = _experiment(tmp_path, {"HF_TOKEN": SECRET, "HF_HOME": str(tmp_path / "hf")})
    spec = dataclasses.replace(spec, image=pytorch_image, gpus=resolve_gpus(gpus))
    by_sdk = docker_client.containers.create(spec.image, detach=True, **docker_sdk_kwargs(spec))
    by_cli_id = None
    try:
        cli_spec = dataclasses.replace(spec, name=f"{spec.name}-cli")
        argv, env = docker_run_argv(cli_spec, docker=cli, subcommand="create")
        out = subprocess.run(
            argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        by_cli_id = out.stdout.strip().splitlines()[-1]
        by_cli = docker_client.containers.get(by_cli_id)
        by_sdk.reload()
        assert _inspect_view(by_cli.attrs) == _inspect_view(by_sdk.attrs)
        assert f"HF_TOKEN={SECRET}" in by_cli.attrs["Config"]["Env"]
    finally:
        by_sdk.remove(force=True)
        if by_cli_id:
            docker_client.containers.get(by_cli_id).remove(force=True)
