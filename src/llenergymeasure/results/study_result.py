"""``llenergymeasure.StudyResult``: the study record plus loading it back and flattening it.

The record (``results.models.StudyResult``) is pure data at the bottom of the package; the
loader (``results.loading``) and the exporter (``results.export``) import it. This subclass sits
above both, so the record never imports them. It adds no field: its JSON is the record's JSON, and
every function that takes the record takes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llenergymeasure.results import models
from llenergymeasure.results.export import runs_dataframe
from llenergymeasure.results.loading import load_study_dir


class StudyResult(models.StudyResult):
    """A study's aggregate: ``runs`` (one ``ExperimentResult`` each), ``summaries`` (one per config),
    ``failures`` and the measurement protocol. Returned by ``run_study``; read back with
    ``StudyResult.from_directory``."""

    @classmethod
    def from_record(cls, record: models.StudyResult) -> StudyResult:
        """The same study as this class (no copy of the runs, no re-validation)."""
        if isinstance(record, cls):
            return record
        return cls.model_construct(_fields_set=set(record.model_fields_set), **dict(record))

    @classmethod
    def from_directory(cls, path: str | Path) -> StudyResult:
        """Load a study directory back (``study_result.json``, else rebuilt from run folders)."""
        return cls.from_record(load_study_dir(path))

    def to_dataframe(self) -> Any:
        """One row per run with flattened fields (needs pandas)."""
        return runs_dataframe(self)
