"""The backend protocol: one inference engine behind a few calls.

Backends load a model, run batches of prompts and report token counts and timings. They never
measure energy (the harness does that around ``generate``). Heavy imports (torch, vllm,
tensorrt_llm) happen inside ``load``, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Prompt:
    """One request: prompt token ids (exact, already truncated) and the new-token budget."""

    token_ids: list[int]
    max_new_tokens: int
    text: str | None = None


@dataclass
class RequestRecord:
    """What happened to one request during a ``generate`` call."""

    input_tokens: int
    output_tokens: int
    latency_s: float | None = None
    ttft_s: float | None = None
    #: inter-token latencies (seconds between consecutive output tokens after the first)
    itl_s: list[float] = field(default_factory=list)


@dataclass
class GenerationOutput:
    """The outcome of one ``generate`` call over a list of prompts."""

    requests: list[RequestRecord]
    duration_s: float
    #: how TTFT/ITL were obtained, e.g. "streamer", "engine-metrics"; None when unavailable
    timing_source: str | None = None
    timing_unavailable_reason: str | None = None
    output_token_ids: list[list[int]] | None = None
    #: each batch's prefill, (start, end) in seconds from the call's start, for an engine that
    #: runs a batch's prefill before its decode (static batches); None when it does not say
    prefill_spans_s: list[tuple[float, float]] | None = None
    #: why no prefill span exists: the engine ran prefills beside other requests' decodes
    prefill_overlap_reason: str | None = None

    @property
    def input_tokens(self) -> int:
        return sum(r.input_tokens for r in self.requests)

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.requests)


@dataclass
class LoadInfo:
    """Facts about the loaded model."""

    parameters: int | None = None
    #: the model directory or hub id actually loaded
    model_path: str | None = None
    weights: str = "pretrained"  # or "random"
    dtype: str | None = None
    #: CUDA device indices (as the process sees them, i.e. after CUDA_VISIBLE_DEVICES) the engine uses
    cuda_devices: list[int] = field(default_factory=list)
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """An inference engine. Lifecycle: ``load`` -> ``generate``* -> ``close`` (always, even on error)."""

    name: str

    def load(self) -> LoadInfo:
        """Load the model and build the engine; everything expensive happens here."""
        ...

    def tokenizer(self) -> Any:
        """The model's tokenizer (a transformers tokenizer), available after ``load``."""
        ...

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        """Run all ``prompts`` (batched as the engine and config decide) and return per-request records."""
        ...

    def synchronize(self) -> None:
        """Block until all queued device work is finished (the window's edges)."""
        ...

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory allocated since load (None when the engine cannot say)."""
        ...

    def close(self) -> None:
        """Release the engine and its device memory; must be safe to call twice."""
        ...
