"""Results a person can look at: the offline HTML report, its figures, and the flat exports.

Importing this package imports no plotting or dataframe library; matplotlib, pandas and pyarrow
(the ``[report]`` extra) are imported when a report or an export is written.
"""

from __future__ import annotations

from pathlib import Path

from llenergymeasure.report.html import FIGURES_DIR, REPORT_FILE, generate_report
from llenergymeasure.results.models import StudyResult


def generate_study_artifacts(study: StudyResult, study_dir: Path) -> dict[str, Path]:
    """Everything a finished study leaves for people: ``summary.csv``, ``results.parquet``,
    ``report.html`` and ``figures/``. Returns name -> path of what was written.

    The exports come first so that a plotting failure never costs the tables.
    """
    from llenergymeasure.results.export import write_exports

    written = write_exports(study, Path(study_dir))
    written[REPORT_FILE] = generate_report(study, Path(study_dir))
    return written


__all__ = ["FIGURES_DIR", "REPORT_FILE", "generate_report", "generate_study_artifacts"]
