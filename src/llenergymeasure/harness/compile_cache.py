"""Persistent compile caches, keyed by what changes the compiled graph (docs/performance.md).

Compiling (torch.compile's Inductor, vLLM's compile and CUDA-graph capture) took 60-120 s of an
experiment process on an H100, and nothing compiled survived the process: every cycle compiled
again. Here the caches live under ``<model_cache_dir>/compile/<key>/``, one directory per key, a
hash of everything that changes the compiled graph: the backend, the model (its name and the
content of its ``config.json``), precision, batch size, the prompt and output lengths, the
decoding settings, the backend's section (its compile options), the engine's and torch's
versions, Python's version and the GPU's name. Two configs that differ elsewhere (the window's
length, the baseline, ``n``) share a directory.

``prepare`` runs in the experiment process before the engine is imported and points the engines'
cache variables into the key's directory (torch reads ``TORCHINDUCTOR_FX_GRAPH_CACHE`` when its
Inductor config is imported): ``TORCHINDUCTOR_CACHE_DIR``, ``TRITON_CACHE_DIR``,
``TORCHINDUCTOR_FX_GRAPH_CACHE``, ``TORCHINDUCTOR_AUTOGRAD_CACHE`` and ``LLEM_COMPILE_CACHE_DIR``
(a backend reads it for its own engine's variable, e.g. vLLM's ``VLLM_CACHE_ROOT``).
``measurement.compile_cache``: ``on`` (default) uses the directory; ``refresh`` empties it first
(a cold compile that leaves a warm cache); ``off`` disables torch's caches and points them at a
throwaway directory, so nothing compiled before is reused (a cold start on purpose).

Concurrent runs sharing a key (side by side, SLURM jobs on one shared filesystem) take an
exclusive ``fcntl.flock`` on ``<key>/.lock`` from before the engine's import until its compile is
done: the second run waits, then finds the first's artefacts (a hit) instead of writing the same
files at the same time. The engines' own writes are atomic too (write and rename), so the lock is
about not compiling twice, and about ``refresh`` never emptying a directory another run reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: the subdirectory of ``output.model_cache_dir`` that holds every key's directory
COMPILE_SUBDIR = "compile"
#: bump when the key's fields or the directory's layout change, so old entries are not reused
COMPILE_CACHE_FORMAT = 1
#: written into a key's directory once something compiled there completed: it was a miss before
MARKER_FILE = "llem_compile.json"
LOCK_FILE = ".lock"
#: where a backend finds its key's directory (None/unset: no persistent cache this run)
DIR_ENV = "LLEM_COMPILE_CACHE_DIR"
#: the versions in the key besides the backend's own packages (its registry entry): the compiler
KEY_PACKAGES = ("torch", "triton")


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (absent ones left out), read without importing them."""
    out: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def engine_versions(backend: str) -> dict[str, str]:
    """torch's and Triton's versions and those of the backend's packages (its registry entry)."""
    from llenergymeasure.backends import registry

    spec = registry.get(backend)
    return package_versions(KEY_PACKAGES + tuple(spec.packages))


def _model_identity(config: Any, model_path: str | None) -> dict[str, Any]:
    """The model's name and a hash of its ``config.json`` (its shapes), when there is one."""
    ident: dict[str, Any] = {"model": config.model}
    if model_path:
        path = Path(model_path) / "config.json"
        with contextlib.suppress(OSError):
            ident["config_json_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return ident


def key_fields(
    config: Any,
    model_path: str | None,
    gpu_names: list[str],
    versions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What changes the compiled graph, as plain data (stored beside the cache as its record)."""
    section = config.backend_section().model_dump(mode="json")
    return {
        "format": COMPILE_CACHE_FORMAT,
        "backend": config.backend,
        **_model_identity(config, model_path),
        "precision": config.precision,
        "batch_size": config.batch_size,
        "max_input_tokens": config.max_input_tokens,
        "max_output_tokens": config.max_output_tokens,
        "decoding": config.decoding.model_dump(mode="json"),
        "section": section,
        "versions": versions if versions is not None else engine_versions(config.backend),
        "python": ".".join(platform.python_version_tuple()[:2]),
        "gpus": sorted(gpu_names) or ["cpu"],
    }


def cache_key(fields: dict[str, Any]) -> str:
    """The key's directory name: 16 hex digits of the fields' canonical JSON."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class CompileCache:
    """This run's compile cache: its mode, key and directory, whether an entry existed, the lock."""

    mode: str  # on | off | refresh
    key: str | None = None
    directory: Path | None = None
    existed: bool = False  # a completed entry was there before this run
    #: set when the key's marker was there but could not be read: the entry is compiled again
    damaged_note: str | None = None
    lock_wait_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    _lock_fd: int | None = None

    def release(self) -> None:
        """Let the next run with this key in (safe twice; also done when the process ends)."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor drops its flock

    def mark_complete(self, record: dict[str, Any]) -> None:
        """Record that this key's directory now holds a finished compile (written atomically)."""
        if self.directory is None or self.mode == "off" or self.existed:
            return
        from llenergymeasure.results.io import atomic_write_json

        with contextlib.suppress(OSError):  # a full disk must not fail a measured run
            atomic_write_json(self.directory / MARKER_FILE, record)


def cache_env(directory: Path, mode: str) -> dict[str, str]:
    """The engines' cache variables for ``directory`` (``mode`` off: caches disabled)."""
    if mode == "off":
        return {
            "TORCHINDUCTOR_CACHE_DIR": str(directory / "inductor"),
            "TRITON_CACHE_DIR": str(directory / "triton"),
            "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1",
        }
    return {
        "TORCHINDUCTOR_CACHE_DIR": str(directory / "inductor"),
        "TRITON_CACHE_DIR": str(directory / "triton"),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
        DIR_ENV: str(directory),
    }


def lock(directory: Path) -> int | None:
    """An exclusive ``flock`` on ``directory/.lock`` (blocks until free); its descriptor, or None
    on a filesystem that refuses locks (e.g. NFS without its lock service): the engines' writes
    are atomic, so two runs then both compile and neither corrupts the cache."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # ENOLCK, EOPNOTSUPP: go on unlocked
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _empty(directory: Path) -> None:
    """Remove everything in ``directory`` except its lock file (we hold the lock)."""
    for child in directory.iterdir():
        if child.name == LOCK_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def prepare(
    mode: str,
    root: Path,
    fields: dict[str, Any],
    environ: Any = None,
    clock: Any = time.perf_counter,
) -> CompileCache:
    """Choose the key's directory, take its lock, empty it for ``refresh``, set the variables.

    Call before the engine is imported. ``environ`` (``os.environ`` unless given) receives the
    variables; the returned ``CompileCache`` holds the lock until ``release``.
    """
    env = os.environ if environ is None else environ
    if mode not in ("on", "off", "refresh"):
        raise ValueError(
            f"measurement.compile_cache: {mode!r} is not a mode; use on, off or refresh"
        )
    key = cache_key(fields)
    if mode == "off":
        scratch = Path(tempfile.mkdtemp(prefix="llem-compile-off-"))
        values = cache_env(scratch, mode)
        env.update(values)
        env.pop(DIR_ENV, None)
        return CompileCache(mode=mode, key=key, directory=None, env=values)
    directory = Path(root) / COMPILE_SUBDIR / key
    t0 = clock()
    fd = lock(directory)
    waited = clock() - t0
    if mode == "refresh":
        _empty(directory)
    existed = _marker_ok(directory / MARKER_FILE)
    damaged_note = None
    if not existed and (directory / MARKER_FILE).exists():
        damaged_note = (
            f"the compile cache's marker {directory / MARKER_FILE} could not be read (damaged); "
            "the entry was compiled again and the marker rewritten"
        )
    if not (directory / "key.json").is_file():
        from llenergymeasure.results.io import atomic_write_json

        with contextlib.suppress(OSError):
            atomic_write_json(directory / "key.json", fields)
    values = cache_env(directory, mode)
    env.update(values)
    return CompileCache(
        mode=mode,
        key=key,
        directory=directory,
        existed=existed,
        damaged_note=damaged_note,
        lock_wait_s=waited,
        env=values,
        _lock_fd=fd,
    )


def _marker_ok(path: Path) -> bool:
    """A finished compile's marker that reads back; a damaged one (empty, cut short, not a JSON
    object) counts as no entry, so this run compiles again and writes it anew."""
    try:
        return isinstance(json.loads(path.read_text(errors="replace")), dict)
    except (OSError, ValueError):
        return False


def verdict(cache: CompileCache, counters: dict[str, int] | None) -> str:
    """hit | partial | miss | off for the result: the engine's own cache counters when it reports
    them (only hits: hit; hits and misses: partial, some graphs still compiled; only misses:
    miss), else whether a completed entry was there before this run."""
    if cache.mode == "off":
        return "off"
    if counters:
        misses = sum(v for k, v in counters.items() if k.endswith("_miss"))
        hits = sum(v for k, v in counters.items() if k.endswith("_hit"))
        if misses and hits:
            return "partial"
        if misses:
            return "miss"
        if hits:
            return "hit"
    return "hit" if cache.existed else "miss"
