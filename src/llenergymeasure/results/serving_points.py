"""Serving points: one definition of a serving config's figures, for the CLI and the report.

One point per config (means over its valid cycles) of a serving study. A point averages one kind
of window only: the steady-state windows when every valid run of the config has one, else the full
windows of all of them (``ServingPoint.window`` says which), so a mean never mixes a steady window
of one cycle with the full window of another. Runs a validity gate marked invalid never reach a
point; ``excluded_runs`` lists them with their gates. A config *meets the SLO* when at least
``SLO_QUANTILE`` of its requests met it (p90 attainment). ``run_window`` applies the same rule to
one run (``llem run``'s summary of a serving experiment).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from llenergymeasure.config.labels import run_labels
from llenergymeasure.results.models import ExperimentResult, StudyResult
from llenergymeasure.results.serving_models import ServingRecord, ServingWindow

#: a config meets the SLO when at least this fraction of its requests met it
SLO_QUANTILE = 0.9


@dataclass
class ServingPoint:
    label: str
    load: str
    backend: str
    tokens_per_s: float
    requests_per_s: float
    goodput_rps: float | None
    attainment: float | None
    latency_p90_ms: float | None
    itl_p90_ms: float | None
    j_per_token: float | None
    j_per_good_request: float | None
    n_runs: int
    #: the window every run of the point contributed: "steady" or "full" (some run had no steady)
    window: str = "steady"

    @property
    def meets_slo(self) -> bool:
        return self.attainment is not None and self.attainment >= SLO_QUANTILE


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def excluded_runs(study: StudyResult) -> list[tuple[str, str, list[str]]]:
    """(run id, config label, failed gates) of the serving runs a validity gate marked invalid."""
    labels = run_labels(study.runs)
    return [
        (r.experiment_id, labels[r.config_hash], list(r.failed_gates))
        for r in study.runs
        if r.serving is not None and not r.valid
    ]


def serving_points(study: StudyResult) -> tuple[list[ServingPoint], str, float | None]:
    """Points per config (valid runs only), the latency the x-axis shows, and its SLO bound (ms)
    if any."""
    groups: dict[str, list[ExperimentResult]] = {}
    for run in study.runs:
        if run.serving is not None and run.valid:
            groups.setdefault(run.config_hash, []).append(run)
    slo = next((r.config.slo for runs in groups.values() for r in runs if r.config.slo), None)
    use_e2e = slo is not None and slo.ttft_ms is None and slo.e2e_ms is not None
    latency_name = "end-to-end latency" if use_e2e else "time to first token"
    bound = (slo.e2e_ms if use_e2e else slo.ttft_ms) if slo is not None else None
    labels = run_labels(study.runs)
    points = []
    for runs in groups.values():
        records = [r.serving for r in runs if r.serving is not None]
        steady = [rec.steady for rec in records if rec.steady is not None]
        all_steady = len(steady) == len(records)
        windows = steady if all_steady else [rec.full for rec in records]
        lat = [w.e2e_ms if use_e2e else w.ttft_ms for w in windows]
        points.append(
            ServingPoint(
                label=labels[runs[0].config_hash],
                load=runs[0].serving.load,  # type: ignore[union-attr]
                backend=runs[0].config.backend,
                tokens_per_s=statistics.fmean(w.output_tokens_per_s for w in windows),
                requests_per_s=statistics.fmean(w.requests_per_s for w in windows),
                goodput_rps=_mean([w.goodput_rps for w in windows]),
                attainment=_mean([w.slo_attainment for w in windows]),
                latency_p90_ms=_mean([x.p90_ms if x else None for x in lat]),
                itl_p90_ms=_mean([w.itl_ms.p90_ms if w.itl_ms else None for w in windows]),
                j_per_token=_mean([w.energy_per_output_token_j for w in windows]),
                j_per_good_request=_mean([w.energy_per_good_request_j for w in windows]),
                n_runs=len(runs),
                window="steady" if all_steady else "full",
            )
        )
    points.sort(key=lambda p: p.tokens_per_s)
    return points, latency_name, bound


def best_point(points: Sequence[ServingPoint]) -> ServingPoint | None:
    """The lowest J per output token among the configs that meet the SLO."""
    ok = [p for p in points if p.meets_slo and p.j_per_token is not None]
    return min(ok, key=lambda p: p.j_per_token) if ok else None  # type: ignore[arg-type, return-value]


def run_window(record: ServingRecord) -> tuple[str, ServingWindow]:
    """The window one run's serving figures come from: ``steady`` when it has one, else ``full``."""
    if record.steady is not None:
        return "steady", record.steady
    return "full", record.full


def describe_window(name: str, window: ServingWindow) -> str:
    """``steady window: 12.3 s, 41 requests completed in it``."""
    return f"{name} window: {window.duration_s:.3g} s, {window.n_requests} requests completed in it"


def slo_verdict(points: Sequence[ServingPoint], bound: float | None) -> str:
    """What the points say about the SLO when no config can be singled out by energy."""
    if bound is None and all(p.attainment is None for p in points):
        return "No `slo:` was set, so no config is singled out."
    met = [p for p in points if p.meets_slo]
    if met and all(p.j_per_token is None for p in met):
        return (
            f"{len(met)} of {len(points)} config(s) met the SLO (at least {SLO_QUANTILE:.0%} of "
            "requests); energy was not measured, so none is singled out by energy."
        )
    if met:
        return "No config that met the SLO has a measured energy per token."
    return f"No config met the SLO (at least {SLO_QUANTILE:.0%} of its requests)."
