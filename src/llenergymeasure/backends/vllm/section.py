"""The ``vllm:`` section of an experiment config: ``vllm.LLM`` engine arguments (data only)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from llenergymeasure.backends.section import ParallelSection


class VLLMConfig(ParallelSection):
    """Engine arguments of ``vllm.LLM`` that researchers sweep."""

    #: lm-eval requests its quality adapter (backends/vllm/quality.py) computes
    QUALITY_REQUESTS: ClassVar[frozenset[str]] = frozenset(
        {"loglikelihood", "loglikelihood_rolling", "generate_until"}
    )

    tensor_parallel_size: int = Field(1, ge=1, le=64)
    pipeline_parallel_size: int = Field(1, ge=1, le=64)
    gpu_memory_utilization: float = Field(0.9, gt=0.0, le=1.0)
    max_num_seqs: int | None = Field(None, ge=1)
    max_num_batched_tokens: int | None = Field(None, ge=1)
    max_model_len: int | None = Field(None, ge=1)
    enforce_eager: bool = False
    quantization: str | None = None
    kv_cache_dtype: str = "auto"
    enable_prefix_caching: bool | None = None
    trust_remote_code: bool = False
