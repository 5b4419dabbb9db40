"""The study report: one self-contained ``report.html`` plus the figures as PNG files beside it.

Self-contained means that the file opens offline, on a machine that never saw the study: the CSS is
inline, every figure is embedded as a base64 PNG, and nothing is loaded from anywhere (no script,
font, stylesheet or image reference to a network location). The same PNGs are written to
``figures/`` for papers and slides.
"""

from __future__ import annotations

from pathlib import Path

from llenergymeasure.report.data import config_points, energy_unavailable_reasons, swept_axes
from llenergymeasure.report.embedded_figures import FIGURES_DIR, EmbeddedFigures
from llenergymeasure.report.figure_sections import axes_section, pareto_section, power_section
from llenergymeasure.report.html_page import document
from llenergymeasure.report.quality_section import quality_section
from llenergymeasure.report.serving_sections import serving_section
from llenergymeasure.report.table_sections import (
    environment_section,
    failures_section,
    header_section,
    runs_section,
    summary_section,
    warnings_section,
)
from llenergymeasure.results.export import require
from llenergymeasure.results.layout import REPORT_FILE
from llenergymeasure.results.models import StudyResult

__all__ = ["FIGURES_DIR", "REPORT_FILE", "generate_report"]


def generate_report(study: StudyResult, study_dir: Path) -> Path:
    """Write ``report.html`` and ``figures/*.png`` into ``study_dir``; returns the report's path.

    Needs matplotlib (the ``[report]`` extra). Regenerating replaces the previous report and
    removes figures it no longer draws.
    """
    from llenergymeasure.results.io import atomic_write_text

    require("matplotlib")
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"study directory {str(study_dir)!r} does not exist")
    figs = EmbeddedFigures(study_dir / FIGURES_DIR)
    points = config_points(study)
    axes = swept_axes([p.config for p in points])
    reasons = energy_unavailable_reasons(study)
    energy_note = ("Energy was not measured: " + "; ".join(reasons)) if reasons else None
    body = "\n".join(
        [
            header_section(study, study_dir, points),
            summary_section(points, axes),
            axes_section(points, axes, figs, energy_note),
            pareto_section(points, figs, energy_note),
            quality_section(study, points, figs),
            serving_section(study, figs),
            power_section(study, study_dir, points, figs),
            runs_section(study, points),
            warnings_section(study, points),
            failures_section(study, points),
            environment_section(study),
        ]
    )
    figs.remove_stale()
    return atomic_write_text(
        study_dir / REPORT_FILE, document(f"{study.name} — llenergymeasure report", body)
    )
