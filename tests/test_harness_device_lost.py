"""A GPU lost mid-run (issue 30 item 3): the run fails in phase ``energy`` naming the NVML error,
the sampler stopped and the engine's processes ended; the study goes on (or stops, with
fail_fast); ``--resume`` refuses while the lost GPU is still missing, naming its UUID.

The real harness on synthetic tiny-llama (CPU) with the fake NVML raising at chosen points.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.energy import select_meter
from llenergymeasure.errors import ExperimentError, RunnerError
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.outcome import outcome_from_dir
from llenergymeasure.study import runner as study_runner
from llenergymeasure.study.lost_gpus import lost_gpus, refuse_if_gpus_still_missing
from llenergymeasure.study.manifest import Manifest, ManifestStore
from llenergymeasure.study.runner import StudyOptions, StudyRunner
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.helpers import tiny_experiment

ROOT = Path(__file__).resolve().parents[1]


def lose_in_measure(fake: FakeNvml, run_dir: Path, lose: Any) -> Any:
    """A meter factory on the fake NVML's GPU 0 that calls ``lose()`` right after the measured
    window's meter started (read from the harness's own progress.json)."""

    def factory(energy_backend: str, devices: list[int]) -> Any:
        meter = select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)
        real_start = meter.start

        def start() -> None:
            real_start()
            if json.loads((run_dir / "progress.json").read_text())["phase"] == "measure":
                lose()

        meter.start = start  # type: ignore[method-assign]
        return meter

    return factory


def sampler_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("llem-nvml-sampler")]


@pytest.mark.parametrize(
    ("gpu_kw", "how", "expected"),
    [
        ({}, "fails", "failed: GPU is lost (NVML code 15); the GPU fell off the bus"),
        (
            {"fails_with": 999, "fails_calls": ("nvmlDeviceGetFieldValues",)},
            "fails",
            "nvmlDeviceGetFieldValues on GPU 0 (NVML index) failed: Unknown Error (NVML code 999)",
        ),
        ({}, "gone", "it left NVML's device count (2 GPUs at the window's start, 1 at its end)"),
    ],
    ids=["gpu-is-lost", "unknown-error-in-the-sampler", "gone-from-the-count"],
)
def test_a_gpu_lost_in_the_window_fails_the_run_in_phase_energy(
    tmp_path: Path, shared_model_cache: Path, gpu_kw: dict, how: str, expected: str
) -> None:
    fake = FakeNvml([FakeGpu(**gpu_kw), FakeGpu()])
    gpu = fake.gpus[0]
    out = tmp_path / "run"

    def lose() -> None:
        if how == "fails":
            gpu.fails_from_s = fake.now()
        else:
            gpu.gone_from_s = fake.now()

    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment(n=4)),
        settings=HarnessSettings(
            energy_backend="nvml", model_cache_dir=str(shared_model_cache), run_id="t1"
        ),
    )
    with pytest.raises(ExperimentError) as info:
        run_harness(request, out, meter_factory=lose_in_measure(fake, out, lose))
    assert info.value.phase == "energy"
    assert expected in str(info.value) and gpu.uuid in str(info.value)
    error = json.loads((out / "error.json").read_text())
    assert error["phase"] == "energy" and error["error_type"] == "DeviceLostError"
    assert expected in error["message"]
    assert [(g["uuid"], g["nvml_index"]) for g in error["lost_gpus"]] == [(gpu.uuid, 0)]
    assert not (out / "result.json").exists()
    assert sampler_threads() == []  # every reader thread ended with the run


def test_the_engine_process_tree_is_ended_when_the_gpu_is_lost(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """In its own process (as the runners start it) the harness ends the engine's worker
    processes when a GPU is lost: they may never answer a shutdown on a dead device."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fakes.lost_gpu_harness",
            str(tmp_path),
            str(shared_model_cache),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    worker = int((tmp_path / "worker.pid").read_text())
    try:
        assert done.returncode == 1, done.stdout + done.stderr
        error = json.loads((tmp_path / "run" / "error.json").read_text())
        assert error["phase"] == "energy" and "GPU is lost" in error["message"]
        assert f"ended the engine's processes [{worker}]" in (done.stdout + done.stderr)
        assert not _running(worker), "the engine's worker outlived the run"
        assert not [
            n for n in json.loads((tmp_path / "threads.json").read_text()) if "sampler" in n
        ]
    finally:
        if _running(worker):
            os.kill(worker, 9)


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- the study --------------------------------------------------------------------------------


class InProcessHarness:
    """An executor running the real harness in this process with a fake NVML meter whose GPU is
    lost in the measured window of the runs listed in ``lose_in``."""

    def __init__(self, fake: FakeNvml, lose_in: set[str]):
        self.fake, self.lose_in = fake, lose_in
        self.ran: list[str] = []

    def run(
        self, request: HarnessRequest, run_dir: Path, timeout_s: float | None = None
    ) -> RunOutcome:
        run_id = request.settings.run_id or "?"
        self.ran.append(run_id)
        gpu = self.fake.gpus[0]
        gpu.fails_from_s = None

        def lose() -> None:
            if run_id in self.lose_in:
                gpu.fails_from_s = self.fake.now()

        try:
            run_harness(request, run_dir, meter_factory=lose_in_measure(self.fake, run_dir, lose))
        except ExperimentError:
            return outcome_from_dir(run_dir, 1, ended="the harness failed")
        return outcome_from_dir(run_dir, 0, ended="done")


def _study(tmp_path: Path, cache: Path, fail_fast: bool) -> StudyRunner:
    study = StudyConfig.from_dict(
        {
            "name": "lost-gpu",
            "base": tiny_experiment(n=4),
            "sweep": {"batch_size": [1, 2]},
            "execution": {"n_cycles": 1, "cycle_order": "sequential"},
        }
    )
    options = StudyOptions(results_dir=tmp_path, no_gaps=True, fail_fast=fail_fast)
    user = UserConfig.model_validate({"output": {"model_cache_dir": str(cache)}})
    return StudyRunner(study, options, user_config=user)


@pytest.mark.parametrize("fail_fast", [False, True])
def test_the_study_goes_on_after_a_lost_gpu_or_stops_under_fail_fast(
    tmp_path: Path, shared_model_cache: Path, monkeypatch: pytest.MonkeyPatch, fail_fast: bool
) -> None:
    fake = FakeNvml([FakeGpu()])
    runner = _study(tmp_path, shared_model_cache, fail_fast)
    first = runner.plan()[0].run_id
    executor = InProcessHarness(fake, lose_in={first})
    monkeypatch.setattr(study_runner, "executor_for", lambda *a, **k: executor)
    monkeypatch.setattr(study_runner, "DeviceLocker", lambda *a, **k: None)
    result = runner.run()
    manifest = json.loads((Path(result.study_dir) / "manifest.json").read_text())
    states = [(r["run_id"] == first, r["status"], r.get("phase")) for r in manifest["runs"]]
    if fail_fast:
        assert executor.ran == [first]
        assert states == [(True, "failed", "energy"), (False, "pending", None)]
    else:
        assert len(executor.ran) == 2
        assert states == [(True, "failed", "energy"), (False, "completed", None)]
        assert [r.config.batch_size for r in result.runs] == [2]
        assert not math.isnan(result.runs[0].total_energy_j or math.nan)
    [failure] = result.failures
    assert "GPU is lost" in failure.message and fake.gpus[0].uuid in failure.message


# -- resume -----------------------------------------------------------------------------------


def _failed_study(tmp_path: Path, uuid: str) -> ManifestStore:
    """A study folder whose run r1 failed in phase energy having lost GPU ``uuid``."""
    study_dir = tmp_path / "study"
    run_dir = study_dir / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "error.json").write_text(
        json.dumps(
            {
                "phase": "energy",
                "error_type": "DeviceLostError",
                "message": "a measured GPU was lost",
                "lost_gpus": [{"uuid": uuid, "nvml_index": 0, "reason": "GPU is lost"}],
            }
        )
    )
    manifest = Manifest.model_validate(
        {
            "study_name": "s",
            "study_design_hash": "0" * 64,
            "n_cycles": 1,
            "runs": [
                {
                    "run_id": "r1",
                    "index": 0,
                    "config_hash": "c" * 64,
                    "config_index": 0,
                    "cycle": 1,
                    "backend": "pytorch",
                    "status": "failed",
                    "attempts": 1,
                    "run_dir": "r1",
                    "phase": "energy",
                }
            ],
        }
    )
    return ManifestStore(study_dir, manifest)


def test_resume_refuses_while_the_lost_gpu_is_still_missing(tmp_path: Path) -> None:
    gpus = [FakeGpu(), FakeGpu()]
    fake = FakeNvml(gpus)
    store = _failed_study(tmp_path, gpus[0].uuid)
    assert lost_gpus(store) == {gpus[0].uuid: "r1"}
    gpus[0].gone_from_s = 0.0
    with pytest.raises(RunnerError) as info:
        refuse_if_gpus_still_missing(store, fake)
    message = str(info.value)
    assert f"{gpus[0].uuid}: lost during run r1 (its error.json); now NVML does not find" in message
    assert "Bring the GPU back" in message and gpus[1].uuid not in message
    gpus[0].gone_from_s = None  # reset, back on the bus: resume goes on
    refuse_if_gpus_still_missing(store, fake)


def test_resume_on_a_machine_without_nvml_refuses_naming_the_uuid(tmp_path: Path) -> None:
    uuid = "GPU-0a1b2c3d-0000-0000-0000-000000000000"
    store = _failed_study(tmp_path, uuid)
    with pytest.raises(RunnerError, match=f"{uuid}: lost during run r1 .* NVML cannot start"):
        refuse_if_gpus_still_missing(store, FakeNvml(init_error=9))
