"""The docs must stay true: every config field is documented, every doc link resolves."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from llenergymeasure.config.experiment import (
    BaselineConfig,
    DatasetConfig,
    DecodingConfig,
    ExperimentConfig,
    PyTorchConfig,
    TensorRTConfig,
    VLLMConfig,
    WarmupConfig,
)
from llenergymeasure.config.study import ExecutionConfig, StudyConfig
from llenergymeasure.config.user import (
    ExecutionSettings,
    MeasurementSettings,
    OutputSettings,
    UISettings,
    UserConfig,
)

ROOT = Path(__file__).resolve().parents[1]


def _fields(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if not info.exclude]


def test_every_config_field_is_in_the_reference() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    models = [
        ExperimentConfig, DatasetConfig, DecodingConfig, WarmupConfig, BaselineConfig, PyTorchConfig,
        VLLMConfig, TensorRTConfig, StudyConfig, ExecutionConfig, UserConfig, OutputSettings,
        MeasurementSettings, UISettings, ExecutionSettings,
    ]  # fmt: skip
    missing = [
        f"{m.__name__}.{f}"
        for m in models
        for f in _fields(m)
        if f"`{f}" not in doc and f"{f}`" not in doc
    ]
    assert not missing, f"fields missing from docs/configuration.md: {missing}"


def test_markdown_links_resolve() -> None:
    broken = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", md.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, broken
