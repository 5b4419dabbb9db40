"""A damaged TensorRT engine-cache entry is set aside and built again, and the result says so
(issue 30 item 2: caches that fail to read are ignored and rebuilt, with a note in the result).

Each case writes a complete entry as the backend stores it (``store_engine``), damages one part
of it on disk, and checks what ``inspect_engine`` reads there (no TensorRT-LLM needed), then loads
the backend against ``tests/fake_trtllm``: the entry moves to ``<key>.damaged``, the engine is
built again, ``load.extra.engine_cache_note`` names what was wrong, and the next load is a hit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.backends.tensorrt.engine_cache import (
    ENGINE_META_FILE,
    EngineBuildSpec,
    inspect_engine,
    set_aside,
    store_engine,
)
from tests.backends.test_tensorrt_backend import (  # noqa: F401 (fixtures)
    make_backend,
    make_config,
    synthetic_dir,
    trtllm,
)

SPEC = EngineBuildSpec(
    model={"path": "/m", "files_sha256": "0" * 64},
    trtllm_version="0.0-test",
    dtype="float16",
    tp_size=1,
    pp_size=1,
    max_batch_size=None,
    max_num_tokens=None,
    max_input_len=32,
    max_seq_len=48,
    quant_algo=None,
    kv_cache_quant_algo=None,
    dummy_weights=True,
)


class _Saver:
    """What ``LLM.save`` leaves in a directory: the engine's config.json and its engine file."""

    def save(self, path: str) -> None:
        Path(path, "config.json").write_text(json.dumps({"build_config": {}}))
        Path(path, "rank0.engine").write_bytes(b"\x7fENGINE!" * 512)


def _meta(entry: Path) -> dict[str, Any]:
    return json.loads((entry / ENGINE_META_FILE).read_text())


def _set_meta(entry: Path, **update: Any) -> None:
    (entry / ENGINE_META_FILE).write_text(json.dumps({**_meta(entry), **update}))


def _cut(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def _replace_by_file(entry: Path) -> None:
    for f in entry.iterdir():
        f.unlink()
    entry.rmdir()
    entry.write_text("not a directory")


#: damage -> (what it does to the entry, what the note must say)
DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "meta_missing": (lambda e: (e / ENGINE_META_FILE).unlink(), f"{ENGINE_META_FILE} is missing"),
    "meta_empty": (lambda e: (e / ENGINE_META_FILE).write_text(""), f"{ENGINE_META_FILE} is empty"),
    "meta_truncated": (lambda e: _cut(e / ENGINE_META_FILE, 20), "is not JSON, or cut short"),
    "meta_not_json": (
        lambda e: (e / ENGINE_META_FILE).write_bytes(b"\x00\x01 junk {["),
        "is not JSON, or cut short",
    ),
    "meta_not_an_object": (
        lambda e: (e / ENGINE_META_FILE).write_text("[1, 2]"),
        "holds a JSON list, not an object",
    ),
    "meta_wrong_key": (lambda e: _set_meta(e, key=5), "names key 5, not"),
    "meta_wrong_format": (lambda e: _set_meta(e, format=99), "is of cache format 99"),
    "meta_files_wrong_type": (lambda e: _set_meta(e, files=[1]), "has 'files' of type list"),
    "config_missing": (lambda e: (e / "config.json").unlink(), "config.json is missing"),
    "config_truncated": (lambda e: _cut(e / "config.json", 5), "config.json is not JSON"),
    "config_not_an_object": (
        lambda e: (e / "config.json").write_text('"engine"'),
        "config.json holds a JSON str, not an object",
    ),
    "engine_missing": (lambda e: (e / "rank0.engine").unlink(), "rank0.engine is missing"),
    "engine_truncated": (
        lambda e: _cut(e / "rank0.engine", 100),
        "rank0.engine has 100 bytes, the build wrote",
    ),
    "old_entry_engine_empty": (
        lambda e: (_set_meta(e, files=None), (e / "rank0.engine").write_bytes(b"")),
        "rank0.engine is empty",
    ),
    "entry_is_a_file": (_replace_by_file, "it is a file, not a directory"),
}


def _stored(cache: Path) -> Path:
    entry = cache / SPEC.key()
    store_engine(_Saver(), entry, SPEC.key(), SPEC, build_time_s=1.5)
    return entry


def test_a_stored_entry_is_a_hit_with_its_engine_sizes(tmp_path: Path) -> None:
    entry = _stored(tmp_path)
    assert inspect_engine(entry, SPEC.key()).state == "hit"
    assert _meta(entry)["files"] == {"rank0.engine": 4096}
    assert inspect_engine(tmp_path / "nothing", SPEC.key()).state == "absent"
    _set_meta(entry, files=None)  # an entry written before the sizes were recorded
    assert inspect_engine(entry, SPEC.key()).state == "hit"


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_what_is_wrong_with_a_damaged_entry_is_named(tmp_path: Path, damage: str) -> None:
    entry = _stored(tmp_path)
    do, says = DAMAGES[damage]
    do(entry)
    cached = inspect_engine(entry, SPEC.key())
    assert cached.state == "damaged" and says in (cached.problem or "")
    aside = set_aside(entry)
    assert aside.name == f"{SPEC.key()}.damaged" and aside.exists() and not entry.exists()


def test_an_older_damaged_entry_is_replaced_when_another_is_set_aside(tmp_path: Path) -> None:
    entry = _stored(tmp_path)
    (tmp_path / f"{SPEC.key()}.damaged").mkdir()
    (tmp_path / f"{SPEC.key()}.damaged" / "old").write_text("old")
    (entry / "config.json").unlink()
    aside = set_aside(entry)
    assert sorted(p.name for p in aside.iterdir()) == [ENGINE_META_FILE, "rank0.engine"]


def _load(config: Any, model: Path, cache: Path) -> dict[str, Any]:
    backend = make_backend(config, model, cache)
    try:
        return dict(backend.load().extra)
    finally:
        backend.close()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_the_backend_builds_a_damaged_engine_again_and_says_why(
    trtllm: Any,  # noqa: F811
    synthetic_dir: Path,  # noqa: F811
    tmp_path: Path,
    damage: str,
) -> None:
    cache = tmp_path / "engines"
    first = _load(make_config(), synthetic_dir, cache)
    assert first["engine_cache_hit"] is False and first["engine_cache_note"] is None
    entry = Path(first["engine_dir"])
    do, says = DAMAGES[damage]
    do(entry)

    again = _load(make_config(), synthetic_dir, cache)
    assert again["engine_cache_hit"] is False and trtllm.fake_state.count("build") == 2
    note = again["engine_cache_note"]
    assert note.startswith(f"the cached engine {entry} was damaged (") and says in note
    assert note.endswith(f"moved to {entry.parent / (entry.name + '.damaged')}; built again")
    assert (entry.parent / f"{entry.name}.damaged").exists()  # kept for a look
    third = _load(make_config(), synthetic_dir, cache)
    assert third["engine_cache_hit"] is True and third["engine_cache_note"] is None
