"""KV-cache space for vLLM on the CPU, chosen from the machine's memory.

On vLLM's CPU backend ``gpu_memory_utilization`` is the fraction of *all* the memory of the CPU's
memory node that the worker reserves, and the engine refuses to start when that much is not free.
The config's default, 0.9, is a GPU figure: on a CPU host it asks for 90 % of the machine and
fails on any machine that is doing anything else ("Available memory on node 0 ... is less than
desired CPU memory utilization"). So, when the engine runs on the CPU and
``vllm.gpu_memory_utilization`` is left at that default, the KV cache gets an explicit size
instead (vLLM's ``kv_cache_memory_bytes``): ``CPU_KV_CACHE_FRACTION`` of the memory available at
engine start. The value and how it was chosen go into the result. An explicit
``gpu_memory_utilization`` other than the default, or ``VLLM_CPU_KVCACHE_SPACE`` in the
environment, is vLLM's to apply as it documents.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: the experiment config's default ``vllm.gpu_memory_utilization`` (a GPU figure)
GPU_DEFAULT_UTILIZATION = 0.9
#: share of the memory available at engine start given to the KV cache on the CPU
CPU_KV_CACHE_FRACTION = 0.25
GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class CpuKvCache:
    """What the engine is told about KV-cache memory on the CPU, and why."""

    #: ``kv_cache_memory_bytes`` to pass to ``vllm.LLM`` (None: leave it to vLLM)
    kv_cache_memory_bytes: int | None
    source: str
    memory_available_bytes: int | None = None
    memory_total_bytes: int | None = None

    def record(self) -> dict[str, Any]:
        return {
            "cpu_kv_cache_memory_bytes": self.kv_cache_memory_bytes,
            "cpu_kv_cache_source": self.source,
            "cpu_memory_available_bytes": self.memory_available_bytes,
            "cpu_memory_total_bytes": self.memory_total_bytes,
        }


def choose_cpu_kv_cache(
    gpu_memory_utilization: float,
    memory: tuple[int, int, str] | None,
    environ: Mapping[str, str],
) -> CpuKvCache:
    """The KV-cache decision for vLLM on the CPU.

    ``memory`` is (available bytes, total bytes, where they were read) of the memory node vLLM
    uses, or None when it could not be read.
    """
    space = (environ.get("VLLM_CPU_KVCACHE_SPACE") or "").strip()
    if space:
        return CpuKvCache(None, f"VLLM_CPU_KVCACHE_SPACE={space} GiB (from the environment)")
    available, total, where = memory if memory is not None else (None, None, "")
    if gpu_memory_utilization != GPU_DEFAULT_UTILIZATION:
        return CpuKvCache(
            None,
            f"vllm.gpu_memory_utilization {gpu_memory_utilization:g}: vLLM reserves that fraction "
            "of the CPU memory node",
            available,
            total,
        )
    if available is None or total is None:
        return CpuKvCache(
            None,
            "CPU memory could not be read; vLLM applies gpu_memory_utilization "
            f"{gpu_memory_utilization:g} to the CPU memory node",
        )
    kv = int(available * CPU_KV_CACHE_FRACTION) // MIB * MIB
    return CpuKvCache(
        kv,
        f"auto: {CPU_KV_CACHE_FRACTION:.0%} of the {available / GIB:.1f} GiB available of "
        f"{total / GIB:.1f} GiB ({where}) at engine start; vllm.gpu_memory_utilization was left "
        f"at its GPU default {GPU_DEFAULT_UTILIZATION:g}, which on the CPU would reserve "
        f"{GPU_DEFAULT_UTILIZATION * total / GIB:.1f} GiB",
        available,
        total,
    )


def cpu_memory(cgroup_root: str = "/sys/fs/cgroup") -> tuple[int, int, str] | None:
    """(available, total, source) bytes of the memory node vLLM's CPU worker uses.

    vLLM's own reading when this vLLM has it (the node of the first CPU it may run on), else the
    whole machine's ``MemAvailable`` / ``MemTotal``; either way no more than a container's
    memory limit leaves free.
    """
    reading: tuple[int, int, str] | None
    try:
        from vllm.utils.cpu_resource_utils import get_allowed_cpu_list, get_memory_node_info

        node = get_allowed_cpu_list()[0].numa_node
        info = get_memory_node_info(node)
        reading = int(info.available_memory), int(info.total_memory), f"memory node {node}"
    except Exception:  # another vLLM layout, or no NUMA information: the whole machine
        reading = proc_meminfo()
    limit = cgroup_memory_free(cgroup_root)
    if reading is None or limit is None:
        return reading
    available, total, where = reading
    free, cap = limit
    if cap < total:
        return min(available, free), cap, f"{where}, cgroup limit"
    return reading


def cgroup_memory_free(root: str = "/sys/fs/cgroup") -> tuple[int, int] | None:
    """(limit - usage, limit) of this process's memory cgroup (v2 or v1), None without a limit."""
    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            with open(os.path.join(root, limit_file)) as fh:
                raw = fh.read().strip()
            with open(os.path.join(root, usage_file)) as fh:
                usage = int(fh.read().strip())
        except (OSError, ValueError):
            continue
        if not raw.isdigit() or int(raw) >= 2**60:  # "max", or v1's "no limit" sentinel
            return None
        return max(0, int(raw) - usage), int(raw)
    return None


def proc_meminfo(path: str = "/proc/meminfo") -> tuple[int, int, str] | None:
    try:
        with open(path) as fh:
            fields = {
                parts[0].rstrip(":"): int(parts[1]) * 1024
                for parts in (line.split() for line in fh)
                if len(parts) >= 2 and parts[1].isdigit()
            }
        return fields["MemAvailable"], fields["MemTotal"], os.path.basename(path)
    except (OSError, KeyError, ValueError):
        return None
