"""Run columns of runs side by side (``ExperimentResult.placement``, schema 1.3; empty for runs of
a study that ran one at a time). ``results/export_rows.py`` merges them into ``results.parquet``;
``docs/results.md`` documents each column (a test checks)."""

from __future__ import annotations

import json
from typing import Any

from llenergymeasure.results.models import ExperimentResult

PLACEMENT_COLUMNS: dict[str, str] = {
    "placement.gpus": "GPUs the run held (controller CUDA indices), JSON list; empty when runs went one at a time",
    "placement.devices": "their UUIDs (or CUDA_VISIBLE_DEVICES entries), JSON list",
    "placement.concurrent_runs": "execution.concurrent_runs of the study",
    "placement.n_neighbours": "other runs that overlapped this one in time (on other GPUs)",
    "placement.neighbour_overlap_s": "longest overlap of this run's process with one neighbour's, seconds",
    "placement.neighbour_window_overlap_s": "longest time one neighbour ran during this run's measured window, seconds (what neighbour_load counts; empty when the window was not recorded)",
    "placement.neighbours": "the neighbours' run ids, comma-separated",
}


def placement_values(result: ExperimentResult) -> dict[str, Any]:
    """``PLACEMENT_COLUMNS`` of one run (all None without a placement)."""
    p = result.placement
    if p is None:
        return dict.fromkeys(PLACEMENT_COLUMNS)
    return {
        "placement.gpus": json.dumps(p.gpus),
        "placement.devices": json.dumps(p.devices),
        "placement.concurrent_runs": p.concurrent_runs,
        "placement.n_neighbours": len(p.neighbours),
        "placement.neighbour_overlap_s": max((n.overlap_s for n in p.neighbours), default=0.0),
        "placement.neighbour_window_overlap_s": max(
            (n.window_overlap_s for n in p.neighbours if n.window_overlap_s is not None),
            default=None,
        ),
        "placement.neighbours": ",".join(n.run_id for n in p.neighbours) or None,
    }
