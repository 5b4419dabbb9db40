"""The package's import graph: no cycles, and the data models at the bottom.

The graph is read from the source with ``ast`` rather than by importing anything, so it covers
every module (engines that are not installed included) and every import statement: at module
level, inside functions, methods and ``try`` blocks, and under ``if TYPE_CHECKING:`` (such an
import never runs, but a module that names another's types for its signatures depends on it all
the same, and structure tools count it). ``import a.b.c`` and ``from a.b import c`` point at the
module they name (``a.b.c``, or ``a.b`` when ``c`` is not a module); relative imports are
resolved against the importing module. A package's ``__init__`` counts as its own module, and
importing ``a.b.c`` does not count as importing the package ``a.b`` (Python does run
``a/b/__init__.py`` first, but every module of a package would then sit in a cycle with an
``__init__`` that re-exports it; re-exports are checked as edges of the ``__init__`` itself).
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

PACKAGE = "llenergymeasure"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Modules that hold data (pydantic models, dataclasses, constants), and what they must not reach.
DATA_MODULES = [
    "llenergymeasure.config.experiment",
    "llenergymeasure.config.study",
    "llenergymeasure.results.models",
    "llenergymeasure.results.serving_models",
    "llenergymeasure.results.phase_records",
    "llenergymeasure.results.engine_telemetry",
    "llenergymeasure.results.distributions",
    "llenergymeasure.energy.types",
    "llenergymeasure.environment.snapshot",
    "llenergymeasure.harness.request",
    "llenergymeasure.backends.registry",
]
# Behaviour that builds on the data: loaders, validators, exporters, statistics, the harness, the
# runners, the study, the backends, the report, the CLI.
BEHAVIOUR_PREFIXES = [
    "llenergymeasure.api",
    "llenergymeasure.cli",
    "llenergymeasure.study",
    "llenergymeasure.runners",
    "llenergymeasure.harness",
    "llenergymeasure.backends",
    "llenergymeasure.report",
    "llenergymeasure.quality",
    "llenergymeasure.datasets",
    "llenergymeasure.config.validate",
    "llenergymeasure.config.user",
    "llenergymeasure.results",
]
# ... except these, which are data themselves (or, for harness.request, the data a runner hands
# the harness: it may use the result records).
DATA_EXCEPTIONS = {
    "llenergymeasure.results.layout",
    "llenergymeasure.results.models",
    "llenergymeasure.results.serving_models",
    "llenergymeasure.results.quality_models",
    "llenergymeasure.results.phase_records",
    "llenergymeasure.results.engine_telemetry",
    "llenergymeasure.results.distributions",
    "llenergymeasure.results.io",
}
# The registry of backend facts and each backend's config section (``backends/<name>/section.py``)
# are data as well: ``ExperimentConfig`` is built from them.
DATA_EXCEPTIONS |= {"llenergymeasure.backends.registry", "llenergymeasure.backends.section"} | {
    f"{PACKAGE}.backends.{p.parent.name}.section" for p in (SRC / "backends").glob("*/section.py")
}
# Model-agnostic helpers the config models build their ``from_yaml``/``from_dict`` on: they take
# the model class as a parameter and must never import a model (or anything above one).
GENERIC_MODULES = [
    "llenergymeasure.config.loading",
    "llenergymeasure.config.guards",
    "llenergymeasure.config.parsing",
    "llenergymeasure.config.env",
    "llenergymeasure.errors",
    "llenergymeasure.results.io",
    # the study folder's file names and the one timestamp: at the very bottom, used by all
    "llenergymeasure.results.layout",
    "llenergymeasure.timestamps",
]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int

    def describe(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, ``if TYPE_CHECKING:`` bodies included."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.Import | ast.ImportFrom):
            found.append(current)
            continue
        stack.extend(ast.iter_child_nodes(current))
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def _base_of(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    if node.level > 1:
        package = package[: len(package) - (node.level - 1)]
    return ".".join([*package, *([node.module] if node.module else [])])


def import_edges(modules: dict[str, Path] | None = None) -> list[Edge]:
    modules = modules if modules is not None else all_modules()
    edges: list[Edge] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _import_nodes(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _base_of(node, name, is_package)
                for alias in node.names:
                    sub = f"{base}.{alias.name}" if base else alias.name
                    targets.append(sub if sub in modules else base)
            for target in targets:
                if not target.startswith(PACKAGE):
                    continue
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    edges.append(Edge(name, resolved, node.lineno))
    return edges


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One shortest cycle per strongly connected component of more than one module."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, {}).setdefault(e.target, e)
        graph.setdefault(e.target, {})
    # Tarjan's algorithm, iterative.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    cycles = []
    for component in components:
        members = set(component)
        start = component[0]
        # Shortest path from start back to start inside the component (BFS).
        previous: dict[str, str] = {}
        queue = deque([start])
        found = None
        while queue and found is None:
            node = queue.popleft()
            for child in sorted(graph[node]):
                if child not in members:
                    continue
                if child == start:
                    found = node
                    break
                if child not in previous:
                    previous[child] = node
                    queue.append(child)
        assert found is not None
        path = [found]
        while path[-1] != start:
            path.append(previous[path[-1]])
        path.reverse()
        path.append(start)
        cycles.append([graph[a][b] for a, b in itertools.pairwise(path)])
    return cycles


def reachable(start: str, edges: list[Edge]) -> dict[str, list[Edge]]:
    """Every module reachable from ``start``, with the chain of imports that reaches it."""
    graph: dict[str, list[Edge]] = {}
    for e in edges:
        graph.setdefault(e.source, []).append(e)
    chains: dict[str, list[Edge]] = {start: []}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for e in graph.get(node, []):
            if e.target not in chains:
                chains[e.target] = [*chains[node], e]
                queue.append(e.target)
    return chains


# -- the analyser itself -------------------------------------------------------------------------


def _write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    modules = {}
    for rel, text in files.items():
        path = root / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def test_analyser_sees_function_level_relative_and_from_package_imports(tmp_path: Path) -> None:
    modules = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "a/__init__.py": "from llenergymeasure.a.model import Model\n",
            "a/model.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from llenergymeasure.a.loader import load\n"
                "class Model:\n"
                "    def load(self):\n        from .loader import load\n        return load()\n"
            ),
            "a/loader.py": "from llenergymeasure.a import model\n",
            "b.py": "import llenergymeasure.a.model\nfrom . import a\n",
        },
    )
    edges = {(e.source, e.target) for e in import_edges(modules)}
    assert ("llenergymeasure.a.model", "llenergymeasure.a.loader") in edges
    assert ("llenergymeasure.a.loader", "llenergymeasure.a.model") in edges
    assert ("llenergymeasure.b", "llenergymeasure.a.model") in edges
    assert ("llenergymeasure.b", "llenergymeasure.a") in edges
    assert ("llenergymeasure.a", "llenergymeasure.a.model") in edges
    cycles = find_cycles(import_edges(modules))
    assert [sorted({e.source for e in c}) for c in cycles] == [
        ["llenergymeasure.a.loader", "llenergymeasure.a.model"]
    ]


def test_analyser_counts_type_checking_imports(tmp_path: Path) -> None:
    modules = _write_package(
        tmp_path,
        {
            "__init__.py": "",
            "x.py": "import typing\nif typing.TYPE_CHECKING:\n    from llenergymeasure import y\n",
            "y.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    pass\nelse:\n    from llenergymeasure import z\n"
            ),
            "z.py": "from llenergymeasure import x\n",
        },
    )
    edges = {(e.source, e.target) for e in import_edges(modules)}
    assert ("llenergymeasure.x", "llenergymeasure.y") in edges
    assert ("llenergymeasure.y", "llenergymeasure.z") in edges
    cycles = find_cycles(import_edges(modules))
    assert [sorted({e.source for e in c}) for c in cycles] == [
        ["llenergymeasure.x", "llenergymeasure.y", "llenergymeasure.z"]
    ]


# -- the package ---------------------------------------------------------------------------------


@cache
def package_edges() -> tuple[Edge, ...]:
    return tuple(import_edges())


def test_the_graph_covers_the_package() -> None:
    edges = package_edges()
    sources = {e.source for e in edges}
    assert "llenergymeasure.api" in sources
    assert len(sources) > 40, sources


def test_no_import_cycles() -> None:
    cycles = find_cycles(list(package_edges()))
    message = "\n\n".join(
        "import cycle:\n" + "\n".join("    " + e.describe() for e in cycle) for cycle in cycles
    )
    assert not cycles, message


def _matches(module: str, prefixes: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("data_module", DATA_MODULES)
def test_data_models_import_no_behaviour(data_module: str) -> None:
    modules = all_modules()
    assert data_module in modules, f"{data_module} moved; update DATA_MODULES"
    chains = reachable(data_module, list(package_edges()))
    bad = {
        target: chain
        for target, chain in chains.items()
        if target != data_module
        and target not in DATA_EXCEPTIONS
        and _matches(target, BEHAVIOUR_PREFIXES)
    }
    message = "\n".join(
        f"{data_module} reaches {target} through: " + " ; ".join(e.describe() for e in chain)
        for target, chain in sorted(bad.items())
    )
    assert not bad, message


@pytest.mark.parametrize("generic_module", GENERIC_MODULES)
def test_generic_helpers_know_no_model(generic_module: str) -> None:
    modules = all_modules()
    assert generic_module in modules, f"{generic_module} moved; update GENERIC_MODULES"
    chains = reachable(generic_module, list(package_edges()))
    bad = {
        target: chain
        for target, chain in chains.items()
        if target != generic_module
        and (target in DATA_MODULES or _matches(target, BEHAVIOUR_PREFIXES))
        and target not in GENERIC_MODULES
    }
    message = "\n".join(
        f"{generic_module} reaches {target} through: " + " ; ".join(e.describe() for e in chain)
        for target, chain in sorted(bad.items())
    )
    assert not bad, message
