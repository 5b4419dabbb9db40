"""Mirror of ``BuildConfig`` in ``tensorrt_llm/builder.py``: a dataclass, so an unknown keyword
raises ``TypeError`` as in the real class. Only fields the LLM API path touches are kept, with the
real defaults."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass


@dataclass
class BuildConfig:
    max_input_len: int = 1024
    max_seq_len: int | None = None
    opt_batch_size: int = 8
    max_batch_size: int = 2048
    max_beam_width: int = 1
    max_num_tokens: int = 8192
    opt_num_tokens: int | None = None
    max_prompt_embedding_table_size: int = 0
    gather_context_logits: bool = False
    gather_generation_logits: bool = False
    strongly_typed: bool = True
    max_draft_len: int = 0
    use_refit: bool = False
    weight_sparsity: bool = False
    weight_streaming: bool = False
    use_strip_plan: bool = False
    max_encoder_input_len: int = 1024
    dry_run: bool = False
    monitor_memory: bool = False

    def to_dict(self) -> dict[str, object]:
        return copy.deepcopy(asdict(self))

    @classmethod
    def from_dict(cls, config: dict[str, object]) -> BuildConfig:
        return cls(**config)  # type: ignore[arg-type]
