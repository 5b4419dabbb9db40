"""The study package's shape (issue 24 items 3 and 4): every study loop builds its requests in one
place, no function takes more than 12 parameters, the CLI uses no private name of the study, and
the study folder's file names and timestamps come from one module each."""

from __future__ import annotations

import ast
import datetime as _dt
import re
from pathlib import Path

import pytest

import llenergymeasure
from llenergymeasure.results import layout
from llenergymeasure.timestamps import utc_now

SRC = Path(llenergymeasure.__file__).parent
STUDY = SRC / "study"


def _calls_to(tree: ast.AST, name: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == name)
            or (isinstance(node.func, ast.Attribute) and node.func.attr == name)
        )
    ]


def test_a_harness_request_is_built_in_one_place() -> None:
    built = {
        path.name: lines
        for path in sorted(STUDY.glob("*.py"))
        if (lines := _calls_to(ast.parse(path.read_text()), "HarnessRequest"))
    }
    assert list(built) == ["requests.py"] and len(built["requests.py"]) == 1, built


def test_no_study_function_takes_more_than_12_parameters() -> None:
    wide = []
    for path in [*sorted(STUDY.glob("*.py")), SRC / "cli" / "slurm_cmd.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                n -= 1 if a.args and a.args[0].arg in ("self", "cls") else 0
                if n > 12:
                    wide.append(f"{path.name}::{node.name} {n} parameters")
    assert wide == []


def test_the_slurm_cli_imports_no_private_name_of_the_study() -> None:
    tree = ast.parse((SRC / "cli" / "slurm_cmd.py").read_text())
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llenergymeasure")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    attributes = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and isinstance(node.value, ast.Name)
        and node.value.id == "sr"  # the StudyRunner of ``llem status``
    ]
    assert private == [] and attributes == []


def test_the_null_observer_implements_every_hook_of_the_protocol() -> None:
    from llenergymeasure.study.observer import NullObserver, StudyObserver

    hooks = {n for n in vars(StudyObserver) if n.startswith("on_")}
    assert hooks == {"on_start", "on_gap", "on_run_start", "on_run_end"}
    assert all(callable(getattr(NullObserver(), h)) for h in hooks)


# -- one study-folder layout ---------------------------------------------------------------------

FILE_NAMES = {
    value
    for name, value in vars(layout).items()
    if name.isupper() and isinstance(value, str) and name.endswith(("_FILE", "_DIR", "_PARQUET"))
}


def test_the_layout_names_each_file_of_a_study_folder() -> None:
    assert {
        "study.yaml",
        "manifest.json",
        "study_result.json",
        "summary.csv",
        "request.json",
        "result.json",
        "error.json",
        "progress.json",
        "process.json",
        "timeseries.csv",
        "run.log",
        "node.json",
    } <= FILE_NAMES
    assert len(FILE_NAMES) == len([n for n in vars(layout) if n.isupper()])  # no two share a name


def test_no_module_spells_a_study_folder_file_name_itself() -> None:
    spelled = []
    for path in sorted(SRC.rglob("*.py")):
        if path == Path(layout.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in FILE_NAMES:
                spelled.append(f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}")
    assert spelled == []


def test_no_module_keeps_a_now_helper_of_its_own() -> None:
    helpers = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "timestamps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and re.fullmatch(
                r"_?(utc_)?now(_iso)?", node.name
            ):
                helpers.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert helpers == []


@pytest.mark.parametrize(
    ("timespec", "pattern"),
    [
        ("auto", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00"),
        ("milliseconds", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00"),
        ("seconds", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"),
    ],
)
def test_utc_now_is_iso_with_the_utc_offset(timespec: str, pattern: str) -> None:
    stamp = utc_now(timespec)
    assert re.fullmatch(pattern, stamp), stamp
    assert _dt.datetime.fromisoformat(stamp).utcoffset() == _dt.timedelta(0)
