"""``--json`` output of ``llem run`` and ``llem config``: one JSON document on stdout.

The document holds the headline figures a script needs and the paths to everything else; the full
records stay in ``result.json`` / ``study_result.json``. Progress and warnings go to stderr.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llenergymeasure.results.serving_points import run_window, serving_points

if TYPE_CHECKING:
    from llenergymeasure import ExperimentResult, StudyResult

#: headline per-run figures (each an ``ExperimentResult`` field of the same name).
RUN_FIGURES = (
    "total_energy_j",
    "total_energy_above_idle_j",
    "total_energy_above_idle_se_j",
    "energy_per_output_token_j",
    "energy_per_total_token_j",
    "energy_per_output_token_above_idle_j",
    "energy_quantisation_bound_rel",
    "valid",
    "failed_gates",
    "energy_per_request_j",
    "output_tokens_per_s",
    "requests_per_s",
    "duration_s",
    "mean_power_w",
    "input_tokens",
    "output_tokens",
    "n_requests",
)


def emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def experiment_data(result: ExperimentResult, result_path: Path | None) -> dict[str, Any]:
    return {
        "kind": "experiment",
        "run_id": result.experiment_id,
        "config_label": result.config.label(),
        "config_hash": result.config_hash,
        **{name: getattr(result, name) for name in RUN_FIGURES},
        "ttft_ms": result.ttft_ms.model_dump() if result.ttft_ms else None,
        "itl_ms": result.itl_ms.model_dump() if result.itl_ms else None,
        "energy_meter": result.energy.meter,
        "energy_unavailable_reason": result.energy.unavailable_reason,
        "runner": result.runner.model_dump(mode="json"),
        "warnings": [w.model_dump(mode="json") for w in result.warnings],
        "serving": _serving_run(result),
        "result_file": str(result_path) if result_path else None,
        "study_dir": str(result_path.parent.parent) if result_path else None,
    }


def study_data(study: StudyResult) -> dict[str, Any]:
    return {
        "kind": "study",
        "name": study.name,
        "study_dir": study.study_dir,
        "study_design_hash": study.study_design_hash,
        "n_completed": len(study.runs),
        "n_failed": len(study.failures),
        "interrupted": study.interrupted,
        "configs": [
            {
                "config_label": s.label,
                "config_hash": s.config_hash,
                "backend": s.backend,
                "model": s.model,
                "n_completed": s.n_completed,
                "n_failed": s.n_failed,
                "n_invalid": s.n_invalid,
                "run_ids": s.run_ids,
                "invalid_run_ids": s.invalid_run_ids,
                "metrics": {
                    name: m.model_dump(exclude={"values"}) for name, m in s.metrics.items()
                },
            }
            for s in study.summaries
        ],
        "failures": [f.model_dump(mode="json") for f in study.failures],
        "invalid_points": study.invalid_points,
        "runs_with_warnings": sum(1 for r in study.runs if r.warnings),
        # the report's serving points: one definition, the window named per config
        "serving_points": [asdict(p) for p in serving_points(study)[0]],
    }


def _serving_run(result: ExperimentResult) -> dict[str, Any] | None:
    """A serving run's figures from the window the report uses (steady, else full), named."""
    if result.serving is None:
        return None
    name, window = run_window(result.serving)
    return {
        "load": result.serving.load,
        "window": name,
        "steady_unavailable_reason": result.serving.steady_unavailable_reason,
        **window.model_dump(mode="json"),
    }


def print_experiment_json(result: ExperimentResult, result_path: Path | None) -> None:
    emit(experiment_data(result, result_path))


def print_study_json(study: StudyResult) -> None:
    emit(study_data(study))
