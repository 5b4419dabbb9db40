"""Inference backends behind one protocol (``base.Backend``), one package each, listed once in
``registry.py``; each engine's import is lazy."""

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

    ``cache_dir`` is the machine's model cache (TensorRT-LLM keeps its built engines under it).
    The backend's factory is the registry's (``backends/registry.py``), imported only now.
    """
    from llenergymeasure.backends.registry import get, load_factory

    factory = load_factory(get(config.backend))
    backend: Backend = factory(config, model_path, cache_dir)
    return backend
