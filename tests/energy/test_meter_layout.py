"""The energy package's layout (issue 24 item 6): a meter is ``energy/<name>_meter.py``, no module
imports another's private name, no function is over 120 lines or 12 parameters, and the package's
names still load lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import llenergymeasure.energy as energy_pkg
from llenergymeasure.energy.meters import MeterBase, NullMeter
from llenergymeasure.energy.nvml_meter import NvmlMeter
from llenergymeasure.energy.zeus_meter import ZeusMeter

ENERGY = Path(energy_pkg.__file__).parent


def test_each_gpu_meter_lives_in_its_own_name_meter_module() -> None:
    for cls in (NvmlMeter, ZeusMeter):
        assert issubclass(cls, MeterBase)
        assert cls.__module__ == f"llenergymeasure.energy.{cls.name}_meter", cls
    assert NullMeter.__module__ == "llenergymeasure.energy.meters"
    assert energy_pkg.NvmlMeter is NvmlMeter


def test_no_energy_module_imports_a_private_name_of_another() -> None:
    bad = []
    for path in sorted(ENERGY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "llenergymeasure"
            ):
                bad += [
                    f"{path.name}:{node.lineno} {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert bad == []


def test_no_energy_function_is_over_120_lines_or_12_parameters() -> None:
    long, wide = [], []
    for path in sorted(ENERGY.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                n -= 1 if a.args and a.args[0].arg in ("self", "cls") else 0
                if lines > 120:
                    long.append(f"{path.name}::{node.name} {lines} lines")
                if n > 12:
                    wide.append(f"{path.name}::{node.name} {n} parameters")
    assert long == [] and wide == []


def test_importing_the_package_loads_no_meter_until_one_is_asked_for() -> None:
    code = (
        "import sys, llenergymeasure.energy as e\n"
        "assert 'llenergymeasure.energy.nvml_meter' not in sys.modules\n"
        "e.NvmlMeter\n"
        "assert 'llenergymeasure.energy.nvml_meter' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
