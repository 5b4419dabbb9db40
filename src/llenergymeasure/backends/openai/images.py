"""Which container image a launched server runs in under the docker runner, per engine.

``openai.launch.image`` when the user names one; else the engine's own serving image:

- ``vllm`` and ``trtllm``: the image llem builds for that engine (the registry's default image of
  the vLLM and TensorRT-LLM backends: ``llenergymeasure:vllm`` on ``vllm/vllm-openai``,
  ``llenergymeasure:trtllm`` on ``nvcr.io/nvidia/tensorrt-llm/release``), which carries the engine's
  server (``vllm.entrypoints.openai.api_server``, ``trtllm-serve``) and llem beside it;
- ``sglang`` and ``tgi``: the engine's own release image, pinned in ``ENGINE_RELEASE_IMAGES``
  (where each tag came from: docs/backends/openai.md). It has no llem in it, so a study is refused
  before it starts with how to build one that has (``docker/sglang.Dockerfile``,
  ``docker/tgi.Dockerfile``, not built by ``make images``) and name it in ``openai.launch.image``.

A runner value that names an image (``docker:<image>``) wins over all of these, as for every
backend. ``vllm``'s and ``trtllm``'s default follows the vLLM and TensorRT-LLM backends' own runner
settings on this machine: ``runners: {vllm: docker:<image>}`` is also the launched server's image.

An attach-mode experiment (``base_url``, no ``launch``) runs only llem's HTTP client in its
container, no engine: it gets the image of the default backend (``llenergymeasure:pytorch``),
which carries llem and the tokenizers an ``openai.tokenizer`` needs.

``experiment_image`` is the registry's ``experiment_image`` hook of the openai backend: the docker
runner asks it for each experiment's image (``runners/resolution.py``), passing how the other
backends' images resolve here.

Pure functions of the config: no Docker call, no pull (images are never pulled: runners/docker).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llenergymeasure.backends import registry
from llenergymeasure.backends.openai.section import LaunchConfig, OpenAIConfig

#: how the docker runner resolves another backend's image here: backend name -> (image, why),
#: None where the backend names no image
BackendImage = Callable[[str], "tuple[str, str] | None"]

#: set by the docker runner in the container: why its image was chosen (the same name as
#: ``runners/resolution.py``'s ``IMAGE_SOURCE_ENV``; backends import no runner)
IMAGE_SOURCE_ENV = "LLEM_CONTAINER_IMAGE_SOURCE"

#: engines llem has no backend (and builds no image) of: their own release images, pinned
ENGINE_RELEASE_IMAGES: dict[str, str] = {
    "sglang": "lmsysorg/sglang:v0.5.20-cu130",
    "tgi": "ghcr.io/huggingface/text-generation-inference:3.3.5",
}


def with_llem_hint(engine: str) -> str:
    """How to get ``engine``'s release image with llem in it (docker/<engine>.Dockerfile)."""
    tag = f"llenergymeasure:{engine}"
    return (
        f"Build llem on top of it with `docker/build-image.sh {engine}` (docker/{engine}.Dockerfile "
        f"on {ENGINE_RELEASE_IMAGES[engine]}, tag {tag}; `make images` does not build it), then "
        f"set `openai.launch.image: {tag}` in the experiment, or `runners: {{openai: docker:{tag}}}` "
        "in the user config when every openai experiment launches this engine"
    )


@dataclass(frozen=True)
class EngineImage:
    """The image and why it was chosen (recorded in the result's launch facts)."""

    image: str
    source: str
    #: whether llem's harness is in the image: True for llem's own images, False for an engine's
    #: release image (llem must be added to it), None for an image the user named
    has_llem: bool | None
    #: what to do when llem is not in the image (how to build one that has it)
    remedy: str | None = None

    def as_record(self) -> dict[str, object]:
        return {"image": self.image, "source": self.source, "has_llem": self.has_llem}


def engine_image(launch: LaunchConfig, backend_image: BackendImage | None = None) -> EngineImage:
    """The image ``launch.engine``'s server runs in under the docker runner.

    ``backend_image``: how this machine's runner settings resolve the vLLM or TensorRT-LLM
    backend's image (None: their registry images)."""
    if launch.image is not None:
        return EngineImage(launch.image, "openai.launch.image", has_llem=None)
    if launch.engine in ENGINE_RELEASE_IMAGES:
        return EngineImage(
            ENGINE_RELEASE_IMAGES[launch.engine],
            f"default for engine {launch.engine}: its own release image",
            has_llem=False,
            remedy=with_llem_hint(launch.engine),
        )
    spec = registry.get(launch.engine)  # vllm; trtllm is an alias of the TensorRT-LLM backend
    resolved = backend_image(spec.name) if backend_image is not None else None
    if resolved is not None:
        return EngineImage(
            resolved[0], f"default for engine {launch.engine}: {resolved[1]}", has_llem=True
        )
    if spec.image is None:
        raise ValueError(f"the {spec.title} backend names no default image")
    return EngineImage(
        spec.image,
        f"default for engine {launch.engine}: llem's {spec.title} image",
        has_llem=True,
    )


def attach_image(backend_image: BackendImage | None = None) -> EngineImage:
    """The image of an attach-mode experiment: llem's client only, so the default backend's."""
    spec = registry.get(registry.DEFAULT_BACKEND)
    resolved = backend_image(spec.name) if backend_image is not None else None
    image, why = resolved if resolved is not None else (spec.image, f"llem's {spec.title} image")
    if image is None:
        raise ValueError(f"the {spec.title} backend names no default image")
    return EngineImage(image, f"attach mode (llem's client only, no engine): {why}", has_llem=True)


def experiment_image(section: object, backend_image: BackendImage | None = None) -> EngineImage:
    """The docker runner's image for one openai experiment (the registry's hook)."""
    if not isinstance(section, OpenAIConfig):
        raise TypeError(f"expected the openai section, got {type(section).__name__}")
    if section.launch is None:
        return attach_image(backend_image)
    return engine_image(section.launch, backend_image)


def launch_image_record(
    launch: LaunchConfig, environ: Mapping[str, str] | None = None
) -> dict[str, object]:
    """The launch record's ``engine_image``: inside a docker runner's container, the image it
    runs in and why the runner chose it; elsewhere, the image llem would choose by default."""
    env = os.environ if environ is None else environ
    image, source = env.get("LLEM_CONTAINER_IMAGE"), env.get(IMAGE_SOURCE_ENV)
    if image and source:  # llem's harness is running in it: llem is in the image
        return {"image": image, "source": source, "has_llem": True}
    return engine_image(launch).as_record()
