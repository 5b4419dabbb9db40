"""Prompt sources: built-in synthetic prompts, JSONL files and Hugging Face datasets.

``load_prompts(config, tokenizer)`` is called by the harness before warmup, outside the measured
window; ``warmup_prompts`` picks the prompts of one warmup step.
"""

from __future__ import annotations

from llenergymeasure.datasets.loaders import (
    load_hf_texts,
    load_prompts,
    read_jsonl_texts,
    regular_token_ids,
    synthetic_prompts,
    tokenize_texts,
    warmup_prompts,
)

__all__ = [
    "load_hf_texts",
    "load_prompts",
    "read_jsonl_texts",
    "regular_token_ids",
    "synthetic_prompts",
    "tokenize_texts",
    "warmup_prompts",
]
