"""Shared fixtures: an isolated user config and cache per test, never the developer's own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    for var in (
        "LLEM_CONFIG",
        "LLEM_RUNNER_PYTORCH",
        "LLEM_RUNNER_VLLM",
        "LLEM_RUNNER_TENSORRT",
        "LLEM_RUNNER_TRTLLM",
        "LLEM_CARBON_INTENSITY",
        "LLEM_DATACENTER_PUE",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def shared_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-model cache for the whole session (building a tokenizer takes a moment)."""
    return tmp_path_factory.mktemp("model-cache")
