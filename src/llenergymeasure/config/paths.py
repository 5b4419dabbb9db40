"""Local paths in experiment and study files: resolved against the file, checked before running.

A relative ``model:`` directory or ``dataset.source`` file in a YAML file means a path next to that
file, wherever ``llem`` is started from; it is made absolute when the file is loaded, so the local
runner, the docker runner (which mounts it at the same absolute path) and a later ``--resume`` all
read the same file. Mappings given from Python (``ExperimentConfig(...)``, ``from_dict``) keep the
usual meaning of a relative path: the current directory.

What counts as a local path:

- ``model``: starts with ``./``, ``../``, ``/`` or ``~``, or names an existing directory next to
  the file. Anything else is a Hugging Face hub id or ``synthetic/<preset>``.
- ``dataset.source``: not ``synthetic``, and starts like a path, ends in ``.jsonl``/``.json``, or
  names an existing file next to the file. Anything else is a Hugging Face dataset name.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_PATH_PREFIXES = ("./", "../", "/", "~", ".\\", "..\\")


def _looks_like_path(value: str) -> bool:
    return value.startswith(_PATH_PREFIXES) or value in (".", "..")


def _resolve(value: Any, base_dir: Path, kind: str) -> Any:
    """``value`` made absolute against ``base_dir`` when it is a relative local path."""
    if not isinstance(value, str) or not value:
        return value
    if kind == "dataset" and value == "synthetic":
        return value
    if value.startswith("~"):
        return os.path.expanduser(value)
    if os.path.isabs(value):
        return value
    candidate = base_dir / value
    is_local = _looks_like_path(value) or (
        candidate.is_dir() if kind == "model" else candidate.exists()
    )
    if kind == "dataset" and value.endswith((".jsonl", ".json")):
        is_local = True
    if not is_local:
        return value
    return os.path.normpath(str(candidate.absolute()))


def _resolve_experiment_mapping(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Paths in one experiment mapping (``model``, ``dataset.source``, dotted keys included)."""
    out = dict(data)
    if "model" in out:
        out["model"] = _resolve(out["model"], base_dir, "model")
    if isinstance(out.get("dataset"), str):  # the shorthand for dataset.source
        out["dataset"] = _resolve(out["dataset"], base_dir, "dataset")
    elif isinstance(out.get("dataset"), dict) and "source" in out["dataset"]:
        out["dataset"] = {
            **out["dataset"],
            "source": _resolve(out["dataset"]["source"], base_dir, "dataset"),
        }
    if "dataset.source" in out:
        out["dataset.source"] = _resolve(out["dataset.source"], base_dir, "dataset")
    if isinstance(out.get("load"), dict) and isinstance(out["load"].get("trace_file"), str):
        trace = out["load"]["trace_file"]
        if not os.path.isabs(trace) and not trace.startswith("~"):
            out["load"] = {**out["load"], "trace_file": os.path.normpath(str(base_dir / trace))}
    quality = out.get("quality")
    if isinstance(quality, dict) and isinstance(quality.get("tasks"), list):  # local task YAMLs
        tasks = [
            os.path.normpath(str(base_dir / t))
            if isinstance(t, str) and t.endswith((".yaml", ".yml")) and not os.path.isabs(t)
            else t
            for t in quality["tasks"]
        ]
        out["quality"] = {**quality, "tasks": tasks}
    return out


def _resolve_axis(key: Any, values: Any, base_dir: Path) -> Any:
    if not isinstance(values, list):
        return values
    if key == "model":
        return [_resolve(v, base_dir, "model") for v in values]
    if key == "dataset.source":
        return [_resolve(v, base_dir, "dataset") for v in values]
    if key == "dataset":
        return [
            {**v, "source": _resolve(v["source"], base_dir, "dataset")}
            if isinstance(v, dict) and "source" in v
            else _resolve(v, base_dir, "dataset")
            for v in values
        ]
    return values


def resolve_experiment_paths(data: Any, base_dir: Path) -> Any:
    """An experiment mapping with its relative local paths made absolute against ``base_dir``."""
    if not isinstance(data, dict):
        return data
    return _resolve_experiment_mapping(data, base_dir)


def resolve_study_paths(data: Any, base_dir: Path) -> Any:
    """A study mapping with relative local paths made absolute in ``base``, ``experiments`` and
    the ``model`` / ``dataset`` / ``dataset.source`` sweep axes."""
    if not isinstance(data, dict):
        return data
    out = copy.copy(data)
    if isinstance(out.get("base"), dict):
        out["base"] = _resolve_experiment_mapping(out["base"], base_dir)
    if isinstance(out.get("experiments"), list):
        out["experiments"] = [
            _resolve_experiment_mapping(e, base_dir) if isinstance(e, dict) else e
            for e in out["experiments"]
        ]
    if isinstance(out.get("sweep"), dict):
        out["sweep"] = {k: _resolve_axis(k, v, base_dir) for k, v in out["sweep"].items()}
    return out


def has_relative_paths(data: Any, base_dir: Path) -> bool:
    """Whether loading ``data`` (a parsed experiment or study file) from ``base_dir`` rewrites a
    relative local path (then a copy of the file elsewhere would mean other paths)."""
    from llenergymeasure.config.parsing import is_study_data

    if is_study_data(data):
        return bool(resolve_study_paths(data, base_dir) != data)
    return bool(resolve_experiment_paths(data, base_dir) != data)


def missing_local_inputs(configs: Iterable[Any]) -> list[str]:
    """One line per local model directory or JSONL dataset that the experiments name but that
    does not exist (``configs``: ``ExperimentConfig`` objects)."""
    problems: dict[str, None] = {}
    for cfg in configs:
        model = str(cfg.model)
        if os.path.isabs(model) or model.startswith(_PATH_PREFIXES):
            path = Path(os.path.expanduser(model))
            if not path.is_dir():
                what = "is a file, not a model directory" if path.exists() else "does not exist"
                problems[
                    f"model: {model!r} {what}; give a directory holding the model's config.json, "
                    "a hub id, or synthetic/<preset>"
                ] = None
        source = cfg.dataset.source
        if cfg.dataset.kind == "jsonl" or (
            source != "synthetic" and (os.path.isabs(source) or source.startswith(_PATH_PREFIXES))
        ):
            path = Path(os.path.expanduser(source))
            if not path.is_file():
                what = "is a directory, not a file" if path.exists() else "does not exist"
                problems[
                    f"dataset.source: {source!r} {what}; give a JSONL file with one "
                    f'{{"{cfg.dataset.field}": ...}} object per line, or `synthetic`'
                ] = None
    return list(problems)
