"""Aggregation: the finished runs of a study directory into a ``StudyResult`` and its files.

Writes ``study_result.json``, ``summary.csv`` (standard library only) and, when the ``[report]``
extra is installed, the parquet export and the HTML report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llenergymeasure._version import __version__
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.results.io import atomic_write_text
from llenergymeasure.results.layout import ERROR_FILE, RESULT_FILE, STUDY_RESULT_FILE, SUMMARY_FILE
from llenergymeasure.results.models import ExperimentResult, RunFailure
from llenergymeasure.results.serving_capacity import with_slo_capacity
from llenergymeasure.results.stats import summarise
from llenergymeasure.results.study_result import StudyResult
from llenergymeasure.runners.resolution import ResolvedRunner
from llenergymeasure.study.manifest import ManifestStore
from llenergymeasure.study.planning import Gaps, measurement_protocol
from llenergymeasure.timestamps import utc_now


def collect_study_result(
    store: ManifestStore,
    study: StudyConfig,
    gaps: Gaps,
    started_at: str,
    runners: dict[str, ResolvedRunner],
    env_snapshot: Any,
) -> StudyResult:
    """Read every run the manifest lists, build the ``StudyResult`` and write its files."""
    results: list[ExperimentResult] = []
    failures: list[RunFailure] = []
    for entry in store.manifest.runs:
        run_dir = store.study_dir / entry.run_dir if entry.run_dir else None
        if entry.status == "completed" and run_dir is not None:
            try:
                results.append(
                    ExperimentResult.model_validate_json((run_dir / RESULT_FILE).read_text())
                )
                continue
            except (OSError, ValueError) as exc:
                failures.append(
                    RunFailure(
                        run_id=entry.run_id,
                        config_hash=entry.config_hash,
                        cycle=entry.cycle,
                        phase="result",
                        message=f"result.json unreadable: {exc}",
                    )
                )
                continue
        if entry.status in ("failed", "timeout", "interrupted"):
            err = run_dir / ERROR_FILE if run_dir is not None else None
            failures.append(
                RunFailure(
                    run_id=entry.run_id,
                    config_hash=entry.config_hash,
                    cycle=entry.cycle,
                    status=entry.status if entry.status != "timeout" else "timeout",
                    phase=entry.phase,
                    message=entry.message or entry.status,
                    error_file=str(err) if err is not None and err.exists() else None,
                )
            )
    expansion = study.expand_report()
    n_cycles = store.manifest.n_cycles
    study_result = StudyResult(
        llenergymeasure_version=__version__,
        name=study.name,
        study_design_hash=study.study_design_hash,
        study_dir=str(store.study_dir),
        started_at=started_at,
        ended_at=utc_now(),
        measurement_protocol=measurement_protocol(study, gaps, n_cycles),
        environment=env_snapshot,
        runners={b: r.model_dump() for b, r in runners.items()},
        runs=results,
        summaries=with_slo_capacity(summarise(results, failures), results),
        failures=failures,
        invalid_points=[p.describe() for p in expansion.invalid] + list(expansion.duplicates),
        interrupted=False,
    )
    atomic_write_text(store.study_dir / STUDY_RESULT_FILE, study_result.model_dump_json(indent=2))
    write_summary_csv(study_result, store.study_dir / SUMMARY_FILE)
    write_extras(study_result, store.study_dir)
    return study_result


def write_summary_csv(study_result: StudyResult, path: Path) -> Path:
    """``summary.csv`` with the standard library only, so it exists even without the report extra."""
    from llenergymeasure.results.export import summary_csv_text

    return atomic_write_text(path, summary_csv_text(study_result))


def write_extras(study_result: StudyResult, study_dir: Path) -> None:
    """Parquet export and the HTML report, when the ``[report]`` extra is installed."""
    try:
        from llenergymeasure.report import generate_study_artifacts

        generate_study_artifacts(study_result, study_dir)
    except Exception as exc:  # the report must never cost the results (all already on disk)
        print(
            f"[llem] note: report/exports not written ({type(exc).__name__}: {exc}); "
            f"`llem report {study_dir}` regenerates them once the [report] extra is installed"
        )
