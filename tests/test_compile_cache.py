"""Issue 26: persistent compile caches (keyed, locked, recorded) and the timings block."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure import ExperimentConfig
from llenergymeasure.harness import compile_cache as cc
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.harness.timings import PhaseClock, timing_key
from tests.helpers import tiny_experiment

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = {"torch": "2.13.0", "transformers": "5.0"}


def _fields(**overrides: Any) -> dict[str, Any]:
    gpus = overrides.pop("gpus", ["NVIDIA H100 80GB HBM3"])
    versions = overrides.pop("versions", VERSIONS)
    config = ExperimentConfig.from_dict(tiny_experiment(**overrides))
    return cc.key_fields(config, None, gpus, versions)


# -- the key --------------------------------------------------------------------------------------


def test_key_changes_with_what_changes_the_graph_and_only_that() -> None:
    base = cc.cache_key(_fields())
    assert cc.cache_key(_fields()) == base
    for changed in (
        _fields(batch_size=4),
        _fields(precision="bf16"),
        _fields(max_output_tokens=8),
        _fields(pytorch={"static_cache": True, "torch_compile": True}),
        _fields(gpus=["NVIDIA H200"]),
        _fields(versions={**VERSIONS, "torch": "2.11.0"}),
        _fields(model="synthetic/llama-1b"),
    ):
        assert cc.cache_key(changed) != base
    # the window, the prompt count, the baseline and the cache mode compile the same graph
    for same in (
        _fields(n=50),
        _fields(measurement={"min_window_s": 60}),
        _fields(baseline={"enabled": True}),
        _fields(measurement={"compile_cache": "refresh"}),
    ):
        assert cc.cache_key(same) == base


def test_compile_cache_mode_is_not_in_the_config_hash() -> None:
    on = ExperimentConfig.from_dict(tiny_experiment())
    for mode in ("off", "refresh"):
        other = ExperimentConfig.from_dict(tiny_experiment(measurement={"compile_cache": mode}))
        assert other.measurement.compile_cache == mode
        assert other.config_hash == on.config_hash
    assert "compile_cache" not in on.hashable_dict()["measurement"]


def test_a_bad_mode_is_refused_naming_the_field() -> None:
    with pytest.raises(Exception, match="compile_cache"):
        ExperimentConfig.from_dict(tiny_experiment(measurement={"compile_cache": "yes"}))
    with pytest.raises(ValueError, match=r"measurement.compile_cache: 'yes'.*on, off or refresh"):
        cc.prepare("yes", Path("/nonexistent"), {}, environ={})


# -- prepare, modes, verdict ----------------------------------------------------------------------


def test_on_points_torch_and_the_backend_into_the_key_directory(tmp_path: Path) -> None:
    env: dict[str, str] = {"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "stale"}
    cache = cc.prepare("on", tmp_path, _fields(), environ=env)
    try:
        d = tmp_path / "compile" / cache.key  # type: ignore[operator]
        assert cache.directory == d and not cache.existed
        assert env["TORCHINDUCTOR_CACHE_DIR"] == str(d / "inductor")
        assert env["TRITON_CACHE_DIR"] == str(d / "triton")
        assert env["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1"
        assert env["TORCHINDUCTOR_AUTOGRAD_CACHE"] == "1"
        assert env[cc.DIR_ENV] == str(d)
        assert json.loads((d / "key.json").read_text())["batch_size"] == 2
        cache.mark_complete({"compile_s": 1.0})
    finally:
        cache.release()
    again = cc.prepare("on", tmp_path, _fields(), environ={})
    again.release()
    assert again.existed and again.key == cache.key


def test_refresh_empties_the_directory_and_off_uses_none(tmp_path: Path) -> None:
    first = cc.prepare("on", tmp_path, _fields(), environ={})
    assert first.directory is not None
    (first.directory / "inductor").mkdir()
    (first.directory / "inductor" / "graph").write_text("x")
    first.mark_complete({})
    first.release()
    env: dict[str, str] = {}
    fresh = cc.prepare("refresh", tmp_path, _fields(), environ=env)
    fresh.release()
    assert not fresh.existed and not (fresh.directory / "inductor").exists()  # type: ignore[operator]
    assert (fresh.directory / cc.LOCK_FILE).exists()  # type: ignore[operator]
    env = {cc.DIR_ENV: "/stale"}
    off = cc.prepare("off", tmp_path, _fields(), environ=env)
    assert off.directory is None and cc.DIR_ENV not in env
    assert env["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] == "1"
    assert not env["TORCHINDUCTOR_CACHE_DIR"].startswith(str(tmp_path))


def test_verdict_reads_the_engine_counters_first() -> None:
    on = cc.CompileCache(mode="on", existed=True)
    assert cc.verdict(on, {"fxgraph_cache_hit": 3}) == "hit"
    assert cc.verdict(on, {"fxgraph_cache_hit": 3, "fxgraph_cache_miss": 1}) == "partial"
    assert cc.verdict(on, {"fxgraph_cache_miss": 2, "autograd_cache_miss": 3}) == "miss"
    assert cc.verdict(cc.CompileCache(mode="on", existed=False), {}) == "miss"
    assert cc.verdict(on, None) == "hit"
    assert cc.verdict(cc.CompileCache(mode="off"), {"fxgraph_cache_hit": 1}) == "off"


def test_vllm_cache_root_follows_the_key_directory() -> None:
    from llenergymeasure.backends.vllm.args import cache_env

    assert cache_env({cc.DIR_ENV: "/c/compile/k/"}) == {"VLLM_CACHE_ROOT": "/c/compile/k/vllm"}
    assert cache_env({"TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}) == {
        "VLLM_DISABLE_COMPILE_CACHE": "1"
    }
    assert cache_env({}) == {}


# -- the lock, across real processes -----------------------------------------------------------

_HOLDER = """
import json, sys, time
from pathlib import Path
from llenergymeasure.harness import compile_cache as cc
root, fields, me, go = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
(root / f"{me}.started").write_text("")
cache = cc.prepare("on", root, fields, environ={})
(root / f"{me}.locked").write_text(json.dumps({"existed": cache.existed}))
while not go.exists():
    time.sleep(0.02)
cache.mark_complete({"by": me})
cache.release()
"""


def _wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def test_a_second_process_waits_for_the_first_to_finish_its_compile(tmp_path: Path) -> None:
    """A holds the key's lock until told to go; B, started meanwhile, may only get the lock
    after A published its entry, so B sees it (``existed``). Without the lock B would get in at
    once and see no entry."""
    fields = json.dumps(_fields())
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    def start(me: str, go: Path) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-c", _HOLDER, str(tmp_path), fields, me, str(go)]
        return subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)

    a = start("a", tmp_path / "go-a")
    _wait_for(tmp_path / "a.locked", a)
    b = start("b", tmp_path / "go-b")
    (tmp_path / "go-b").write_text("")
    _wait_for(tmp_path / "b.started", b)
    time.sleep(0.3)  # gives a broken lock the chance to let B in (never makes a pass fail)
    assert not (tmp_path / "b.locked").exists()
    (tmp_path / "go-a").write_text("")
    assert a.wait(60) == 0 and b.wait(60) == 0
    assert json.loads((tmp_path / "a.locked").read_text()) == {"existed": False}
    assert json.loads((tmp_path / "b.locked").read_text()) == {"existed": True}


# -- timings ----------------------------------------------------------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_phase_clock_adds_each_phase_back_to_back() -> None:
    clock = ManualClock()
    pc = PhaseClock(clock=clock)
    steps = [
        ("environment", None, 0.5),
        ("model", None, 0.25),
        ("import", None, 3.0),
        ("baseline", "cold idle, 15 s", 15.0),
        ("load", None, 2.0),
        ("prompts", None, 0.125),
        ("compile", None, 40.0),
        ("warmup", "1/10", 4.0),
        ("warmup", "2/10", 4.0),
        ("baseline", "resident idle, 15 s", 20.0),
        ("rewarm", None, 1.0),
        ("measure", "4 prompts", 30.0),
        ("measure", "pass 1 done", 0.5),
        ("surprise", None, 0.75),
        ("result", None, 0.25),
    ]
    for phase, detail, seconds in steps:
        pc.enter(phase, detail)
        clock.t += seconds
    rec = pc.record(window_s=30.0)
    assert (rec.environment_s, rec.model_s, rec.imports_s) == (0.5, 0.25, 3.0)
    assert (rec.cold_baseline_s, rec.resident_baseline_s) == (15.0, 20.0)
    assert (rec.compile_s, rec.warmup_s, rec.rewarm_s, rec.window_s) == (40.0, 8.0, 1.0, 30.5)
    assert (rec.other_s, rec.result_s, rec.startup_s) == (0.75, 0.25, None)
    assert rec.total_s == sum(s for *_, s in steps)
    assert rec.window_share == pytest.approx(30.0 / rec.total_s)
    assert timing_key("done", None) == "result"


def _parts(t: dict[str, Any]) -> float:
    return sum(v for k, v in t.items() if k.endswith("_s") and k != "total_s" and v is not None)


def test_an_uncompiled_run_records_compile_off_and_timings_that_add_up(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment()),
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(shared_model_cache)),
    )
    result = run_harness(request, tmp_path / "run")
    assert result.compile is not None and result.compile.cache == "off"
    assert "compiles nothing" in (result.compile.reason or "")
    t = result.timings
    assert t is not None and t.startup_s is None  # in-process: no process of its own
    assert _parts(t.model_dump()) == pytest.approx(t.total_s, rel=1e-4)
    assert t.window_s >= result.duration_s and t.load_s >= result.load.duration_s
    # the share is of the measured window (stored to 6 decimals): an absolute bound, since a
    # loaded machine makes the share small and a relative one would then fail on rounding alone
    assert t.window_share == pytest.approx(result.duration_s / t.total_s, abs=2e-6)
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert on_disk["timings"]["total_s"] == t.total_s


# -- the cache hit across two experiment processes (real Inductor, C++ on the CPU) --------------


@pytest.mark.slow
def test_second_experiment_process_hits_the_compile_cache(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """Two `python -m llenergymeasure.harness` processes, static cache + torch.compile on the
    CPU: the first compiles (miss), the second loads Inductor's graphs from the key's directory
    (hit) and its compile phase is shorter. Each result's timings add up to its process's time
    from start to result.json. About two minutes of Inductor on 2 cores."""
    pytest.importorskip("torch")
    config = ExperimentConfig.from_dict(
        tiny_experiment(
            n=2,
            batch_size=1,
            pytorch={"static_cache": True, "torch_compile": True, "compile_mode": "default"},
        )
    )
    cache_dir = tmp_path / "cache"
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(cache_dir)),
    )
    request.write(tmp_path / "request.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR", "TRITON"))}
    results = []
    for name in ("first", "second"):
        out = tmp_path / name
        t_spawn = time.time()
        argv = [sys.executable, "-m", "llenergymeasure.harness", "--config"]
        argv += [str(tmp_path / "request.json"), "--output", str(out)]
        done = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        data = json.loads((out / "result.json").read_text())
        t = data["timings"]
        assert t["startup_s"] is not None and t["startup_s"] > 0
        assert _parts(t) == pytest.approx(t["total_s"], rel=0.01)
        # the process started after t_spawn and result.json was written before its mtime
        # (10 ms: the resolution of the kernel's process start time)
        assert t["total_s"] <= (out / "result.json").stat().st_mtime - t_spawn + 0.02
        results.append(data)
    first, second = (r["compile"] for r in results)
    assert first["cache"] == "miss" and second["cache"] == "hit", (first, second)
    assert first["key"] == second["key"]
    assert second["counters"].get("fxgraph_cache_hit", 0) >= 1
    assert "fxgraph_cache_miss" not in second["counters"]
    assert (cache_dir / "compile" / first["key"] / cc.MARKER_FILE).is_file()
    # the cache changes how long a run takes, not what it computes
    assert results[0]["output_tokens"] == results[1]["output_tokens"]


_SPY = """
import json, sys
from pathlib import Path
from llenergymeasure.harness import compile_cache
real = compile_cache.prepare
seen = {}
def spy(*args, **kwargs):
    seen["torch_imported"] = "torch" in sys.modules
    cache = real(*args, **kwargs)
    seen["env_dir"] = __import__("os").environ.get("TORCHINDUCTOR_CACHE_DIR")
    return cache
compile_cache.prepare = spy
from llenergymeasure.harness.entry import run_request_file
rc = run_request_file(Path(sys.argv[1]), Path(sys.argv[2]))
seen["torch_imported_after"] = "torch" in sys.modules
print("SEEN" + json.dumps(seen))
sys.exit(rc)
"""


def test_the_cache_variables_are_set_before_torch_is_imported(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    """torch reads TORCHINDUCTOR_FX_GRAPH_CACHE when its Inductor config is imported: the
    harness must prepare the cache in a process that has not imported torch yet."""
    pytest.importorskip("torch")
    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment()),
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(shared_model_cache)),
    )
    request.write(tmp_path / "request.json")
    argv = [sys.executable, "-c", _SPY, str(tmp_path / "request.json"), str(tmp_path / "run")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR", "TRITON"))}
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.split("SEEN", 1)[1])
    assert seen["torch_imported"] is False and seen["torch_imported_after"] is True
    assert seen["env_dir"].startswith(str(shared_model_cache / "compile"))
