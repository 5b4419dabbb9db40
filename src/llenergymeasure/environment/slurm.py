"""What SLURM told the job about itself (``SLURM_*`` variables), for the environment snapshot.

Read on the node, inside the job, so every result run through the slurm runner records the node,
the job id (array element included), the partition and the GPUs the job was allocated.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict


class SlurmInfo(BaseModel):
    """The job a result was measured in; ``None`` in the snapshot outside SLURM."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    array_job_id: str | None = None
    array_task_id: str | None = None
    cluster: str | None = None
    partition: str | None = None
    node: str | None = None
    account: str | None = None
    qos: str | None = None
    cpus_on_node: int | None = None
    gpus_on_node: int | None = None
    #: GPU indices SLURM allocated to the job (``SLURM_JOB_GPUS``/``SLURM_STEP_GPUS``), as given
    allocated_gpus: str | None = None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def slurm_info(environ: Mapping[str, str]) -> SlurmInfo | None:
    """The job's facts from its environment, or ``None`` when not inside a SLURM job."""
    job_id = environ.get("SLURM_JOB_ID") or environ.get("SLURM_JOBID")
    if not job_id:
        return None
    return SlurmInfo(
        job_id=job_id,
        array_job_id=environ.get("SLURM_ARRAY_JOB_ID") or None,
        array_task_id=environ.get("SLURM_ARRAY_TASK_ID") or None,
        cluster=environ.get("SLURM_CLUSTER_NAME") or None,
        partition=environ.get("SLURM_JOB_PARTITION") or None,
        node=environ.get("SLURMD_NODENAME") or None,
        account=environ.get("SLURM_JOB_ACCOUNT") or None,
        qos=environ.get("SLURM_JOB_QOS") or None,
        cpus_on_node=_int(environ.get("SLURM_CPUS_ON_NODE")),
        gpus_on_node=_int(environ.get("SLURM_GPUS_ON_NODE")),
        allocated_gpus=environ.get("SLURM_STEP_GPUS") or environ.get("SLURM_JOB_GPUS") or None,
    )
