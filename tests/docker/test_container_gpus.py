"""The docker runner gives an experiment's container exactly its ``gpus`` (as device ids).

Built, not started: the container spec and the SDK's device requests, as the docker runner makes
them (no daemon needed); ``test_container_spec.py`` checks the SDK and ``docker run`` agree on it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import RunnerError
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.runners.docker import container_spec
from llenergymeasure.runners.docker.container_spec import docker_run_argv, docker_sdk_kwargs
from llenergymeasure.runners.docker.experiment_container import (
    experiment_container_spec,
    experiment_mounts,
    write_container_request,
)
from llenergymeasure.runners.docker.runner import DockerRunner
from tests.docker.docker_helpers import tiny_experiment

UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-1111-2222-3333-444444444444"


def _spec(runner: DockerRunner, tmp_path: Path, **config: object):  # type: ignore[no-untyped-def]
    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment(**config)),
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(tmp_path / "cache")),
    )
    settings = runner.settings_for(request)
    run_dir = (tmp_path / "run").resolve()
    request, request_path = write_container_request(settings, request, run_dir)
    mounts = experiment_mounts(settings, request, run_dir)
    return experiment_container_spec(settings, run_dir, request_path, "sha256:1", mounts)


def _device_ids(spec) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return [r["DeviceIDs"] for r in docker_sdk_kwargs(spec)["device_requests"]]


def test_the_experiments_gpus_become_the_containers_device_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"CUDA_VISIBLE_DEVICES": f"{UUID_A},3,{UUID_B}", "HOME": str(tmp_path)}
    runner = DockerRunner("img:tag", environ=environ, user="1000:1000")  # gpus="auto"
    spec = _spec(runner, tmp_path, gpus=[2, 1], pytorch={"device_map": "auto"})
    assert spec.gpus == (UUID_B, "3")
    assert _device_ids(spec) == [[UUID_B, "3"]]
    argv, _ = docker_run_argv(spec)
    assert argv[argv.index("--gpus") + 1] == f'"device={UUID_B},3"'
    # without gpus: the host's visible list, as before ("auto" on a host with GPUs)
    monkeypatch.setattr(container_spec, "host_gpu_count", lambda: 8)
    assert _spec(runner, tmp_path).gpus == (UUID_A, "3", UUID_B)


def test_a_runner_placement_maps_through_the_callers_visible_devices(tmp_path: Path) -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "4,6", "HOME": str(tmp_path)}
    runner = DockerRunner("img:tag", gpus=[1], environ=environ, user="1000:1000")
    assert runner.settings.gpus == ["6"]
    # an explicit placement (a scheduler's) wins over the experiment's field
    spec = _spec(runner, tmp_path, gpus=[0])
    assert spec.gpus == ("6",) and _device_ids(spec) == [["6"]]
    # no CUDA_VISIBLE_DEVICES: indices are the host's GPUs
    assert DockerRunner("img:tag", gpus=[0, 1], environ={}).settings.gpus == ["0", "1"]


def test_a_gpu_the_caller_cannot_see_is_refused(tmp_path: Path) -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "4", "HOME": str(tmp_path)}
    with pytest.raises(RunnerError, match="names GPU 1"):
        DockerRunner("img:tag", gpus=[1], environ=environ)
    runner = DockerRunner("img:tag", environ=environ, user="1000:1000")
    with pytest.raises(RunnerError, match=r"CUDA_VISIBLE_DEVICES='4' exposes 1 device"):
        _spec(runner, tmp_path, gpus=[1])
