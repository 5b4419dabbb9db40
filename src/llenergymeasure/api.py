"""The library entry points. Both go through one internal ``_run(StudyConfig) -> StudyResult``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.errors import ExperimentError
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.results.study_result import StudyResult


def _coerce_experiment(config: ExperimentConfig | dict[str, Any] | str | Path) -> ExperimentConfig:
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, dict):
        return ExperimentConfig.from_dict(config)
    return ExperimentConfig.from_yaml(config)


def _coerce_study(config: StudyConfig | dict[str, Any] | str | Path) -> StudyConfig:
    if isinstance(config, StudyConfig):
        return config
    if isinstance(config, dict):
        return StudyConfig.from_dict(config)
    return StudyConfig.from_yaml(config)


def run_experiment(
    config: ExperimentConfig | dict[str, Any] | str | Path,
    *,
    runner: str | None = None,
    results_dir: str | Path | None = None,
    user_config_path: str | Path | None = None,
) -> ExperimentResult:
    """Run one experiment in a fresh process (or container) and return its result.

    ``config`` is an ``ExperimentConfig``, a mapping, or the path of an experiment YAML file.
    ``runner`` plays the part of ``llem run --runner`` (env vars and the user config still win).
    Raises ``ExperimentError`` (with the failing phase) when the experiment produced no result.
    """
    cfg = _coerce_experiment(config)
    study = StudyConfig.from_experiment(cfg)
    result = _run(
        study,
        source_path=Path(config) if isinstance(config, str | Path) else None,
        runner=runner,
        results_dir=results_dir,
        user_config_path=user_config_path,
        no_gaps=True,
    )
    if result.runs:
        return result.runs[0]
    failure = result.failures[0] if result.failures else None
    if failure is None:
        raise ExperimentError("the experiment produced no result and no error record")
    raise ExperimentError(
        f"experiment failed in phase {failure.phase or 'unknown'}: {failure.message}"
        + (f" (details: {failure.error_file})" if failure.error_file else ""),
        phase=failure.phase,
    )


def run_study(
    config: StudyConfig | dict[str, Any] | str | Path,
    *,
    runner: str | None = None,
    results_dir: str | Path | None = None,
    user_config_path: str | Path | None = None,
    n_cycles: int | None = None,
    no_gaps: bool = False,
    fail_fast: bool = False,
) -> StudyResult:
    """Run a study (every experiment x every cycle) and return its aggregate ``StudyResult``."""
    source = Path(config) if isinstance(config, str | Path) else None
    return _run(
        _coerce_study(config),
        source_path=source,
        runner=runner,
        results_dir=results_dir,
        user_config_path=user_config_path,
        n_cycles=n_cycles,
        no_gaps=no_gaps,
        fail_fast=fail_fast,
    )


def _run(
    study: StudyConfig,
    *,
    source_path: Path | None,
    user_config_path: str | Path | None,
    **options: Any,
) -> StudyResult:
    """The single internal path both public functions take."""
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    return StudyRunner(
        study, StudyOptions(**options), source_path=source_path, user_config_path=user_config_path
    ).run()
