from __future__ import annotations

import subprocess
import sys

import llenergymeasure


def test_public_names_are_exactly_the_six() -> None:
    assert set(llenergymeasure.__all__) == {
        "run_experiment",
        "run_study",
        "ExperimentConfig",
        "StudyConfig",
        "ExperimentResult",
        "StudyResult",
    }
    assert len(llenergymeasure.__all__) == 6
    # __version__ is an attribute, not an export: `from llenergymeasure import *` leaves it out
    namespace: dict[str, object] = {}
    exec("from llenergymeasure import *", namespace)
    assert "__version__" not in namespace
    # each public name is the real object from its home module, not a stand-in
    from llenergymeasure import _version, api
    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.config.study import StudyConfig
    from llenergymeasure.results import models
    from llenergymeasure.results.models import ExperimentResult
    from llenergymeasure.results.study_result import StudyResult

    assert llenergymeasure.run_experiment is api.run_experiment
    assert llenergymeasure.run_study is api.run_study
    assert llenergymeasure.ExperimentConfig is ExperimentConfig
    assert llenergymeasure.StudyConfig is StudyConfig
    assert llenergymeasure.ExperimentResult is ExperimentResult
    assert llenergymeasure.StudyResult is StudyResult
    # the public StudyResult is the study record plus from_directory/to_dataframe, no extra field
    assert issubclass(StudyResult, models.StudyResult)
    assert StudyResult.model_fields.keys() == models.StudyResult.model_fields.keys()
    assert llenergymeasure.__version__ == _version.__version__


def test_import_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, llenergymeasure, llenergymeasure.cli;"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'vllm', 'tensorrt_llm', 'docker', 'transformers'));"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_study_runner_is_internal_but_importable() -> None:
    from llenergymeasure.study import StudyRunner
    from llenergymeasure.study.runner import StudyRunner as Defined

    assert StudyRunner is Defined and callable(StudyRunner.run)
    assert "StudyRunner" not in llenergymeasure.__all__
    assert not hasattr(llenergymeasure, "StudyRunner")  # not re-exported at the top level
