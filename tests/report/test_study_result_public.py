"""The exported ``StudyResult`` is the study record plus ``from_directory``/``to_dataframe``.

The record (``results.models.StudyResult``) imports no loader or exporter; the public class sits
above both. These tests pin that the two are the same data: same fields, same JSON, no copy.
"""

from __future__ import annotations

from pathlib import Path

import llenergymeasure
from llenergymeasure.results import models
from llenergymeasure.results.loading import load_study_dir
from llenergymeasure.results.study_result import StudyResult


def test_from_directory_gives_the_exported_class(fixture_study: Path) -> None:
    study = llenergymeasure.StudyResult.from_directory(fixture_study)
    assert type(study) is llenergymeasure.StudyResult is StudyResult
    record = load_study_dir(fixture_study)
    assert type(record) is models.StudyResult
    assert study.model_dump_json() == record.model_dump_json()
    assert study.model_fields_set == record.model_fields_set


def test_from_record_shares_the_runs_and_keeps_the_public_object(fixture_study: Path) -> None:
    record = load_study_dir(fixture_study)
    study = StudyResult.from_record(record)
    assert study is not record and isinstance(study, models.StudyResult)
    assert all(a is b for a, b in zip(study.runs, record.runs, strict=True))
    assert StudyResult.from_record(study) is study
    # the stored JSON reads back into either class alike
    text = (fixture_study / "study_result.json").read_text()
    assert (
        StudyResult.model_validate_json(text).model_dump()
        == models.StudyResult.model_validate_json(text).model_dump()
    )
