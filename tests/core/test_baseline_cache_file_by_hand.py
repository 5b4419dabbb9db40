"""The idle-baseline cache file (``energy/baseline_cache.py``) by hand: what a damaged file is
called, the file's exact format, the entry written for a GPU whose figures are partly missing,
and which entries a later run may use (age, defaults, the oldest entry's window)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llenergymeasure.energy.baseline_cache import (
    CACHE_VERSION,
    from_cache,
    load_cache,
    save_cache,
    store_entries,
)
from llenergymeasure.energy.types import BaselineRecord, MonotonicWindow

# -- load_cache: why a file is not used --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
        (
            b'{"version": 2, "entr',
            "JSONDecodeError: Unterminated string starting at: line 1 column 16 (char 15)",
        ),
        # bytes that are not UTF-8 are replaced, so the damage is named as JSON, not as encoding
        (b"\xff\xfe{", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"version": 1, "entries": {}}', "cache version 1, not 2"),
        (b'{"entries": {}}', "cache version None, not 2"),
        (b'{"version": 2, "entries": []}', "its entries are not a mapping"),
        (b'{"version": 2}', "its entries are not a mapping"),
    ],
)
def test_a_damaged_cache_is_ignored_with_its_problem_named(
    tmp_path: Path, raw: bytes, problem: str
) -> None:
    path = tmp_path / "idle_baseline.json"
    path.write_bytes(raw)
    problems: list[str] = []
    assert load_cache(path, problems) == {}
    assert problems == [problem]
    assert load_cache(path) == {}  # no list given: ignored all the same


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (PermissionError(13, "Permission denied"), "PermissionError: [Errno 13] Permission denied"),
        (OSError(), "OSError: "),  # an I/O error with no text: its type alone, nothing made up
        (OSError("first line\nsecond line"), "OSError: first line"),  # the first line only
    ],
)
def test_an_unreadable_cache_is_named_by_its_error_type_and_first_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, problem: str
) -> None:
    path = tmp_path / "idle_baseline.json"
    path.write_text("{}")

    def fail(self: Path, *args: object, **kwargs: object) -> str:
        raise error

    monkeypatch.setattr(Path, "read_text", fail)
    problems: list[str] = []
    assert load_cache(path, problems) == {}
    assert problems == [problem]


def test_a_missing_cache_is_empty_and_no_problem(tmp_path: Path) -> None:
    problems: list[str] = []
    assert load_cache(tmp_path / "none.json", problems) == {}
    assert problems == []


def test_a_good_cache_gives_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "idle_baseline.json"
    path.write_text(json.dumps({"version": 2, "entries": {"k": {"idle_power_w": 70.0}}}))
    problems: list[str] = []
    assert load_cache(path, problems) == {"k": {"idle_power_w": 70.0}}
    assert problems == []


# -- save_cache and store_entries: the file written -------------------------------------------


def test_the_file_is_sorted_indented_json_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "idle_baseline.json"
    save_cache(path, {"b": {"x": 1}, "a": {"y": 2}})
    text = path.read_text()
    assert text == json.dumps(
        {"version": CACHE_VERSION, "entries": {"b": {"x": 1}, "a": {"y": 2}}},
        indent=2,
        sort_keys=True,
    )
    assert text.startswith('{\n  "entries": {\n    "a"')
    assert [p.name for p in path.parent.iterdir()] == ["idle_baseline.json"]  # no temp file left


def test_an_entry_for_a_gpu_with_figures_missing_takes_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "idle_baseline.json"
    save_cache(path, {"other": {"kept": True}})
    record = BaselineRecord(
        kind="cold",
        idle_power_w={0: 70.0, 1: 80.0},
        idle_power_se_w={0: 0.5},
        drift={0: 0.01},
        drift_se={0: 0.002},
        state={0: {"pstate": 8}},
        measured_at="2027-01-15T08:00:00+00:00",
        duration_s=10.0,
        n_windows=10,
        window_monotonic=MonotonicWindow(start_s=100.0, end_s=110.0, boot_id="b"),
    )
    store_entries(path, {0: "g0|cold", 1: "g1|cold"}, record, 1_800_000_000.0, {0: 500})
    entries = json.loads(path.read_text())["entries"]
    assert entries["other"] == {"kept": True}
    window = {"start_s": 100.0, "end_s": 110.0, "boot_id": "b"}
    common = {
        "measured_at_epoch": 1_800_000_000.0,
        "measured_at": "2027-01-15T08:00:00+00:00",
        "duration_s": 10.0,
        "n_windows": 10,
        "window_monotonic": window,
    }
    assert entries["g0|cold"] == {
        "idle_power_w": 70.0,
        "idle_power_se_w": 0.5,
        "drift": 0.01,
        "drift_se": 0.002,
        "state": {"pstate": 8},
        "n_samples": 500,
        **common,
    }
    assert entries["g1|cold"] == {
        "idle_power_w": 80.0,
        "idle_power_se_w": 0.0,
        "drift": 0.0,
        "drift_se": None,
        "state": {},
        "n_samples": 0,
        **common,
    }


def test_a_record_without_a_monotonic_window_stores_none(tmp_path: Path) -> None:
    path = tmp_path / "idle_baseline.json"
    record = BaselineRecord(kind="cold", idle_power_w={0: 70.0})
    store_entries(path, {0: "g0|cold"}, record, 5.0, {})
    assert json.loads(path.read_text())["entries"]["g0|cold"]["window_monotonic"] is None


# -- from_cache: which entries a run may use --------------------------------------------------


def _entry(epoch: float, **extra: object) -> dict:
    return {"idle_power_w": 70.0, "measured_at_epoch": epoch, **extra}


def test_entries_within_the_ttl_are_used_and_the_oldest_gives_the_window() -> None:
    entries = {
        "a": _entry(
            900.0,
            n_windows=5,
            duration_s=5.0,
            measured_at="old",
            n_samples=10,
            window_monotonic={"start_s": 1.0, "end_s": 6.0, "boot_id": "x"},
        ),
        "b": _entry(
            950.0,
            n_windows=9,
            duration_s=9.0,
            measured_at="new",
            n_samples=20,
            idle_power_se_w=0.25,
            drift=0.5,
            drift_se=0.1,
            state={"p": 1},
        ),
    }
    rec = from_cache(entries, {0: "a", 1: "b"}, 1000.0, 100.0, "resident", "key")
    assert rec is not None
    assert rec.kind == "resident" and rec.from_cache and rec.cache_key == "key"
    assert rec.idle_power_w == {0: 70.0, 1: 70.0}
    assert rec.idle_power_se_w == {0: 0.0, 1: 0.25}  # absent: 0
    assert rec.drift == {0: 0.0, 1: 0.5}
    assert rec.drift_se == {1: 0.1}  # absent: no figure
    assert rec.state == {0: {}, 1: {"p": 1}}
    assert (rec.n_windows, rec.duration_s, rec.measured_at) == (5, 5.0, "old")  # the oldest
    assert rec.n_samples == 30
    assert rec.window_monotonic == MonotonicWindow(start_s=1.0, end_s=6.0, boot_id="x")


def test_an_entry_without_its_window_counts_or_sizes_takes_zero() -> None:
    rec = from_cache({"a": _entry(1000.0)}, {0: "a"}, 1000.0, 10.0, "cold", None)
    assert rec is not None
    assert (rec.n_windows, rec.duration_s, rec.n_samples) == (0, 0.0, 0)
    assert rec.measured_at == "None" and rec.window_monotonic is None


@pytest.mark.parametrize(
    ("entry", "usable"),
    [
        (_entry(900.0), True),  # exactly ttl old
        (_entry(899.9), False),  # older than the ttl
        (_entry(1000.0), True),  # measured now
        (_entry(1000.1), False),  # from the future: the wall clock was stepped back
        ({"idle_power_w": 70.0}, False),  # no time
        (_entry("soon"), False),  # type: ignore[arg-type]  # a time that is not a number
        ("not an entry", False),
    ],
)
def test_an_entry_is_used_only_when_its_age_is_known_and_within_the_ttl(
    entry: object, usable: bool
) -> None:
    rec = from_cache({"a": entry}, {0: "a"}, 1000.0, 100.0, "cold", None)
    assert (rec is not None) is usable


def test_one_gpu_missing_from_the_cache_means_no_cached_baseline() -> None:
    entries = {"a": _entry(1000.0)}
    assert from_cache(entries, {0: "a", 1: "b"}, 1000.0, 100.0, "cold", None) is None
