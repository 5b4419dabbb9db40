"""How ``llem run`` names and formats things: the fields that tell a study's experiments apart,
numbers and durations."""

from __future__ import annotations

import json
from typing import Any

from llenergymeasure.backends import registry
from llenergymeasure.config.experiment import ExperimentConfig


def _fmt(value: float | None, digits: int = 4, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.1f}"
    elif abs(value) >= 1:
        text = f"{value:.{max(1, digits - 2)}f}"
    else:
        text = f"{value:.{digits}g}"
    return f"{text}{unit}"


def _config_fields(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config's dotted fields; only its own backend's section (``<backend>.*``)."""
    sections = registry.names()
    own = {k: v for k, v in cfg.hashable_dict().items() if k not in sections or k == cfg.backend}
    return _flatten(own)


def _varying_fields(configs: list[ExperimentConfig]) -> list[str]:
    """Dotted fields whose value differs between the study's experiments (computed once).

    A backend section's field is compared only among the experiments of that backend, which are
    the only ones that have it: in a PyTorch + vLLM study ``vllm.max_num_seqs`` is a distinguishing
    field when the vLLM experiments differ in it, never because the PyTorch ones lack it.
    """
    if len(configs) <= 1:
        return []
    flat = [_config_fields(c) for c in configs]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({json.dumps(f[k], sort_keys=True) for f in flat if k in f}) > 1]


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _distinguish(cfg: ExperimentConfig, fields: list[str]) -> str:
    if not fields:
        return cfg.label()
    flat = _config_fields(cfg)
    return ", ".join(f"{k}={flat[k]}" for k in fields if k in flat)


def _hms(seconds: float) -> str:
    s = round(seconds)
    return (
        f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
    )
