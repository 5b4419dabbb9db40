"""From a YAML file (or a mapping) to a validated config, with every problem reported at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.guards import find_credentials, find_runner_fields
from llenergymeasure.config.loading import LoadedYaml, read_yaml_file, validation_problems
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.errors import ConfigError

STUDY_KEYS = {"experiments", "sweep", "base", "execution"}


def _guard(data: Any, loaded: LoadedYaml | None, source: str) -> None:
    problems = find_runner_fields(data, loaded) + find_credentials(data, loaded)
    if problems:
        raise ConfigError(f"{source}: refused", problems, source=source)


def is_study_data(data: Any) -> bool:
    """A YAML mapping is a study when it has any of ``experiments``, ``sweep``, ``base``, ``execution``."""
    return isinstance(data, dict) and bool(STUDY_KEYS & set(data))


def validate_experiment_data(
    data: Any, source: str = "<dict>", loaded: LoadedYaml | None = None
) -> ExperimentConfig:
    _guard(data, loaded, source)
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc, ExperimentConfig, loaded)
        raise ConfigError(f"{source}: invalid experiment config", problems, source=source) from None


def validate_study_data(
    data: Any, source: str = "<dict>", loaded: LoadedYaml | None = None
) -> StudyConfig:
    _guard(data, loaded, source)
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc, StudyConfig, loaded)
        raise ConfigError(f"{source}: invalid study config", problems, source=source) from None


def load_experiment_file(path: str | Path) -> ExperimentConfig:
    loaded = read_yaml_file(path)
    if is_study_data(loaded.data):
        raise ConfigError(
            f"{path}: this is a study file (it has {', '.join(sorted(STUDY_KEYS & set(loaded.data)))}); "
            "load it with StudyConfig.from_yaml or run it with `llem run`"
        )
    return validate_experiment_data(loaded.data, source=str(path), loaded=loaded)


def load_study_file(path: str | Path) -> StudyConfig:
    loaded = read_yaml_file(path)
    if not is_study_data(loaded.data):
        # An experiment file is a one-experiment study.
        cfg = validate_experiment_data(loaded.data, source=str(path), loaded=loaded)
        return StudyConfig.from_experiment(cfg)
    return validate_study_data(loaded.data, source=str(path), loaded=loaded)


def load_config_file(path: str | Path) -> ExperimentConfig | StudyConfig:
    """Load an experiment or a study, telling them apart by the YAML's content."""
    loaded = read_yaml_file(path)
    if is_study_data(loaded.data):
        return validate_study_data(loaded.data, source=str(path), loaded=loaded)
    return validate_experiment_data(loaded.data, source=str(path), loaded=loaded)
