"""Prompt sources: synthetic token ids, JSONL files and Hugging Face datasets.

Every source returns exactly ``config.n`` prompts as exact token-id lists (already truncated to
``config.max_input_tokens``), each with ``max_new_tokens = config.max_output_tokens``. The token
ids are authoritative: backends feed them to the engine as they are, so the input token count of
a result is exact and independent of how an engine would re-tokenise the text.

Loading happens before the measured window (the harness calls it before warmup); nothing here
downloads during a measurement.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from llenergymeasure.backends.base import Prompt
from llenergymeasure.errors import ConfigError, LLEMError

if TYPE_CHECKING:
    from llenergymeasure.config.experiment import ExperimentConfig

logger = logging.getLogger(__name__)

#: How many problems of a JSONL file are listed in one error before the rest are summarised.
MAX_REPORTED_PROBLEMS = 10
#: Seconds to wait for a TCP connection to the hub before treating it as unreachable.
HUB_PROBE_TIMEOUT_S = 5.0
#: Upper bound, in seconds, on loading a Hugging Face dataset (env ``LLEM_HF_DATASET_TIMEOUT_S``).
HF_DATASET_TIMEOUT_S = 300.0


def load_prompts(config: ExperimentConfig, tokenizer: Any) -> list[Prompt]:
    """Exactly ``config.n`` prompts from ``config.dataset``, tokenised with the model's tokenizer.

    ``tokenizer`` is a transformers tokenizer (``Backend.tokenizer()``). Sources with fewer
    prompts than ``n`` are cycled in order (and a warning is logged), so the measured window
    always holds ``n`` requests.
    """
    kind = config.dataset.kind
    if kind == "synthetic":
        return synthetic_prompts(config, tokenizer)
    if kind == "jsonl":
        texts = read_jsonl_texts(Path(config.dataset.source), config.dataset.field)
    else:
        texts = load_hf_texts(
            config.dataset.source,
            field=config.dataset.field,
            split=config.dataset.split,
            subset=config.dataset.subset,
        )
    return tokenize_texts(
        texts,
        tokenizer,
        n=config.n,
        max_input_tokens=config.max_input_tokens,
        max_new_tokens=config.max_output_tokens,
        source=config.dataset.source,
    )


def warmup_prompts(prompts: list[Prompt], config: ExperimentConfig) -> list[Prompt]:
    """The prompts of one warmup step: the first batch of the measured prompts.

    Warming up on the very shapes that will be measured (same batch size, same prompt lengths)
    is what makes caches, allocators and compiled graphs ready for the measured window.
    """
    if not prompts:
        raise LLEMError("no prompts to warm up with: load_prompts returned an empty list")
    return list(prompts[: config.batch_size])


# -- synthetic -----------------------------------------------------------------------------------


def regular_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokenizer's ordinary vocabulary: no special and no added tokens.

    Random prompts draw only from these so that no control token (BOS, EOS, pad, chat markers)
    lands in the middle of a prompt and changes how the model treats it.
    """
    excluded = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "get_added_vocab", None)
    if callable(added):
        excluded |= set(added().values())
    ids = [i for i in range(len(tokenizer)) if i not in excluded]
    if not ids:
        raise LLEMError("the tokenizer has no regular (non-special) tokens to build prompts from")
    return ids


def synthetic_prompts(config: ExperimentConfig, tokenizer: Any) -> list[Prompt]:
    """``n`` prompts of exactly ``dataset.input_tokens`` random regular token ids.

    Deterministic by ``config.seed`` (numpy's PCG64): the same seed, tokenizer and length give the
    same prompts on any machine, and prompt ``i`` does not depend on ``n``.
    """
    import numpy as np

    length = config.dataset.input_tokens
    if length > config.max_input_tokens:
        raise ConfigError(
            f"dataset.input_tokens ({length}) exceeds max_input_tokens ({config.max_input_tokens})"
        )
    vocab = np.asarray(regular_token_ids(tokenizer), dtype=np.int64)
    rng = np.random.default_rng(config.seed)
    picks = rng.integers(0, len(vocab), size=(config.n, length), dtype=np.int64)
    rows = vocab[picks].tolist()
    texts = tokenizer.batch_decode(rows, skip_special_tokens=False)
    return [
        Prompt(token_ids=row, max_new_tokens=config.max_output_tokens, text=text)
        for row, text in zip(rows, texts, strict=True)
    ]


# -- JSONL ---------------------------------------------------------------------------------------


def read_jsonl_texts(path: Path, field: str = "prompt") -> list[str]:
    """The prompt strings of a JSON Lines file: one object per line, the prompt under ``field``.

    Blank lines are skipped. Every problem is reported with its line number (up to
    ``MAX_REPORTED_PROBLEMS`` of them in one ``ConfigError``), so a broken file is fixed in one go.
    """
    if not path.exists():
        raise ConfigError(
            f"dataset.source: the prompt file {str(path)!r} does not exist; give a JSONL file "
            'with one {"prompt": "..."} object a line, "synthetic", or a HF dataset name'
        )
    if not path.is_file():
        raise ConfigError(f"dataset.source: {str(path)!r} is not a file (a JSONL file is expected)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"dataset.source: cannot read {str(path)!r}: {exc}") from exc
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{bad_line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
        ) from exc

    texts: list[str] = []
    problems: list[str] = []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        problem = None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problem = f"line {lineno}: invalid JSON ({exc.msg} at column {exc.colno})"
        else:
            if not isinstance(obj, dict):
                problem = (
                    f"line {lineno}: expected a JSON object with key {field!r}, got a "
                    f"{_json_type(obj)}"
                )
            elif field not in obj:
                keys = ", ".join(repr(k) for k in list(obj)[:8]) or "none"
                problem = (
                    f"line {lineno}: no key {field!r} (keys: {keys}); set dataset.field to the "
                    "key that holds the prompt"
                )
            elif not isinstance(obj[field], str):
                problem = (
                    f"line {lineno}: {field!r} must be a string, got a {_json_type(obj[field])}"
                )
            elif not obj[field].strip():
                problem = f"line {lineno}: {field!r} is empty"
            else:
                texts.append(obj[field])
        if problem is not None:
            problems.append(problem)

    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more problems")
        raise ConfigError(
            f"{path}: {len(problems)} bad line(s) in the prompt file (JSON Lines: one "
            f'{{"{field}": "..."}} object a line)',
            problems=shown,
            source=str(path),
        )
    if not texts:
        raise ConfigError(
            f'{path}: no prompts (the file is empty); add one {{"{field}": "..."}} object a line',
            source=str(path),
        )
    return texts


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def tokenize_texts(
    texts: Sequence[str],
    tokenizer: Any,
    *,
    n: int,
    max_input_tokens: int,
    max_new_tokens: int,
    source: str,
) -> list[Prompt]:
    """Tokenise ``texts`` (with the tokenizer's usual special tokens, e.g. BOS) into ``n`` prompts.

    Texts are used in order and cycled when fewer than ``n``; each is truncated to its first
    ``max_input_tokens`` tokens.
    """
    if not texts:
        raise LLEMError(f"{source}: no prompts")
    if len(texts) < n:
        logger.warning(
            "%s holds %d prompts but n is %d: cycling through them in order", source, len(texts), n
        )
    chosen = [texts[i % len(texts)] for i in range(n)]
    unique = list(dict.fromkeys(chosen))
    encoded = tokenizer(unique, add_special_tokens=True)["input_ids"]
    by_text = {
        text: list(ids[:max_input_tokens]) for text, ids in zip(unique, encoded, strict=True)
    }
    prompts = []
    for i, text in enumerate(chosen):
        ids = by_text[text]
        if not ids:
            raise LLEMError(f"{source}: prompt {i % len(texts) + 1} tokenises to no tokens")
        prompts.append(Prompt(token_ids=list(ids), max_new_tokens=max_new_tokens, text=text))
    return prompts


# -- Hugging Face datasets ----------------------------------------------------------------------


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_reachable(endpoint: str, timeout_s: float = HUB_PROBE_TIMEOUT_S) -> tuple[bool, str]:
    """Whether a TCP connection to the hub ``endpoint`` opens within ``timeout_s`` (and why not)."""
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True, ""
    except OSError as exc:
        return False, f"{host}:{port} unreachable ({exc.__class__.__name__}: {exc})"


def load_hf_texts(
    name: str,
    *,
    field: str,
    split: str,
    subset: str | None,
    timeout_s: float | None = None,
) -> list[str]:
    """The ``field`` column of a Hugging Face dataset, offline first, never hanging.

    With ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` set, or when the hub does not answer a TCP
    connection within ``HUB_PROBE_TIMEOUT_S``, only the local datasets cache is used. The whole
    load runs in a worker thread bounded by ``timeout_s`` (default ``LLEM_HF_DATASET_TIMEOUT_S``
    or 300 s); past it, an error is raised instead of waiting on the network.
    """
    try:
        import datasets as hf_datasets
    except ImportError as exc:
        raise LLEMError(
            f"dataset.source {name!r} is a Hugging Face dataset, which needs the `datasets` "
            "package: pip install datasets (or use a JSONL file or `synthetic`)"
        ) from exc

    if timeout_s is None:
        timeout_s = float(os.environ.get("LLEM_HF_DATASET_TIMEOUT_S", HF_DATASET_TIMEOUT_S))
    offline_reason = ""
    if (
        _env_true("HF_HUB_OFFLINE")
        or _env_true("HF_DATASETS_OFFLINE")
        or bool(getattr(hf_datasets.config, "HF_HUB_OFFLINE", False))
    ):
        offline_reason = "offline mode is set (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)"
    else:
        endpoint = str(
            getattr(hf_datasets.config, "HF_ENDPOINT", None)
            or os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        )
        reachable, why = hub_reachable(endpoint)
        if not reachable:
            offline_reason = f"the hub is not reachable: {why}"

    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["data"] = _load_hf_dataset(
                hf_datasets, name, split=split, subset=subset, offline=bool(offline_reason)
            )
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=work, name="llem-hf-dataset", daemon=True)
    thread.start()
    thread.join(timeout_s)
    where = f"Hugging Face dataset {name!r}" + (f" (subset {subset!r})" if subset else "")
    if thread.is_alive():
        raise LLEMError(
            f"loading the {where} took longer than {timeout_s:.0f} s; the hub may be slow or "
            "unreachable. Raise LLEM_HF_DATASET_TIMEOUT_S, pre-download it, or use a JSONL file"
        )
    if "error" in result:
        failure = result["error"]
        hint = (
            f"; {offline_reason}, and it is not in the local datasets cache "
            f"({hf_datasets.config.HF_DATASETS_CACHE}). Download it once on a connected machine "
            "or export it to JSONL"
            if offline_reason
            else ""
        )
        raise LLEMError(
            f"could not load the {where}, split {split!r}: {failure.__class__.__name__}: {failure}{hint}"
        ) from failure

    data = result["data"]
    columns = list(getattr(data, "column_names", []) or [])
    if field not in columns:
        raise ConfigError(
            f"dataset.field: the {where} has no column {field!r}; columns: "
            f"{', '.join(columns) or 'none'}"
        )
    texts: list[str] = []
    for i, value in enumerate(data[field]):
        if not isinstance(value, str):
            raise LLEMError(
                f"the {where}, row {i}: column {field!r} must hold strings, got {type(value).__name__}"
            )
        if value.strip():
            texts.append(value)
    if not texts:
        raise LLEMError(f"the {where}, split {split!r}: column {field!r} holds no non-empty text")
    return texts


_OFFLINE_LOCK = threading.Lock()


def _load_hf_dataset(
    hf_datasets: Any, name: str, *, split: str, subset: str | None, offline: bool
) -> Any:
    """``datasets.load_dataset`` with datasets' offline switch held on when ``offline``."""
    if not offline:
        return hf_datasets.load_dataset(name, subset, split=split)
    with _OFFLINE_LOCK:
        previous = hf_datasets.config.HF_HUB_OFFLINE
        hf_datasets.config.HF_HUB_OFFLINE = True
        try:
            return hf_datasets.load_dataset(name, subset, split=split)
        finally:
            hf_datasets.config.HF_HUB_OFFLINE = previous
