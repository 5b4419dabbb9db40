"""Helpers shared by the Docker tests (fixtures live in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def managed_containers(client: Any, under: Path | None = None) -> list[Any]:
    """Containers (running or not) that the docker runner started for run dirs below ``under``.

    Restricting to a test's own directory keeps tests correct while other test sessions use the
    same daemon at the same time.
    """
    from llenergymeasure.runners.docker.container_spec import MANAGED_LABEL, RUN_DIR_LABEL

    found = client.containers.list(
        all=True, filters={"label": f"{MANAGED_LABEL}=true"}, ignore_removed=True
    )
    if under is None:
        return found
    prefix = str(under.resolve())
    return [c for c in found if c.labels.get(RUN_DIR_LABEL, "").startswith(prefix)]


def tiny_experiment(**overrides: Any) -> dict[str, Any]:
    """The smallest meaningful experiment: synthetic tiny-llama, fp32, a few short prompts."""
    cfg: dict[str, Any] = {
        "model": "synthetic/tiny-llama",
        "backend": "pytorch",
        "precision": "fp32",
        "n": 4,
        "batch_size": 2,
        "dataset": {"source": "synthetic", "input_tokens": 16},
        "max_input_tokens": 32,
        "max_output_tokens": 8,
        "warmup": {"runs": 1},
        "baseline": {"enabled": False},
    }
    cfg.update(overrides)
    return cfg
