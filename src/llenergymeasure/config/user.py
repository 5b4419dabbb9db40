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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llenergymeasure.backends import registry
from llenergymeasure.config.experiment import normalise_backend
from llenergymeasure.config.guards import find_credentials
from llenergymeasure.config.loading import read_yaml_file, validation_problems
from llenergymeasure.config.validity import ValiditySettings
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
    # Where the machine draws its power, for CodeCarbon's offline intensity lookup (used only
    # when no carbon_intensity_gco2_kwh is set); recorded in each result's co2 block.
    carbon_country_iso_code: str | None = Field(
        None, pattern=r"^[A-Za-z]{3}$", description="3-letter ISO 3166 code, e.g. FRA, USA"
    )
    carbon_region: str | None = Field(
        None, min_length=1, max_length=80, description="e.g. california, ontario, SE3"
    )

    @field_validator("carbon_country_iso_code")
    @classmethod
    def _country_upper(cls, v: str | None) -> str | None:
        return v.upper() if v is not None else None

    @model_validator(mode="after")
    def _region_needs_country(self) -> MeasurementSettings:
        if self.carbon_region is not None and self.carbon_country_iso_code is None:
            raise ValueError(
                f"carbon_region {self.carbon_region!r} needs carbon_country_iso_code (the "
                "region's country as a 3-letter ISO code, e.g. USA for california)"
            )
        return self


class UISettings(_Strict):
    prompt: bool = True
    verbosity: Literal["quiet", "normal", "verbose"] = "normal"


class ExecutionSettings(_Strict):
    config_gap_seconds: float = Field(DEFAULT_CONFIG_GAP_S, ge=0, le=86_400)
    cycle_gap_seconds: float = Field(DEFAULT_CYCLE_GAP_S, ge=0, le=86_400)


#: sbatch options the slurm runner sets itself; ``slurm.extra_sbatch_args`` may not override them
SBATCH_RESERVED = (
    "--array", "--output", "--error", "--open-mode", "--wrap", "--parsable", "--job-name",
    "--signal",
)  # fmt: skip


class SlurmSettings(_Strict):
    """How this machine's SLURM cluster runs one experiment (``runner: slurm``); see docs/runners.md."""

    partition: str | None = Field(None, description="sbatch --partition (cluster default if unset)")
    account: str | None = Field(None, description="sbatch --account")
    qos: str | None = Field(None, description="sbatch --qos")
    time_limit_min: int = Field(60, ge=1, le=43_200, description="sbatch --time per job, minutes")
    cpus_per_job: int = Field(1, ge=1, le=1024, description="sbatch --cpus-per-task")
    mem_gb: float | None = Field(None, gt=0, le=16_384, description="sbatch --mem (GB)")
    gpus_per_job: int = Field(
        1, ge=0, le=64, description="sbatch --gpus-per-node; 0 on a cluster without GPUs"
    )
    gres: str | None = Field(
        None, description="sbatch --gres instead of gpus_per_job, e.g. gpu:a100:1"
    )
    max_concurrent: int = Field(
        4, ge=1, le=10_000, description="jobs of one study running at once (array throttle %N)"
    )
    extra_sbatch_args: list[str] = Field(
        default_factory=list, description="further sbatch options, each --name=value or --flag"
    )
    setup: list[str] = Field(
        default_factory=list, description="shell lines run in the job before the harness"
    )
    python: str | None = Field(
        None, description="python command on the nodes; default: the controller's interpreter"
    )
    container: str = Field("none", description="none, or docker:<image> run on the node")
    poll_interval_s: float = Field(2.0, gt=0, le=600, description="sacct polling period")

    @field_validator("extra_sbatch_args")
    @classmethod
    def _extra_args(cls, v: list[str]) -> list[str]:
        for arg in v:
            if not arg.startswith("--") or len(arg) < 3 or " " in arg.split("=", 1)[0]:
                raise ValueError(
                    f"{arg!r} is not a long sbatch option; write --name=value or --flag "
                    "(e.g. --constraint=a100)"
                )
            name = arg.split("=", 1)[0]
            if name in SBATCH_RESERVED:
                raise ValueError(
                    f"{name} is set by the slurm runner itself; remove it "
                    f"(reserved: {', '.join(SBATCH_RESERVED)})"
                )
        return v

    @field_validator("container")
    @classmethod
    def _container(cls, v: str) -> str:
        value = v.strip()
        if value == "none":
            return value
        if value.startswith("docker:") and value.split(":", 1)[1].strip():
            return value
        raise ValueError(
            f"{v!r} is not a container mode; write none (the harness runs on the node) or "
            f"docker:<image> (e.g. docker:{registry.EXAMPLE_IMAGE})"
        )

    @model_validator(mode="after")
    def _gpus_or_gres(self) -> SlurmSettings:
        if self.gres is not None and "gpus_per_job" in self.model_fields_set:
            raise ValueError(
                f"give either gpus_per_job ({self.gpus_per_job}) or gres ({self.gres!r}), not both"
            )
        return self

    @property
    def container_image(self) -> str | None:
        return self.container.split(":", 1)[1].strip() if self.container != "none" else None


class UserConfig(_Strict):
    """Every field of the seed's field-placement table that varies by machine."""

    runners: dict[str, str] = Field(default_factory=dict)
    output: OutputSettings = Field(default_factory=OutputSettings)
    measurement: MeasurementSettings = Field(default_factory=MeasurementSettings)
    ui: UISettings = Field(default_factory=UISettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    validity: ValiditySettings = Field(default_factory=ValiditySettings)

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
            if backend not in registry.names():
                raise ValueError(
                    f"runners.{key}: unknown backend; accepted: {', '.join(registry.names())} "
                    f"(or an alias: {', '.join(registry.aliases())})"
                )
            if not isinstance(value, str):
                raise ValueError(
                    f"runners.{key}: must be a string such as local, docker or docker:<image>, got {value!r}"
                )
            from llenergymeasure.config.runner_spec import parse_runner_spec
            from llenergymeasure.errors import RunnerError

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
