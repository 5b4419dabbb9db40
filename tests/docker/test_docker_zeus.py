"""Zeus in the backend images: ``energy_backend: zeus`` through the docker runner.

The CI machine has no NVIDIA GPU, so Zeus cannot measure here; what these tests prove is that each
image ships Zeus (importable, its monitor classes there), that the image's own meter report
explains why it cannot measure (no NVML) instead of "not installed", and that a run with
``energy_backend: zeus`` in a container completes, records the installed Zeus version and the
reason energy is unavailable, and is never a missing-package failure.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure import ExperimentResult, run_experiment
from tests.docker.docker_helpers import tiny_experiment

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROBE = (
    "import json, zeus.monitor as m\n"
    "from llenergymeasure.energy.select import meter_availability\n"
    "print(json.dumps({'monitor': [m.ZeusMonitor.__name__, m.PowerMonitor.__name__],\n"
    "                  'meters': meter_availability()}))\n"
)


@pytest.mark.parametrize("image_fixture", ["pytorch_image", "vllm_image"])
def test_image_ships_zeus_and_says_why_it_cannot_measure_here(
    image_fixture: str, docker_client: Any, request: pytest.FixtureRequest
) -> None:
    image = request.getfixturevalue(image_fixture)
    raw = docker_client.containers.run(
        image, ["python3", "-c", PROBE], remove=True, network_mode="none", stderr=False
    )
    report = json.loads(raw.decode().strip().splitlines()[-1])
    assert report["monitor"] == ["ZeusMonitor", "PowerMonitor"]
    meters = {name: (ok, why) for name, ok, why in report["meters"]}
    ok, why = meters["zeus"]
    assert ok is False  # no NVIDIA GPU on this machine
    assert "installed, but it needs NVML" in why and "not installed" not in why, why


def test_energy_backend_zeus_run_in_the_pytorch_image(
    pytorch_image: str, tmp_path: Path, shared_model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "user-config.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            output:
              results_dir: {tmp_path / "results"}
              model_cache_dir: {shared_model_cache}
            measurement:
              energy_backend: zeus
            execution:
              config_gap_seconds: 0
              cycle_gap_seconds: 0
            """
        )
    )
    monkeypatch.setenv("LLEM_CONFIG", str(config))
    result = run_experiment(
        tiny_experiment(), runner=f"docker:{pytorch_image}", results_dir=tmp_path / "results"
    )
    assert isinstance(result, ExperimentResult)
    assert result.runner.kind == "docker" and result.output_tokens == 4 * 8
    assert result.environment.packages.get("zeus"), result.environment.packages
    energy = result.energy
    assert energy.available is False and energy.unavailable_reason, energy
    assert "not installed" not in energy.unavailable_reason
