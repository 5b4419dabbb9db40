"""The TensorRT engine's identity (its build spec and key) and the on-disk cache of built engines.

``<engine_cache_dir>/<key>/`` holds what ``LLM.save`` writes plus ``llem_engine.json`` (the build
spec, the build time). The key is a hash of the build spec: model identity (path, a fingerprint of
its config and weight files), the TensorRT-LLM version, dtype, tp/pp sizes, the four shape limits,
quantization, KV-cache quantization and whether the weights are dummy. Runtime-only knobs
(KV-cache memory fraction, block reuse, decoding) are not in the key: one engine serves all of
them. Entries are written to a temporary directory and renamed into place, so a crashed build
never leaves a half engine that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: Marker of a synthetic (random-weight, weightless) model directory (see models/synthetic.py).
SYNTHETIC_MARKER = "llem_synthetic.json"
#: Metadata file written into each cached engine directory; its presence means "complete".
ENGINE_META_FILE = "llem_engine.json"
#: Bump when the key composition or the cache layout changes, so old entries are not reused.
ENGINE_CACHE_FORMAT = 1
#: Weight files whose names and sizes make up a local model's fingerprint.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
#: Only these files' contents are hashed (small); weight files contribute name, size and mtime.
_HASHED_FILES = ("config.json", SYNTHETIC_MARKER, "quant_cfg.json", "hf_quant_config.json")


@dataclass(frozen=True)
class EngineBuildSpec:
    """Everything that determines the bytes of a TensorRT engine, and nothing else."""

    model: dict[str, Any]
    trtllm_version: str
    dtype: str
    tp_size: int
    pp_size: int
    max_batch_size: int | None
    max_num_tokens: int | None
    max_input_len: int
    max_seq_len: int
    quant_algo: str | None
    kv_cache_quant_algo: str | None
    dummy_weights: bool

    def key(self) -> str:
        """24 hex digits of SHA-256 over the canonical JSON of the spec and the cache format."""
        payload = {"format": ENGINE_CACHE_FORMAT, "spec": asdict(self)}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def build_config_kwargs(self) -> dict[str, int]:
        """Keyword arguments of ``tensorrt_llm.llmapi.BuildConfig`` (unset limits left out)."""
        kwargs = {"max_input_len": self.max_input_len, "max_seq_len": self.max_seq_len}
        if self.max_batch_size is not None:
            kwargs["max_batch_size"] = self.max_batch_size
        if self.max_num_tokens is not None:
            kwargs["max_num_tokens"] = self.max_num_tokens
        return kwargs


def model_fingerprint(model_path: str) -> dict[str, Any]:
    """A cheap identity of a model: its path, the hash of its small config files and the
    names/sizes/mtimes of its weight files. A hub id (not a local directory) is its own identity."""
    path = Path(model_path)
    if not path.is_dir():
        return {"hub_id": model_path}
    digest = hashlib.sha256()
    for name in _HASHED_FILES:
        f = path / name
        if f.is_file():
            digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    weights = []
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
            st = f.stat()
            weights.append([str(f.relative_to(path)), st.st_size, st.st_mtime_ns])
    digest.update(json.dumps(weights).encode())
    return {"path": str(path.resolve()), "files_sha256": digest.hexdigest()}


def is_synthetic_dir(model_path: str) -> bool:
    return (Path(model_path) / SYNTHETIC_MARKER).is_file()


def default_engine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/llenergymeasure/trtllm-engines`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llenergymeasure" / "trtllm-engines"


def cached_engine_ok(engine_dir: Path, key: str) -> bool:
    """Whether ``engine_dir`` holds a complete cached engine of ``key``."""
    meta = engine_dir / ENGINE_META_FILE
    if not meta.is_file():
        return False
    try:
        data = json.loads(meta.read_text(errors="replace"))
    except (OSError, ValueError):  # damaged (empty, cut short, not JSON): built again
        return False
    return (
        isinstance(data, dict) and data.get("key") == key and (engine_dir / "config.json").is_file()
    )


def store_engine(
    llm: Any, engine_dir: Path, key: str, spec: EngineBuildSpec, build_time_s: float
) -> None:
    """Save the built engine into the cache atomically (temp dir + rename)."""
    parent = engine_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=parent))
    try:
        llm.save(str(tmp))
        meta = {
            "key": key,
            "format": ENGINE_CACHE_FORMAT,
            "spec": asdict(spec),
            "build_time_s": build_time_s,
            "created_unix_s": time.time(),
        }
        (tmp / ENGINE_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        try:
            os.rename(tmp, engine_dir)
        except OSError:
            if not cached_engine_ok(engine_dir, key):
                shutil.rmtree(engine_dir, ignore_errors=True)
                os.rename(tmp, engine_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
