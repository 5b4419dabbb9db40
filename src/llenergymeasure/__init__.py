"""LLenergyMeasure: measure the energy and performance of LLM inference.

The stable API is exactly the six names in ``__all__``; everything else is internal and may change.
``llenergymeasure.__version__`` is an attribute, not an export.
Importing this package loads no inference engine, no torch and no Docker SDK.
"""

from llenergymeasure._version import __version__ as __version__
from llenergymeasure.api import run_experiment, run_study
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.results.study_result import StudyResult

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "StudyConfig",
    "StudyResult",
    "run_experiment",
    "run_study",
]
