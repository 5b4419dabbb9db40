"""Submitting a study's runs to SLURM through submitit, as one job array per batch.

submitit (``SlurmExecutor.map_array``) writes the sbatch script, pickles each run's
``NodeTask`` into the study's ``.slurm`` folder and submits one array whose throttle
(``--array=0-N%K``) is ``slurm.max_concurrent``. It cannot express everything the user config
allows, so the rest goes through its ``additional_parameters`` (``--no-requeue``, ``--gres``,
``slurm.extra_sbatch_args``). Job states and cancelling go to ``sacct``/``scancel`` directly
(``runners/slurm/state.py``).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from llenergymeasure.config.user import SlurmSettings
from llenergymeasure.errors import RunnerError
from llenergymeasure.runners.slurm.node import NodeTask, run_on_node

SUBMITIT_DIR = ".slurm"


def sbatch_parameters(settings: SlurmSettings, job_name: str, n_tasks: int) -> dict[str, Any]:
    """submitit ``update_parameters`` for one batch of runs."""
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": settings.time_limit_min,
        "cpus_per_task": settings.cpus_per_job,
        "array_parallelism": min(settings.max_concurrent, max(n_tasks, 1)),
        "stderr_to_stdout": True,
        "use_srun": False,  # the job's one process is the harness launcher; no step needed
        "signal_delay_s": 60,
    }
    if settings.partition:
        params["partition"] = settings.partition
    if settings.account:
        params["account"] = settings.account
    if settings.qos:
        params["qos"] = settings.qos
    if settings.mem_gb is not None:
        params["mem"] = (
            f"{int(settings.mem_gb)}GB"
            if settings.mem_gb == int(settings.mem_gb)
            else f"{int(settings.mem_gb * 1024)}MB"
        )
    if settings.gres:
        params["gres"] = settings.gres
    elif settings.gpus_per_job > 0:
        params["gpus_per_node"] = settings.gpus_per_job
    if settings.setup:
        params["setup"] = list(settings.setup)
    extra: dict[str, Any] = {"no_requeue": True}
    for arg in settings.extra_sbatch_args:
        name, _, value = arg[2:].partition("=")
        extra[name.replace("-", "_")] = value if value else True
    params["additional_parameters"] = extra
    return params


def make_executor(settings: SlurmSettings, folder: Path) -> Any:
    try:
        import submitit
    except ImportError:
        raise RunnerError(
            "runner slurm needs submitit: pip install 'llenergymeasure[slurm]'"
        ) from None
    python = settings.python or shlex.quote(sys.executable)
    try:
        return submitit.SlurmExecutor(folder=folder, python=python, max_num_timeout=0)
    except RuntimeError as exc:  # submitit: "Could not detect srun"
        raise RunnerError(f"runner slurm: {exc}; run llem on a SLURM login/submit node") from None


def submit(
    settings: SlurmSettings, study_dir: Path, job_name: str, tasks: list[NodeTask]
) -> list[str]:
    """Submit one array (or one job for a single task); returns the job ids in ``tasks`` order."""
    if not tasks:
        return []
    folder = study_dir / SUBMITIT_DIR / "%j"
    executor = make_executor(settings, folder)
    try:
        executor.update_parameters(**sbatch_parameters(settings, job_name, len(tasks)))
    except ValueError as exc:
        raise RunnerError(f"slurm settings rejected by submitit: {exc}") from None
    try:
        jobs = executor.map_array(run_on_node, tasks)
    except Exception as exc:  # submitit.utils.FailedJobError / FailedSubmissionError
        raise RunnerError(
            f"sbatch refused the study's jobs: {exc}. Check the user config's slurm: section "
            "(partition, account, qos, gpus_per_job/gres, mem_gb, time_limit_min) against "
            "`sinfo` and your cluster's limits"
        ) from None
    return [str(job.job_id) for job in jobs]
