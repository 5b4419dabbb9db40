"""compose.yaml: a whole experiment inside one service container, with Debian's docker-compose 1.29.

The GPU services (``pytorch``, ``vllm``, ``trtllm``) reserve all NVIDIA GPUs, which cannot start on
the CI machine (no NVIDIA runtime). Hosts like it run the ``cpu`` profile's services
(``pytorch-cpu``, ``vllm-cpu``): the same settings without the reservation. The tests check both
halves: the GPU services keep the reservation, and ``docker-compose run pytorch-cpu`` runs an
experiment with every other setting of the real file (volumes, user, IPC, network, environment,
working directory); ``docker/ci/compose.override.yaml`` only swaps in the CI images.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from llenergymeasure import ExperimentResult
from tests.docker.conftest import REPO_ROOT, _unavailable
from tests.docker.docker_helpers import tiny_experiment

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROJECT = "llemtest"
FILES = ["-f", "compose.yaml", "-f", "docker/ci/compose.override.yaml"]


def _compose_binary() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        _unavailable("docker-compose is not installed (apt-get install docker-compose)")
    assert exe is not None
    return exe


def _rendered(compose: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [compose, *FILES, "config"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = yaml.safe_load(out.stdout)
    return data


def test_gpu_services_reserve_gpus_and_cpu_profile_services_do_not() -> None:
    services = _rendered(_compose_binary(), dict(os.environ))["services"]
    for name in ("pytorch", "vllm", "trtllm"):
        [device] = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name
        assert "profiles" not in services[name], name  # started by default
    for name, gpu_twin in (("pytorch-cpu", "pytorch"), ("vllm-cpu", "vllm")):
        cpu = services[name]
        assert "deploy" not in cpu and cpu["profiles"] == ["cpu"], name
        twin = {k: v for k, v in services[gpu_twin].items() if k != "deploy"}
        assert {k: v for k, v in cpu.items() if k != "profiles"} == twin, name


def test_compose_runs_an_experiment_in_the_pytorch_cpu_service(
    pytorch_image: str, docker_client: Any, tmp_path: Path
) -> None:
    compose = _compose_binary()
    uid, gid = (1234, 1234) if os.getuid() == 0 else (os.getuid(), os.getgid())
    work, model_cache, hf_cache = tmp_path / "work", tmp_path / "model-cache", tmp_path / "hf"
    for d in (work, model_cache, hf_cache):
        d.mkdir()
        if os.getuid() == 0:
            os.chown(d, uid, gid)
    (work / "experiment.yaml").write_text(yaml.safe_dump(tiny_experiment()))
    (work / "llem-config.yaml").write_text(
        textwrap.dedent(
            """\
            measurement: {energy_backend: none}
            execution: {config_gap_seconds: 0, cycle_gap_seconds: 0}
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(
        LLEM_WORKDIR=str(work),
        LLEM_MODEL_CACHE=str(model_cache),
        LLEM_HF_CACHE=str(hf_cache),
        LLEM_UID=str(uid),
        LLEM_GID=str(gid),
        LLEM_IMAGE_PYTORCH=pytorch_image,
        # the container's path of the user config (the working directory is /work inside)
        LLEM_CONFIG="/work/llem-config.yaml",
    )
    command = ["llem", "run", "experiment.yaml"]
    proc = subprocess.run(
        [compose, *FILES, "-p", PROJECT, "run", "--rm", "pytorch-cpu", *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    [result_file] = list((work / "results").rglob("result.json"))
    result = ExperimentResult.model_validate_json(result_file.read_text())
    assert result.environment.in_container is True
    assert result.runner.kind == "local"  # inside the container, the local runner
    assert result.output_tokens == 4 * 8
    # Results and caches written by the container belong to LLEM_UID:LLEM_GID, not root.
    written = [p for p in list((work / "results").rglob("*")) + list(model_cache.rglob("*"))]
    wrong = [str(p) for p in written if (p.stat().st_uid, p.stat().st_gid) != (uid, gid)]
    assert not wrong, wrong
    left = docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}, ignore_removed=True
    )
    assert not left, [c.name for c in left]
