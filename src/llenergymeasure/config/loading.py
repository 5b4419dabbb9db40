"""YAML loading that remembers where every key came from.

The file is parsed twice: once by ``yaml.safe_load`` for the data, once by ``yaml.compose`` for the
node tree, whose marks give the line of every key. Errors found later (pydantic validation, the
guards) are reported as ``file:line: field.path: message``. Duplicate keys, which PyYAML would
silently collapse to the last one, are an error here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from llenergymeasure.errors import ConfigError

PathKey = tuple[Any, ...]


@dataclass
class LoadedYaml:
    """Parsed YAML data plus the line of every key path (1-based)."""

    data: Any
    source: str
    lines: dict[PathKey, int] = field(default_factory=dict)

    def where(self, path: Iterable[Any]) -> str:
        """``file:line`` of the longest prefix of ``path`` with a known line."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return f"{self.source}:{self.lines[p]}"
            p = p[:-1]
        return self.source


def _walk(
    node: yaml.Node, path: PathKey, lines: dict[PathKey, int], problems: list[str], source: str
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                dotted = format_path((*path, key))
                problems.append(
                    f"{source}:{line}: {dotted}: duplicate key (first given on line {seen[key]}); "
                    "YAML keeps only the last value, so remove one of them"
                )
            seen[key] = line
            key_path = (*path, key)
            lines[key_path] = line
            _walk(value_node, key_path, lines, problems, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            item_path = (*path, i)
            lines[item_path] = item.start_mark.line + 1
            _walk(item, item_path, lines, problems, source)


#: a study or experiment file is a few kilobytes; refuse anything past this before parsing it
MAX_FILE_BYTES = 4 * 1024 * 1024
#: nodes of the document once every alias is expanded (a "billion laughs" document has ~10^9)
MAX_EXPANDED_NODES = 1_000_000


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded, in time linear in the distinct nodes."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once (safe_load refuses to build it anyway)
    size = 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            size += _expanded_size(k, memo) + _expanded_size(v, memo)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            size += _expanded_size(item, memo)
    memo[key] = size
    return size


def parse_yaml_text(text: str, source: str = "<string>") -> LoadedYaml:
    """Parse YAML text, raising ``ConfigError`` with the line of any syntax error.

    A document that grows past ``MAX_EXPANDED_NODES`` through anchors and aliases is refused
    before it is built.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is not None:
            size = _expanded_size(node, {})
            if size > MAX_EXPANDED_NODES:
                raise ConfigError(
                    f"{source}: the YAML expands to {size:,} values through its anchors and "
                    f"aliases (more than {MAX_EXPANDED_NODES:,}); write the values out, or use "
                    "`sweep:` for combinations",
                    source=source,
                )
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}", source=source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}", source=source) from None
    lines: dict[PathKey, int] = {}
    problems: list[str] = []
    if node is not None:
        _walk(node, (), lines, problems, source)
    if problems:
        raise ConfigError(f"{source}: the file has duplicate keys", problems, source=source)
    return LoadedYaml(data=data, source=source, lines=lines)


def read_yaml_file(path: str | Path) -> LoadedYaml:
    """Read and parse a YAML file; a missing or unreadable file is a ``ConfigError``."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such file; give the path of an experiment or study YAML file")
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; give the path of a YAML file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read: {exc}") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{p}: {size:,} bytes is too large for an experiment or study file (at most "
            f"{MAX_FILE_BYTES:,}); is it the right file? Large prompt sets belong in a JSONL "
            "dataset (dataset.source), many experiments in a `sweep:`"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot be read: {exc}") from None
    loaded = parse_yaml_text(text, source=str(p))
    if loaded.data is None:
        raise ConfigError(f"{p}: the file is empty; an experiment needs at least `model:`")
    if not isinstance(loaded.data, dict):
        raise ConfigError(
            f"{p}:1: the top level must be a mapping of fields (model:, backend:, ...), "
            f"got a {type(loaded.data).__name__}"
        )
    return loaded


def format_path(path: Iterable[Any]) -> str:
    """``('sweep', 'vllm.max_num_seqs', 0)`` -> ``sweep.vllm.max_num_seqs[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def model_fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """Names of the fields accepted at ``loc`` inside ``model`` (for did-you-mean), if known."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        info = current.model_fields.get(part)
        if info is None:
            alias_match = [f for f in current.model_fields.values() if f.alias == part]
            if not alias_match:
                return None
            info = alias_match[0]
        current = _inner_model(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        names = list(current.model_fields)
        names += [f.alias for f in current.model_fields.values() if f.alias]
        return names
    return None


def _inner_model(annotation: Any) -> Any:
    """The BaseModel class inside ``X | None``, ``list[X]`` and similar, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


#: names other tools use for our fields; spelling similarity alone picks the wrong one for these
#: (``max_new_tokens`` is closest in letters to ``max_input_tokens``)
FIELD_SYNONYMS = {
    "max_new_tokens": "max_output_tokens",
    "max_tokens": "max_output_tokens",
    "output_tokens": "max_output_tokens",
    "num_prompts": "n",
    "num_samples": "n",
    "dtype": "precision",
    "torch_dtype": "precision",
}


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean `x`?)`` or an empty string."""
    choices = list(choices)
    synonym = FIELD_SYNONYMS.get(str(word))
    if synonym is not None and synonym in choices:
        return f" (did you mean `{synonym}`?)"
    matches = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" (did you mean `{matches[0]}`?)" if matches else ""


def validation_problems(
    exc: ValidationError,
    model: type[BaseModel],
    loaded: LoadedYaml | None = None,
    prefix: tuple[Any, ...] = (),
) -> list[str]:
    """Turn a pydantic ``ValidationError`` into ``file:line: field.path: message`` lines."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        full = (*prefix, *loc)
        where = f"{loaded.where(full)}: " if loaded else ""
        field_path = format_path(full)
        etype = err["type"]
        if etype == "extra_forbidden":
            accepted = model_fields_at(model, loc[:-1]) or []
            # a model may know where a field given in the wrong place belongs (a study's
            # top-level `model:` belongs under `base:`)
            misplaced = getattr(model, "misplaced_field_hint", None)
            hint = (misplaced(loc) if callable(misplaced) else None) or did_you_mean(
                str(loc[-1]), accepted
            )
            acc = f"; accepted fields here: {', '.join(sorted(set(accepted)))}" if accepted else ""
            problems.append(f"{where}{field_path}: unknown field{hint}{acc}")
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if etype in {"missing"}:
            problems.append(f"{where}{field_path}: required field is missing")
            continue
        value = err.get("input")
        shown = (
            ""
            if isinstance(value, dict | list) or etype.startswith("value_error")
            else f" (got {value!r})"
        )
        problems.append(f"{where}{field_path}: {msg}{shown}")
    return problems
