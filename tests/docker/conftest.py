"""Fixtures for the tests against a real Docker daemon and the CI images.

Without a daemon or without the images these tests skip, saying why; with ``LLEM_REQUIRE_DOCKER=1``
(set by CI, which provisions Docker with ``docker/ci/provision.sh``) the same condition is a
failure, so a broken provisioning step can never turn into a green run of skipped tests.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker.docker_helpers import managed_containers

PYTORCH_CI_IMAGE = os.environ.get("LLEM_CI_PYTORCH_IMAGE", "llenergymeasure:pytorch-ci")
VLLM_CI_IMAGE = os.environ.get("LLEM_CI_VLLM_IMAGE", "llenergymeasure:vllm-ci")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> None:
    if os.environ.get("LLEM_REQUIRE_DOCKER") == "1":
        pytest.fail(f"LLEM_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of a running daemon (skip, or fail under LLEM_REQUIRE_DOCKER=1, without one)."""
    from llenergymeasure.errors import DockerUnavailableError
    from llenergymeasure.runners.docker.daemon import docker_client as connect

    try:
        client = connect(timeout_s=20)
    except DockerUnavailableError as exc:
        _unavailable(f"no Docker daemon: {exc}")
    yield client
    client.close()


def _require_image(client: Any, image: str) -> str:
    from docker.errors import ImageNotFound

    try:
        client.images.get(image)
    except ImageNotFound:
        _unavailable(f"Docker image {image} is missing; build it with `make images-ci`")
    return image


@pytest.fixture(scope="session")
def pytorch_image(docker_client: Any) -> str:
    return _require_image(docker_client, PYTORCH_CI_IMAGE)


@pytest.fixture(scope="session")
def vllm_image(docker_client: Any) -> str:
    return _require_image(docker_client, VLLM_CI_IMAGE)


@pytest.fixture(autouse=True)
def no_container_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test marked docker also checks that the runner removed each container it started."""
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    client = request.getfixturevalue("docker_client")
    tmp_path = request.getfixturevalue("tmp_path")
    yield
    left = managed_containers(client, under=tmp_path)
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind: {[c.name for c in left]}"


@pytest.fixture()
def docker_user_config(
    tmp_path: Path, shared_model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A user config for these tests: no energy meter (no GPU here), no gaps, shared cache."""
    path = tmp_path / "user-config.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            output:
              results_dir: {tmp_path / "results"}
              model_cache_dir: {shared_model_cache}
            measurement:
              energy_backend: none
            execution:
              config_gap_seconds: 0
              cycle_gap_seconds: 0
            """
        )
    )
    monkeypatch.setenv("LLEM_CONFIG", str(path))
    return path


@pytest.fixture(scope="session")
def vllm_cpu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local model directory vLLM's CPU attention accepts (head size 32; tiny-llama has 16).

    Shaped like synthetic/tiny-llama but with 2 attention heads, random weights saved as
    safetensors and the synthetic word-level tokenizer. Being a local directory, it also checks
    that the docker runner mounts a model directory named by the config.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llenergymeasure.models.synthetic import preset_shape, write_tokenizer

    directory = tmp_path_factory.mktemp("vllm-cpu-model")
    shape = preset_shape("tiny-llama")
    shape.update(num_attention_heads=2, num_key_value_heads=2, head_dim=32)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape))
    model.save_pretrained(directory)
    write_tokenizer(directory, int(shape["vocab_size"]), int(shape["max_position_embeddings"]))
    return directory
