"""The user config: how this machine runs experiments (never shared, never versioned).

Location: ``$LLEM_CONFIG`` if set, else ``$XDG_CONFIG_HOME/llenergymeasure/config.yaml``, else
``~/.config/llenergymeasure/config.yaml``. A missing file means all defaults.

Environment variables override single fields for one-off runs: ``LLEM_CARBON_INTENSITY`` and
``LLEM_DATACENTER_PUE`` (stored in the environment snapshot), ``LLEM_RUNNER_<BACKEND>`` (runner
resolution, see ``llenergymeasure.runners.resolution``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llenergymeasure.config.experiment import BACKENDS, normalise_backend
from llenergymeasure.config.guards import find_credentials
from llenergymeasure.config.loading import read_yaml_file, validation_problems
from llenergymeasure.errors import ConfigError

DEFAULT_CONFIG_GAP_S = 60.0
DEFAULT_CYCLE_GAP_S = 300.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OutputSettings(_Strict):
    results_dir: str = Field("./results", description="where study directories are written")
    model_cache_dir: str | None = Field(
        None, description="synthetic models, engine caches; default ~/.cache/llenergymeasure"
    )

    def resolved_results_dir(self) -> Path:
        return Path(os.path.expanduser(self.results_dir))

    def resolved_model_cache_dir(self) -> Path:
        if self.model_cache_dir:
            return Path(os.path.expanduser(self.model_cache_dir))
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "llenergymeasure"


class MeasurementSettings(_Strict):
    energy_backend: Literal["auto", "nvml", "zeus", "none"] = "auto"
    carbon_intensity_gco2_kwh: float | None = Field(None, ge=0, le=5000)
    datacenter_pue: float = Field(1.0, ge=1.0, le=5.0)


class UISettings(_Strict):
    prompt: bool = True
    verbosity: Literal["quiet", "normal", "verbose"] = "normal"


class ExecutionSettings(_Strict):
    config_gap_seconds: float = Field(DEFAULT_CONFIG_GAP_S, ge=0, le=86_400)
    cycle_gap_seconds: float = Field(DEFAULT_CYCLE_GAP_S, ge=0, le=86_400)


class UserConfig(_Strict):
    """Every field of the seed's field-placement table that varies by machine."""

    runners: dict[str, str] = Field(default_factory=dict)
    output: OutputSettings = Field(default_factory=OutputSettings)
    measurement: MeasurementSettings = Field(default_factory=MeasurementSettings)
    ui: UISettings = Field(default_factory=UISettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)

    #: where it was loaded from (None: defaults, no file)
    source_path: str | None = Field(None, exclude=True)

    @field_validator("runners", mode="before")
    @classmethod
    def _runner_keys(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for key, value in v.items():
            backend = normalise_backend(key)
            if backend not in BACKENDS:
                raise ValueError(
                    f"runners.{key}: unknown backend; accepted: {', '.join(BACKENDS)} (or trtllm)"
                )
            if not isinstance(value, str):
                raise ValueError(
                    f"runners.{key}: must be a string such as local, docker or docker:<image>, got {value!r}"
                )
            from llenergymeasure.errors import RunnerError
            from llenergymeasure.runners.spec import parse_runner_spec

            try:
                parse_runner_spec(value, where=f"runners.{key}")
            except RunnerError as exc:
                raise ValueError(str(exc)) from None
            out[backend] = value
        return out


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """Where the user config lives on this machine (it may not exist)."""
    env = os.environ if environ is None else environ
    if env.get("LLEM_CONFIG"):
        return Path(os.path.expanduser(env["LLEM_CONFIG"]))
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(xdg) / "llenergymeasure" / "config.yaml"


def load_user_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> UserConfig:
    """Load the user config; a missing file means defaults, a bad file a ``ConfigError``."""
    env = os.environ if environ is None else environ
    p = Path(path) if path is not None else user_config_path(env)
    if not p.exists():
        if env.get("LLEM_CONFIG") and path is None:
            raise ConfigError(
                f"LLEM_CONFIG points to {p}, which does not exist; create it or unset LLEM_CONFIG"
            )
        return UserConfig()
    loaded = read_yaml_file(p)
    creds = find_credentials(loaded.data, loaded)
    if creds:
        raise ConfigError(f"{p}: refused", creds, source=str(p))
    try:
        cfg = UserConfig.model_validate(loaded.data)
    except ValidationError as exc:
        raise ConfigError(
            f"{p}: invalid user config", validation_problems(exc, UserConfig, loaded), source=str(p)
        ) from None
    cfg.source_path = str(p)
    return cfg


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
