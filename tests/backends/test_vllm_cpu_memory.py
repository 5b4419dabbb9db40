"""KV-cache space for vLLM on the CPU: from the machine's memory when the config keeps the GPU
default, vLLM's own rule otherwise; always with the reason recorded."""

from __future__ import annotations

from pathlib import Path

from llenergymeasure.backends.vllm.cpu_memory import (
    CPU_KV_CACHE_FRACTION,
    GIB,
    MIB,
    cgroup_memory_free,
    choose_cpu_kv_cache,
    proc_meminfo,
)
from llenergymeasure.backends.vllm.section import VLLMConfig

MEMORY = (14 * GIB + 123_456, 24 * GIB, "memory node 0")


def test_gpu_default_gets_a_share_of_available_memory() -> None:
    # the decision keys on the config's own default, whatever it is
    default = VLLMConfig().gpu_memory_utilization
    kv = choose_cpu_kv_cache(default, MEMORY, {})
    expected = int(MEMORY[0] * CPU_KV_CACHE_FRACTION) // MIB * MIB
    assert kv.kv_cache_memory_bytes == expected and expected % MIB == 0
    assert kv.source.startswith("auto: 25% of the 14.0 GiB available of 24.0 GiB (memory node 0)")
    record = kv.record()
    assert record["cpu_kv_cache_memory_bytes"] == expected
    assert record["cpu_memory_total_bytes"] == 24 * GIB


def test_explicit_choices_are_left_to_vllm() -> None:
    chosen = choose_cpu_kv_cache(0.3, MEMORY, {})
    assert chosen.kv_cache_memory_bytes is None and "gpu_memory_utilization 0.3" in chosen.source
    env = choose_cpu_kv_cache(0.9, MEMORY, {"VLLM_CPU_KVCACHE_SPACE": "4"})
    assert env.kv_cache_memory_bytes is None and "VLLM_CPU_KVCACHE_SPACE=4" in env.source
    unknown = choose_cpu_kv_cache(0.9, None, {})
    assert unknown.kv_cache_memory_bytes is None and "could not be read" in unknown.source


def test_proc_meminfo(tmp_path: Path) -> None:
    f = tmp_path / "meminfo"
    f.write_text("MemTotal:       20000000 kB\nMemFree:  100 kB\nMemAvailable:   15000000 kB\n")
    assert proc_meminfo(str(f)) == (15000000 * 1024, 20000000 * 1024, "meminfo")
    assert proc_meminfo(str(tmp_path / "missing")) is None


def test_cgroup_limits(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("max\n")
    (v2 / "memory.current").write_text("1000\n")
    assert cgroup_memory_free(str(v2)) is None  # no limit
    (v2 / "memory.max").write_text(f"{8 * GIB}\n")
    assert cgroup_memory_free(str(v2)) == (8 * GIB - 1000, 8 * GIB)
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{3 * GIB}\n")
    assert cgroup_memory_free(str(tmp_path / "v1")) == (0, 2 * GIB)
    assert cgroup_memory_free(str(tmp_path / "none")) is None
