"""What vLLM runs on here (its platform detection), and whether its CPU attention fits a model.

Asked before the engine starts, so an impossible combination fails at once with what would work,
not after the whole engine start. Creates no CUDA context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def cpu_head_size_problem(hf_config: dict[str, Any], supported: list[int]) -> str | None:
    """Why vLLM's CPU attention cannot run this model, or None when it can (or cannot tell).

    vLLM's CPU build only has kernels for some head sizes and fails on the first step, after the
    whole engine start, with ``Unsupported CPU attention configuration``; checking
    ``config.json`` first turns that into an immediate error that says what would work.
    """
    head = hf_config.get("head_dim")
    if head is None:
        hidden, heads = hf_config.get("hidden_size"), hf_config.get("num_attention_heads")
        if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0:
            return None
        head = hidden // heads
    if not isinstance(head, int) or head in supported:
        return None
    return (
        f"the model's attention head size is {head}, but vLLM's CPU attention supports only "
        f"head sizes {', '.join(map(str, supported))}; run it on a GPU, or use a model (or "
        "synthetic preset) whose hidden_size / num_attention_heads is one of those"
    )


def platform_is_cuda() -> bool:
    """Whether vLLM runs on CUDA here (asks vLLM's platform detection; creates no CUDA context)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cuda())
    except Exception:
        return False


def platform_device_type() -> str:
    try:
        from vllm.platforms import current_platform

        return str(current_platform.device_type)
    except Exception:
        return "unknown"


def cpu_head_size_problem_of(model_path: str) -> str | None:
    """``cpu_head_size_problem`` for a local model directory (None for hub ids or unknown)."""
    config_file = Path(model_path) / "config.json"
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = list(CPUAttentionBackend.get_supported_head_sizes())
        hf_config = json.loads(config_file.read_text())
    except Exception:  # not a local model, or a vLLM without this backend: let vLLM decide
        return None
    if not isinstance(hf_config, dict):
        return None
    return cpu_head_size_problem(hf_config, supported)
