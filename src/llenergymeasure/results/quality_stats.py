"""Quality figures of a run (``ExperimentResult.quality``) as named numbers, and as run columns.

``quality_metric_values`` gives what the study statistics aggregate across cycles (mean, SD,
95 % CI, like every energy metric, ``results/stats.py``): per task ``quality.<task>.<metric>``
(``.<filter>`` appended for a filtered metric), ``quality.<task>.energy_per_item_j``,
``quality.<task>.energy_per_correct_j`` and ``quality.<task>.energy_j``; over the tasks that have
an accuracy-type metric, ``quality_accuracy`` (correct answers / items) and
``quality_energy_per_correct_j`` (their energy / their correct answers).

``QUALITY_COLUMNS`` and ``quality_values`` are the fixed columns of ``results.parquet`` (the task
names vary between studies, so per-task figures go into one JSON cell, ``quality.tasks_json``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from llenergymeasure.results.models import ExperimentResult

#: the over-all figures, by name (``ConfigSummary.metrics`` and the run columns)
ACCURACY = "quality_accuracy"
ENERGY_PER_CORRECT = "quality_energy_per_correct_j"

QUALITY_COLUMNS: dict[str, str] = {
    "quality.ok": "every quality task evaluated (empty without a quality: section)",
    "quality.weights": "random for synthetic models: accuracy at chance",
    "quality.tasks": "the lm-eval tasks evaluated, comma-separated",
    "quality.n_items": "items evaluated over the tasks with an accuracy-type metric",
    "quality.n_correct": "their correct answers (accuracy-type metric x items, summed)",
    "quality_accuracy": "quality.n_correct / quality.n_items",
    "quality.energy_j": "energy of those tasks' windows (after the measured window, apart from it)",
    "quality_energy_per_correct_j": "quality.energy_j / quality.n_correct: J per correct answer",
    "quality.duration_s": "the whole quality phase",
    "quality.lm_eval_version": "lm-evaluation-harness version",
    "quality.tasks_json": "per task: metrics with stderr, items, tokens, energy, J per item and "
    "per correct answer, task hash (JSON)",
}


def _totals(result: ExperimentResult) -> tuple[int, float, float | None]:
    """(items, correct answers, their energy or None) over the tasks with a correct metric."""
    q = result.quality
    items, correct, energy = 0, 0.0, 0.0
    energy_known = True
    for t in q.tasks if q is not None else []:
        if not t.ok or t.n_correct is None or not t.n_items:
            continue
        items += t.n_items
        correct += t.n_correct
        if t.energy_j is None:
            energy_known = False
        else:
            energy += t.energy_j
    return items, correct, (energy if energy_known and items else None)


def quality_metric_values(result: ExperimentResult) -> dict[str, float]:
    """The run's quality figures by metric name (empty without a quality block)."""
    q = result.quality
    if q is None:
        return {}
    out: dict[str, float] = {}
    for t in q.tasks:
        if not t.ok:
            continue
        prefix = f"quality.{t.task}."
        for m in t.metrics:
            if m.value is not None:
                out[prefix + m.name + ("" if m.filter == "none" else f".{m.filter}")] = m.value
        for name in ("energy_per_item_j", "energy_per_correct_j", "energy_j"):
            value = getattr(t, name)
            if value is not None:
                out[prefix + name] = value
    items, correct, energy = _totals(result)
    if items:
        out[ACCURACY] = correct / items
        if energy is not None and correct > 0:
            out[ENERGY_PER_CORRECT] = energy / correct
    return out


def quality_series(results: Sequence[ExperimentResult]) -> dict[str, list[float]]:
    """Each quality metric's values over ``results`` (those that have it), names in first-seen order."""
    series: dict[str, list[float]] = {}
    for r in results:
        for name, value in quality_metric_values(r).items():
            series.setdefault(name, []).append(value)
    return series


def quality_values(result: ExperimentResult) -> dict[str, Any]:
    """The run's ``QUALITY_COLUMNS`` (empty without a quality block)."""
    q = result.quality
    if q is None:
        return {}
    items, correct, energy = _totals(result)
    figures = quality_metric_values(result)
    return {
        "quality.ok": q.ok,
        "quality.weights": q.weights,
        "quality.tasks": ",".join(t.task for t in q.tasks) or None,
        "quality.n_items": items or None,
        "quality.n_correct": correct if items else None,
        "quality_accuracy": figures.get(ACCURACY),
        "quality.energy_j": energy,
        "quality_energy_per_correct_j": figures.get(ENERGY_PER_CORRECT),
        "quality.duration_s": q.duration_s,
        "quality.lm_eval_version": q.lm_eval_version,
        "quality.tasks_json": json.dumps([t.model_dump(mode="json") for t in q.tasks]),
    }
