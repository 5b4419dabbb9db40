"""The report's serving section: energy per token against achieved throughput and p90 latency,
the SLO line, and the lowest-energy configuration that meets the SLO.

One point per config (means over its valid cycles) of a serving study. A point averages one kind
of window only: the steady-state windows when every valid run of the config has one, else the full
windows of all of them (``ServingPoint.window`` says which), so a mean never mixes a steady window
of one cycle with the full window of another. Runs a validity gate marked invalid never reach a
point; ``excluded_runs`` lists them with their gates. A config *meets the SLO* when at least
``SLO_QUANTILE`` of its requests met it (p90 attainment), the same quantile the latency axis
shows. matplotlib is imported only when the figure is drawn.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llenergymeasure.config.labels import run_labels
from llenergymeasure.report.embedded_figures import EmbeddedFigures
from llenergymeasure.report.html_cells import esc, table
from llenergymeasure.results.models import ExperimentResult, StudyResult

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


def serving_figure(
    points: Sequence[ServingPoint], latency_name: str, bound: float | None, best: Any
) -> bytes:
    from matplotlib.figure import Figure

    from llenergymeasure.report.figures import _png, backend_colour

    fig = Figure(figsize=(10, 4), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2)
    drawn = [p for p in points if p.j_per_token is not None]
    for ax, xs, xlabel in (
        (left, [p.tokens_per_s for p in drawn], "achieved output tokens / s"),
        (right, [p.latency_p90_ms for p in drawn], f"p90 {latency_name} (ms)"),
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("J per output token")
        if not drawn:
            ax.text(
                0.5,
                0.5,
                "energy was not measured",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            continue
        ys = [p.j_per_token for p in drawn]
        colours = [backend_colour(p.backend) for p in drawn]
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None]
        if pairs:
            ax.plot(*zip(*pairs, strict=True), "-", color="#999999", zorder=1)
        for p, x, y, c in zip(drawn, xs, ys, colours, strict=True):
            if x is None:
                continue
            ax.scatter([x], [y], color=c, zorder=2, marker="o" if p.meets_slo else "x")
            ax.annotate(p.load, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
            if p is best:
                ax.scatter(
                    [x],
                    [y],
                    s=220,
                    facecolors="none",
                    edgecolors="#2ca02c",
                    linewidths=2,
                    zorder=3,
                    label="lowest energy meeting the SLO",
                )
        if ax is right and bound is not None:
            ax.axvline(bound, color="#d62728", linestyle="--", label=f"SLO {bound:g} ms")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return bytes(_png(fig))


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "–" if value is None else format(value, spec)


def serving_section(study: StudyResult, figs: EmbeddedFigures) -> str:
    """The section; empty when the study has no serving run."""
    points, latency_name, bound = serving_points(study)
    excluded = excluded_runs(study)
    if not points and not excluded:
        return ""
    best = best_point(points)
    parts = [
        '<h2 id="serving">Serving: energy per token under load</h2>',
        "<p>Each point is one load (means over its valid cycles) from the steady-state window, "
        "or from the full window of every cycle when one of them had no steady state (column "
        "“window”; docs/methodology.md, “Serving mode”). A config meets the SLO when at least "
        f"{SLO_QUANTILE:.0%} of its requests met it (circles; crosses do not).</p>",
    ]
    if excluded:
        parts.append(
            f"<p>{len(excluded)} run(s) failed a validity gate and are left out of every point: "
            + "; ".join(
                f"<code>{esc(i)}</code> ({esc(label)}: {esc(', '.join(g) or 'unnamed gate')})"
                for i, label, g in excluded
            )
            + ".</p>"
        )
    if not points:
        return "\n".join(parts)
    if best is not None:
        parts.append(
            f"<p><strong>Lowest energy meeting the SLO: {esc(best.label)} ({esc(best.load)}), "
            f"{best.j_per_token:.4g} J per output token at {best.tokens_per_s:.4g} tokens/s."
            "</strong></p>"
        )
    elif bound is None and all(p.attainment is None for p in points):
        parts.append("<p>No <code>slo:</code> was set, so no config is singled out.</p>")
    else:
        parts.append("<p>No config with measured energy met the SLO.</p>")
    parts.append(
        figs.add(
            "serving_curves",
            serving_figure(points, latency_name, bound, best),
            alt="energy per output token against achieved throughput and p90 latency",
            caption="J per output token against achieved throughput (left) and p90 "
            f"{esc(latency_name)} (right); dashed: the SLO; ringed: the lowest-energy config "
            "meeting it.",
        )
    )
    rows = [
        [
            ("<strong>" + esc(p.label) + "</strong>") if p is best else esc(p.label),
            esc(p.load),
            f"{p.window} ({p.n_runs})",
            _fmt(p.requests_per_s),
            _fmt(p.tokens_per_s),
            _fmt(p.goodput_rps),
            _fmt(p.attainment, ".0%") if p.attainment is not None else "–",
            _fmt(p.latency_p90_ms),
            _fmt(p.itl_p90_ms),
            _fmt(p.j_per_token, ".4g"),
            _fmt(p.j_per_good_request, ".4g"),
        ]
        for p in points
    ]
    parts.append(
        table(
            [
                "config",
                "load",
                "window (runs)",
                "req/s",
                "tok/s",
                "goodput req/s",
                "SLO met",
                f"p90 {latency_name} ms",
                "p90 ITL ms",
                "J / output token",
                "J / good request",
            ],
            rows,
        )
    )
    return "\n".join(parts)
