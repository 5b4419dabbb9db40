"""The report's serving section: energy per token against achieved throughput and p90 latency,
the SLO line, and the lowest-energy configuration that meets the SLO.

The points are ``results/serving_points.py``'s, the same ``llem run`` prints (one definition of
the window they cover). matplotlib is imported only when the figure is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llenergymeasure.report.embedded_figures import EmbeddedFigures
from llenergymeasure.report.html_cells import esc, table
from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.serving_points import (
    SLO_QUANTILE,
    ServingPoint,
    best_point,
    excluded_runs,
    serving_points,
    slo_verdict,
)

__all__ = ["ServingPoint", "best_point", "excluded_runs", "serving_points", "serving_section"]


def serving_figure(
    points: Sequence[ServingPoint], latency_name: str, bound: float | None, best: Any
) -> bytes:
    from matplotlib.figure import Figure

    from llenergymeasure.report.figures import backend_colour, png

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
    return bytes(png(fig))


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
    else:
        verdict = esc(slo_verdict(points, bound)).replace("`slo:`", "<code>slo:</code>")
        parts.append(f"<p>{verdict}</p>")
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
