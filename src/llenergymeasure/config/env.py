"""Numbers from ``LLEM_*`` environment variables, with errors that name the variable.

Model-agnostic and import-light: the user config and the environment snapshot both read
variables through it, and the snapshot (a data model) must not import the user-config loader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from llenergymeasure.errors import ConfigError


def env_float(
    name: str, environ: Mapping[str, str] | None = None, minimum: float | None = None
) -> float | None:
    """A float from an environment variable, or ``None``; a malformed value is a ``ConfigError``."""
    env = os.environ if environ is None else environ
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {name}=350") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value
