"""Shared fixtures: an isolated user config and cache per test, never the developer's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure.backends import registry


@pytest.fixture(autouse=True)
def _isolated_user_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    # Network rule: tests never reach a model or dataset hub (children inherit these too).
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    # Device locks per test: tests of several sessions on one machine never queue behind each other
    monkeypatch.setenv("LLEM_LOCK_DIR", str(home / "device-locks"))
    monkeypatch.delenv("LLEM_DEVICE_LOCK", raising=False)
    runner_vars = [name for spec in registry.specs() for name in spec.env_vars]
    for var in ("LLEM_CONFIG", *runner_vars, "LLEM_CARBON_INTENSITY", "LLEM_DATACENTER_PUE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def shared_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic-model cache for the whole session (building a tokenizer takes a moment)."""
    return tmp_path_factory.mktemp("model-cache")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests run on the GPU machine; elsewhere they skip with the reason."""
    if _has_nvidia_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (NVML found none); run on the GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _has_nvidia_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return bool(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return False
