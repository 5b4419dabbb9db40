"""The report's quality section: accuracy against J/token (a quality-energy Pareto front), and J
per correct answer per config (docs/quality.md). Absent when no run had a ``quality:`` section.

It says plainly when a run's weights were random (synthetic models): accuracy is then at chance,
and the section shows that the plumbing works, not how good a model is.
"""

from __future__ import annotations

from collections.abc import Sequence

from llenergymeasure.report.data import ConfigPoint
from llenergymeasure.report.embedded_figures import EmbeddedFigures
from llenergymeasure.report.html_cells import esc, stat_cell, table
from llenergymeasure.results.models import StudyResult
from llenergymeasure.results.quality_stats import ACCURACY, ENERGY_PER_CORRECT

RANDOM_WEIGHTS_NOTE = (
    "The weights of {what} are random (a synthetic model): accuracy is at chance, so these "
    "accuracies and joules per correct answer test the measurement's plumbing, not the model."
)


def quality_section(
    study: StudyResult, points: Sequence[ConfigPoint], figs: EmbeddedFigures
) -> str:
    """The section's HTML, or "" when no run scored quality tasks."""
    with_quality = [r for r in study.runs if r.quality is not None]
    if not with_quality:
        return ""
    from llenergymeasure.report.figures import pareto_figure

    parts = ['<h2 id="quality">Quality beside energy</h2>']
    random = sorted(
        {r.config.model for r in with_quality if r.quality and r.quality.weights == "random"}
    )
    if random:
        what = ", ".join(random)
        parts.append(
            f'<p class="warn"><strong>{esc(RANDOM_WEIGHTS_NOTE.format(what=what))}</strong></p>'
        )
    failed = [r.experiment_id for r in with_quality if r.quality is not None and not r.quality.ok]
    if failed:
        parts.append(
            "<p>The quality evaluation failed in part or whole in "
            + esc(", ".join(failed))
            + " (each run's <code>result.json</code>, <code>quality</code>, says why); those tasks "
            "are left out of the figures below.</p>"
        )
    parts.append(
        "<p>Each task ran after the measured window on the same engine instance, in its own energy "
        "window. Accuracy is correct answers over items of the tasks with an accuracy-type metric; "
        "J per correct answer is those tasks' energy over their correct answers. Means over the "
        "valid cycles with 95 % CIs; the standard error of each run's accuracy over its items is in "
        "<code>result.json</code>.</p>"
    )
    rows = []
    tasks = _task_metrics(points)
    for p in points:
        acc = p.stats(ACCURACY)
        if acc.n == 0:
            continue
        row = [esc(p.key), esc(p.label), stat_cell(acc), stat_cell(p.stats(ENERGY_PER_CORRECT))]
        row += [stat_cell(p.stats(name)) for name in tasks]
        rows.append(row)
    if rows:
        headers = ["config", "label", "accuracy", "J per correct answer", *tasks]
        parts.append(table(headers, rows))
    png, keys = pareto_figure(points, ACCURACY, maximise_x=True)
    parts.append(
        figs.add(
            "pareto_quality",
            png,
            alt="Pareto front of energy per token against accuracy",
            caption="Energy per output token (measured window) against accuracy (quality tasks). "
            "Front: "
            + esc(", ".join(keys))
            + "."
            + (" Random weights: accuracy at chance." if random else ""),
        )
    )
    return "\n".join(parts)


def _task_metrics(points: Sequence[ConfigPoint]) -> list[str]:
    """Per-task accuracy-type and J-per-correct metric names present in any summary, in order."""
    seen: dict[str, None] = {}
    for p in points:
        for name in p.summary.metrics if p.summary is not None else {}:
            if name.startswith("quality.") and name.endswith(
                (".acc", ".exact_match", ".energy_per_correct_j")
            ):
                seen.setdefault(name, None)
    return list(seen)
