"""Studies through ``--runner slurm`` on a real SLURM cluster (slurmctld, slurmd, slurmdbd).

Each test runs ``llem`` as a separate process, as a user would, against the cluster that
``scripts/slurm-cluster.sh`` starts, with synthetic/tiny-llama on the CPU; it checks the manifest
against SLURM accounting (``sacct``), never against a double.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import tiny_experiment, wait_for_manifest, write
from tests.slurm.conftest import slurm_user_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

LLEM = [sys.executable, "-m", "llenergymeasure"]


def _study(tmp_path: Path, n_configs: int = 2, n_cycles: int = 2, name: str = "s") -> Path:
    data = {
        "name": name,
        "base": tiny_experiment(n=2, batch_size=1, max_output_tokens=2),
        "sweep": {"batch_size": [1, 2][:n_configs]},
        "execution": {"n_cycles": n_cycles, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
    }
    return write(tmp_path / "study.yaml", yaml.safe_dump(data))


def _env(tmp_path: Path, cache: Path, partition: str, **slurm: object) -> dict[str, str]:
    env = dict(os.environ)
    env["LLEM_CONFIG"] = str(slurm_user_config(tmp_path, cache, partition, **slurm))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*LLEM, *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_sigint_default,
    )


def _llem(argv: list[str], env: dict[str, str], timeout: float = 420) -> tuple[int, str]:
    proc = subprocess.run([*LLEM, *argv], env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _manifest(study_dir: Path) -> dict[str, Any]:
    return json.loads((study_dir / "manifest.json").read_text())


def _sacct_jobs(study_dir: Path) -> dict[str, str]:
    """Every job SLURM accounting holds under this study's job name: id -> state."""
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-2hours", "--name", f"llem-{study_dir.name}",
         "-o", "JobID,State"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = {}
    for line in out.splitlines():
        job_id, state = line.split("|")
        jobs[job_id] = state
    return jobs


def _cancel_leftovers(study_dir: Path | None) -> None:
    if study_dir is not None:
        ids = [r["job_id"] for r in _manifest(study_dir)["runs"] if r.get("job_id")]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True)


def test_study_through_slurm_with_one_job_scancelled(
    tmp_path: Path, shared_model_cache: Path, slurm_cluster: str
) -> None:
    """2 configs x 2 cycles end to end; one job scancelled while running is a failed run naming
    the cancel, and the other three complete with their job, node, state and exit code."""
    env = _env(tmp_path, shared_model_cache, slurm_cluster)
    proc = _start(["run", str(_study(tmp_path)), "--runner", "slurm"], env)
    study_dir = None
    try:
        study_dir, m = wait_for_manifest(
            tmp_path / "results", lambda m: any(r["status"] == "running" for r in m["runs"])
        )
        victim = next(r for r in m["runs"] if r["status"] == "running")
        node_file = study_dir / victim["run_dir"] / "node.json"
        deadline = time.monotonic() + 120
        while "harness_started_at" not in (node_file.read_text() if node_file.exists() else ""):
            assert time.monotonic() < deadline, "the job never started the harness"
            time.sleep(0.1)
        time.sleep(1.0)  # mid-run: the harness is importing/loading
        subprocess.run(["scancel", victim["job_id"]], check=True)
        out, _ = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            proc.kill()
        _cancel_leftovers(study_dir)
    assert study_dir is not None
    assert proc.returncode == 1, out  # a failed run: exit 1, the study still completed
    runs = {r["run_id"]: r for r in _manifest(study_dir)["runs"]}
    cancelled = runs.pop(victim["run_id"])
    assert cancelled["status"] == "failed", cancelled
    assert cancelled["scheduler_state"].startswith("CANCELLED")
    assert "cancelled" in cancelled["message"] and victim["job_id"] in cancelled["message"]
    error = json.loads((study_dir / cancelled["run_dir"] / "error.json").read_text())
    assert error["error_type"] == "SlurmCancelled"
    host = socket.gethostname().split(".")[0]
    for r in runs.values():
        assert r["status"] == "completed", r
        assert r["attempts"] == 1 and r["job_id"] and r["node"] == host
        assert r["scheduler_state"] == "COMPLETED" and r["exit_code"] == 0
        assert r["submitted_at"] and r["started_at"] and r["ended_at"]
        result = json.loads((study_dir / r["run_dir"] / "result.json").read_text())
        slurm = result["environment"]["slurm"]
        assert slurm["partition"] == slurm_cluster and slurm["node"] == host
        assert r["job_id"] == f"{slurm['array_job_id']}_{slurm['array_task_id']}"
        assert result["runner"]["kind"] == "slurm"
    study = json.loads((study_dir / "study_result.json").read_text())
    assert len(study["runs"]) == 3 and len(study["failures"]) == 1
    jobs = _sacct_jobs(study_dir)
    assert sorted(jobs) == sorted(r["job_id"] for r in _manifest(study_dir)["runs"])
    assert jobs[victim["job_id"]].startswith("CANCELLED")

    # --resume reruns the cancelled run only: a new job, in a new attempt folder
    code, out = _llem(["run", "--resume", str(study_dir)], env)
    assert code == 0, out
    after = {r["run_id"]: r for r in _manifest(study_dir)["runs"]}
    rerun = after[victim["run_id"]]
    assert rerun["status"] == "completed" and rerun["attempts"] == 2
    assert rerun["job_id"] != victim["job_id"] and rerun["run_dir"].endswith("_a2")
    assert (study_dir / cancelled["run_dir"] / "error.json").exists()  # the first attempt kept
    for run_id, r in runs.items():
        assert after[run_id]["job_id"] == r["job_id"] and after[run_id]["attempts"] == 1
    assert len(_sacct_jobs(study_dir)) == 5


def test_controller_killed_then_resume_reattaches_without_resubmitting(
    tmp_path: Path, shared_model_cache: Path, slurm_cluster: str
) -> None:
    """SIGKILL the controller with jobs queued and running; `llem status` shows them, `llem run
    --resume` reattaches: every run completes once, and sacct holds exactly one job per run."""
    env = _env(tmp_path, shared_model_cache, slurm_cluster)
    proc = _start(["run", str(_study(tmp_path)), "--runner", "slurm"], env)
    study_dir = None
    try:
        study_dir, _m = wait_for_manifest(
            tmp_path / "results",
            lambda m: (
                all(r["job_id"] for r in m["runs"])
                and any(r["status"] == "running" for r in m["runs"])
            ),
        )
        proc.kill()
        proc.wait(30)
        before = {r["run_id"]: r["job_id"] for r in _manifest(study_dir)["runs"]}
        code, out = _llem(["status", str(study_dir)], env)
        assert code == 0, out
        assert all(job in out for job in before.values()), out
        code, out = _llem(["run", "--resume", str(study_dir)], env)
        assert code == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
        _cancel_leftovers(study_dir)
    assert study_dir is not None
    runs = _manifest(study_dir)["runs"]
    assert [r["status"] for r in runs] == ["completed"] * 4
    assert {r["run_id"]: r["job_id"] for r in runs} == before  # reattached, none resubmitted
    assert all(r["attempts"] == 1 for r in runs)
    assert len(list(study_dir.glob("*/result.json"))) == 4
    jobs = _sacct_jobs(study_dir)
    assert sorted(jobs) == sorted(before.values()), jobs
    assert set(jobs.values()) == {"COMPLETED"}


def test_ctrl_c_cancels_exactly_this_studys_jobs(
    tmp_path: Path, shared_model_cache: Path, slurm_cluster: str
) -> None:
    """SIGINT to the controller: every live job of the study is cancelled, runs are marked
    interrupted, exit 130; a job that is not the study's keeps running."""
    other = subprocess.run(
        ["sbatch", "--parsable", "-p", slurm_cluster, "-J", "not-llem", "--mem=100M",
         "-o", "/dev/null", "--wrap", "sleep 120"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    env = _env(tmp_path, shared_model_cache, slurm_cluster)
    proc = _start(["run", str(_study(tmp_path, n_configs=2, n_cycles=1)), "--runner", "slurm"], env)
    study_dir = None
    try:
        study_dir, _m = wait_for_manifest(
            tmp_path / "results", lambda m: any(r["status"] == "running" for r in m["runs"])
        )
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out
        assert f"llem run --resume {study_dir}" in out.replace("\n", "")
        runs = _manifest(study_dir)["runs"]
        live = [r for r in runs if r["status"] != "completed"]
        assert live and all(r["status"] == "interrupted" for r in live), runs
        assert all("scancel" in r["message"] for r in live)
        deadline = time.monotonic() + 30
        while True:
            jobs = _sacct_jobs(study_dir)
            if all(jobs.get(r["job_id"], "").startswith("CANCELLED") for r in live):
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.5)
        state = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", other, "-o", "State"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert state in ("RUNNING", "PENDING"), state  # not this study's: left alone
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", other], capture_output=True)
        _cancel_leftovers(study_dir)


def test_detach_returns_after_submission_and_resume_collects(
    tmp_path: Path, shared_model_cache: Path, slurm_cluster: str
) -> None:
    env = _env(tmp_path, shared_model_cache, slurm_cluster)
    study = _study(tmp_path, n_configs=1, n_cycles=1)
    code, out = _llem(["run", str(study), "--runner", "slurm", "--detach"], env, timeout=120)
    assert code == 0, out
    study_dir = next((tmp_path / "results").glob("*/manifest.json")).parent
    # it returned after submission, without waiting for the jobs: nothing was collected (an
    # invariant, where a bound on the command's wall time depended on the machine's load)
    assert not (study_dir / "study_result.json").exists()
    try:
        assert f"llem status {study_dir}" in out.replace("\n", "")
        run = _manifest(study_dir)["runs"][0]
        assert run["status"] in ("queued", "running", "completed") and run["job_id"]
        code, out = _llem(["run", "--resume", str(study_dir)], env)
        assert code == 0, out
    finally:
        _cancel_leftovers(study_dir)
    after = _manifest(study_dir)["runs"][0]
    assert after["status"] == "completed" and after["job_id"] == run["job_id"]
    assert after["attempts"] == 1
    assert (study_dir / "study_result.json").exists()


@pytest.mark.docker
def test_container_mode_runs_the_backend_image_on_the_node(
    tmp_path: Path, shared_model_cache: Path, slurm_cluster: str
) -> None:
    """slurm.container: docker:<image>: the job runs the harness in the image, as the docker runner
    does, and the result records the image and the SLURM job it ran in."""
    image = os.environ.get("LLEM_CI_PYTORCH_IMAGE", "llenergymeasure:pytorch-ci")
    found = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    if found.returncode != 0:
        reason = f"Docker image {image} is missing (make images-ci) or no daemon"
        if os.environ.get("LLEM_REQUIRE_DOCKER") == "1":
            pytest.fail(f"LLEM_REQUIRE_DOCKER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    env = _env(tmp_path, shared_model_cache, slurm_cluster, container=f"docker:{image}")
    study = _study(tmp_path, n_configs=1, n_cycles=1)
    code, out = _llem(["run", str(study), "--runner", "slurm"], env)
    assert code == 0, out
    study_dir = next((tmp_path / "results").glob("*/manifest.json")).parent
    run = _manifest(study_dir)["runs"][0]
    assert run["status"] == "completed" and run["scheduler_state"] == "COMPLETED"
    result = json.loads((study_dir / run["run_dir"] / "result.json").read_text())
    snapshot = result["environment"]
    assert snapshot["in_container"] and snapshot["container_image"] == image
    assert snapshot["slurm"]["partition"] == slurm_cluster
    # a SLURM job takes no machine-wide device lock: the node's scheduler owns its GPUs
    assert result["runner"] == {
        "kind": "slurm",
        "image": image,
        "source": "cli:--runner",
        "device_lock": None,
    }
    node = json.loads((study_dir / run["run_dir"] / "node.json").read_text())
    assert node["argv"][:2] == ["docker", "run"] and image in node["argv"]
