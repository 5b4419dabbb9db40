"""The TensorRT engine's identity (its build spec and key) and the on-disk cache of built engines.

``<engine_cache_dir>/<key>/`` holds what ``LLM.save`` writes plus ``llem_engine.json`` (the build
spec, the build time). The key is a hash of the build spec: model identity (path, a fingerprint of
its config and weight files), the TensorRT-LLM version, dtype, tp/pp sizes, the four shape limits,
quantization, KV-cache quantization and whether the weights are dummy. Runtime-only knobs
(KV-cache memory fraction, block reuse, decoding) are not in the key: one engine serves all of
them. Entries are written to a temporary directory and renamed into place, so a crashed build
never leaves a half engine that looks complete.

An entry that is there but damaged (metadata missing, empty, cut short, not JSON, of another key
or format; the engine's ``config.json`` missing or unreadable; an engine file missing or of
another size than the build wrote) is moved aside to ``<key>.damaged`` and the engine built
again; the backend says so in the result (``load.extra.engine_cache_note``).
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
from typing import Any, Literal

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


@dataclass(frozen=True)
class CachedEngine:
    """What the cache holds under a key: a usable engine, nothing, or a damaged entry."""

    state: Literal["hit", "absent", "damaged"]
    problem: str | None = None  # what is wrong with a damaged entry


def _read_json(path: Path) -> tuple[Any, str | None]:
    """The file's JSON, or None and what is wrong with it."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return None, f"{path.name} could not be read ({exc.strerror or exc})"
    if not text.strip():
        return None, f"{path.name} is empty"
    try:
        return json.loads(text), None
    except ValueError as exc:
        return None, f"{path.name} is not JSON, or cut short ({exc})"


def _engine_files_problem(engine_dir: Path, meta: dict[str, Any]) -> str | None:
    """An engine file missing or of another size than the build wrote (``files`` of the
    metadata; an entry from before it was recorded: each ``rank<N>.engine`` present, not empty)."""
    files = meta.get("files")
    if files is None:
        spec = meta.get("spec")
        spec = spec if isinstance(spec, dict) else {}
        tp, pp = spec.get("tp_size") or 1, spec.get("pp_size") or 1
        if not (isinstance(tp, int) and isinstance(pp, int) and tp > 0 and pp > 0):
            return f"{ENGINE_META_FILE} has tp_size {tp!r} and pp_size {pp!r}, not whole numbers"
        files = {f"rank{r}.engine": None for r in range(tp * pp)}
    if not isinstance(files, dict):
        return f"{ENGINE_META_FILE} has 'files' of type {type(files).__name__}, not an object"
    for name, size in sorted(files.items()):
        path = engine_dir / name
        if not path.is_file():
            return f"the engine file {name} is missing"
        actual = path.stat().st_size
        if size is None and actual == 0:
            return f"the engine file {name} is empty"
        if size is not None and actual != size:
            return f"the engine file {name} has {actual} bytes, the build wrote {size} (cut short)"
    return None


def inspect_engine(engine_dir: Path, key: str) -> CachedEngine:
    """Whether ``engine_dir`` holds a complete cached engine of ``key``, and if it is there but
    unusable, what is wrong with it. Reads files only (no TensorRT-LLM)."""
    if not engine_dir.exists():
        return CachedEngine("absent")
    if not engine_dir.is_dir():
        return CachedEngine("damaged", "it is a file, not a directory")
    if not (engine_dir / ENGINE_META_FILE).is_file():
        return CachedEngine("damaged", f"{ENGINE_META_FILE} is missing (a build or copy cut short)")
    meta, problem = _read_json(engine_dir / ENGINE_META_FILE)
    if problem is None and not isinstance(meta, dict):
        problem = f"{ENGINE_META_FILE} holds a JSON {type(meta).__name__}, not an object"
    if problem is None and meta.get("key") != key:
        problem = f"{ENGINE_META_FILE} names key {meta.get('key')!r}, not {key!r}"
    if problem is None and meta.get("format", ENGINE_CACHE_FORMAT) != ENGINE_CACHE_FORMAT:
        problem = (
            f"{ENGINE_META_FILE} is of cache format {meta.get('format')!r}, this llenergymeasure "
            f"reads format {ENGINE_CACHE_FORMAT}"
        )
    if problem is None and not (engine_dir / "config.json").is_file():
        problem = "the engine's config.json is missing"
    if problem is None:
        config, problem = _read_json(engine_dir / "config.json")
        if problem is None and not isinstance(config, dict):
            problem = (
                f"the engine's config.json holds a JSON {type(config).__name__}, not an object"
            )
    if problem is None:
        problem = _engine_files_problem(engine_dir, meta)
    return CachedEngine("damaged", problem) if problem else CachedEngine("hit")


def cached_engine_ok(engine_dir: Path, key: str) -> bool:
    """Whether ``engine_dir`` holds a complete cached engine of ``key``."""
    return inspect_engine(engine_dir, key).state == "hit"


def set_aside(engine_dir: Path) -> Path:
    """Move a damaged entry out of the way (to ``<key>.damaged``, replacing an older one there)
    so the engine can be built again under its key; the damaged files stay for a look."""
    aside = engine_dir.with_name(engine_dir.name + ".damaged")
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    elif aside.exists():
        aside.unlink()
    os.rename(engine_dir, aside)
    return aside


def store_engine(
    llm: Any, engine_dir: Path, key: str, spec: EngineBuildSpec, build_time_s: float
) -> None:
    """Save the built engine into the cache atomically (temp dir + rename)."""
    parent = engine_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=parent))
    try:
        llm.save(str(tmp))
        files = {
            str(f.relative_to(tmp)): f.stat().st_size
            for f in sorted(tmp.rglob("*.engine"))
            if f.is_file()
        }
        meta = {
            "key": key,
            "format": ENGINE_CACHE_FORMAT,
            "spec": asdict(spec),
            "build_time_s": build_time_s,
            "created_unix_s": time.time(),  # a timestamp, never a duration
            "files": files,  # each engine file's size: a file cut short is seen on reading
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
