"""Inference backends behind one protocol (``base.Backend``); each engine's import is lazy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llenergymeasure.backends.base import Backend
    from llenergymeasure.config.experiment import ExperimentConfig


def create_backend(
    config: ExperimentConfig, model_path: str, cache_dir: Path | None = None
) -> Backend:
    """Build (not load) the backend chosen by ``config.backend`` for the model at ``model_path``.

    ``cache_dir`` is the machine's model cache; TensorRT-LLM keeps its built engines under it.
    """
    if config.backend == "pytorch":
        from llenergymeasure.backends.pytorch.backend import PyTorchBackend

        return PyTorchBackend(config, model_path)
    if config.backend == "vllm":
        from llenergymeasure.backends.vllm.backend import VLLMBackend

        return VLLMBackend(config, model_path)
    if config.backend == "tensorrt":
        from llenergymeasure.backends.tensorrt.backend import TensorRTBackend

        engines = cache_dir / "trtllm-engines" if cache_dir is not None else None
        return TensorRTBackend(config, model_path, engine_cache_dir=engines)
    raise ValueError(f"unknown backend {config.backend!r}")
