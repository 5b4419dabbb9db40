"""What an experiment process imports (issue 26 item 3): the engine it runs, not what it does not
use. A fresh process runs a PyTorch experiment with the request the study would hand it, then
lists the heavy packages it imported (docs/performance.md, "Imports in the experiment process")."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.energy.carbon import estimate_co2
from llenergymeasure.harness.request import HarnessSettings
from llenergymeasure.results.models import RunnerRecord
from llenergymeasure.study.planning import PlannedRun
from llenergymeasure.study.requests import RequestBuilder
from tests.helpers import tiny_experiment

ROOT = Path(__file__).resolve().parents[1]

#: packages a PyTorch run on synthetic prompts has no use for: CodeCarbon (and the pandas and
#: pyarrow it loads at import, 0.8 s here) when the controller already read its figure; the
#: report's and the archive's libraries; the CLI's; other engines; other meters; HF datasets
NOT_IMPORTED = (
    "codecarbon",
    "pandas",
    "pyarrow",
    "pycountry",
    "duckdb",
    "matplotlib",
    "rich",
    "typer",
    "docker",
    "submitit",
    "lm_eval",
    "zeus",
    "datasets",
    "vllm",
    "tensorrt_llm",
)

_CHILD = """
import json, sys
from pathlib import Path
from llenergymeasure.harness.entry import run_request_file
rc = run_request_file(Path(sys.argv[1]), Path(sys.argv[2]))
tops = sorted({m.split(".")[0] for m in sys.modules})
print("MODULES" + json.dumps({"rc": rc, "modules": tops}))
"""


def _settings(model_cache: Path, **measurement: object) -> HarnessSettings:
    user = UserConfig.model_validate(
        {
            "output": {"model_cache_dir": str(model_cache)},
            "measurement": {"energy_backend": "none", **measurement},
        }
    )
    config = ExperimentConfig.from_dict(tiny_experiment())
    run = PlannedRun(1, "run-1", 0, config, 1, 0.0, "none")
    return RequestBuilder(user, {}, False).request(run, RunnerRecord()).settings


needs_codecarbon = pytest.mark.skipif(
    importlib.util.find_spec("codecarbon") is None, reason="codecarbon not installed"
)


@needs_codecarbon
def test_the_study_reads_codecarbons_figure_once_for_its_runs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert settings.carbon_intensity_gco2_kwh is not None and settings.carbon_intensity_gco2_kwh > 0
    assert (settings.carbon_intensity_source or "").startswith("codecarbon:world_average")
    located = _settings(tmp_path, carbon_country_iso_code="FRA")
    assert (located.carbon_intensity_source or "").startswith("codecarbon:FRA")
    # the harness records the location of a figure the controller read, as of one it read itself
    est = estimate_co2(3.6e6, 50.0, 1.0, located.carbon_intensity_source, country_iso_code="fra")
    assert est.country_iso_code == "FRA" and est.co2_g == pytest.approx(50.0)
    # the user's own figure wins, as before
    own = _settings(tmp_path, carbon_intensity_gco2_kwh=123.0)
    assert own.carbon_intensity_gco2_kwh == 123.0 and own.carbon_intensity_source == "user_config"


@needs_codecarbon
def test_a_pytorch_experiment_process_imports_only_what_it_runs(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """The request is the study's (``RequestBuilder``), the process a fresh interpreter."""
    pytest.importorskip("torch")
    from llenergymeasure.harness.request import HarnessRequest

    settings = _settings(shared_model_cache)
    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment()), settings=settings
    )
    request.write(tmp_path / "request.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLEM_")}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "request.json"), str(tmp_path / "run")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("MODULES")]
    assert done.returncode == 0 and line, (done.stdout[-2000:], done.stderr[-3000:])
    seen = json.loads(line[-1][len("MODULES") :])
    assert seen["rc"] == 0
    assert "torch" in seen["modules"] and "transformers" in seen["modules"]  # the engine: kept
    assert sorted(set(NOT_IMPORTED) & set(seen["modules"])) == []
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    # the figure the controller read is the one the result carries, with its location recorded
    assert result["co2"]["intensity_source"] == settings.carbon_intensity_source
    assert result["co2"]["carbon_intensity_gco2_kwh"] == settings.carbon_intensity_gco2_kwh
