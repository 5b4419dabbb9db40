"""Mirror of ``tensorrt_llm/llmapi/llm_args.py``: ``KvCacheConfig``, ``BaseLlmArgs``,
``TrtLlmArgs`` and ``TorchLlmArgs`` as pydantic models with ``extra="forbid"``.

Only fields the LLM API path of this project touches are kept (with the real types and
defaults); the validators that matter for it are mirrored: the default ``BuildConfig`` made from
the top-level limits, runtime limits clamped to / overridden by ``build_config``, and
``KvCacheConfig.dtype`` refused on the TensorRT backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from tensorrt_llm.builder import BuildConfig
from tensorrt_llm.models.modeling_utils import QuantConfig


class StrictBaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class KvCacheConfig(StrictBaseModel):
    enable_block_reuse: bool = True
    max_tokens: int | None = None
    max_attention_window: list[int] | None = None
    sink_token_length: int | None = None
    free_gpu_memory_fraction: float | None = Field(default=0.9, ge=0, le=1)
    host_cache_size: int | None = None
    onboard_blocks: bool = True
    enable_partial_reuse: bool = True
    copy_on_partial_reuse: bool = True
    # "This is a pure python field, not a pybind field. It is only for the Pytorch backend."
    dtype: str = "auto"


class BaseLlmArgs(StrictBaseModel):
    model: str | Path
    tokenizer: Any = None
    tokenizer_mode: Literal["auto", "slow"] = "auto"
    skip_tokenizer_init: bool = False
    trust_remote_code: bool = False
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    revision: str | None = None
    tokenizer_revision: str | None = None
    pipeline_parallel_size: int = 1
    context_parallel_size: int = 1
    gpus_per_node: int | None = None
    load_format: Literal["auto", "dummy"] = "auto"
    kv_cache_config: KvCacheConfig = Field(default_factory=KvCacheConfig)
    enable_chunked_prefill: bool = False
    max_batch_size: int | None = 2048
    max_input_len: int | None = 1024
    max_seq_len: int | None = None
    max_beam_width: int | None = 1
    max_num_tokens: int | None = 8192
    gather_generation_logits: bool = False
    num_postprocess_workers: int = 0
    backend: str | None = None
    return_perf_metrics: bool = False

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> BaseLlmArgs:
        return cls(**kwargs)

    @property
    def world_size(self) -> int:
        return self.tensor_parallel_size * self.pipeline_parallel_size


class TrtLlmArgs(BaseLlmArgs):
    enable_tqdm: bool = False
    workspace: str | None = None
    enable_build_cache: Any = False
    calib_config: Any = None
    quant_config: QuantConfig = Field(default_factory=QuantConfig)
    embedding_parallel_mode: Literal["NONE", "SHARDING_ALONG_VOCAB", "SHARDING_ALONG_HIDDEN"] = (
        "SHARDING_ALONG_VOCAB"
    )
    fast_build: bool = False
    build_config: BuildConfig | None = None
    batching_type: Any = None
    normalize_log_probs: bool = False

    @model_validator(mode="after")
    def init_build_config(self) -> TrtLlmArgs:
        if self.build_config is None:
            kwargs: dict[str, Any] = {}
            for name in (
                "max_batch_size",
                "max_num_tokens",
                "max_seq_len",
                "max_beam_width",
                "max_input_len",
            ):
                value = getattr(self, name)
                if value:
                    kwargs[name] = value
            self.build_config = BuildConfig(**kwargs)
        return self

    @model_validator(mode="after")
    def validate_build_config_with_runtime_params(self) -> TrtLlmArgs:
        assert self.build_config is not None
        for name in ("max_batch_size", "max_num_tokens"):
            runtime_val = getattr(self, name)
            build_val = getattr(self.build_config, name)
            if runtime_val is not None and runtime_val > build_val:
                setattr(self, name, build_val)
        for name in ("max_seq_len", "max_beam_width", "max_input_len"):
            runtime_val = getattr(self, name)
            build_val = getattr(self.build_config, name)
            if runtime_val is not None and runtime_val != build_val:
                setattr(self, name, build_val)
        return self

    @model_validator(mode="after")
    def validate_kv_cache_dtype(self) -> TrtLlmArgs:
        assert self.kv_cache_config.dtype == "auto", (
            "KvCacheConfig.dtype is not supported by the TensorRT backend."
        )
        return self


class TorchLlmArgs(BaseLlmArgs):
    backend: Literal["pytorch"] = "pytorch"  # type: ignore[assignment]
    load_format: str = "auto"  # type: ignore[assignment]
