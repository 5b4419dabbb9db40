"""Inference backends behind one protocol (``base.Backend``); each engine's import is lazy."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llenergymeasure.backends.base import Backend
    from llenergymeasure.config.experiment import ExperimentConfig


def create_backend(config: ExperimentConfig, model_path: str) -> Backend:
    """Build (not load) the backend chosen by ``config.backend`` for the model at ``model_path``."""
    if config.backend == "pytorch":
        from llenergymeasure.backends.pytorch import PyTorchBackend

        return PyTorchBackend(config, model_path)
    if config.backend == "vllm":
        from llenergymeasure.backends.vllm import VLLMBackend

        return VLLMBackend(config, model_path)
    if config.backend == "tensorrt":
        from llenergymeasure.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(config, model_path)
    raise ValueError(f"unknown backend {config.backend!r}")
