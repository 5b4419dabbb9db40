"""What a SLURM job runs on its node: one experiment, exactly as the local runner would.

Submitted through submitit (``runners/slurm/submit.py``), so this module is imported on the node
by the same Python the controller runs (or ``slurm.python``). Per job it:

1. writes ``node.json`` in the run folder (node, job id, start time): the controller reads it back
   to prove the results directory is shared with the nodes, and keeps it beside the result;
2. waits the run's thermal gap, holding its GPUs idle (gaps apply per job, see docs/runners.md);
3. binds the job's GPUs (``runners/slurm/gpus.py``) and starts the harness in a fresh process
   group, ``python -m llenergymeasure.harness --config request.json --output RUN_DIR`` (or the
   same command in ``docker run`` for ``slurm.container: docker:<image>``), its output in
   ``run.log``;
4. records the harness's exit in ``node.json`` and raises when it failed, so ``sacct`` shows the
   job FAILED (submitit turns an exception into a failed job).

A ``timeout_s`` from the experiment stops the harness (exit 124 recorded, error.json written).
Any signal submitit turns into an exception (SLURM's warning before the time limit) stops the
harness too, and the cause is written before the job ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from llenergymeasure.results.layout import (
    ERROR_FILE,
    LOG_FILE,
    NODE_FILE,
    PROGRESS_FILE,
    REQUEST_FILE,
)
from llenergymeasure.timestamps import utc_now

TIMEOUT_EXIT = 124


@dataclass
class NodeTask:
    """Everything one job needs, pickled by submitit into the study's ``.slurm`` folder."""

    run_dir: str
    gap_s: float = 0.0
    timeout_s: float | None = None
    requested_gpus: int = 0
    #: ``slurm.container: docker:<image>``: the node runs the harness in this image
    image: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


class HarnessFailed(RuntimeError):
    """Raised in the job so that SLURM accounting records it FAILED (details in error.json)."""


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _write_error(run_dir: Path, error_type: str, message: str, exit_code: int | None) -> None:
    if (run_dir / ERROR_FILE).exists():
        return
    phase = None
    with contextlib.suppress(OSError, ValueError, AttributeError):
        phase = json.loads((run_dir / PROGRESS_FILE).read_text()).get("phase")
    _write_json(
        run_dir / ERROR_FILE,
        {
            "phase": phase,
            "error_type": error_type,
            "message": message,
            "exit_code": exit_code,
            "traceback": None,
        },
    )


def harness_argv(
    task: NodeTask, gpu_ids: tuple[str, ...], env: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The experiment's command and its environment: the harness entry point, bare, or in the
    backend's container built exactly as the docker runner builds it (``experiment_container``),
    with the job's GPUs (node ids) and its ``SLURM_*`` variables for the environment snapshot."""
    run_dir = Path(task.run_dir)
    if task.image is None:
        argv = [sys.executable, "-m", "llenergymeasure.harness"]
        argv += ["--config", str(run_dir / REQUEST_FILE), "--output", str(run_dir)]
        return argv, env
    from llenergymeasure.harness.request import HarnessRequest
    from llenergymeasure.runners.docker.container_spec import docker_run_argv
    from llenergymeasure.runners.docker.experiment_container import (
        ContainerSettings,
        experiment_container_spec,
        experiment_mounts,
    )

    settings = ContainerSettings(
        image=task.image,
        gpus=list(gpu_ids) if gpu_ids else None,
        extra_env={k: v for k, v in env.items() if k.startswith("SLURM")},
        environ=env,
    )
    request_path = run_dir / REQUEST_FILE
    request = HarnessRequest.read(request_path)
    mounts = experiment_mounts(settings, request, run_dir)
    spec = experiment_container_spec(settings, run_dir, request_path, _image_id(task.image), mounts)
    argv, from_caller = docker_run_argv(spec)
    return argv, {**env, **from_caller}


def _image_id(image: str) -> str:
    """The image's id on this node (``docker image inspect``), or a RunnerError naming the fix."""
    from llenergymeasure.errors import RunnerError

    try:
        proc = subprocess.run(
            ["docker", "image", "inspect", "--format", "{{.Id}}", image],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunnerError(f"docker is not usable on {socket.gethostname()}: {exc}") from None
    if proc.returncode != 0:
        raise RunnerError(
            f"image {image} is not on node {socket.gethostname()} ({proc.stderr.strip()}): load it "
            "on every node (docker load < images.tar.gz), or set slurm.container: none"
        )
    return proc.stdout.strip()


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_on_node(task: NodeTask) -> int:
    """The job's function (see the module docstring). Returns 0 when result.json was written."""
    from llenergymeasure.errors import RunnerError
    from llenergymeasure.runners.slurm.gpus import gpu_binding

    run_dir = Path(task.run_dir)
    node: dict[str, object] = {
        "host": socket.gethostname(),
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "node": os.environ.get("SLURMD_NODENAME"),
        "partition": os.environ.get("SLURM_JOB_PARTITION"),
        "started_at": utc_now(),
        "pid": os.getpid(),
    }
    _write_json(run_dir / NODE_FILE, node)
    if task.gap_s > 0:
        time.sleep(task.gap_s)
    try:
        binding = gpu_binding(os.environ, task.requested_gpus)
    except RunnerError as exc:
        _write_error(run_dir, "SlurmGpuBinding", str(exc), None)
        raise HarnessFailed(str(exc)) from None
    node["gpus"] = {"cuda_visible_devices": binding.cuda_visible_devices, "source": binding.source}
    env = dict(os.environ)
    env.update(task.extra_env)
    env["CUDA_VISIBLE_DEVICES"] = binding.cuda_visible_devices
    try:
        argv, env = harness_argv(task, binding.node_gpu_ids, env)
    except (RunnerError, OSError, ValueError) as exc:
        _write_error(run_dir, "SlurmContainer", str(exc), None)
        raise HarnessFailed(str(exc)) from None
    node["argv"] = argv
    node["harness_started_at"] = utc_now()
    _write_json(run_dir / NODE_FILE, node)
    code: int | None = None
    with open(run_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            code = proc.wait(task.timeout_s)
        except subprocess.TimeoutExpired:
            _stop(proc)
            code = TIMEOUT_EXIT
            _write_error(
                run_dir,
                "Timeout",
                f"the experiment timed out after {task.timeout_s:g} s (its timeout_s) and was stopped",
                code,
            )
        except BaseException as exc:  # submitit's time-limit signal, or anything else
            _stop(proc)
            _write_error(
                run_dir,
                "SlurmTimeLimit" if "timed-out" in str(exc) else "SlurmSignal",
                f"the job was stopped on {node['host']} ({type(exc).__name__}: {exc}); "
                "raise slurm.time_limit_min in the user config if the time limit was too short",
                proc.returncode,
            )
            node["harness_exit_code"] = proc.returncode
            node["ended_at"] = utc_now()
            _write_json(run_dir / NODE_FILE, node)
            raise
    node["harness_exit_code"] = code
    node["ended_at"] = utc_now()
    _write_json(run_dir / NODE_FILE, node)
    if code != 0:
        if code is not None and code < 0:
            try:
                how = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"killed by signal {-code}"
            _write_error(
                run_dir, "ProcessDied", f"the experiment process was {how} on {node['host']}", code
            )
        raise HarnessFailed(f"the harness exited with status {code}; see {run_dir / ERROR_FILE}")
    return 0
