"""Flat exports of a study: one row per run (``results.parquet``) and one per config (``summary.csv``).

Researchers load results into pandas, R or a spreadsheet; nested JSON is awkward there. This module
flattens each ``ExperimentResult`` into a row with a *stable* set of columns (every config field of
every backend section, ``None`` where it does not apply): ``StudyResult.to_dataframe()`` always has
all of them. ``results.parquet`` leaves out the columns no run of its study fills (another backend's
config, serving figures of an offline study, ...), keeping the order: every column costs a reader
(DuckDB, pyarrow) time in the file's footer, and the results archive opens every study's file for a
query over the ``runs`` view (docs/performance.md measures what the sparse file saves).
Readers that combine files (``pd.concat``, DuckDB ``union_by_name``, the archive's ``runs`` view)
fill the missing columns with nulls. Every column is listed, with its meaning,
in ``docs/results.md``; ``run_columns()`` and ``summary_columns()`` (``results.export_columns``) are
the authoritative lists and a test checks the two agree. The rows are built in
``results.export_rows``; this module holds the dataframes and the files.

The row builders use only the standard library; pandas and pyarrow (the ``[report]`` extra) are
imported inside the functions that need them, so the study runner can always write ``summary.csv``.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from llenergymeasure.errors import LLEMError
from llenergymeasure.results.export_columns import run_columns, summary_columns
from llenergymeasure.results.export_rows import run_records, summary_metrics, summary_records
from llenergymeasure.results.layout import RESULTS_PARQUET, SUMMARY_FILE
from llenergymeasure.results.models import StudyResult


class ReportDependencyError(LLEMError):
    """pandas, pyarrow or matplotlib (the ``[report]`` extra) is not installed."""

    exit_code = 1


def require(module: str) -> Any:
    """Import an optional dependency of the ``[report]`` extra, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ReportDependencyError(
            f"{module} is needed for results exports and the report but is not installed "
            f"({exc}); install it with: pip install 'llenergymeasure[report]'"
        ) from exc


# -- dataframes and files -------------------------------------------------------------------------


def runs_dataframe(study: StudyResult) -> Any:
    """One row per completed run, with the columns of ``run_columns()`` (needs pandas).

    Column dtypes are pandas' nullable types (``Int64``, ``Float64``, ``boolean``, ``string``) so a
    missing value stays missing instead of turning an integer column into floats.
    """
    pd = require("pandas")
    frame = pd.DataFrame.from_records(run_records(study), columns=run_columns())
    return frame.convert_dtypes()


def summary_dataframe(study: StudyResult) -> Any:
    """One row per config with ``<metric>_<stat>`` columns (needs pandas)."""
    pd = require("pandas")
    cols = summary_columns(summary_metrics(study.summaries))
    return pd.DataFrame.from_records(summary_records(study), columns=cols).convert_dtypes()


def summary_csv_text(study: StudyResult) -> str:
    """``summary.csv`` as text, written with the standard library only."""
    cols = summary_columns(summary_metrics(study.summaries))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for rec in summary_records(study):
        writer.writerow({k: ("" if v is None else v) for k, v in rec.items()})
    return buf.getvalue()


def write_exports(study: StudyResult, study_dir: Path) -> dict[str, Path]:
    """Write ``summary.csv`` and ``results.parquet`` into ``study_dir``; returns name -> path.

    ``summary.csv`` is written first and needs nothing beyond the standard library, so a missing
    pyarrow (raised as ``ReportDependencyError``) never costs the per-config summary.
    ``results.parquet`` holds the columns at least one run fills (all of them for a study without
    completed runs), in ``run_columns()`` order.
    """
    from llenergymeasure.results.io import atomic_write_text

    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"study directory {str(study_dir)!r} does not exist")
    written: dict[str, Path] = {}
    written[SUMMARY_FILE] = atomic_write_text(study_dir / SUMMARY_FILE, summary_csv_text(study))
    require("pyarrow")
    frame = runs_dataframe(study)
    if len(frame):  # an empty study keeps every column, so its file still shows the schema
        frame = frame.loc[:, frame.notna().any(axis=0)]
    target = study_dir / RESULTS_PARQUET
    tmp = study_dir / f".{RESULTS_PARQUET}.tmp"
    try:
        frame.to_parquet(tmp, index=False, engine="pyarrow")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    written[RESULTS_PARQUET] = target
    return written
