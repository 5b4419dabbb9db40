"""``quality.tasks`` resolved against lm-eval's task index, before anything is evaluated.

lm-eval's ``TaskManager`` indexes its own task YAMLs without building any task, and local YAMLs are
read with lm-eval's loader, so every check here runs before a dataset is opened:

- an unknown name fails with the closest known names and how to give a local YAML instead;
- a group or tag (a bundle of tasks) is refused: list its tasks (each gets its own window);
- a task needing a request type the backend's adapter lacks fails naming the task (local YAMLs
  were already refused at config validation, ``config/quality.py``);
- two entries with the same task name are refused (results are keyed by it);
- a task whose data lives on the Hugging Face hub fails fast when the hub cannot be reached,
  naming the task and saying how to point a copy of its YAML at local data.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from llenergymeasure.config.quality import (
    DEFAULT_OUTPUT_TYPE,
    QualityConfig,
    is_local_task,
    requests_problem,
)

#: ``dataset_path`` values that are datasets' builders over local files (``dataset_kwargs``'
#: ``data_files``), not hub datasets
LOCAL_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas"})

_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


class QualityTaskError(ValueError):
    """A ``quality.tasks`` entry that cannot be evaluated here, and why."""


@dataclass(frozen=True)
class ResolvedTask:
    """One ``quality.tasks`` entry: its lm-eval name, output type and indexed config."""

    source: str
    name: str
    output_type: str
    yaml_path: str | None
    config: dict[str, Any] = field(default_factory=dict)
    #: what lm-eval is given: the task's name, or a local YAML's whole config
    spec: str | dict[str, Any] = ""


def hub_unreachable(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when a TCP connection opens."""
    for var in _OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var}={os.environ[var]}"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"no connection to {host}:443 ({exc})"


def is_local_data(config: dict[str, Any]) -> bool:
    """Whether a task's documents come from local files rather than the hub."""
    path = config.get("dataset_path")
    if not isinstance(path, str):  # a Python task or custom loader: lm-eval's business
        return True
    return path in LOCAL_BUILDERS or Path(path).expanduser().exists()


def resolve_tasks(
    quality: QualityConfig,
    supported: frozenset[str],
    engine: str,
    *,
    hub_check: Callable[[], str | None] = hub_unreachable,
) -> tuple[Any, list[ResolvedTask]]:
    """lm-eval's ``TaskManager`` and each task of ``quality.tasks``, checked.

    The manager indexes lm-eval's own tasks only when a task is named (indexing them takes
    seconds); a local YAML is loaded by lm-eval's own loader (``include:`` and ``!function``
    resolved next to the file) and handed to lm-eval as a whole config, its relative
    ``data_files`` made relative to the YAML's directory.
    """
    from lm_eval.tasks import TaskManager

    named = [t for t in quality.tasks if not is_local_task(t)]
    manager = TaskManager(include_defaults=bool(named))
    index = manager.task_index
    resolved = [
        _resolve_local(task) if is_local_task(task) else _resolve_named(task, index)
        for task in quality.tasks
    ]
    names = [t.name for t in resolved]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise QualityTaskError(f"quality.tasks: task name(s) {', '.join(clash)} given twice")
    problem = requests_problem({t.source: t.output_type for t in resolved}, supported, engine)
    if problem:
        raise QualityTaskError(problem)
    hub_tasks = [t for t in resolved if not is_local_data(t.config)]
    if hub_tasks:
        reason = hub_check()
        if reason is not None:
            raise QualityTaskError(_hub_message(hub_tasks, reason))
    return manager, resolved


def _resolve_local(task: str) -> ResolvedTask:
    from lm_eval.tasks._yaml_loader import load_yaml

    path = Path(task).resolve()
    config = load_yaml(path)
    name = config.get("task")
    if not isinstance(name, str) or not name:
        raise QualityTaskError(f"quality.tasks: {task} has no `task: <name>`; lm-eval needs one")
    kwargs = config.get("dataset_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("data_files") is not None:
        config["dataset_kwargs"] = {
            **kwargs,
            "data_files": _next_to(kwargs["data_files"], path.parent),
        }
    return ResolvedTask(
        source=task,
        name=name,
        output_type=str(config.get("output_type", DEFAULT_OUTPUT_TYPE)),
        yaml_path=str(path),
        config=config,
        spec=config,
    )


def _next_to(files: Any, base: Path) -> Any:
    """``data_files`` (a path, a list or a split -> paths mapping) relative to ``base``."""
    if isinstance(files, str):
        is_url = "://" in files
        return files if is_url or Path(files).expanduser().is_absolute() else str(base / files)
    if isinstance(files, list):
        return [_next_to(f, base) for f in files]
    if isinstance(files, dict):
        return {k: _next_to(v, base) for k, v in files.items()}
    return files


def _resolve_named(name: str, index: dict[str, Any]) -> ResolvedTask:
    entry = index.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(index), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise QualityTaskError(
            f"quality.tasks: unknown lm-eval task {name!r}{hint} (a task of your own: give its "
            "YAML file's path, ending in .yaml)"
        )
    kind = getattr(entry.kind, "name", str(entry.kind))
    if kind in ("GROUP", "TAG"):
        raise QualityTaskError(
            f"quality.tasks: {name!r} is an lm-eval {kind.lower()} (a bundle of tasks); list its "
            "tasks one by one (each is scored in its own energy window)"
        )
    config = dict(entry.cfg or {})
    return ResolvedTask(
        source=name,
        name=name,
        output_type=str(config.get("output_type", DEFAULT_OUTPUT_TYPE)),
        yaml_path=str(entry.yaml_path) if entry.yaml_path else None,
        config=config,
        spec=name,
    )


def _hub_message(tasks: list[ResolvedTask], reason: str) -> str:
    first = tasks[0]
    names = ", ".join(f"{t.source!r} (dataset {t.config.get('dataset_path')})" for t in tasks)
    return (
        f"quality.tasks: {names} read their documents from the Hugging Face hub, which cannot "
        f"be reached here ({reason}). To evaluate offline, copy the task's YAML "
        f"({first.yaml_path or 'from lm-eval'}) next to your config, set `dataset_path: json` "
        "and `dataset_kwargs: {data_files: {test: path/to/items.jsonl}}` with `test_split: "
        "test`, and list that YAML file in quality.tasks (docs/quality.md)"
    )
