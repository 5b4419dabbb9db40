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
        "__version__",
    }
    for name in llenergymeasure.__all__:
        assert hasattr(llenergymeasure, name)


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

    assert StudyRunner.__name__ == "StudyRunner"
    assert "StudyRunner" not in llenergymeasure.__all__
