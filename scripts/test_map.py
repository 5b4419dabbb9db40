"""Print the module -> test-file table of docs/testing.md, read from the tests' imports.

A group is a package under ``src/llenergymeasure`` (a subpackage of one is its own group, e.g.
``backends/vllm/``) or a top-level module; a test file covers a group when it imports a module of
that group (``from llenergymeasure.x.y import ...``, ``import llenergymeasure.x``, inside
functions too), other than for the few names every test uses (``COMMON``). Where a file of the tests imports only through the package root
(``from llenergymeasure import run_study``) it is listed under ``api.py``.

Usage: ``.venv/bin/python scripts/test_map.py`` (paste the output under "Where the tests are").
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "llenergymeasure"
TESTS = ROOT / "tests"

#: names nearly every test imports to build its input or read its output: importing only these
#: from a module does not make a file one of that module's tests
COMMON = {
    (): {"ExperimentConfig", "StudyConfig", "ExperimentResult", "StudyResult"},
    ("energy", "types"): {"EnergyMeasurement", "BaselineRecord"},
    ("environment", "snapshot"): {"EnvironmentSnapshot"},
    ("config", "experiment"): {"ExperimentConfig"},
    ("config", "study"): {"StudyConfig"},
    ("config", "user"): {"UserConfig"},
    ("results", "models"): {
        "ExperimentResult",
        "LatencyStats",
        "LoadRecord",
        "ModelRecord",
        "RunFailure",
        "WarmupRecord",
    },
    ("results", "study_result"): {"StudyResult"},
    ("errors",): {"ConfigError", "ExperimentError", "LLEMError"},
}


def group_of(parts: tuple[str, ...]) -> str:
    """The group of module ``llenergymeasure.<parts>``: ``pkg/`` or ``pkg/sub/`` or ``mod.py``."""
    if not parts:
        return "api.py"
    path = SRC.joinpath(*parts)
    if len(parts) >= 2 and (SRC / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}/{parts[1]}/"
    if (SRC / parts[0]).is_dir():
        return f"{parts[0]}/"
    if path.with_suffix(".py").is_file() or (SRC / f"{parts[0]}.py").is_file():
        return f"{parts[0]}.py"
    return f"{parts[0]}/"


def src_groups() -> list[str]:
    """Every group that holds a module of the package."""
    out = set()
    for f in SRC.rglob("*.py"):
        rel = f.relative_to(SRC).with_suffix("").parts
        if "__pycache__" in rel:
            continue
        out.add(group_of(rel[:-1]) if rel[-1] == "__init__" and len(rel) > 1 else group_of(rel))
    out.discard("__init__.py")
    return sorted(out)


def imported_modules(path: Path) -> set[tuple[str, ...]]:
    """The ``llenergymeasure`` modules a file imports (as parts after the package name)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError):
        return set()
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = tuple(node.module.split("."))[1:]
            if {a.name for a in node.names} <= COMMON.get(parts, set()):
                continue
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = tuple(name.split("."))
            if parts[0] == "llenergymeasure":
                found.add(parts[1:])
    return found


def table() -> dict[str, list[str]]:
    """Group -> the test files (relative to the repository) that import it."""
    by_group: dict[str, set[str]] = defaultdict(set)
    for f in sorted(TESTS.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        rel = f.relative_to(ROOT).as_posix()
        for parts in imported_modules(f):
            by_group[group_of(parts)].add(rel)
    return {g: sorted(by_group.get(g, ())) for g in src_groups()}


def cell(files: list[str]) -> str:
    """Top-level test files by name; a test folder's files as the folder and how many import it."""
    top = [f.removeprefix("tests/") for f in files if f.count("/") == 1]
    folders: dict[str, int] = defaultdict(int)
    for f in files:
        if f.count("/") > 1:
            folders[f.split("/")[1] + "/"] += 1
    parts = [f"`{name}` ({n})" for name, n in sorted(folders.items())]
    parts += [f"`{name}`" for name in top]
    return ", ".join(parts) or "(none: reached only through a subprocess or the package root)"


def markdown() -> str:
    lines = [
        "| src/llenergymeasure/ | tests that import it: folders (how many of their files), files |",
        "|---|---|",
    ]
    for group, files in table().items():
        lines.append(f"| `{group}` | {cell(files)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown() + "\n")
