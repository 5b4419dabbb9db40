"""The docker runner's errors say what is wrong and the command that fixes it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from llenergymeasure.errors import DockerUnavailableError, RunnerError
from llenergymeasure.runners.docker import container_spec
from llenergymeasure.runners.docker import images as docker_images
from llenergymeasure.runners.docker.container_spec import gpu_device_requests
from llenergymeasure.runners.docker.daemon import check_docker_available
from llenergymeasure.runners.docker.images import check_image_versions
from llenergymeasure.runners.docker.runner import DockerRunner
from tests.docker.docker_helpers import managed_containers, tiny_experiment


def test_no_daemon_says_how_to_start_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    with pytest.raises(DockerUnavailableError) as info:
        check_docker_available()
    text = str(info.value)
    assert "no-such-docker.sock" in text
    assert "systemctl start docker" in text and "--runner local" in text


def test_bad_runner_settings_are_refused_with_the_value() -> None:
    with pytest.raises(RunnerError, match="needs an image"):
        DockerRunner("  ")
    with pytest.raises(RunnerError, match="'alice'"):
        DockerRunner("img", user="alice")
    with pytest.raises(RunnerError, match="'two'"):
        gpu_device_requests("two")  # type: ignore[arg-type]


def test_gpu_requests_follow_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gpu_device_requests(None) == []
    monkeypatch.setattr(container_spec, "host_gpu_count", lambda: 0)
    assert gpu_device_requests("auto") == [], "a host without GPUs must request none"
    monkeypatch.setattr(container_spec, "host_gpu_count", lambda: 4)
    [req] = gpu_device_requests("auto", environ={})
    assert req["Count"] == -1 and req["Capabilities"] == [["gpu"]]
    [req] = gpu_device_requests("auto", environ={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert req["DeviceIDs"] == ["2", "3"]
    [req] = gpu_device_requests([1])
    assert req["DeviceIDs"] == ["1"]


@pytest.mark.docker
def test_missing_image_names_the_build_command(docker_client: Any) -> None:
    with pytest.raises(DockerUnavailableError) as info:
        check_image_versions(["llenergymeasure:no-such-tag"])
    assert "'llenergymeasure:no-such-tag' is not on this machine" in str(info.value)
    assert "docker pull llenergymeasure:no-such-tag" in str(info.value)
    # Our own tags get their exact build command (trtllm is never built off a GPU host).
    if any("llenergymeasure:trtllm" in img.tags for img in docker_client.images.list()):
        pytest.skip("llenergymeasure:trtllm exists here")
    with pytest.raises(DockerUnavailableError, match=r"make images .*docker/build-image.sh trtllm"):
        docker_images.get_image(docker_client, "llenergymeasure:trtllm")
    assert "make images-ci" in docker_images.build_hint("llenergymeasure:vllm-ci")


@pytest.mark.docker
def test_image_versions_match_and_a_stale_image_is_refused(
    pytorch_image: str, docker_client: Any
) -> None:
    check_image_versions([pytorch_image])  # the CI image was built from this checkout

    # An image whose llenergymeasure reports another version: refused, naming both versions.
    dockerfile = (
        f"FROM {pytorch_image}\n"
        "RUN sed -i 's/^__version__ = .*/__version__ = \"0.0.1\"/' "
        "$(python3 -c 'import llenergymeasure._version as v; print(v.__file__)')\n"
    )
    tag = "llenergymeasure:test-stale-version"
    docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="none", rm=True
    )
    try:
        with pytest.raises(RunnerError) as info:
            check_image_versions([tag])
        text = str(info.value)
        assert "llenergymeasure_version 0.0.1" in text
        from llenergymeasure import __version__

        assert f"(host {__version__})" in text and "rebuild it with" in text
    finally:
        docker_client.images.remove(tag, force=True)


@pytest.mark.docker
def test_gpu_request_without_the_nvidia_toolkit_is_explained(
    pytorch_image: str, shared_model_cache: Path, tmp_path: Path, docker_client: Any
) -> None:
    info = docker_client.info()
    if "nvidia" in info.get("Runtimes", {}):
        pytest.skip("this daemon has the NVIDIA runtime; the missing-toolkit path cannot occur")
    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings

    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment()),
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(shared_model_cache)),
    )
    with pytest.raises(DockerUnavailableError) as err:
        DockerRunner(pytorch_image, gpus="all").run(request, tmp_path / "run")
    assert "NVIDIA Container Toolkit" in str(err.value)
    assert "nvidia-ctk runtime configure" in str(err.value)


@pytest.mark.docker
@pytest.mark.slow
def test_ctrl_c_kills_and_removes_the_container(
    pytorch_image: str, docker_client: Any, docker_user_config: Path, tmp_path: Path
) -> None:
    exp = tmp_path / "experiment.yaml"
    exp.write_text(yaml.safe_dump(tiny_experiment(n=256, max_output_tokens=64)))
    llem = Path(sys.executable).parent / "llem"
    proc = subprocess.Popen(
        [str(llem), "run", str(exp), "--runner", f"docker:{pytorch_image}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "LLEM_CONFIG": str(docker_user_config)},
    )
    try:
        deadline = time.monotonic() + 120
        running = []
        while time.monotonic() < deadline and not running:
            running = [
                c
                for c in managed_containers(docker_client, tmp_path)
                if c.status == "running" and "--config" in c.attrs["Args"]
            ]
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        assert running, "no experiment container started:\n" + (
            proc.stdout.read().decode() if proc.stdout else ""
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, out.decode()
    assert not managed_containers(docker_client, tmp_path), "a container outlived Ctrl-C"
