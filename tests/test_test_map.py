"""docs/testing.md's module -> test-file table has one row per package and top-level module of
``src/llenergymeasure`` (scripts/test_map.py generates it from the tests' imports)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _test_map() -> ModuleType:
    spec = importlib.util.spec_from_file_location("test_map", ROOT / "scripts" / "test_map.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows() -> list[str]:
    text = (ROOT / "docs" / "testing.md").read_text()
    section = text.split("## Where the tests are", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE)


def test_every_package_and_module_has_a_row_and_no_row_is_stale() -> None:
    groups = _test_map().src_groups()
    rows = _rows()
    missing = sorted(set(groups) - set(rows))
    stale = sorted(set(rows) - set(groups))
    assert not missing, f"docs/testing.md has no row for {missing}: run scripts/test_map.py"
    assert not stale, f"docs/testing.md has rows for {stale}, which are gone from src"
    assert len(rows) == len(set(rows))


def test_groups_are_packages_subpackages_and_top_level_modules() -> None:
    m = _test_map()
    assert m.group_of(("energy", "sampler")) == "energy/"
    assert m.group_of(("backends", "vllm", "backend")) == "backends/vllm/"
    assert m.group_of(("backends", "registry")) == "backends/"
    assert m.group_of(("errors",)) == "errors.py"
    assert m.group_of(()) == "api.py"  # imports through the package root
    groups = m.src_groups()
    assert {"runners/docker/", "study/", "_proc.py"} <= set(groups)
    assert "__init__.py" not in groups


def test_imports_of_input_types_alone_do_not_count(tmp_path: Path) -> None:
    f = tmp_path / "test_x.py"
    f.write_text(
        "from llenergymeasure.config.experiment import ExperimentConfig\n"
        "from llenergymeasure.results.models import ExperimentResult, GateResult\n"
        "import llenergymeasure.energy.sampler\n"
        "def later():\n"
        "    from llenergymeasure.study.planning import plan_runs\n"
    )
    assert _test_map().imported_modules(f) == {
        ("results", "models"),
        ("energy", "sampler"),
        ("study", "planning"),
    }
