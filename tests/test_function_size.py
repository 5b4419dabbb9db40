"""Issue 24 item 5 over the whole package: no function in ``src/`` is over 120 lines, and none
takes more than 12 parameters except typer commands (one parameter per CLI option). Each
offender is named with its size, so the fix starts from the message."""

from __future__ import annotations

import ast
from pathlib import Path

import llenergymeasure

PACKAGE = Path(llenergymeasure.__file__).parent
MAX_LINES = 120
MAX_PARAMETERS = 12


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node))
    return out


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
    return len([p for p in names if p.arg not in ("self", "cls")])


def _is_typer_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated ``@<app>.command(...)`` or ``@<app>.callback(...)``."""
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr in ("command", "callback"):
            return True
    return False


def test_the_scan_sees_the_package() -> None:
    names = {node.name for _, node in _functions()}
    assert {"run_harness", "build_result", "run_command", "measure_idle_baseline"} <= names


def test_no_function_is_over_120_lines() -> None:
    long = [
        f"{where} {node.name}: {node.end_lineno - node.lineno + 1} lines"  # type: ignore[operator]
        for where, node in _functions()
        if node.end_lineno - node.lineno + 1 > MAX_LINES  # type: ignore[operator]
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_no_function_but_a_typer_command_takes_over_12_parameters() -> None:
    many = [
        f"{where} {node.name}: {_parameters(node)} parameters"
        for where, node in _functions()
        if _parameters(node) > MAX_PARAMETERS and not _is_typer_command(node)
    ]
    assert not many, "give these a record of their settings:\n" + "\n".join(many)
