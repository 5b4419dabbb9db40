"""From an experiment's ``gpus`` (CUDA indices as this process sees them) to the device ids a child
process or container gets.

This process may itself see only part of the machine (``CUDA_VISIBLE_DEVICES`` set by a user, a
batch system or a scheduler): index ``k`` is then the ``k``-th entry of that list, passed on as
written (an integer, a ``GPU-`` UUID or a ``MIG-`` UUID), so the child sees exactly the GPUs meant,
numbered 0..n-1. With the variable unset, index ``k`` is GPU ``k``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from llenergymeasure.energy.devices import parse_cuda_visible_devices
from llenergymeasure.errors import RunnerError


def device_entries(
    gpus: Sequence[int],
    environ: Mapping[str, str],
    gpu_count: Callable[[], int] | None = None,
) -> list[str]:
    """The device ids (``CUDA_VISIBLE_DEVICES`` entries, Docker ``device_ids``) for ``gpus``.

    ``gpu_count`` (e.g. ``container_spec.host_gpu_count``) checks the indices against the GPUs of
    the machine when ``CUDA_VISIBLE_DEVICES`` is unset. Raises ``RunnerError`` naming the index,
    what is visible and what would work.
    """
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    entries = parse_cuda_visible_devices(raw)
    if entries is None:
        if gpu_count is not None:
            count = gpu_count()
            bad = [g for g in gpus if g >= count]
            if bad:
                seen = (
                    "no NVIDIA GPU (NVML and nvidia-smi found none)"
                    if count == 0
                    else f"{count} GPU(s) (0..{count - 1})"
                )
                raise RunnerError(
                    f"gpus: {list(gpus)} names GPU {bad[0]}, but this machine has {seen} and "
                    "CUDA_VISIBLE_DEVICES is unset; list existing GPUs or leave gpus out"
                )
        return [str(g) for g in gpus]
    bad = [g for g in gpus if g >= len(entries)]
    if bad:
        raise RunnerError(
            f"gpus: {list(gpus)} names GPU {bad[0]}, but CUDA_VISIBLE_DEVICES={raw!r} exposes "
            f"{len(entries)} device(s) ({', '.join(entries) or 'none'}); gpus are positions in "
            f"that list: use indices below {len(entries)} or widen CUDA_VISIBLE_DEVICES"
        )
    return [entries[g] for g in gpus]
