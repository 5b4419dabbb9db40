"""Experiment or study? ``load_config_file`` tells them apart by the YAML's content.

This module sits above both config models. The models load themselves (``from_yaml`` and
``from_dict`` of ``ExperimentConfig`` and ``StudyConfig``, built on the model-agnostic reader in
``config/loading.py`` and the guards in ``config/parsing.py``); only the choice between them is
made here.
"""

from __future__ import annotations

from pathlib import Path

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.loading import read_yaml_file
from llenergymeasure.config.parsing import is_study_data
from llenergymeasure.config.study import StudyConfig


def load_config_file(path: str | Path) -> ExperimentConfig | StudyConfig:
    """Load an experiment or a study, telling them apart by the YAML's content."""
    loaded = read_yaml_file(path)
    # relative local paths (model directory, JSONL dataset) mean paths next to the file
    base_dir = Path(path).parent
    if is_study_data(loaded.data):
        return StudyConfig.from_dict(
            loaded.data, source=str(path), loaded=loaded, base_dir=base_dir
        )
    return ExperimentConfig.from_dict(
        loaded.data, source=str(path), loaded=loaded, base_dir=base_dir
    )
