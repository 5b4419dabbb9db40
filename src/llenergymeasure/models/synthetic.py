"""Resolve a model name to something a backend can load; build synthetic models locally.

A ``synthetic/<preset>`` model is a directory with a Llama ``config.json``, a tokenizer built here
with the ``tokenizers`` library, and a marker file ``llem_synthetic.json``. It has **no weight
files**: the backends build the weights from the config (pytorch: ``from_config`` after
``torch.manual_seed(seed)``; vLLM: ``load_format="dummy"``). That keeps ``synthetic/llama-8b`` at
a few hundred kilobytes on disk instead of 16 GB, needs no model hub, and still gives realistic
energy and speed, which for dense models depend on the shapes, not on the weight values.

The directory is built once per shape under ``<cache_dir>/synthetic/<preset>-<hash8>/`` in a
temporary directory that is renamed into place, so concurrent processes never see half a model.

This module must stay importable without torch (the CLI imports it); it imports only
``tokenizers`` and only while building a tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llenergymeasure.errors import ConfigError, LLEMError
from llenergymeasure.models.presets import (
    SYNTHETIC_PREFIX,
    SYNTHETIC_PRESETS,
    is_synthetic,
    preset_name,
)

#: The marker file that makes a directory a synthetic (random-weight) model.
MARKER_FILE = "llem_synthetic.json"
#: Bumped whenever the files written here change, so old cache entries are not reused.
SYNTHETIC_FORMAT_VERSION = 1

#: Special tokens of the synthetic tokenizer, at ids 0..3 (the Llama convention for bos/eos).
UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN = "<unk>", "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
UNK_ID, BOS_ID, EOS_ID, PAD_ID = 0, 1, 2, 3


@dataclass
class ResolvedModel:
    """Where a model lives and whether its weights are real.

    ``path`` is what the backend passes to its loader (a local directory or a hub id).
    ``weights`` is ``"random"`` for synthetic models: results must say so, because the text they
    generate is meaningless even though their energy and speed are realistic.
    """

    path: str
    weights: Literal["random", "pretrained"]
    synthetic: bool
    preset: str | None


def resolve_model(model: str, cache_dir: Path) -> ResolvedModel:
    """Turn ``ExperimentConfig.model`` into a loadable location.

    - ``synthetic/<preset>``: build (or reuse) the synthetic directory under ``cache_dir``.
    - an existing local directory: pretrained, unless it holds the synthetic marker.
    - anything else: a Hugging Face hub id, pretrained; loading it may later fail offline, and the
      backend says so then.
    """
    if is_synthetic(model):
        name = preset_name(model)
        if name not in SYNTHETIC_PRESETS:
            known = ", ".join(SYNTHETIC_PREFIX + k for k in SYNTHETIC_PRESETS)
            raise ConfigError(f"model: unknown synthetic preset {model!r}; available: {known}")
        path = materialise_synthetic(name, Path(cache_dir))
        return ResolvedModel(path=str(path), weights="random", synthetic=True, preset=name)

    local = Path(model).expanduser()
    if local.is_dir():
        marker = read_marker(local)
        if marker is not None:
            return ResolvedModel(
                path=str(local.resolve()),
                weights="random",
                synthetic=True,
                preset=marker.get("preset"),
            )
        return ResolvedModel(
            path=str(local.resolve()), weights="pretrained", synthetic=False, preset=None
        )
    if local.exists():
        raise ConfigError(
            f"model: {model!r} is a file, not a model directory; give a directory holding "
            "config.json, a hub id, or synthetic/<preset>"
        )
    return ResolvedModel(path=model, weights="pretrained", synthetic=False, preset=None)


def read_marker(directory: str | Path) -> dict[str, Any] | None:
    """The synthetic marker of ``directory`` as a dict, or None when it is not a synthetic model."""
    path = Path(directory) / MARKER_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LLEMError(
            f"{path}: the synthetic-model marker is unreadable ({exc}); delete the directory "
            "and it will be rebuilt"
        ) from exc
    if not isinstance(data, dict):
        raise LLEMError(f"{path}: the synthetic-model marker is not a JSON object; delete it")
    return data


def preset_shape(preset: str) -> dict[str, Any]:
    """The architecture of a preset as a full Llama config dict (no weights, no seed)."""
    shape = dict(SYNTHETIC_PRESETS[preset])
    hidden = shape["hidden_size"]
    heads = shape["num_attention_heads"]
    if hidden % heads:
        raise LLEMError(
            f"preset {preset!r}: hidden_size {hidden} is not divisible by {heads} heads"
        )
    if shape["vocab_size"] <= len(SPECIAL_TOKENS):
        raise LLEMError(f"preset {preset!r}: vocab_size must exceed {len(SPECIAL_TOKENS)}")
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "use_cache": True,
        "head_dim": hidden // heads,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        # The default precision when an engine is asked for "auto"; backends pass theirs.
        "torch_dtype": "bfloat16",
    }
    config.update(shape)
    return config


def shape_hash(preset: str) -> str:
    """Eight hex digits that change whenever the preset's shape or the file format changes."""
    payload = {"format": SYNTHETIC_FORMAT_VERSION, "config": preset_shape(preset)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def synthetic_dir(preset: str, cache_dir: Path) -> Path:
    """Where the preset's directory lives in ``cache_dir`` (whether or not it exists yet)."""
    return Path(cache_dir) / "synthetic" / f"{preset}-{shape_hash(preset)}"


def materialise_synthetic(preset: str, cache_dir: Path) -> Path:
    """Build the preset's directory unless a complete one exists; return its path.

    Complete means the marker is present: it is written last, inside a temporary directory that is
    renamed into place, so a directory with a marker always has all its files.
    """
    if preset not in SYNTHETIC_PRESETS:
        known = ", ".join(SYNTHETIC_PRESETS)
        raise ConfigError(f"unknown synthetic preset {preset!r}; available: {known}")
    final = synthetic_dir(preset, cache_dir)
    if _is_complete(final, preset):
        return final
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LLEMError(
            f"cannot create the model cache directory {parent}: {exc}; set model_cache_dir in "
            "the user config to a writable directory"
        ) from exc
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=parent))
    try:
        _write_model_files(preset, tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished first (the target exists and is not empty), or a broken
            # leftover without a marker is in the way.
            if _is_complete(final, preset):
                return final
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _is_complete(directory: Path, preset: str) -> bool:
    if not (directory / MARKER_FILE).is_file():
        return False
    try:
        marker = read_marker(directory)
    except LLEMError:
        return False
    return bool(
        marker
        and marker.get("preset") == preset
        and marker.get("format") == SYNTHETIC_FORMAT_VERSION
        and (directory / "config.json").is_file()
        and (directory / "tokenizer.json").is_file()
    )


def _write_model_files(preset: str, directory: Path) -> None:
    config = preset_shape(preset)
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    generation = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    write_tokenizer(directory, int(config["vocab_size"]), int(config["max_position_embeddings"]))
    marker = {
        "preset": preset,
        "format": SYNTHETIC_FORMAT_VERSION,
        "shape": SYNTHETIC_PRESETS[preset],
        "shape_hash": shape_hash(preset),
        "weights": "random",
        "note": (
            "no weight files: backends build random weights from config.json with the "
            "experiment's seed"
        ),
    }
    # Written last: its presence means the directory is complete.
    (directory / MARKER_FILE).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")


def synthetic_word(index: int) -> str:
    """The ``index``-th word of the synthetic vocabulary: a, b, ..., z, aa, ab, ... (bijective).

    Plain lower-case letters split cleanly on whitespace, so any sequence of regular ids decodes to
    text that encodes back to exactly the same ids.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    letters = []
    n = index + 1
    while n > 0:
        n -= 1
        letters.append(chr(ord("a") + n % 26))
        n //= 26
    return "".join(reversed(letters))


def write_tokenizer(directory: Path, vocab_size: int, model_max_length: int) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` for a word-level synthetic vocabulary.

    Ids 0..3 are ``<unk> <s> </s> <pad>``; every other id up to ``vocab_size - 1`` is a distinct
    synthetic word, so the tokenizer covers the model's whole embedding table. Encoding adds
    ``<s>`` in front, as Llama tokenizers do.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for token_id in range(len(SPECIAL_TOKENS), vocab_size):
        vocab[synthetic_word(token_id - len(SPECIAL_TOKENS))] = token_id
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No decoder: tokenizers then joins decoded tokens with single spaces, which is exactly the
    # inverse of the whitespace split above.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B",
        special_tokens=[(BOS_TOKEN, BOS_ID)],
    )
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer_config = {
        # The name both transformers 4.x and 5.x resolve to their tokenizers-backed class.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": UNK_TOKEN,
        "model_max_length": model_max_length,
        "padding_side": "left",
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    special_map = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": UNK_TOKEN,
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")


def count_parameters_from_shape(preset: str) -> int:
    """Parameters of a preset computed from its shape alone (no framework, no allocation).

    Embedding + per layer (q, k, v, o projections, gate/up/down MLP, two RMSNorms) + final norm +
    LM head (untied). Used in tests against the real module built on torch's meta device.
    """
    c = preset_shape(preset)
    hidden = c["hidden_size"]
    inter = c["intermediate_size"]
    layers = c["num_hidden_layers"]
    head_dim = c["head_dim"]
    kv = c["num_key_value_heads"] * head_dim
    q = c["num_attention_heads"] * head_dim
    vocab = c["vocab_size"]
    attn = hidden * q + 2 * hidden * kv + q * hidden
    mlp = 3 * hidden * inter
    per_layer = attn + mlp + 2 * hidden
    lm_head = 0 if c["tie_word_embeddings"] else vocab * hidden
    return vocab * hidden + layers * per_layer + hidden + lm_head


def build_random_model(
    torch: Any,
    transformers: Any,
    path: str,
    *,
    dtype: Any,
    device: str,
    seed: int,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, float]]:
    """A random-weight model built straight in ``dtype`` on ``device``; (model, timings in s).

    The modules are constructed with every weight initialiser switched off (their parameters are
    allocated, not written), inside ``torch.device(device)`` and with ``dtype`` as the default
    dtype, so no host copy, no float32 copy and no per-module Python initialisation loop exists.
    Then one pass over the parameters fills them on the device from a generator seeded with
    ``seed``: matrices and embeddings from N(0, initializer_range), norm weights 1, biases 0, the
    padding row of an embedding 0 (the values transformers' own initialisation would draw from).
    Same seed, same device type: same weights. Buffers computed in ``__init__`` (rotary
    frequencies) are built normally. torch and transformers are passed in (this module must stay
    importable without them).
    """
    import time

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    config = transformers.AutoConfig.from_pretrained(path)
    t1 = time.perf_counter()
    timings["config_s"] = t1 - t0
    with torch.device(device), no_init_weights(transformers):
        model = transformers.AutoModelForCausalLM.from_config(
            config, dtype=dtype, **(model_kwargs or {})
        )
    t2 = time.perf_counter()
    timings["construct_s"] = t2 - t1
    fill_random_weights(torch, model, seed, float(getattr(config, "initializer_range", 0.02)))
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    timings["fill_s"] = time.perf_counter() - t2
    return model, timings


def fill_random_weights(
    torch: Any, model: Any, seed: int, std: float, *, generators: dict[Any, Any] | None = None
) -> None:
    """Overwrite every parameter of ``model`` in place, on its own device, from ``seed``.

    ``generators`` (one per device, seeded on first use) may be shared between calls that fill a
    model's parts one after the other, so the parts do not repeat each other's values."""
    generators = {} if generators is None else generators
    seen: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            is_norm = "norm" in type(module).__name__.lower()
            for pname, param in module.named_parameters(recurse=False):
                if id(param) in seen:  # tied weights are filled once
                    continue
                seen.add(id(param))
                if is_norm:
                    param.fill_(1.0 if pname == "weight" else 0.0)
                elif param.dim() >= 2:
                    gen = generators.get(param.device)
                    if gen is None:
                        gen = torch.Generator(device=param.device)
                        gen.manual_seed(seed)
                        generators[param.device] = gen
                    param.normal_(0.0, std, generator=gen)
                else:
                    param.zero_()  # biases
            pad = getattr(module, "padding_idx", None)
            if isinstance(module, torch.nn.Embedding) and pad is not None:
                module.weight[pad].zero_()
    tie = getattr(model, "tie_weights", None)
    if callable(tie):
        tie()


def no_init_weights(transformers: Any) -> Any:
    """transformers' context that skips weight initialisation (its home moved in 5.x)."""
    import contextlib

    for module_name in ("transformers.initialization", "transformers.modeling_utils"):
        try:
            module = __import__(module_name, fromlist=["no_init_weights"])
        except ImportError:
            continue
        ctx = getattr(module, "no_init_weights", None)
        if ctx is not None:
            return ctx()
    return contextlib.nullcontext()
