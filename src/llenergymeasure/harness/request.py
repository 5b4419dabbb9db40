"""What a runner hands the harness: the experiment plus the machine-local settings it needs.

Serialised as ``CONFIG.json`` for ``python -m llenergymeasure.harness --config CONFIG.json --output DIR``.
The same file serves the local runner (a spawned process) and the docker runner (a container with
``DIR`` bind-mounted), so the harness never needs the user config file itself.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.results.models import RunnerRecord


class HarnessSettings(BaseModel):
    """Machine-local settings resolved on the host (from the user config and env vars)."""

    model_config = ConfigDict(extra="forbid")

    energy_backend: str = "auto"
    model_cache_dir: str | None = None
    baseline_cache_dir: str | None = None
    carbon_intensity_gco2_kwh: float | None = None
    carbon_intensity_source: str | None = None
    datacenter_pue: float | None = None
    datacenter_pue_source: str | None = None
    #: CodeCarbon's lookup location (measurement.carbon_country_iso_code / carbon_region)
    carbon_country_iso_code: str | None = None
    carbon_region: str | None = None
    run_id: str | None = None
    cycle: int | None = None
    #: the prompts' seed for this run (config.seed + cycle - 1 under execution.vary_prompt_seed);
    #: None: config.seed
    prompt_seed: int | None = None
    #: the study runs experiments side by side (execution.concurrent_runs > 1): an idle baseline
    #: measured now may see a neighbour's load, so it is not written to the cache
    concurrent: bool = False
    #: validity-gate and idle-baseline thresholds (user config ``validity:``)
    validity: ValiditySettings = Field(default_factory=ValiditySettings)


class HarnessRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: ExperimentConfig
    runner: RunnerRecord = Field(default_factory=RunnerRecord)
    settings: HarnessSettings = Field(default_factory=HarnessSettings)

    def write(self, path: Path) -> Path:
        from llenergymeasure.results.io import atomic_write_text

        atomic_write_text(path, self.model_dump_json(indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> HarnessRequest:
        return cls.model_validate_json(Path(path).read_text())
