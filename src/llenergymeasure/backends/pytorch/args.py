"""The experiment config as transformers generation settings, for the PyTorch backend.

The config is the only source of decoding settings: a checkpoint's ``generation_config.json`` can
carry a temperature, top-p or repetition penalty, and inherited silently they would make two
models with the same experiment config decode differently. Only its special-token ids are kept;
what is dropped is recorded. transformers is imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llenergymeasure.backends.pytorch.section import PyTorchConfig
    from llenergymeasure.config.experiment import ExperimentConfig

#: Generation defaults of a pretrained checkpoint that would change decoding if inherited.
DECODING_KEYS = (
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "min_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "length_penalty",
    "num_beams",
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "cache_implementation",
)


def ignored_decoding_defaults(original: Any) -> dict[str, Any]:
    """The checkpoint's decoding settings that differ from transformers' defaults (JSON-ready)."""
    from transformers import GenerationConfig

    default = GenerationConfig()
    dropped: dict[str, Any] = {}
    if original is not None:
        for key in DECODING_KEYS:
            value = getattr(original, key, None)
            if value is not None and value != getattr(default, key, None):
                dropped[key] = jsonable(value)
    return dropped


def special_token_ids(original: Any, tokenizer: Any) -> tuple[list[int], int | None]:
    """(EOS ids, BOS id) of the checkpoint's generation config, else of the tokenizer."""
    eos = getattr(original, "eos_token_id", None) if original is not None else None
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    bos = getattr(original, "bos_token_id", None) if original is not None else None
    if bos is None:
        bos = tokenizer.bos_token_id
    return eos_ids, bos


def generation_config(
    config: ExperimentConfig,
    max_new_tokens: int,
    bos_token_id: Any,
    eos_token_id: Any,
    pad_token_id: int | None,
    device: str,
) -> Any:
    """The ``transformers.GenerationConfig`` of one batch with this new-token budget."""
    from transformers import CompileConfig, GenerationConfig

    decoding = config.decoding
    section: PyTorchConfig = config.backend_section()  # type: ignore[assignment]
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": not decoding.greedy,
        "num_beams": 1,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        # transformers compiles the forward pass on its own whenever the cache is static on
        # a GPU; the config, not that default, decides whether compilation happens.
        "disable_compile": not section.torch_compile,
    }
    if decoding.fixed_output_length:
        kwargs["min_new_tokens"] = max_new_tokens
    if not decoding.greedy:
        kwargs["temperature"] = decoding.temperature
        kwargs["top_p"] = decoding.top_p
        kwargs["top_k"] = decoding.top_k  # 0 disables top-k
    if section.static_cache:
        kwargs["cache_implementation"] = "static"
    if section.torch_compile:
        compile_config: Any = CompileConfig(mode=section.compile_mode)
        if device != "cuda":
            # transformers compiles only on accelerators unless told otherwise; the config
            # asked for compilation, so honour it on the CPU too.
            compile_config._compile_all_devices = True
        kwargs["compile_config"] = compile_config
    return GenerationConfig(**kwargs)


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it (lists of scalars; anything else as its string)."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)
