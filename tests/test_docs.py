"""The docs must stay true: every config field is documented, every doc link resolves."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel

from llenergymeasure.backends import registry
from llenergymeasure.config.experiment import (
    BaselineConfig,
    DatasetConfig,
    DecodingConfig,
    ExperimentConfig,
    MeasurementConfig,
    WarmupConfig,
)
from llenergymeasure.config.quality import QualityConfig
from llenergymeasure.config.study import ExecutionConfig, StudyConfig
from llenergymeasure.config.user import (
    ExecutionSettings,
    MeasurementSettings,
    OutputSettings,
    SlurmSettings,
    UISettings,
    UserConfig,
)
from llenergymeasure.config.workload import LoadConfig, SLOConfig

ROOT = Path(__file__).resolve().parents[1]


def _fields(model: type[BaseModel]) -> list[str]:
    return [name for name, info in model.model_fields.items() if not info.exclude]


def _section(doc: str, heading: str) -> str:
    """The text under ``heading`` (an exact heading line) up to the next heading of any level."""
    lines = doc.splitlines()
    assert heading in lines, f"docs/configuration.md has no heading {heading!r}"
    start = lines.index(heading) + 1
    end = next((k for k in range(start, len(lines)) if lines[k].startswith("#")), len(lines))
    return "\n".join(lines[start:end])


def _documented_names(section: str) -> set[str]:
    """Names a section documents: backticked names in a table row's first cell, and the keys of
    its YAML examples. Whole names only: `max_runs` does not document `runs`."""
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([^`]+)`", line.split("|")[1]))
    for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.S):
        names.update(re.findall(r"^\s*(?:- )?\{?([A-Za-z_][\w.]*):", block, flags=re.M))
    return names


# model -> (its heading in docs/configuration.md, the prefix its fields carry in that section)
REFERENCE: list[tuple[type[BaseModel], str, str]] = [
    (ExperimentConfig, "## Experiment file", ""),
    (DatasetConfig, "### `dataset`", ""),
    (DecodingConfig, "### `decoding`", ""),
    (WarmupConfig, "### `warmup`", ""),
    (MeasurementConfig, "### `measurement`", ""),
    (BaselineConfig, "### `baseline`", ""),
    (LoadConfig, "### `load`", ""),
    (SLOConfig, "### `slo`", ""),
    (QualityConfig, "### `quality`", ""),
    # every registered backend's section (backends/registry.py)
    *[(spec.section, f"### `{spec.name}:` section", "") for spec in registry.specs()],
    (StudyConfig, "## Study file", ""),
    (ExecutionConfig, "### `execution`", ""),
    (UserConfig, "## User config", "*"),  # documented through its sections: `output.results_dir`
    (OutputSettings, "## User config", "output."),
    (MeasurementSettings, "## User config", "measurement."),
    (UISettings, "## User config", "ui."),
    (ExecutionSettings, "## User config", "execution."),
    (SlurmSettings, "### `slurm:` section", ""),
]


def test_every_config_field_is_in_the_reference() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = []
    for model, heading, prefix in REFERENCE:
        names = _documented_names(_section(doc, heading))
        if prefix == "*":
            names = {n.split(".")[0] for n in names}
        for f in _fields(model):
            if f"{prefix.strip('*')}{f}" not in names:
                missing.append(f"{model.__name__}.{f} (under {heading!r})")
    assert not missing, f"fields missing from docs/configuration.md: {missing}"


def test_the_field_check_wants_whole_names() -> None:
    """The check itself: a longer name that merely contains the field does not count."""
    section = "| field | meaning |\n|---|---|\n| `max_runs` | x |\n| `tp_size`, `pp_size` | y |\n"
    names = _documented_names(section)
    assert "runs" not in names and "max" not in names
    assert {"max_runs", "tp_size", "pp_size"} <= names
    yaml_block = "```yaml\nname: s\nexecution:\n  n_cycles: 3\n  - {backend: vllm}\n```\n"
    assert {"name", "execution", "n_cycles", "backend"} <= _documented_names(yaml_block)


def test_markdown_links_resolve() -> None:
    broken = []
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)", md.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, broken
