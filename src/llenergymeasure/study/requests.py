"""What the study hands the harness for one run: the one place a ``HarnessRequest`` is built.

Every study loop (one run at a time, side by side, on SLURM) asks ``RequestBuilder`` for the
request of a planned run; only the runner record it names and ``concurrent`` differ between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llenergymeasure.config.user import UserConfig
from llenergymeasure.energy.carbon import offline_intensity
from llenergymeasure.environment.snapshot import context_from_user_config
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.results.models import RunnerRecord
from llenergymeasure.runners.resolution import ResolvedRunner
from llenergymeasure.study.planning import PlannedRun


def runner_record(resolved: ResolvedRunner) -> RunnerRecord:
    """The runner a result names: the resolved runner of its backend, with its provenance."""
    return RunnerRecord(kind=resolved.kind, image=resolved.image, source=resolved.source)


@dataclass(frozen=True)
class RequestBuilder:
    """Builds each run's request from the user config, the environment and the study's
    ``execution.vary_prompt_seed``."""

    user_config: UserConfig
    environ: Mapping[str, str]
    vary_prompt_seed: bool

    def settings(self, run: PlannedRun, concurrent: bool = False) -> HarnessSettings:
        ctx = context_from_user_config(self.user_config, self.environ)
        cache = self.user_config.output.resolved_model_cache_dir()
        measurement = self.user_config.measurement
        if "carbon_intensity_gco2_kwh" not in ctx:
            # CodeCarbon's offline figure, read once in this process: the experiment processes
            # then never import CodeCarbon (and its pandas and pyarrow) to read it again
            found = offline_intensity(
                measurement.carbon_country_iso_code, measurement.carbon_region
            )
            if found is not None:
                ctx["carbon_intensity_gco2_kwh"], ctx["carbon_intensity_source"] = found
        return HarnessSettings(
            energy_backend=measurement.energy_backend,
            carbon_country_iso_code=measurement.carbon_country_iso_code,
            carbon_region=measurement.carbon_region,
            model_cache_dir=str(cache),
            baseline_cache_dir=str(cache / "baseline"),
            run_id=run.run_id,
            cycle=run.cycle,
            concurrent=concurrent,
            validity=self.user_config.validity,
            prompt_seed=(
                run.config.seed + run.cycle - 1 if self.vary_prompt_seed else run.config.seed
            ),
            **ctx,
        )

    def request(
        self, run: PlannedRun, runner: RunnerRecord, *, concurrent: bool = False
    ) -> HarnessRequest:
        """The request of ``run``, run by ``runner``; ``concurrent``: side by side with others
        (its idle baseline is then not cached)."""
        return HarnessRequest(
            config=run.config, runner=runner, settings=self.settings(run, concurrent)
        )
