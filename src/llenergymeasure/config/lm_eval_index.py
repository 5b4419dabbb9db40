"""lm-eval's own task YAMLs indexed without importing lm-eval: a named task's output type at validation.

lm-eval ships its tasks as YAML files inside its package (``lm_eval/tasks/**/*.yaml``). Its
``TaskManager`` indexes them by parsing every file with PyYAML (about 14,000 files: 10 s and
more on a busy machine) and building a task downloads its dataset, so neither can run each time a
config is validated. This module reads the same files for the few top-level keys that name an
entry and give its output type (``task``, ``group``, ``class``, ``tag``, ``include``,
``output_type``), follows ``include:`` chains the way lm-eval's loader merges them (a file's own
keys win over its includes, a later include over an earlier one) and registers entries in
lm-eval's order and with its rules (``lm_eval/tasks/_index.py``: files sorted by path, the first
task of a name wins, tags registered by the tasks that carry them). It reads files only: no hub,
no dataset, no lm-eval import; ``tests/quality/test_lm_eval_index.py`` checks it entry by entry
against lm-eval's own index.

Where lm-eval is not installed (e.g. a host that runs experiments in containers) there is nothing
to read: ``tasks_dir()`` is None and named tasks are checked when the evaluation starts.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

#: lm-eval's ``output_type`` when a task's YAML (with its includes) names none
DEFAULT_OUTPUT_TYPE = "generate_until"

_KEYS = frozenset({"task", "group", "class", "tag", "include", "output_type", "task_list"})
_TOP_KEY = re.compile(
    r"^([\"']?)([A-Za-z_][\w-]*)\1[ \t]*:(?:[ \t]+(.*?))?[ \t]*\r?$", re.MULTILINE
)
_ITEM = re.compile(r"^[ \t]*-[ \t]+(.*?)[ \t]*\r?$")
_BLOCK = "<block>"  # a key whose value is not a scalar on its own line (a mapping, a list)


@dataclass(frozen=True)
class IndexEntry:
    """One name lm-eval's ``TaskManager`` would know: a task, a Python task, a group or a tag."""

    name: str
    kind: str  # "task", "py_task", "group", "tag"
    #: the task's output type; None for a group, a tag, and a Python task (its class decides)
    output_type: str | None
    yaml_path: str | None
    tags: frozenset[str] = field(default_factory=frozenset)


def tasks_dir() -> Path | None:
    """lm-eval's own task folder when lm-eval is installed, found without importing it."""
    try:
        spec = importlib.util.find_spec("lm_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "tasks"
    return folder if folder.is_dir() else None


def _scalar(raw: str) -> str:
    value = raw.strip()
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        return value[1:end] if end > 0 else value[1:]
    hash_at = value.find(" #")
    return (value[:hash_at] if hash_at >= 0 else value).strip()


def _value(raw: str | None, text: str, end: int) -> str | list[str]:
    """A top-level key's value: a scalar, a flow list ``[a, b]``, or a block list below it."""
    if raw is None or raw == "" or raw.startswith("#"):
        items: list[str] = []
        indent: int | None = None
        for line in text[end + 1 :].splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if not line[:1].isspace() and not line.startswith("-"):
                break  # the next top-level key
            match = _ITEM.match(line)
            depth = len(line) - len(line.lstrip())
            if indent is None:
                if match is None:
                    return _BLOCK  # a mapping
                indent = depth
            if depth == indent:
                if match is None:
                    return _BLOCK
                items.append(_scalar(match.group(1)))
        return items if items else _BLOCK
    if raw.startswith("["):
        inner = raw[1 : raw.rfind("]")] if "]" in raw else raw[1:]
        return [_scalar(part) for part in inner.split(",") if part.strip()]
    if raw[:1] in ("{", "|", ">", "&", "*", "!"):
        return _BLOCK
    return _scalar(raw)


def read_keys(path: Path, text: str | None = None) -> dict[str, str | list[str]]:
    """The top-level keys this index needs, from one YAML file (no include followed)."""
    if text is None:
        text = path.read_text(encoding="utf-8")
    keys: dict[str, str | list[str]] = {}
    for match in _TOP_KEY.finditer(text):
        key = match.group(2)
        if key in _KEYS:
            keys[key] = _value(match.group(3), text, match.end())
    return keys


class _Resolver:
    """A file's keys merged with its ``include:`` chain, as lm-eval's ``load_yaml`` merges them.

    Paths are normalised as strings (no ``resolve()``: a symlink-free package tree, and resolving
    14,000 paths costs seconds); each file is read once however many files include it.
    """

    def __init__(self) -> None:
        self._done: dict[str, dict[str, str | list[str]]] = {}

    def resolve(self, path: str, seen: frozenset[str] = frozenset()) -> dict[str, str | list[str]]:
        path = os.path.normpath(os.path.abspath(os.path.expanduser(path)))
        if path in self._done:
            return self._done[path]
        if path in seen:
            raise ValueError(f"include cycle at {path}")
        own = dict(read_keys(Path(path)))
        includes = own.pop("include", None)
        merged: dict[str, str | list[str]] = {}
        for inc in [includes] if isinstance(includes, str) else (includes or []):
            if inc == _BLOCK:
                raise ValueError(f"{path}: an include that is not a file name")
            inc_path = os.path.join(os.path.dirname(path), os.path.expanduser(inc))
            included = dict(self.resolve(inc_path, seen | {path}))
            included.pop("task_list", None)
            merged.update(included)
        merged.update(own)
        self._done[path] = merged
        return merged


def _names(value: str | list[str] | None) -> set[str]:
    if value is None or value == _BLOCK:
        return set()
    return {value} if isinstance(value, str) else {v for v in value if v != _BLOCK}


def build_index(root: Path) -> dict[str, IndexEntry]:
    """Every task, Python task, group and tag under ``root``, as lm-eval's ``TaskIndex`` builds it."""
    resolver = _Resolver()
    index: dict[str, IndexEntry] = {}
    paths = sorted(
        (
            p
            for p in root.glob("**/*.yaml")
            if not {"__pycache__", ".ipynb_checkpoints"} & set(p.parts)
        ),
        key=lambda p: p.as_posix(),
    )
    for path in paths:
        try:
            keys = resolver.resolve(str(path))
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # lm-eval skips a file it cannot load
        tags = _names(keys.get("tag"))
        if "class" in keys:
            kind = "py_task"
        elif "group" in keys:
            kind = "group"
        elif "task" in keys:
            kind = "task"
        else:
            continue
        name = keys["group"] if kind == "group" else keys.get("task")
        if not isinstance(name, str) or name == _BLOCK or name in index:
            continue
        output = keys.get("output_type", DEFAULT_OUTPUT_TYPE) if kind == "task" else None
        index[name] = IndexEntry(
            name=name,
            kind=kind,
            output_type=output if isinstance(output, str) else None,
            yaml_path=str(path),
            tags=frozenset(tags),
        )
        if kind != "group":
            for tag in sorted(tags) if not isinstance(keys.get("tag"), list) else keys["tag"]:
                if tag == _BLOCK:
                    continue
                if tag not in index:
                    index[tag] = IndexEntry(name=tag, kind="tag", output_type=None, yaml_path=None)
    return index


@lru_cache(maxsize=4)
def cached_index(root: str) -> dict[str, IndexEntry]:
    """``build_index`` once per process and folder (a second of reading files)."""
    return build_index(Path(root))


def named_task_output_types(names: list[str], root: Path | None = None) -> dict[str, str]:
    """The output type of each named lm-eval task, refusing unknown names, groups and tags.

    A Python task (``class:``) has no output type in its YAML and is left out (checked when the
    evaluation starts). Raises ``ValueError`` naming the entry and what would work.
    """
    folder = root if root is not None else tasks_dir()
    if folder is None or not names:
        return {}
    index = cached_index(str(folder))
    out: dict[str, str] = {}
    for name in names:
        entry = index.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(index), n=5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"quality.tasks: unknown lm-eval task {name!r}{hint} (a task of your own: give "
                "its YAML file's path, ending in .yaml)"
            )
        if entry.kind in ("group", "tag"):
            raise ValueError(
                f"quality.tasks: {name!r} is an lm-eval {entry.kind} (a bundle of tasks); list "
                "its tasks one by one (each is scored in its own energy window)"
            )
        if entry.output_type is not None:
            out[name] = entry.output_type
    return out
