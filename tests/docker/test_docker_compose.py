"""compose.yaml: a whole experiment inside one service container, with Debian's docker-compose 1.29.

The CI machine has no NVIDIA runtime, so compose.yaml's GPU reservation cannot start there; and
docker-compose 1.29 cannot remove a list entry through an override file. The test therefore renders
``compose.yaml`` + ``docker/ci/compose.override.yaml`` with ``docker-compose config``, drops only
``deploy.resources.reservations.devices`` and runs the result from stdin, so every other setting of
the real file (volumes, user, IPC, network, environment, working directory) is what runs.
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


def _compose_binary() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        _unavailable("docker-compose is not installed (apt-get install docker-compose)")
    assert exe is not None
    return exe


def _rendered_without_gpu_reservation(compose: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [compose, "-f", "compose.yaml", "-f", "docker/ci/compose.override.yaml", "config"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    data = yaml.safe_load(out.stdout)
    for name, service in data["services"].items():
        devices = service["deploy"]["resources"]["reservations"].pop("devices")
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"], name
    return yaml.safe_dump(data)


def test_compose_runs_an_experiment_in_the_pytorch_service(
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
    rendered = _rendered_without_gpu_reservation(compose, env)
    proc = subprocess.run(
        [
            compose,
            "-f",
            "-",
            "-p",
            PROJECT,
            "run",
            "--rm",
            "pytorch",
            "llem",
            "run",
            "experiment.yaml",
        ],
        cwd=tmp_path,
        env=env,
        input=rendered,
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
