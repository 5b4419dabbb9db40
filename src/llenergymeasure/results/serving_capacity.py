"""SLO capacity of a rate sweep: the highest request rate at which at least ``TARGET_ATTAINMENT``
of the requests meet the SLO (DistServe's "goodput"), from the runs of a study.

A sweep is a set of serving configs that differ only in ``load.rate_rps`` (and ``name``), each
with an SLO. Per rate, the attainment is the mean ``serving.full.slo_attainment`` of its valid
runs (the full window: every request the run sent, as DistServe counts). The capacity is the
highest rate at which that rate *and every lower one* met the target, so one lucky high rate
above a failing one does not count. docs/results.md ("SLO capacity") says how to read it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from llenergymeasure.results.models import ConfigSummary, ExperimentResult
from llenergymeasure.results.serving_models import SloCapacity

#: the share of requests that must meet the SLO (DistServe uses 90 %)
TARGET_ATTAINMENT = 0.9


def _sweep_key(result: ExperimentResult) -> str | None:
    """The config without its rate and name (None: not an open-loop serving config with an SLO)."""
    cfg = result.config
    if cfg.workload != "serving" or cfg.slo is None or cfg.load is None:
        return None
    if cfg.load.rate_rps is None:
        return None
    data = cfg.model_dump(mode="json")
    data.pop("name", None)
    data["load"].pop("rate_rps", None)
    return json.dumps(data, sort_keys=True, default=str)


def slo_capacity(results: Sequence[ExperimentResult]) -> dict[str, SloCapacity]:
    """Per config hash of every config in a sweep of at least two rates, the sweep's capacity."""
    sweeps: dict[str, dict[float, list[ExperimentResult]]] = {}
    for r in results:
        key = _sweep_key(r)
        if key is not None:
            rate = float(r.config.load.rate_rps)  # type: ignore[union-attr,arg-type]
            sweeps.setdefault(key, {}).setdefault(rate, []).append(r)
    out: dict[str, SloCapacity] = {}
    for by_rate in sweeps.values():
        if len(by_rate) < 2:
            continue
        rates = sorted(by_rate)
        attain: list[float | None] = []
        counts: list[int] = []
        for rate in rates:
            vals = [
                r.serving.full.slo_attainment
                for r in by_rate[rate]
                if r.valid and r.serving is not None and r.serving.full.slo_attainment is not None
            ]
            counts.append(len(vals))
            attain.append(sum(vals) / len(vals) if vals else None)
        best: float | None = None
        for rate, a in zip(rates, attain, strict=True):
            if a is None or a < TARGET_ATTAINMENT:
                break
            best = rate
        if best is None:
            note = (
                f"the lowest swept rate ({rates[0]:g} req/s) already missed "
                f"{TARGET_ATTAINMENT:.0%} attainment (or had no valid run): sweep lower rates"
            )
        elif best == rates[-1]:
            note = (
                f"every swept rate met {TARGET_ATTAINMENT:.0%}: the capacity is at least "
                f"{best:g} req/s; sweep higher rates to bound it"
            )
        else:
            note = (
                f"{TARGET_ATTAINMENT:.0%} of requests met the SLO up to {best:g} req/s; the next "
                "swept rate missed it (the capacity lies between the two)"
            )
        hashes = [by_rate[rate][0].config_hash for rate in rates]
        record = SloCapacity(
            target_attainment=TARGET_ATTAINMENT,
            rates_rps=rates,
            attainment=attain,
            n_runs=counts,
            config_hashes=hashes,
            max_rate_rps=best,
            note=note,
        )
        for h in hashes:
            out[h] = record
    return out


def with_slo_capacity(
    summaries: list[ConfigSummary], results: Sequence[ExperimentResult]
) -> list[ConfigSummary]:
    """``summaries`` with each rate-sweep config's ``slo_capacity`` filled in."""
    capacity = slo_capacity(results)
    return [
        s.model_copy(update={"slo_capacity": capacity[s.config_hash]})
        if s.config_hash in capacity
        else s
        for s in summaries
    ]
