"""Configuration: experiment and study models, the user config, loading, guards and hashing."""

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import ExecutionConfig, StudyConfig
from llenergymeasure.config.user import UserConfig, load_user_config, user_config_path
from llenergymeasure.config.validate import load_config_file

__all__ = [
    "ExecutionConfig",
    "ExperimentConfig",
    "StudyConfig",
    "UserConfig",
    "load_config_file",
    "load_user_config",
    "user_config_path",
]
