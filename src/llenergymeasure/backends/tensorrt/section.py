"""The ``tensorrt:`` section of an experiment config: TensorRT-LLM build and runtime knobs (data only)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from llenergymeasure.backends.section import ParallelSection


class TensorRTConfig(ParallelSection):
    """Build and runtime knobs of TensorRT-LLM's ``LLM`` API."""

    PARALLEL_FIELDS: ClassVar[tuple[str, str]] = ("tp_size", "pp_size")

    tp_size: int = Field(1, ge=1, le=64)
    pp_size: int = Field(1, ge=1, le=64)
    max_batch_size: int | None = Field(None, ge=1)
    max_num_tokens: int | None = Field(None, ge=1)
    max_input_len: int | None = Field(None, ge=1)
    max_seq_len: int | None = Field(None, ge=1)
    quantization: str | None = Field(
        None, description="a tensorrt_llm QuantAlgo name, e.g. FP8, W4A16_AWQ"
    )
    kv_cache_dtype: str | None = Field(None, description="e.g. fp8; None = the engine's default")
    kv_cache_free_gpu_memory_fraction: float | None = Field(None, gt=0.0, le=1.0)
    enable_block_reuse: bool | None = None
