"""``llem report DIR``: regenerate the exports and the report of an existing study directory.

Typer-free so that the library (and tests) can call it; the CLI wires it to the command and prints
the returned path.
"""

from __future__ import annotations

from pathlib import Path


def report_command(study_dir: Path, notes: list[str] | None = None) -> Path:
    """Load ``study_dir`` (rebuilding it from the run folders after a resume), rewrite
    ``summary.csv``, ``results.parquet``, ``figures/`` and ``report.html``; return the report's path.

    Raises ``StudyDirError`` (exit code 2) for a path that is not a study directory and
    ``ReportDependencyError`` when the ``[report]`` extra is not installed. A damaged file the
    study can do without (``study_result.json``, ``manifest.json``) is skipped with a line in
    ``notes``.
    """
    from llenergymeasure.report import generate_study_artifacts
    from llenergymeasure.results.layout import REPORT_FILE
    from llenergymeasure.results.loading import load_study_dir

    study = load_study_dir(Path(study_dir), notes)
    return generate_study_artifacts(study, Path(study_dir))[REPORT_FILE]
