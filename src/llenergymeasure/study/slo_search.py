"""SLO search (``load.search``): the highest request rate at which the SLO attainment holds.

A serving config with ``load.search: {slo_attainment, rate_rps: [lo, hi], tolerance_rps}`` is
one planned run of the study (the search); the study runner hands it to ``run_search``, which
runs the config at one open-loop rate after another, each an ordinary run recorded in the
manifest as ``<search run id>_rate<k>`` with its own config (``load.rate_rps`` set, no
``search``), so the runs are the same runs a rate grid would make and the study's SLO capacity
(``results/serving_capacity.py``) reads them like any sweep.

Which rate comes next is bisection (``Bisection``): the low end, then the high end, then the
middle of the bracket between the highest rate that met the target and the lowest that missed
it, until the bracket is at most ``tolerance_rps`` wide (or ``max_runs`` runs were made).
``ceil(log2(range / tolerance)) + 2`` runs instead of a grid's ``range / tolerance + 1``. A rate
meets the target when its run is valid and ``serving.full.slo_attainment`` (every request the run
sent) is at least ``slo_attainment``; a run that failed or is invalid counts as a miss.
Attainment falls off a cliff near capacity rather than smoothly, so interpolating on it (regula
falsi) buys nothing over bisection.

The outcome (the highest rate that met the target, the bracket, every run, the lowest energy per
good request among the runs that met the target) is written to ``<search run id>.slo_search.json``
in the study directory and its one-line summary to the search run's manifest entry. On resume the
search starts again and reuses every probe whose result is already there (the same outcomes give
the same rates), so no completed run is measured twice.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.workload import SloSearchConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.results.io import atomic_write_text
from llenergymeasure.results.layout import RESULT_FILE
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study.manifest import ManifestRun, ManifestStore
from llenergymeasure.study.planning import PlannedRun

#: the search's outcome file, after the search run's id, in the study directory
SEARCH_FILE_SUFFIX = ".slo_search.json"

_PROBE_ID = re.compile(r"_rate\d+$")

StopReason = Literal["converged", "below_range", "above_range", "max_runs"]


def is_search(config: ExperimentConfig) -> bool:
    return config.load is not None and config.load.search is not None


def is_probe_id(run_id: str) -> bool:
    """A run the search added to the manifest (not in the study's plan)."""
    return _PROBE_ID.search(run_id) is not None


def refuse_unsupported(plan: Sequence[PlannedRun], concurrent: bool, slurm: bool) -> None:
    """The search decides each run from the last one: one run at a time, on this machine."""
    searching = [r for r in plan if is_search(r.config)]
    if not searching or not (concurrent or slurm):
        return
    where = "execution.concurrent_runs > 1" if concurrent else "the slurm runner"
    raise ConfigError(
        f"load.search (run {searching[0].run_id}) picks each rate from the previous run's result, "
        f"so it cannot run under {where}; run the study with one run at a time on this machine, "
        "or replace load.search by a rate grid (load.rate_rps: [..] in a sweep)"
    )


class Bisection:
    """The root finder alone: which rate to run next, given which rates met the target."""

    def __init__(self, search: SloSearchConfig) -> None:
        self.lo, self.hi = search.rate_rps
        self.tolerance = search.tolerance
        self.max_runs = search.max_runs
        #: the highest rate that met the target, the lowest that missed it
        self.met: float | None = None
        self.missed: float | None = None
        self.n_runs = 0
        self.stopped: StopReason | None = None

    def next_rate(self) -> float | None:
        """The next rate to run (None: the search is over; ``stopped`` says why)."""
        if self.stopped is not None:
            return None
        if self.met is None and self.missed is None:
            return self.lo
        if self.met is None:
            self.stopped = "below_range"
        elif self.missed is None:
            if self.met >= self.hi:
                self.stopped = "above_range"
            else:
                return self._budget(self.hi)
        elif self.missed - self.met <= self.tolerance * (1 + 1e-9):
            self.stopped = "converged"
        else:
            return self._budget(float(f"{(self.met + self.missed) / 2:.6g}"))
        return None

    def _budget(self, rate: float) -> float | None:
        if self.n_runs >= self.max_runs:
            self.stopped = "max_runs"
            return None
        return rate

    def record(self, rate: float, met: bool) -> None:
        self.n_runs += 1
        if met:
            self.met = rate if self.met is None else max(self.met, rate)
        else:
            self.missed = rate if self.missed is None else min(self.missed, rate)


def probe_config(config: ExperimentConfig, rate_rps: float) -> ExperimentConfig:
    """The search's config at one rate: ``load.rate_rps`` set, ``load.search`` removed."""
    data = config.model_dump(mode="json")
    data["load"]["rate_rps"] = rate_rps
    data["load"]["search"] = None
    if config.name:
        data["name"] = f"{config.name}@{rate_rps:g}rps"
    return ExperimentConfig.model_validate(data)


def probe_run(parent: PlannedRun, rate_rps: float, k: int) -> PlannedRun:
    return PlannedRun(
        index=parent.index,
        run_id=f"{parent.run_id}_rate{k}",
        config_index=parent.config_index,
        config=probe_config(parent.config, rate_rps),
        cycle=parent.cycle,
        gap_before_s=parent.gap_before_s,
        gap_kind=parent.gap_kind,
    )


def _read_result(store: ManifestStore, run_id: str) -> ExperimentResult | None:
    entry = store.get(run_id)
    if entry.status != "completed" or not entry.run_dir:
        return None
    try:
        path = store.study_dir / entry.run_dir / RESULT_FILE
        return ExperimentResult.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None


def _measure(
    store: ManifestStore,
    probe: PlannedRun,
    run_probe: Callable[[PlannedRun], RunOutcome],
) -> tuple[ExperimentResult | None, bool]:
    """The probe's result (reused when the manifest already has it) and whether it was run."""
    if store.has(probe.run_id):
        result = _read_result(store, probe.run_id)
        if result is not None:
            return result, False
    else:
        store.append(
            ManifestRun(
                run_id=probe.run_id,
                index=probe.index,
                config_hash=probe.config.config_hash,
                config_index=probe.config_index,
                cycle=probe.cycle,
                backend=probe.config.backend,
            )
        )
    try:
        run_probe(probe)
    except KeyboardInterrupt:
        if store.get(probe.run_id).status == "running":
            store.transition(probe.run_id, "interrupted", message="stopped during an SLO search")
        raise
    return _read_result(store, probe.run_id), True


def run_search(
    store: ManifestStore,
    run: PlannedRun,
    run_probe: Callable[[PlannedRun], RunOutcome],
    gap_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> RunOutcome:
    """Search the rate of ``run`` (a config with ``load.search``); ``run_probe`` runs one rate
    (the study's ``run_attempt``) and ``gap_s`` is left between two runs."""
    assert run.config.load is not None and run.config.load.search is not None
    search = run.config.load.search
    store.transition(run.run_id, "running")
    bisect = Bisection(search)
    probes: list[SloProbe] = []
    measured = 0
    while (rate := bisect.next_rate()) is not None:
        probe = probe_run(run, rate, len(probes) + 1)
        if measured and gap_s > 0:
            sleep(gap_s)
        result, ran = _measure(store, probe, run_probe)
        measured += ran
        window = result.serving.full if result is not None and result.serving else None
        attainment = window.slo_attainment if window is not None else None
        met = bool(result is not None and result.valid and attainment is not None)
        met = met and attainment is not None and attainment >= search.slo_attainment
        bisect.record(rate, met)
        probes.append(
            SloProbe(
                run_id=probe.run_id,
                rate_rps=rate,
                config_hash=probe.config.config_hash,
                status=store.get(probe.run_id).status,
                valid=None if result is None else result.valid,
                slo_attainment=attainment,
                met=met,
                energy_per_good_request_j=None
                if window is None
                else window.energy_per_good_request_j,
                reused=not ran,
            )
        )
    outcome = summarise_search(run.run_id, search, bisect, probes)
    atomic_write_text(
        store.study_dir / f"{run.run_id}{SEARCH_FILE_SUFFIX}", outcome.model_dump_json(indent=2)
    )
    status: Literal["completed", "failed"] = (
        "completed" if any(p.status == "completed" for p in probes) else "failed"
    )
    store.transition(run.run_id, status, message=outcome.note, phase=None)
    return RunOutcome(status=status, run_dir=store.study_dir, message=outcome.note)


def summarise_search(
    run_id: str, search: SloSearchConfig, bisect: Bisection, probes: list[SloProbe]
) -> SloSearchOutcome:
    lo, hi = search.rate_rps
    good = [p for p in probes if p.met and p.energy_per_good_request_j is not None]
    best = min(good, key=lambda p: p.energy_per_good_request_j or 0.0) if good else None
    target = f"{search.slo_attainment:.0%} SLO attainment"
    stopped = bisect.stopped or "max_runs"
    if stopped == "below_range":
        note = f"the lowest rate ({lo:g} req/s) already missed {target}: search lower rates"
    elif stopped == "above_range":
        note = f"the highest rate ({hi:g} req/s) met {target}: the capacity is at least {hi:g}"
    else:
        note = f"{target} held up to {bisect.met:g} req/s, not at {bisect.missed:g} req/s"
        if stopped == "max_runs":
            note += f" (stopped after max_runs = {search.max_runs}, before the tolerance)"
    if best is not None:
        note += (
            f"; lowest energy per good request {best.energy_per_good_request_j:.4g} J at "
            f"{best.rate_rps:g} req/s"
        )
    note += f"; {len(probes)} runs"
    return SloSearchOutcome(
        run_id=run_id,
        target_attainment=search.slo_attainment,
        rate_range_rps=(lo, hi),
        tolerance_rps=search.tolerance,
        stopped=stopped,
        max_rate_rps=bisect.met,
        min_missed_rate_rps=bisect.missed,
        best_energy_per_good_request_j=None if best is None else best.energy_per_good_request_j,
        best_energy_rate_rps=None if best is None else best.rate_rps,
        n_runs=len(probes),
        grid_runs=math.floor((hi - lo) / search.tolerance + 1e-9) + 1,
        probes=probes,
        note=note,
    )


# -- data --------------------------------------------------------------------------------------


class SloProbe(BaseModel):
    """One run of a search: its rate and what it measured."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    rate_rps: float
    config_hash: str
    status: str
    valid: bool | None
    slo_attainment: float | None
    met: bool
    energy_per_good_request_j: float | None
    reused: bool = False


class SloSearchOutcome(BaseModel):
    """``<run id>.slo_search.json``: the highest rate that met the target, and how it was found."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    target_attainment: float
    rate_range_rps: tuple[float, float]
    tolerance_rps: float
    stopped: StopReason
    max_rate_rps: float | None
    min_missed_rate_rps: float | None
    best_energy_per_good_request_j: float | None
    best_energy_rate_rps: float | None
    n_runs: int
    #: the runs a grid from low to high at the tolerance step would have made
    grid_runs: int
    probes: list[SloProbe]
    note: str
