"""The study folder the damaged-file tests damage (``study_builder.make_study``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.damaged.study_builder import make_study


@pytest.fixture
def study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A study that ended: 4 runs, run 2 failed, study_result.json and the exports written."""
    return make_study(tmp_path, monkeypatch)
