"""Caches and records llem reads back outside a study folder, damaged: the idle-baseline cache,
the compile cache's marker, the TensorRT engine cache's metadata, the archive's schema cache, a
run's error.json and progress.json as the runner reads them, and the user config. A cache that
fails to read is ignored and rebuilt (the baseline says so in its record); a record keeps the
failure's reason; the user config is a clean error naming it. Never a traceback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llenergymeasure.backends.tensorrt.engine_cache import ENGINE_META_FILE, cached_engine_ok
from llenergymeasure.cli import app
from llenergymeasure.energy.baseline import CACHE_FILE, measure_idle_baseline
from llenergymeasure.harness import compile_cache
from llenergymeasure.results.archive.store import SCHEMA_CACHE_FILE, Archive
from llenergymeasure.results.layout import ERROR_FILE, LOG_FILE, PROGRESS_FILE
from llenergymeasure.runners.outcome import outcome_from_dir, progress_phase
from tests.core.test_baseline_cache_and_settle_by_hand import KEY0, Clock, Windows, entry, steady
from tests.damaged.study_builder import DAMAGES, build_study, damage

#: text of a damaged JSON file, per damage (schema_version and wrong_type need the file's shape)
JSON_DAMAGES = {
    "empty": "",
    "truncated": '{"version": 2, "entries": {"GPU-a',
    "not_json": "\x00\x01 binary junk {[",
    "not_an_object": "[1, 2, 3]",
}


def _baseline_cache_texts() -> dict[str, str]:
    good = {KEY0 + "|cold": entry(4_000.0), "GPU-b|driver 1|700000mW|cold": entry(4_000.0)}
    bad_type = dict(good)
    bad_type[KEY0 + "|cold"] = entry(4_000.0, idle_power_w={"unexpected": [1]}, state=[1])
    return {
        **JSON_DAMAGES,
        "schema_version": json.dumps({"version": 99, "entries": good}),
        "wrong_type": json.dumps({"version": 2, "entries": bad_type}),
        "entries_wrong_type": json.dumps({"version": 2, "entries": [1]}),
    }


@pytest.mark.parametrize("how", sorted(_baseline_cache_texts()))
def test_a_damaged_baseline_cache_is_ignored_rebuilt_and_noted(tmp_path: Path, how: str) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / CACHE_FILE).write_text(_baseline_cache_texts()[how])
    meter = Windows(steady(4))
    record = measure_idle_baseline(meter, 4.0, cache, 3600, clock=Clock(5_000.0), sleep=meter.sleep)
    # measured now (not from the damaged cache): 80 W and 60 W
    assert not record.from_cache and meter.calls == 4
    assert record.idle_power_w == {0: 80.0, 1: 60.0}
    (note,) = [w for w in record.warnings if w.code == "baseline_cache_unreadable"]
    assert note.severity == "info" and str(cache / CACHE_FILE) in note.message
    assert "the cache rebuilt" in note.message
    # the cache was rebuilt: a later run reads this window back
    again = Windows(steady(4, 1.0, 1.0))
    later = measure_idle_baseline(again, 4.0, cache, 3600, clock=Clock(5_010.0), sleep=again.sleep)
    assert later.from_cache and later.idle_power_w == {0: 80.0, 1: 60.0} and again.calls == 0


@pytest.mark.parametrize("how", ["empty", "truncated", "not_json", "not_an_object"])
def test_a_damaged_compile_marker_counts_as_no_entry(tmp_path: Path, how: str) -> None:
    fields = {"backend": "pytorch", "model": "m"}
    directory = tmp_path / compile_cache.COMPILE_SUBDIR / compile_cache.cache_key(fields)
    directory.mkdir(parents=True)
    (directory / compile_cache.MARKER_FILE).write_text(JSON_DAMAGES[how])
    cache = compile_cache.prepare("on", tmp_path, fields, environ={})
    try:
        assert cache.existed is False and compile_cache.verdict(cache, None) == "miss"
        # the result says so (CompileRecord.reason carries this note)
        assert cache.damaged_note is not None and "could not be read" in cache.damaged_note
        assert str(directory / compile_cache.MARKER_FILE) in cache.damaged_note
        cache.mark_complete({"duration_s": 1.5})  # rewritten by this run's compile
        assert json.loads((directory / compile_cache.MARKER_FILE).read_text()) == {
            "duration_s": 1.5
        }
    finally:
        cache.release()
    again = compile_cache.prepare("on", tmp_path, fields, environ={})
    again.release()
    assert again.existed is True and again.damaged_note is None


@pytest.mark.parametrize("how", ["empty", "truncated", "not_json", "not_an_object", "wrong_key"])
def test_a_damaged_engine_cache_entry_is_built_again(tmp_path: Path, how: str) -> None:
    engine = tmp_path / "abc"
    engine.mkdir()
    (engine / "config.json").write_text("{}")
    (engine / "rank0.engine").write_bytes(b"engine")  # more damages: test_damaged_engine_cache
    text = json.dumps({"key": 5}) if how == "wrong_key" else JSON_DAMAGES[how]
    (engine / ENGINE_META_FILE).write_text(text)
    assert cached_engine_ok(engine, "abc") is False
    (engine / ENGINE_META_FILE).write_text(json.dumps({"key": "abc"}))
    assert cached_engine_ok(engine, "abc") is True


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"files": {"/x.parquet": [1,',
        "not json",
        "[1]",
        json.dumps({"files": {"/x.parquet": 5}, "signatures": {"s": "oops"}, "gpus": {"d": 3}}),
        json.dumps({"files": {"/x.parquet": [1, 2, "s"]}, "signatures": {"s": [[1, 2, 3]]}}),
    ],
    ids=["empty", "truncated", "not_json", "not_an_object", "wrong_type", "bad_signature"],
)
def test_a_damaged_archive_schema_cache_is_rebuilt(tmp_path: Path, text: str) -> None:
    study_dir, _ = build_study(tmp_path / "results")
    from llenergymeasure.results.export import write_exports
    from llenergymeasure.results.loading import load_study_dir

    write_exports(load_study_dir(study_dir), study_dir)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / SCHEMA_CACHE_FILE).write_text(text)
    archive = Archive([tmp_path / "results"], cache_dir=cache_dir)
    _, rows = archive.query("SELECT count(*) FROM runs")
    assert rows == [(4,)]
    data = json.loads((cache_dir / SCHEMA_CACHE_FILE).read_text())
    assert list(data["files"]) == [str(study_dir / "results.parquet")]


@pytest.mark.parametrize("how", ["empty", "truncated", "not_json", "not_an_object"])
def test_a_damaged_error_json_keeps_a_reason_for_the_failure(tmp_path: Path, how: str) -> None:
    run_dir = tmp_path / "001_c1_pytorch_0123abcd"
    run_dir.mkdir()
    text = '{"phase": "load", "message": "no wei' if how == "truncated" else JSON_DAMAGES[how]
    (run_dir / ERROR_FILE).write_text(text)
    (run_dir / PROGRESS_FILE).write_text(json.dumps({"phase": "load"}))
    (run_dir / LOG_FILE).write_text("loading\nOSError: no weights here\n")
    outcome = outcome_from_dir(run_dir, 1, ended="the harness exited with status 1")
    assert outcome.status == "failed" and outcome.phase == "load"
    assert f"its {ERROR_FILE} is damaged" in (outcome.message or "")
    assert "OSError: no weights here" in (outcome.message or "")
    assert (run_dir / ERROR_FILE).read_text() == text  # the harness's file is left as it was


@pytest.mark.parametrize(
    "text", ["", '{"phase": "lo', "junk", "[1]", json.dumps({"phase": {"x": 1}})]
)
def test_a_damaged_progress_file_means_the_phase_is_unknown(tmp_path: Path, text: str) -> None:
    (tmp_path / PROGRESS_FILE).write_text(text)
    assert progress_phase(tmp_path) is None


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_user_config_is_a_clean_error_naming_it(tmp_path: Path, how: str) -> None:
    user = tmp_path / "user.yaml"
    user.write_text(
        f"output:\n  results_dir: {tmp_path / 'results'}\nmeasurement:\n  energy_backend: none\n"
    )
    if how == "schema_version":
        user.write_text("schema_version: '99.0'\n" + user.read_text())
    elif how == "wrong_type":
        user.write_text("output: [1, 2]\nmeasurement: 5\n")
    else:
        damage(user, how)
    (tmp_path / "results").mkdir()
    res = CliRunner().invoke(
        app, ["results", "list"], env={"LLEM_CONFIG": str(user), "COLUMNS": "200"}
    )
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    if how in ("empty", "truncated"):  # still a (smaller) YAML mapping, or nothing: defaults
        assert res.exit_code in (0, 2), res.output
    else:
        assert res.exit_code == 2, res.output
    if res.exit_code == 2:
        assert str(user) in res.output, res.output
    assert os.path.exists(user)


@pytest.mark.parametrize("text", ["", '{"phase": "lo', "junk", "[1]", json.dumps({"phase": 3})])
def test_the_live_view_reads_a_damaged_progress_file_as_starting(tmp_path: Path, text: str) -> None:
    from rich.console import Console

    from llenergymeasure.cli.run_progress import LiveProgress

    (tmp_path / PROGRESS_FILE).write_text(text)
    phase = LiveProgress(Console(), [])._phase(tmp_path)
    assert phase == ("3" if text.endswith("3}") else "starting")
