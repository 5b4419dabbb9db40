"""Which GPUs a SLURM job may use, from the variables SLURM sets on the node.

A job holds its GPUs alone (``--gpus-per-node``/``--gres``); measuring any other GPU of the node
would report someone else's energy. SLURM describes the allocation in several variables:

* ``CUDA_VISIBLE_DEVICES``: set by SLURM when gres is configured; with ``ConstrainDevices=yes``
  it is renumbered from 0 inside the job's device cgroup (and NVML then sees only those GPUs
  too), otherwise it holds the node's own indices. Either way CUDA and NVML agree inside the job,
  so ``energy/devices.py`` maps it as it does everywhere else.
* ``SLURM_STEP_GPUS`` / ``SLURM_JOB_GPUS``: the node's own indices of the allocation (never
  renumbered). Used when ``CUDA_VISIBLE_DEVICES`` is missing, and always for
  ``docker run --gpus device=...``, because the Docker daemon sees the whole node.
* ``GPU_DEVICE_ORDINAL``: older SLURM/gres plugins.

A job that asked for no GPU gets ``CUDA_VISIBLE_DEVICES=""``: it may use none. A job that asked
for GPUs and sees no allocation is an error (gres not configured on the node), never a silent run
on every GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from llenergymeasure.errors import RunnerError


@dataclass(frozen=True)
class GpuBinding:
    """The GPUs one job runs on, and how they were found."""

    #: the value to give the harness as ``CUDA_VISIBLE_DEVICES`` ("" for no GPU)
    cuda_visible_devices: str
    #: the node's own GPU ids (for ``docker run --gpus device=...``); empty for no GPU
    node_gpu_ids: tuple[str, ...]
    #: which variable decided (``CUDA_VISIBLE_DEVICES``, ``SLURM_STEP_GPUS``, ..., or ``none``)
    source: str

    def docker_gpus_arg(self) -> str | None:
        """``--gpus`` value for ``docker run``, or ``None`` when the job holds no GPU."""
        if not self.node_gpu_ids:
            return None
        return '"device=' + ",".join(self.node_gpu_ids) + '"'


def _ids(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    out = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry or entry in ("NoDevFiles", "-1"):
            continue
        out.append(entry)
    return tuple(out)


def gpu_binding(environ: Mapping[str, str], requested_gpus: int) -> GpuBinding:
    """The job's GPUs; raises ``RunnerError`` when it asked for GPUs and SLURM allocated none."""
    node_ids: tuple[str, ...] = ()
    node_source = ""
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "GPU_DEVICE_ORDINAL"):
        node_ids = _ids(environ.get(name))
        if node_ids:
            node_source = name
            break
    cvd = environ.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None and _ids(cvd):
        return GpuBinding(cvd, node_ids or _ids(cvd), "CUDA_VISIBLE_DEVICES")
    if node_ids:
        return GpuBinding(",".join(node_ids), node_ids, node_source)
    if requested_gpus > 0:
        job = environ.get("SLURM_JOB_ID", "?")
        raise RunnerError(
            f"SLURM job {job} asked for {requested_gpus} GPU(s) but its environment names none "
            "(CUDA_VISIBLE_DEVICES, SLURM_STEP_GPUS, SLURM_JOB_GPUS, GPU_DEVICE_ORDINAL all unset): "
            "the node's gres.conf probably does not declare its GPUs. Fix the node's gres "
            "configuration, or set slurm.gpus_per_job: 0 in the user config for a CPU-only cluster"
        )
    return GpuBinding("", (), "none")
