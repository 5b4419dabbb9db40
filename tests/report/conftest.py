"""Fixtures of the report tests; the builders live in report_builders.py (importable by name)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_builders import build_study_dir, copy_fixture_study

from llenergymeasure.results.models import StudyResult


@pytest.fixture
def synthetic_study(tmp_path: Path) -> tuple[Path, StudyResult]:
    return build_study_dir(tmp_path)


@pytest.fixture
def study_builder(tmp_path: Path) -> Callable[..., tuple[Path, StudyResult]]:
    counter = iter(range(1000))

    def build(**kwargs: Any) -> tuple[Path, StudyResult]:
        return build_study_dir(tmp_path / f"b{next(counter)}", **kwargs)

    return build


@pytest.fixture
def fixture_study(tmp_path: Path) -> Path:
    return copy_fixture_study(tmp_path)
