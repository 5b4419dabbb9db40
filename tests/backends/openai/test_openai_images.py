"""The image a launched server runs in under the docker runner, per engine (issue 27 item 2)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llenergymeasure.backends import registry
from llenergymeasure.backends.openai.images import ENGINE_RELEASE_IMAGES, engine_image
from llenergymeasure.backends.openai.section import LaunchConfig


@pytest.mark.parametrize(
    ("engine", "image", "has_llem"),
    [
        ("vllm", "llenergymeasure:vllm", True),
        ("trtllm", "llenergymeasure:trtllm", True),
        ("sglang", "lmsysorg/sglang:v0.5.20-cu130", False),
        ("tgi", "ghcr.io/huggingface/text-generation-inference:3.3.5", False),
    ],
)
def test_each_engine_gets_its_own_serving_image(engine: str, image: str, has_llem: bool) -> None:
    chosen = engine_image(LaunchConfig(engine=engine))  # type: ignore[arg-type]
    assert chosen.image == image and chosen.has_llem is has_llem
    assert chosen.source.startswith(f"default for engine {engine}: ")
    assert chosen.as_record() == {"image": image, "source": chosen.source, "has_llem": has_llem}


def test_llems_own_engine_images_come_from_the_registry() -> None:
    # one source of truth: a new default image of the vLLM backend moves the launch default too
    assert engine_image(LaunchConfig(engine="vllm")).image == registry.get("vllm").image
    assert engine_image(LaunchConfig(engine="trtllm")).image == registry.get("trtllm").image


def test_every_release_image_is_pinned_to_a_tag() -> None:
    for engine, image in ENGINE_RELEASE_IMAGES.items():
        name, _, tag = image.rpartition(":")
        assert name and "/" in name and tag and tag != "latest", (engine, image)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi", "trtllm"])
def test_the_users_image_wins_for_every_engine(engine: str) -> None:
    launch = LaunchConfig(engine=engine, image=" registry.local/my-sglang:dev ")  # type: ignore[arg-type]
    chosen = engine_image(launch)
    assert chosen.image == "registry.local/my-sglang:dev"
    assert chosen.source == "openai.launch.image" and chosen.has_llem is None


def test_an_empty_image_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"openai.launch.image is empty; name an image"):
        LaunchConfig(engine="sglang", image="  ")
