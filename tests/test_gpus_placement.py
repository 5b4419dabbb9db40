"""``gpus``: the field and its hash, its checks, and the runners handing exactly those GPUs over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig
from llenergymeasure.errors import ConfigError, ExperimentError, RunnerError
from llenergymeasure.harness.core import planned_cuda_devices
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.runners.local import LocalRunner
from llenergymeasure.runners.placement import device_entries
from llenergymeasure.runners.resolution import ResolvedRunner
from llenergymeasure.study.execution import executor_for
from tests.fakes import child_targets
from tests.helpers import tiny_experiment

UUID_A = "GPU-aaaaaaaa-1111-2222-3333-444444444444"
UUID_B = "GPU-bbbbbbbb-1111-2222-3333-444444444444"


def _config(**overrides: object) -> ExperimentConfig:
    return ExperimentConfig.from_dict(tiny_experiment(**overrides))


# -- the field and its hash ------------------------------------------------------------------


def test_unset_gpus_leaves_the_hashed_data_as_before() -> None:
    plain = _config()
    assert plain.gpus is None
    assert "gpus" not in plain.hashable_dict() and "gpu_count" not in plain.hashable_dict()
    assert _config(gpus=None).config_hash == plain.config_hash


def test_gpus_hash_records_the_count_not_the_placement() -> None:
    on0, on1 = _config(gpus=[0]), _config(gpus=[1])
    assert on0.config_hash == on1.config_hash  # which physical GPU is placement, not config
    assert on0.hashable_dict()["gpu_count"] == 1 and "gpus" not in on0.hashable_dict()
    assert on0.config_hash != _config().config_hash  # saying "one GPU" is a different config
    two = _config(gpus=[0, 1], pytorch={"device_map": "auto"})
    two_other = _config(gpus=[3, 2], pytorch={"device_map": "auto"})
    assert two.hashable_dict()["gpu_count"] == 2 and two.config_hash == two_other.config_hash
    assert two.config_hash != _config(pytorch={"device_map": "auto"}, gpus=[0]).config_hash


@pytest.mark.parametrize(
    ("gpus", "extra", "expected"),
    [
        ([], {}, ["gpus: an empty list selects no GPU", "gpus: [0]"]),
        ([-1], {}, ["gpus: [-1] has negative index -1", "0, 1, ..."]),
        ([0, 0], {"pytorch": {"device_map": "auto"}}, ["[0, 0] lists GPU 0 more than once"]),
        (
            [0, 1],
            {},
            ["gpus: [0, 1] holds 2 GPUs", "without pytorch.device_map", "device_map: auto"],
        ),
        (
            [0],
            {"backend": "vllm", "vllm": {"tensor_parallel_size": 2}},
            ["gpus: [0] holds 1 GPU(s)", "tensor_parallel_size (2)", "list 2 GPU(s)"],
        ),
        (
            [0, 1, 2],
            {"backend": "tensorrt", "tensorrt": {"tp_size": 2, "pp_size": 2}},
            ["tensorrt.tp_size (2) x tensorrt.pp_size (2) uses 4", "list 4 GPU(s)"],
        ),
    ],
)
def test_bad_gpus_name_the_field_the_value_and_what_works(
    gpus: list[int], extra: dict[str, object], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        _config(gpus=gpus, **extra)
    text = str(info.value)
    for part in expected:
        assert part in text, text


def test_gpus_fitting_the_parallelism_are_accepted() -> None:
    assert _config(gpus=[1]).gpus == [1]
    assert _config(gpus=[1, 0], pytorch={"device_map": "auto"}).gpus == [1, 0]
    vllm = _config(gpus=[2, 3], backend="vllm", vllm={"tensor_parallel_size": 2})
    assert vllm.gpus == [2, 3]


# -- controller-visible indices -> device ids ------------------------------------------------


def test_device_entries_map_through_the_controllers_visible_devices() -> None:
    assert device_entries([1, 0], {}) == ["1", "0"]
    assert device_entries([1], {}, gpu_count=lambda: 2) == ["1"]
    env = {"CUDA_VISIBLE_DEVICES": f"{UUID_A}, 5,{UUID_B},MIG-x"}
    assert device_entries([2, 0], env) == [UUID_B, UUID_A]
    assert device_entries([1], env) == ["5"]
    assert device_entries([3], env) == ["MIG-x"]
    # CUDA stops at the first entry it cannot parse: so does the mapping
    assert device_entries([0], {"CUDA_VISIBLE_DEVICES": "4,-1,6"}) == ["4"]


def test_device_entries_refuse_gpus_that_are_not_visible() -> None:
    with pytest.raises(RunnerError) as info:
        device_entries([0, 2], {"CUDA_VISIBLE_DEVICES": "3,5"})
    text = str(info.value)
    assert "names GPU 2" in text and "CUDA_VISIBLE_DEVICES='3,5' exposes 2 device(s) (3, 5)" in text
    assert "use indices below 2" in text
    with pytest.raises(RunnerError, match=r"this machine has 2 GPU\(s\) \(0..1\)"):
        device_entries([2], {}, gpu_count=lambda: 2)
    with pytest.raises(RunnerError, match="no NVIDIA GPU"):
        device_entries([0], {}, gpu_count=lambda: 0)
    with pytest.raises(RunnerError, match="exposes 0 device"):
        device_entries([0], {"CUDA_VISIBLE_DEVICES": ""})


# -- the local runner's child really sees them ------------------------------------------------


def _request(config: ExperimentConfig) -> HarnessRequest:
    return HarnessRequest(config=config, settings=HarnessSettings(energy_backend="none"))


def _child_env(runner: LocalRunner, config: ExperimentConfig, run_dir: Path) -> dict:
    runner.target = child_targets.report_env
    runner.run(_request(config), run_dir)  # no result: a failed outcome; the env is what counts
    return json.loads((run_dir / "env.json").read_text())


def test_local_child_gets_the_selected_gpus_mapped_through_the_parents_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"{UUID_A},7,{UUID_B}")
    monkeypatch.setenv("NCCL_NVLS_ENABLE", "0")
    seen = _child_env(LocalRunner(gpus=[2, 1]), _config(), tmp_path / "a")
    assert seen["CUDA_VISIBLE_DEVICES"] == f"{UUID_B},7"
    assert seen["NCCL_NVLS_ENABLE"] == "0"  # the rest of the environment is inherited
    # no runner selection: the experiment's own gpus field
    seen = _child_env(LocalRunner(), _config(gpus=[0]), tmp_path / "b")
    assert seen["CUDA_VISIBLE_DEVICES"] == UUID_A
    # neither: the child sees what the parent sees
    seen = _child_env(LocalRunner(), _config(), tmp_path / "c")
    assert seen["CUDA_VISIBLE_DEVICES"] == f"{UUID_A},7,{UUID_B}"
    # the runner's selection (a scheduler's assignment) wins over the field
    seen = _child_env(LocalRunner(gpus=[1]), _config(gpus=[0]), tmp_path / "d")
    assert seen["CUDA_VISIBLE_DEVICES"] == "7"


def test_local_runner_refuses_a_gpu_the_parent_cannot_see_before_starting(
    tmp_path: Path,
) -> None:
    runner = LocalRunner(gpus=[1], environ={"CUDA_VISIBLE_DEVICES": "0"})
    with pytest.raises(RunnerError, match="names GPU 1"):
        runner.run(_request(_config()), tmp_path / "r")
    assert not (tmp_path / "r").exists(), "nothing is started or written for a bad selection"


def test_local_runner_reads_the_given_environment() -> None:
    runner = LocalRunner(gpus=[0, 1], environ={"CUDA_VISIBLE_DEVICES": "4,6"})
    config = _config(gpus=[0, 1], pytorch={"device_map": "auto"})
    assert runner.child_env(_request(config)) == {"CUDA_VISIBLE_DEVICES": "4,6"}
    assert LocalRunner(environ={}).child_env(_request(_config())) == {}


def test_executor_for_forwards_the_placement(tmp_path: Path) -> None:
    local = executor_for(
        ResolvedRunner(backend="pytorch", kind="local", source="default"), tmp_path, gpus=[1]
    )
    assert isinstance(local, LocalRunner) and local.gpus == [1]
    assert (
        executor_for(
            ResolvedRunner(backend="pytorch", kind="local", source="default"), tmp_path
        ).gpus
        is None
    )


# -- inside the experiment: the meter plans exactly the GPUs it holds --------------------------


def test_planned_devices_follow_gpus_and_refuse_a_mismatch() -> None:
    assert planned_cuda_devices(_config(gpus=[3]), 1) == [0]
    shard = _config(gpus=[2, 5], pytorch={"device_map": "auto"})
    assert planned_cuda_devices(shard, 2) == [0, 1]
    with pytest.raises(ExperimentError) as info:
        planned_cuda_devices(shard, 8)
    assert "selects 2 GPU(s) but this process sees 8" in str(info.value)
    assert info.value.phase == "load"
    assert planned_cuda_devices(shard, 0) == []  # no GPU at all: a CPU run, as without gpus
    # unchanged without gpus
    assert planned_cuda_devices(_config(pytorch={"device_map": "auto"}), 4) == [0, 1, 2, 3]
    assert planned_cuda_devices(_config(), 4) == [0]


def test_slurm_jobs_must_ask_for_as_many_gpus_as_the_experiment_lists() -> None:
    from llenergymeasure.config.user import SlurmSettings
    from llenergymeasure.runners.slurm.driver import check_gpus_per_job

    two = _config(gpus=[0, 1], pytorch={"device_map": "auto"})
    check_gpus_per_job(SlurmSettings(gpus_per_job=2), [two, _config()])
    with pytest.raises(RunnerError) as info:
        check_gpus_per_job(SlurmSettings(gpus_per_job=1), [_config(), two])
    text = str(info.value)
    assert "gpus: [0, 1] lists 2 GPU(s)" in text and "slurm.gpus_per_job = 1" in text
    assert "set slurm.gpus_per_job: 2" in text
    check_gpus_per_job(SlurmSettings(gres="gpu:a100:1"), [two])  # gres: the harness checks
