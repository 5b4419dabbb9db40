"""TensorRT-LLM as the backend sees it: importing it, and the config as its arguments.

The LLM API names (``QuantAlgo`` members, ``TrtLlmArgs`` fields) are read from the installed
library, not assumed from a version number. Build arguments (``engine_build_spec``,
``build_kwargs``) fix the engine; runtime ones (``runtime_kwargs``, ``sampling_kwargs``) do not.
"""

from __future__ import annotations

from typing import Any

from llenergymeasure.backends.dtypes import DTYPE_NAMES
from llenergymeasure.backends.tensorrt.engine_cache import (
    EngineBuildSpec,
    is_synthetic_dir,
    model_fingerprint,
)
from llenergymeasure.backends.tensorrt.section import TensorRTConfig
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import BackendUnavailableError, ConfigError

#: The pyproject extra and the Docker image that provide TensorRT-LLM.
TRTLLM_EXTRA = "tensorrt"
TRTLLM_IMAGE = "llenergymeasure:trtllm"


def import_tensorrt_llm() -> Any:
    """Import ``tensorrt_llm`` or explain how to get it.

    Importing it also loads TensorRT and CUDA libraries, so any failure (not only ImportError) is
    reported as "unavailable here" with the original cause.
    """
    try:
        import tensorrt_llm
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'tensorrt' needs TensorRT-LLM, which is not installed here ({exc}). "
            f"Install the '[{TRTLLM_EXTRA}]' extra (pip install 'llenergymeasure[{TRTLLM_EXTRA}]', "
            f"NVIDIA GPU and CUDA required) or run with the Docker image {TRTLLM_IMAGE} "
            f"(--runner docker:{TRTLLM_IMAGE})."
        ) from exc
    except Exception as exc:  # CUDA/TensorRT shared libraries missing, driver too old, ...
        raise BackendUnavailableError(
            f"TensorRT-LLM is installed but failed to import ({type(exc).__name__}: {exc}). "
            f"It needs an NVIDIA GPU with a matching driver and CUDA; the Docker image "
            f"{TRTLLM_IMAGE} carries a working stack."
        ) from exc
    return tensorrt_llm


def quant_algo_names() -> list[str]:
    """The ``QuantAlgo`` member names of the installed TensorRT-LLM (the accepted values)."""
    from tensorrt_llm.llmapi import QuantAlgo

    return list(QuantAlgo.__members__)


def kv_cache_quant_algo_names() -> list[str]:
    """The ``QuantAlgo`` names the installed TensorRT-LLM accepts for the KV cache."""
    try:
        from tensorrt_llm.quantization.mode import KV_CACHE_QUANT_ALGO_LIST
    except ImportError:
        return quant_algo_names()
    return [getattr(a, "name", str(a)) for a in KV_CACHE_QUANT_ALGO_LIST]


def resolve_quant_algo(value: str | None, field: str, accepted: list[str]) -> str | None:
    """Map a config string (any case; ``none``/``auto`` mean no quantization) to a QuantAlgo name."""
    if value is None:
        return None
    name = value.strip().upper().replace("-", "_")
    if name in ("", "NONE", "AUTO", "NO_QUANT"):
        return None
    if name not in accepted:
        raise ConfigError(
            f"tensorrt.{field}: {value!r} is not a TensorRT-LLM QuantAlgo name; accepted: "
            + ", ".join(accepted)
            + " (or omit the field for no quantization)"
        )
    return name


def dummy_weights_supported(trtllm: Any) -> bool | None:
    """Whether the engine flow's args accept ``load_format='dummy'`` (None: cannot tell).

    Read from the installed ``TrtLlmArgs`` schema rather than assumed from a version number.
    """
    try:
        from tensorrt_llm.llmapi.llm_args import TrtLlmArgs
    except ImportError:
        return None
    field = getattr(TrtLlmArgs, "model_fields", {}).get("load_format")
    if field is None:
        return False
    return "dummy" in str(field.annotation).lower()


def tensorrt_section(config: ExperimentConfig) -> TensorRTConfig:
    """The ``tensorrt:`` section of a tensorrt experiment."""
    section = config.backend_section()
    assert isinstance(section, TensorRTConfig)
    return section


def engine_build_spec(config: ExperimentConfig, model_path: str, trtllm: Any) -> EngineBuildSpec:
    """The engine's identity from the config; validates names against the installed library."""
    c = config
    s = tensorrt_section(config)
    max_input_len = s.max_input_len if s.max_input_len is not None else c.max_input_tokens
    max_seq_len = (
        s.max_seq_len if s.max_seq_len is not None else max_input_len + c.max_output_tokens
    )
    if max_seq_len <= max_input_len:
        raise ConfigError(
            f"tensorrt.max_seq_len ({max_seq_len}) must exceed tensorrt.max_input_len "
            f"({max_input_len}) to leave room for generated tokens; raise max_seq_len to at "
            f"least {max_input_len + c.max_output_tokens}"
        )
    quant = resolve_quant_algo(s.quantization, "quantization", quant_algo_names())
    kv_quant = resolve_quant_algo(s.kv_cache_dtype, "kv_cache_dtype", kv_cache_quant_algo_names())
    return EngineBuildSpec(
        model=model_fingerprint(model_path),
        trtllm_version=str(getattr(trtllm, "__version__", "unknown")),
        dtype=DTYPE_NAMES[c.precision],
        tp_size=s.tp_size,
        pp_size=s.pp_size,
        max_batch_size=s.max_batch_size,
        max_num_tokens=s.max_num_tokens,
        max_input_len=max_input_len,
        max_seq_len=max_seq_len,
        quant_algo=quant,
        kv_cache_quant_algo=kv_quant,
        dummy_weights=is_synthetic_dir(model_path),
    )


def build_kwargs(spec: EngineBuildSpec) -> dict[str, Any]:
    """``LLM`` keyword arguments that build the engine described by ``spec``."""
    from tensorrt_llm.llmapi import BuildConfig, QuantAlgo, QuantConfig

    kwargs: dict[str, Any] = {
        "dtype": spec.dtype,
        "tensor_parallel_size": spec.tp_size,
        "pipeline_parallel_size": spec.pp_size,
        "build_config": BuildConfig(**spec.build_config_kwargs()),
    }
    if spec.quant_algo or spec.kv_cache_quant_algo:
        kwargs["quant_config"] = QuantConfig(
            quant_algo=QuantAlgo[spec.quant_algo] if spec.quant_algo else None,
            kv_cache_quant_algo=(
                QuantAlgo[spec.kv_cache_quant_algo] if spec.kv_cache_quant_algo else None
            ),
        )
    if spec.dummy_weights:
        kwargs["load_format"] = "dummy"
    return kwargs


# -- protocol ------------------------------------------------------------------------------


def runtime_kwargs(section: TensorRTConfig) -> dict[str, Any]:
    """``LLM`` keyword arguments that do not change the engine (never part of the key)."""
    from tensorrt_llm.llmapi import KvCacheConfig

    kv: dict[str, Any] = {}
    if section.kv_cache_free_gpu_memory_fraction is not None:
        kv["free_gpu_memory_fraction"] = section.kv_cache_free_gpu_memory_fraction
    if section.enable_block_reuse is not None:
        kv["enable_block_reuse"] = section.enable_block_reuse
    return {"kv_cache_config": KvCacheConfig(**kv)}


def sampling_kwargs(config: ExperimentConfig, max_new_tokens: int) -> dict[str, Any]:
    """Keyword arguments of ``tensorrt_llm.llmapi.SamplingParams`` for this new-token budget."""
    d = config.decoding
    kwargs: dict[str, Any] = {"max_tokens": max_new_tokens, "return_perf_metrics": True}
    if d.fixed_output_length:
        kwargs["min_tokens"] = max_new_tokens
        kwargs["ignore_eos"] = True
    if d.greedy:
        kwargs["temperature"] = 0.0
    else:
        kwargs["temperature"] = d.temperature
        kwargs["top_p"] = d.top_p
        if d.top_k > 0:
            kwargs["top_k"] = d.top_k
        kwargs["seed"] = config.seed
    return kwargs
