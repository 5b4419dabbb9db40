"""The slurm runner's pure parts: GPU binding from SLURM's variables, the ``slurm:`` user-config
section, sacct parsing, sbatch parameters and how a finished job becomes a run outcome.

No cluster needed (not marked ``slurm``); the cluster tests are in test_slurm_study.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llenergymeasure.config.user import SlurmSettings, load_user_config
from llenergymeasure.environment.slurm import slurm_info
from llenergymeasure.errors import ConfigError, RunnerError
from llenergymeasure.runners.resolution import resolve_runner, resolve_runners
from llenergymeasure.runners.slurm.driver import outcome_for_job
from llenergymeasure.runners.slurm.gpus import gpu_binding
from llenergymeasure.runners.slurm.state import JobState, parse_sacct
from llenergymeasure.runners.slurm.submit import sbatch_parameters
from tests.helpers import write

# -- GPU binding ----------------------------------------------------------------------------------


def test_cuda_visible_devices_set_by_slurm_wins_and_docker_uses_node_ids() -> None:
    # ConstrainDevices=yes: CUDA/NVML see the job's GPUs renumbered from 0; Docker needs node ids
    b = gpu_binding(
        {"CUDA_VISIBLE_DEVICES": "0,1", "SLURM_JOB_GPUS": "2,3", "SLURM_JOB_ID": "7"}, 2
    )
    assert b.cuda_visible_devices == "0,1"
    assert b.node_gpu_ids == ("2", "3")
    assert b.docker_gpus_arg() == '"device=2,3"'
    assert b.source == "CUDA_VISIBLE_DEVICES"


def test_step_gpus_preferred_over_job_gpus_when_cuda_variable_missing() -> None:
    b = gpu_binding({"SLURM_STEP_GPUS": "5", "SLURM_JOB_GPUS": "4,5"}, 1)
    assert (b.cuda_visible_devices, b.node_gpu_ids, b.source) == ("5", ("5",), "SLURM_STEP_GPUS")


def test_job_gpus_and_gpu_device_ordinal_fallbacks() -> None:
    assert gpu_binding({"SLURM_JOB_GPUS": "1,3"}, 2).cuda_visible_devices == "1,3"
    b = gpu_binding({"GPU_DEVICE_ORDINAL": "0"}, 1)
    assert (b.cuda_visible_devices, b.source) == ("0", "GPU_DEVICE_ORDINAL")


def test_uuid_entries_are_kept_for_docker() -> None:
    b = gpu_binding({"CUDA_VISIBLE_DEVICES": "GPU-abc,GPU-def"}, 2)
    assert b.node_gpu_ids == ("GPU-abc", "GPU-def")
    assert b.docker_gpus_arg() == '"device=GPU-abc,GPU-def"'


def test_job_without_gpus_may_use_none() -> None:
    b = gpu_binding({"SLURM_JOB_ID": "9"}, 0)
    assert b.cuda_visible_devices == "" and b.node_gpu_ids == () and b.docker_gpus_arg() is None
    # an empty CUDA_VISIBLE_DEVICES (SLURM's "no GPU") is no allocation either
    assert gpu_binding({"CUDA_VISIBLE_DEVICES": ""}, 0).source == "none"


def test_gpus_requested_but_none_allocated_is_an_error_naming_the_fix() -> None:
    with pytest.raises(RunnerError, match=r"asked for 2 GPU\(s\).*gres.conf.*gpus_per_job: 0"):
        gpu_binding({"SLURM_JOB_ID": "12", "SLURM_JOB_GPUS": "NoDevFiles"}, 2)


def test_snapshot_fields_from_slurm_variables() -> None:
    assert slurm_info({}) is None
    info = slurm_info(
        {
            "SLURM_JOB_ID": "42",
            "SLURM_ARRAY_JOB_ID": "40",
            "SLURM_ARRAY_TASK_ID": "2",
            "SLURM_JOB_PARTITION": "gpu",
            "SLURMD_NODENAME": "node07",
            "SLURM_CLUSTER_NAME": "c1",
            "SLURM_JOB_GPUS": "0,1",
            "SLURM_GPUS_ON_NODE": "2",
            "SLURM_CPUS_ON_NODE": "16",
        }
    )
    assert info is not None
    assert (info.job_id, info.array_job_id, info.array_task_id) == ("42", "40", "2")
    assert (info.partition, info.node, info.allocated_gpus) == ("gpu", "node07", "0,1")
    assert (info.gpus_on_node, info.cpus_on_node) == (2, 16)


# -- the slurm: section of the user config ---------------------------------------------------------


def _load(tmp_path: Path, body: str) -> SlurmSettings:
    return load_user_config(write(tmp_path / "c.yaml", "slurm:\n" + body)).slurm


def test_slurm_section_loads(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        "  partition: gpu\n  account: lab\n  qos: high\n  time_limit_min: 30\n"
        "  cpus_per_job: 8\n  mem_gb: 64\n  gpus_per_job: 2\n  max_concurrent: 3\n"
        "  extra_sbatch_args: ['--constraint=h100', '--exclusive']\n"
        "  container: docker:llenergymeasure:vllm\n",
    )
    assert s.container_image == "llenergymeasure:vllm"
    params = sbatch_parameters(s, "llem-x", n_tasks=10)
    assert params["partition"] == "gpu" and params["account"] == "lab" and params["qos"] == "high"
    assert params["time"] == 30 and params["cpus_per_task"] == 8 and params["mem"] == "64GB"
    assert params["gpus_per_node"] == 2 and params["array_parallelism"] == 3
    extra = params["additional_parameters"]
    assert extra == {"no_requeue": True, "constraint": "h100", "exclusive": True}


def test_defaults_and_gres(tmp_path: Path) -> None:
    s = SlurmSettings()
    assert (s.gpus_per_job, s.max_concurrent, s.container, s.container_image) == (
        1,
        4,
        "none",
        None,
    )
    g = _load(tmp_path, "  gres: gpu:a100:1\n")
    params = sbatch_parameters(g, "j", n_tasks=1)
    assert params["gres"] == "gpu:a100:1" and "gpus_per_node" not in params
    assert params["array_parallelism"] == 1


@pytest.mark.parametrize(
    ("body", "field", "hint"),
    [
        ("  partiton: gpu\n", "slurm.partiton", "did you mean `partition`"),
        ("  max_concurrent: 0\n", "max_concurrent", "greater than or equal to 1"),
        ("  gpus_per_job: -1\n", "gpus_per_job", "greater than or equal to 0"),
        ("  time_limit_min: 0\n", "time_limit_min", "greater than or equal to 1"),
        ("  mem_gb: 0\n", "mem_gb", "greater than 0"),
        ("  container: podman:x\n", "container", "docker:<image>"),
        ("  container: 'docker:'\n", "container", "docker:<image>"),
        ("  extra_sbatch_args: ['-p gpu']\n", "extra_sbatch_args", "--name=value"),
        ("  extra_sbatch_args: ['--array=0-3']\n", "extra_sbatch_args", "set by the slurm runner"),
        ("  gres: gpu:1\n  gpus_per_job: 2\n", "slurm", "either gpus_per_job"),
    ],
)
def test_bad_slurm_settings_are_refused_naming_the_field(
    tmp_path: Path, body: str, field: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, body)
    text = str(err.value)
    assert field in text and hint in text, text


def test_runner_slurm_resolution_and_mixing_refused(tmp_path: Path) -> None:
    cfg = load_user_config(
        write(tmp_path / "c.yaml", "slurm:\n  container: docker:img:1\nrunners:\n  vllm: slurm\n")
    )
    r = resolve_runner("vllm", cfg, environ={})
    assert (r.kind, r.image, r.source.startswith("user_config")) == ("slurm", "img:1", True)
    assert r.describe() == "slurm (docker:img:1)" and r.containerised
    assert resolve_runner("pytorch", cfg, cli_runner="slurm", environ={}).kind == "slurm"
    env = {"LLEM_RUNNER_PYTORCH": "local"}
    assert resolve_runner("pytorch", cfg, cli_runner="slurm", environ=env).kind == "local"
    with pytest.raises(RunnerError, match="either on the SLURM cluster or on this machine"):
        resolve_runners(["pytorch", "vllm"], cfg, environ={})
    # two backends, both on SLURM in containers: allowed (each backend in its own image)
    assert len(resolve_runners(["pytorch", "vllm"], cfg, cli_runner="slurm", environ={})) == 2


# -- accounting states and outcomes ------------------------------------------------------------------


def test_parse_sacct_arrays_exit_codes_and_pending_ranges() -> None:
    text = (
        "15_0|COMPLETED|0:0|node1|2026-01-01T00:00:01|2026-01-01T00:00:09|None\n"
        "15_1|CANCELLED by 0|0:15|node2|2026-01-01T00:00:01|2026-01-01T00:00:05|None\n"
        "15_[2-4%2]|PENDING|0:0|None assigned|Unknown|Unknown|JobArrayTaskLimit\n"
        "16|TIMEOUT|0:0|node1|2026-01-01T00:00:01|2026-01-01T01:00:01|None\n"
        "16.batch|CANCELLED|0:15|node1|x|y|None\n"
    )
    s = parse_sacct(text)
    assert sorted(s) == ["15_0", "15_1", "15_2", "15_3", "15_4", "16"]
    assert s["15_1"].state == "CANCELLED" and s["15_1"].signal == 15 and s["15_1"].terminal
    assert s["15_3"].state == "PENDING" and not s["15_3"].started and not s["15_3"].terminal
    assert s["15_3"].reason == "JobArrayTaskLimit" and s["15_3"].node is None
    assert s["16"].state == "TIMEOUT" and s["15_0"].node == "node1"


def _job(state: str, **kw: object) -> JobState:
    base: dict = {"job_id": "3_1", "state": state.split()[0], "exit_code": 0, "signal": 0,
                  "node": "n1", "start": "2026-01-01T00:00:00", "detail": state}  # fmt: skip
    base.update(kw)
    return JobState(**base)


def test_killed_by_slurm_becomes_a_failed_run_naming_the_cause(tmp_path: Path) -> None:
    for state, status, cause in [
        ("CANCELLED by 0", "failed", "cancelled (scancel)"),
        ("TIMEOUT", "timeout", "time limit"),
        ("NODE_FAIL", "failed", "node running the job failed"),
        ("OUT_OF_MEMORY", "failed", "memory limit"),
    ]:
        run_dir = tmp_path / state.split()[0]
        run_dir.mkdir()
        out = outcome_for_job(run_dir, _job(state))
        assert out.status == status and cause in (out.message or ""), out
        assert "3_1" in (out.message or "") and "n1" in (out.message or "")
        error = json.loads((run_dir / "error.json").read_text())
        assert error["error_type"].startswith("Slurm") and cause in error["message"]


def test_completed_job_with_result_is_completed_and_failed_harness_keeps_its_error(
    tmp_path: Path,
) -> None:
    ok = tmp_path / "ok"
    ok.mkdir()
    (ok / "result.json").write_text("{}")
    (ok / "node.json").write_text(json.dumps({"harness_exit_code": 0}))
    assert outcome_for_job(ok, _job("COMPLETED")).status == "completed"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "error.json").write_text(
        json.dumps({"phase": "load", "error_type": "ExperimentError", "message": "no model"})
    )
    (bad / "node.json").write_text(json.dumps({"harness_exit_code": 1}))
    out = outcome_for_job(bad, _job("FAILED", exit_code=1))
    assert (out.status, out.phase, out.message) == ("failed", "load", "no model")
    # the experiment's own timeout_s, enforced on the node (exit 124)
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "error.json").write_text(json.dumps({"error_type": "Timeout", "message": "timed out"}))
    (slow / "node.json").write_text(json.dumps({"harness_exit_code": 124}))
    assert outcome_for_job(slow, _job("FAILED", exit_code=1)).status == "timeout"


def test_job_that_failed_before_the_harness_says_where_to_look(tmp_path: Path) -> None:
    out = outcome_for_job(tmp_path, _job("FAILED", exit_code=1))
    assert out.status == "failed" and ".slurm" in (out.message or "")


# -- the shared-filesystem check ---------------------------------------------------------------------


def test_first_finished_job_without_its_marker_stops_the_study_naming_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that ran to its end on a node whose results directory is not this one leaves no
    node.json here: the controller stops with an error naming the directory (not a silent loss)."""
    import llenergymeasure.runners.slurm.driver as slurm_mod
    from llenergymeasure.runners.slurm.driver import SlurmStudyDriver
    from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore

    monkeypatch.setattr(slurm_mod, "MARKER_GRACE_S", 0.2)
    study_dir = tmp_path / "study"
    (study_dir / "001").mkdir(parents=True)
    store = ManifestStore(
        study_dir,
        Manifest(
            study_name="s",
            study_design_hash="h",
            n_cycles=1,
            runs=[
                ManifestRun(
                    run_id="001",
                    index=1,
                    config_hash="c",
                    config_index=0,
                    cycle=1,
                    backend="pytorch",
                    status="running",
                    run_dir="001",
                    job_id="5_0",
                )
            ],
        ),
    )
    driver = SlurmStudyDriver(SlurmSettings(), store, object(), None, check=False)
    cancelled = _job("CANCELLED by 0", job_id="5_0")
    driver._check_shared_fs(study_dir / "001", cancelled)  # SLURM's doing: not judged
    assert not driver.fs_checked
    with pytest.raises(RunnerError, match=r"never appeared here.*must be on a filesystem shared"):
        driver._check_shared_fs(study_dir / "001", _job("COMPLETED", job_id="5_0"))
    (study_dir / "001" / "node.json").write_text("{}")
    driver._check_shared_fs(study_dir / "001", _job("COMPLETED", job_id="5_0"))
    assert driver.fs_checked
