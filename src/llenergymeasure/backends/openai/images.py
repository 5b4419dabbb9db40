"""Which container image a launched server runs in under the docker runner, per engine.

``openai.launch.image`` when the user names one; else the engine's own serving image:

- ``vllm`` and ``trtllm``: the image llem builds for that engine (the registry's default image of
  the vLLM and TensorRT-LLM backends: ``llenergymeasure:vllm`` on ``vllm/vllm-openai``,
  ``llenergymeasure:trtllm`` on ``nvcr.io/nvidia/tensorrt-llm/release``), which carries the engine's
  server (``vllm.entrypoints.openai.api_server``, ``trtllm-serve``) and llem beside it;
- ``sglang`` and ``tgi``: the engine's own release image, pinned in ``ENGINE_RELEASE_IMAGES``
  (where each tag came from: docs/backends/openai.md). llem builds no image of them.

Pure functions of the config: no Docker call, no pull (images are never pulled: runners/docker).
"""

from __future__ import annotations

from dataclasses import dataclass

from llenergymeasure.backends import registry
from llenergymeasure.backends.openai.section import LaunchConfig

#: engines llem has no backend (and builds no image) of: their own release images, pinned
ENGINE_RELEASE_IMAGES: dict[str, str] = {
    "sglang": "lmsysorg/sglang:v0.5.20-cu130",
    "tgi": "ghcr.io/huggingface/text-generation-inference:3.3.5",
}


@dataclass(frozen=True)
class EngineImage:
    """The image and why it was chosen (recorded in the result's launch facts)."""

    image: str
    source: str
    #: whether llem's harness is in the image: True for llem's own images, False for an engine's
    #: release image (llem must be added to it), None for an image the user named
    has_llem: bool | None

    def as_record(self) -> dict[str, object]:
        return {"image": self.image, "source": self.source, "has_llem": self.has_llem}


def engine_image(launch: LaunchConfig) -> EngineImage:
    """The image ``launch.engine``'s server runs in under the docker runner."""
    if launch.image is not None:
        return EngineImage(launch.image, "openai.launch.image", has_llem=None)
    if launch.engine in ENGINE_RELEASE_IMAGES:
        return EngineImage(
            ENGINE_RELEASE_IMAGES[launch.engine],
            f"default for engine {launch.engine}: its own release image",
            has_llem=False,
        )
    spec = registry.get(launch.engine)  # vllm; trtllm is an alias of the TensorRT-LLM backend
    if spec.image is None:
        raise ValueError(f"the {spec.title} backend names no default image")
    return EngineImage(
        spec.image,
        f"default for engine {launch.engine}: llem's {spec.title} image",
        has_llem=True,
    )
