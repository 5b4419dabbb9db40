"""From raw data (a parsed YAML file or a mapping) to a validated model of a given class.

Model-agnostic: the model class is a parameter, so this module imports no config model and the
models' own ``from_yaml``/``from_dict`` can build on it without an import circle. The steps are
the same for every file: the guards (no runner, no credential), then pydantic, with every problem
reported at once as ``file:line: field.path: message``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llenergymeasure.config.guards import find_credentials, find_runner_fields
from llenergymeasure.config.loading import LoadedYaml, validation_problems
from llenergymeasure.errors import ConfigError

#: top-level keys that make a YAML mapping a study rather than one experiment
STUDY_KEYS = frozenset({"experiments", "sweep", "base", "execution"})

ModelT = TypeVar("ModelT", bound=BaseModel)


def is_study_data(data: Any) -> bool:
    """A YAML mapping is a study when it has any of ``experiments``, ``sweep``, ``base``, ``execution``."""
    return isinstance(data, dict) and bool(STUDY_KEYS & set(data))


def guard(data: Any, loaded: LoadedYaml | None, source: str) -> None:
    """Refuse runner fields and credentials, naming each with its line."""
    problems = find_runner_fields(data, loaded) + find_credentials(data, loaded)
    if problems:
        raise ConfigError(f"{source}: refused", problems, source=source)


def parse_model(
    model: type[ModelT],
    data: Any,
    *,
    what: str,
    source: str = "<dict>",
    loaded: LoadedYaml | None = None,
) -> ModelT:
    """``model`` validated from ``data`` after the guards; ``ConfigError`` lists every problem.

    ``what`` names the kind of file in the error's headline (``experiment config``, ...).
    """
    guard(data, loaded, source)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc, model, loaded)
        raise ConfigError(f"{source}: invalid {what}", problems, source=source) from None
