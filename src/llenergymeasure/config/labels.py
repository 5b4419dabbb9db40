"""How a study names its configurations: by the fields that tell them apart.

``ExperimentConfig.label()`` alone (the name, else model/backend/batch size) gives two configs
that differ only in precision or ``load.rate_rps`` the same name. ``study_labels`` names each
config of a set by that base label plus every other field whose value differs within the set
(``tiny-llama/pytorch/bs1 dtype=float16``), the fields the dry run shows. One function, so the
run summary, ``study_result.json``, ``results.parquet``, ``llem results`` and the report agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

from llenergymeasure.backends import registry
from llenergymeasure.config.experiment import ExperimentConfig

#: fields the base label already shows (model/backend/bs<batch_size>), or that name the config
BASE_FIELDS = ("model", "backend", "batch_size", "name")


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_fields(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config's dotted fields; only its own backend's section (``<backend>.*``)."""
    sections = registry.names()
    own = {k: v for k, v in cfg.hashable_dict().items() if k not in sections or k == cfg.backend}
    return flatten(own)


def varying_fields(configs: list[ExperimentConfig]) -> list[str]:
    """Dotted fields whose value differs between the configs, sorted.

    A backend section's field is compared only among the configs of that backend, which are
    the only ones that have it: in a PyTorch + vLLM study ``vllm.max_num_seqs`` is a distinguishing
    field when the vLLM configs differ in it, never because the PyTorch ones lack it.
    """
    distinct = {c.config_hash: c for c in configs}
    if len(distinct) <= 1:
        return []
    flat = [config_fields(c) for c in distinct.values()]
    keys = sorted(set().union(*flat))
    return [k for k in keys if len({json.dumps(f[k], sort_keys=True) for f in flat if k in f}) > 1]


def distinguish(cfg: ExperimentConfig, fields: list[str]) -> str:
    """``field=value, ...`` for the given fields (the dry run's column); the label when none."""
    if not fields:
        return cfg.label()
    flat = config_fields(cfg)
    return ", ".join(f"{k}={_value(flat[k])}" for k in fields if k in flat)


def base_label(cfg: ExperimentConfig) -> str:
    """model/backend/bs<batch size> (the model's last path part)."""
    return f"{cfg.model.rstrip('/').split('/')[-1]}/{cfg.backend}/bs{cfg.batch_size}"


def study_labels(configs: Iterable[ExperimentConfig]) -> dict[str, str]:
    """config hash -> a label unique within ``configs``.

    A config's own ``name`` when no other config of the set shares it; else the base label
    followed by each varying field other than model, backend, batch size and name, as
    ``field=value``. Labels that would still collide (never expected) get the short hash.
    """
    return labels_by_key({c.config_hash: c for c in configs})


def run_labels(runs: Iterable[_HasConfig]) -> dict[str, str]:
    """The same labels keyed by each run's recorded ``config_hash`` (a result written by an
    older version may record a hash that today's rules would compute differently)."""
    return labels_by_key({r.config_hash: r.config for r in runs})


def labels_by_key(distinct: dict[str, ExperimentConfig]) -> dict[str, str]:
    """key -> label for configs already keyed by their (recorded) hash."""
    cfgs = list(distinct.values())
    names = [c.name for c in cfgs if c.name]
    extra = [f for f in varying_fields(cfgs) if f not in BASE_FIELDS]
    labels: dict[str, str] = {}
    for h, cfg in distinct.items():
        if cfg.name and names.count(cfg.name) == 1:
            labels[h] = cfg.name
            continue
        flat = config_fields(cfg)
        parts = [f"{k}={_value(flat[k])}" for k in extra if k in flat]
        labels[h] = " ".join([base_label(cfg), *parts])
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    return {h: (f"{label} #{h[:8]}" if seen[label] > 1 else label) for h, label in labels.items()}


class _HasConfig(Protocol):
    @property
    def config_hash(self) -> str: ...

    @property
    def config(self) -> ExperimentConfig: ...


def _value(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)
