"""What the PyTorch backend imports lazily during its load, named so the harness imports it first.

transformers imports the module of a model's architecture on first use (on an H200 machine that
took 10 s, engine code and not the model's load), and ``torch.compile`` its compiler; the harness
imports both before the load timer starts, so ``load.duration_s`` is the model's load.
"""

from __future__ import annotations

import json
from pathlib import Path


def local_model_type(model_path: str) -> str | None:
    """The ``model_type`` of a local model directory's ``config.json`` as a module name."""
    try:
        data = json.loads((Path(model_path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = data.get("model_type") if isinstance(data, dict) else None
    return value.replace("-", "_") if isinstance(value, str) and value.isidentifier() else None


def warm_imports(model_path: str | None, compiles: bool) -> list[str]:
    """Modules to import before the load: torch's compiler when the config compiles, and
    transformers' module of the model's architecture when a local ``config.json`` names it."""
    modules = ["torch._dynamo"] if compiles else []
    model_type = local_model_type(model_path) if model_path else None
    if model_type:
        modules.append(f"transformers.models.{model_type}.modeling_{model_type}")
    return modules
