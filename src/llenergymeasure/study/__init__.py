"""Studies: planning, the manifest, resume and aggregation. ``StudyRunner`` is internal API."""

from llenergymeasure.study.runner import StudyRunner

__all__ = ["StudyRunner"]
