"""Runs side by side on disjoint GPUs (execution.concurrent_runs, study/concurrent.py): the
scheduler with a test-double executor (tests/fakes/concurrent_doubles.py) and fake GPU pools.

Every check is read from what the executors recorded (their intervals and GPUs) and from the
files the study wrote (manifest, result.json), never from the scheduler's own bookkeeping.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from llenergymeasure import StudyConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.errors import ConfigError, RunnerError, StudyInterrupted
from llenergymeasure.runners.resolution import ResolvedRunner
from llenergymeasure.study import concurrent as concurrent_mod
from llenergymeasure.study.placement import discover_pool, gpus_needed
from llenergymeasure.study.runner import StudyOptions, StudyRunner
from tests.fakes.concurrent_doubles import STARTED_FILE, Log, max_at_once, overlapping_pairs
from tests.helpers import within

ROOT = Path(__file__).resolve().parents[1]


def _study(limit: int, sweep: dict | None = None, n_cycles: int = 2, gap: float = 0.0, **base):
    return StudyConfig(
        name="side",
        base={"model": "synthetic/tiny-llama", **base},
        sweep=sweep if sweep is not None else {"batch_size": [1, 2, 3]},
        execution={
            "n_cycles": n_cycles,
            "cycle_order": "interleaved",
            "config_gap_seconds": gap,
            "cycle_gap_seconds": gap,
            "concurrent_runs": limit,
        },
    )


def _runner(
    tmp_path: Path, study: StudyConfig, pool: Any, fail_fast: bool = False, **kw: Any
) -> StudyRunner:
    options = StudyOptions(results_dir=tmp_path / "results", gpu_pool=pool, fail_fast=fail_fast)
    return StudyRunner(study, options, user_config=UserConfig(), **kw)


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    """The double stands in for the executor the scheduler builds for each run."""
    log = Log()

    def fake_executor_for(resolved: Any, cache: Path, gpus: list[int] | None = None) -> Any:
        return log.make_executor(None, gpus or [])

    monkeypatch.setattr(concurrent_mod, "executor_for", fake_executor_for)
    return log


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _results(d: Path) -> dict[str, dict]:
    out = {}
    for entry in _manifest(d)["runs"]:
        path = d / (entry["run_dir"] or "-") / "result.json"
        if entry["status"] == "completed" and path.exists():
            out[entry["run_id"]] = json.loads(path.read_text())
    return out


def test_runs_share_no_gpu_and_at_most_n_run_at_once(tmp_path: Path, log: Log) -> None:
    meet = threading.Barrier(2)  # the first two runs must be in flight together, or this fails
    runner = _runner(tmp_path, _study(2), [0, 1, 2])
    plan = runner.plan()
    log.behaviour = {plan[0].run_id: ("wait", meet), plan[1].run_id: ("wait", meet)}
    res = within(120, "the study", runner.run)
    assert len(log.intervals) == 6 and all(i.how == "completed" for i in log.intervals)
    assert max_at_once(log.intervals) == 2  # reached, and never exceeded
    pairs = overlapping_pairs(log.intervals)
    assert pairs
    for a, b in pairs:
        assert not set(a.gpus) & set(b.gpus), (a, b)
    assert all(len(i.gpus) == 1 and i.gpus[0] in (0, 1, 2) for i in log.intervals)

    d = Path(res.study_dir or "")
    manifest = _manifest(d)
    assert [r["status"] for r in manifest["runs"]] == ["completed"] * 6
    by_id = {i.run_id: i for i in log.intervals}
    assert all(r["gpus"] == by_id[r["run_id"]].gpus for r in manifest["runs"])
    results = _results(d)
    assert len(results) == 6 and len(res.runs) == 6
    first = results[plan[0].run_id]
    placement = first["placement"]
    assert placement["concurrent"] is True and placement["concurrent_runs"] == 2
    assert placement["gpus"] == by_id[plan[0].run_id].gpus
    assert placement["devices"] == [f"gpu{placement['gpus'][0]}"]
    neighbours = {n["run_id"]: n for n in placement["neighbours"]}
    assert plan[1].run_id in neighbours
    assert neighbours[plan[1].run_id]["gpus"] == by_id[plan[1].run_id].gpus
    assert neighbours[plan[1].run_id]["overlap_s"] > 0
    warning = next(w for w in first["warnings"] if w["code"] == "neighbour_load")
    assert plan[1].run_id in warning["message"]
    assert warning["details"]["neighbours"][0]["run_id"] in neighbours
    # every pair the executors saw overlapping is recorded in both results (the controller's
    # spans hold the executors' intervals, so it may see a few more), and none shares a GPU
    seen = {(a.run_id, b.run_id) for a, b in pairs} | {(b.run_id, a.run_id) for a, b in pairs}
    recorded = {
        (rid, n["run_id"]) for rid, r in results.items() for n in r["placement"]["neighbours"]
    }
    assert seen <= recorded
    for rid, other in recorded:
        assert not set(by_id[rid].gpus) & set(by_id[other].gpus), (rid, other)
    assert res.measurement_protocol["concurrent_runs"] == 2
    # and in results.parquet's columns
    from llenergymeasure.results.export_rows import run_record

    row = run_record(next(r for r in res.runs if r.experiment_id == plan[0].run_id))
    assert row["placement.gpus"] == json.dumps(placement["gpus"])
    assert row["placement.n_neighbours"] == len(neighbours) >= 1
    assert row["placement.neighbour_overlap_s"] == max(n["overlap_s"] for n in neighbours.values())
    assert plan[1].run_id in row["placement.neighbours"].split(",")
    # and in the study summary the CLI prints
    from io import StringIO

    from rich.console import Console

    from llenergymeasure.cli.run_summary import print_study_summary

    console = Console(file=StringIO(), width=300)
    print_study_summary(console, res)
    beside = sum(1 for r in results.values() if r["placement"]["neighbours"])
    assert f"neighbour_load {beside} of 6 run(s) ran beside" in console.file.getvalue()  # type: ignore[attr-defined]


def test_a_run_that_names_its_gpus_waits_for_exactly_those(tmp_path: Path, log: Log) -> None:
    study = StudyConfig(
        name="pinned",
        base={"model": "synthetic/tiny-llama"},
        experiments=[
            {"gpus": [1], "batch_size": 1},
            {"gpus": [1], "batch_size": 2},
            {"batch_size": 3},
            {"batch_size": 4},
        ],
        execution={"n_cycles": 1, "config_gap_seconds": 0, "concurrent_runs": 2},
    )
    runner = _runner(tmp_path, study, {0: "GPU-a", 1: "GPU-b"})
    within(120, "the study", runner.run)
    pinned = [i for i in log.intervals if i.gpus == [1]]
    assert len(log.intervals) == 4 and len(pinned) >= 2
    for a, b in overlapping_pairs(log.intervals):
        assert not set(a.gpus) & set(b.gpus), (a, b)
    results = _results(runner.study_dir or Path())
    named = [r for r in results.values() if r["config"].get("gpus") == [1]]
    assert [r["placement"]["gpus"] for r in named] == [[1], [1]]
    assert all(r["placement"]["devices"] == ["GPU-b"] for r in named)


def test_gaps_are_kept_per_gpu(tmp_path: Path, log: Log) -> None:
    gap = 0.4
    runner = _runner(tmp_path, _study(2, gap=gap), [0, 1])
    within(120, "the study", runner.run)
    assert len(log.intervals) == 6
    by_gpu: dict[int, list] = {}
    for i in sorted(log.intervals, key=lambda i: i.start):
        by_gpu.setdefault(i.gpus[0], []).append(i)
    assert set(by_gpu) == {0, 1}
    for runs in by_gpu.values():
        for before, after in itertools.pairwise(runs):
            assert before.end is not None
            assert after.start - before.end >= gap - 1e-3, (before, after)
    # the first run on each GPU needs no gap: the second GPU started before the first finished
    # its run plus the gap (the two first runs overlap)
    first0, first1 = by_gpu[0][0], by_gpu[1][0]
    assert overlapping_pairs([first0, first1])


def test_fail_fast_starts_nothing_new_and_keeps_the_neighbour(tmp_path: Path, log: Log) -> None:
    runner = _runner(tmp_path, _study(2), [0, 1], fail_fast=True)
    plan = runner.plan()

    def first_failed() -> bool:  # the neighbour ends only once the failure is recorded
        d = runner.study_dir
        try:
            runs = _manifest(d)["runs"] if d else []
        except (OSError, ValueError):
            return False
        return any(r["run_id"] == plan[0].run_id and r["status"] == "failed" for r in runs)

    log.behaviour = {plan[0].run_id: "fail", plan[1].run_id: ("until", first_failed)}
    res = within(120, "the study", runner.run)
    statuses = {r["run_id"]: r["status"] for r in _manifest(Path(res.study_dir or ""))["runs"]}
    assert statuses[plan[0].run_id] == "failed"
    assert statuses[plan[1].run_id] == "completed"  # already going: finished and kept
    assert [statuses[r.run_id] for r in plan[2:]] == ["pending"] * 4
    assert {i.run_id for i in log.intervals} == {plan[0].run_id, plan[1].run_id}


def test_a_crash_in_one_run_loses_none_of_its_neighbours(tmp_path: Path, log: Log) -> None:
    runner = _runner(tmp_path, _study(2), [0, 1])
    plan = runner.plan()
    log.behaviour = {plan[0].run_id: "raise"}
    log.hold_s = 0.2
    res = within(120, "the study", runner.run)
    manifest = _manifest(Path(res.study_dir or ""))
    entry = next(r for r in manifest["runs"] if r["run_id"] == plan[0].run_id)
    assert entry["status"] == "failed" and entry["phase"] == "runner"
    assert f"RuntimeError: executor of {plan[0].run_id} broke" in entry["message"]
    assert [r["status"] for r in manifest["runs"][1:]] == ["completed"] * 5
    results = _results(Path(res.study_dir or ""))
    assert len(results) == 5 and all("placement" in r for r in results.values())
    assert [f.run_id for f in res.failures] == [plan[0].run_id]


def test_baseline_measured_beside_a_neighbour_is_marked(tmp_path: Path, log: Log) -> None:
    import datetime as dt

    runner = _runner(tmp_path, _study(2, n_cycles=1, sweep={"batch_size": [1, 2]}), [0, 1])
    plan = runner.plan()
    meet = threading.Barrier(2)
    log.behaviour = {r.run_id: ("wait", meet) for r in plan}
    # measured_at None: the double stamps it as it writes the result (both runs in flight)
    measured = BaselineRecord(kind="resident", idle_power_w={0: 60.0}, duration_s=1.0)
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc).isoformat()
    cached = measured.model_copy(
        update={"from_cache": True, "kind": "cold", "measured_at": long_ago}
    )
    log.baseline_for = {plan[0].run_id: measured, plan[1].run_id: cached}
    within(120, "the study", runner.run)
    results = _results(runner.study_dir or Path())
    marked = results[plan[0].run_id]["baseline"]["warnings"]
    assert [w["code"] for w in marked] == ["neighbour_load"]
    assert plan[1].run_id in marked[0]["message"] and "not cached" in marked[0]["message"]
    assert results[plan[1].run_id]["baseline"]["warnings"] == []  # from the cache: not measured


def test_sequential_results_have_no_placement(tmp_path: Path) -> None:
    """concurrent_runs 1 (the default) takes the one-at-a-time path; schema 1.2 results load."""
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
    from llenergymeasure.results.models import SCHEMA_VERSION, ExperimentResult
    from tests.fakes.concurrent_doubles import result_for

    study = _study(1)
    assert study.execution.concurrent_runs == 1
    assert (
        StudyConfig.model_validate(
            {**study.model_dump(), "execution": {"n_cycles": 2}}
        ).study_design_hash
        == study.study_design_hash
    )  # execution stays out of the design hash
    assert SCHEMA_VERSION == "1.3"
    req = HarnessRequest(config=study.expand()[0], settings=HarnessSettings(run_id="r"))
    old = json.loads(result_for(req).model_dump_json())
    old.pop("placement")
    old["schema_version"] = "1.2"
    loaded = ExperimentResult.model_validate(old)
    assert loaded.placement is None and loaded.schema_version == "1.2"


# -- errors before anything runs --------------------------------------------------------------


def test_too_few_gpus_is_refused_naming_option_value_and_gpus(tmp_path: Path) -> None:
    study = _study(2, sweep={"vllm.tensor_parallel_size": [1, 2]}, n_cycles=1, backend="vllm")
    runner = _runner(tmp_path, study, {0: "GPU-only"})
    resolved = {"vllm": ResolvedRunner(backend="vllm", kind="local", source="test")}
    with pytest.raises(ConfigError) as err:
        runner.concurrency_pool(runner.plan(), resolved)
    text = str(err.value)
    assert "execution.concurrent_runs = 2" in text and "1 GPU(s): 0 (GPU-only)" in text
    assert "needs 2 GPU(s)" in text and "execution.concurrent_runs: 1" in text
    assert not (tmp_path / "results").exists()


def test_device_map_without_gpus_is_refused_naming_the_field(tmp_path: Path) -> None:
    study = _study(2, n_cycles=1, sweep={}, pytorch={"device_map": "auto"})
    with pytest.raises(ConfigError, match=r"pytorch.device_map = 'auto' without `gpus`"):
        gpus_needed(study.expand()[0], 2)
    runner = _runner(tmp_path, study, [0, 1])
    with pytest.raises(ConfigError, match=r"add e.g. `gpus: \[0, 1\]`"):
        runner.run()


def test_slurm_with_concurrent_runs_is_refused(tmp_path: Path) -> None:
    runner = _runner(tmp_path, _study(2), [0, 1])
    resolved = {"pytorch": ResolvedRunner(backend="pytorch", kind="slurm", source="--runner")}
    with pytest.raises(RunnerError, match=r"runner is slurm \(from --runner\).*not supported"):
        runner.concurrency_pool(runner.plan(), resolved)


def test_pool_comes_from_cuda_visible_devices_else_nvml() -> None:
    snap = SimpleNamespace(
        gpus=[SimpleNamespace(nvml_index=i, uuid=f"GPU-{i}") for i in range(3)],
        gpu_count=3,
        probe_errors={},
    )
    pool = discover_pool({"CUDA_VISIBLE_DEVICES": "2,GPU-x"}, snap)
    assert pool.labels == {0: "GPU-2", 1: "GPU-x"} and "CUDA_VISIBLE_DEVICES='2,GPU-x'" in (
        pool.source
    )
    assert discover_pool({}, snap).labels == {0: "GPU-0", 1: "GPU-1", 2: "GPU-2"}

    no_gpu = SimpleNamespace(gpus=[], gpu_count=None, probe_errors={"gpus": "NVML unavailable"})
    empty = discover_pool({}, no_gpu)
    assert empty.labels == {} and empty.describe() == "no GPU (NVML: NVML unavailable)"


# -- Ctrl-C with several runs in flight, then --resume ----------------------------------------

_CONTROLLER = textwrap.dedent(
    """
    import sys, threading
    from pathlib import Path
    from llenergymeasure._signals import install_stop_handlers
    from llenergymeasure import StudyConfig
    from llenergymeasure.config.user import UserConfig
    from llenergymeasure.errors import StudyInterrupted
    from llenergymeasure.study import concurrent as c
    from llenergymeasure.study.runner import StudyOptions, StudyRunner
    from tests.fakes.concurrent_doubles import Log

    install_stop_handlers()
    log = Log()
    plan_ids = []

    def fake(resolved, cache, gpus=None):
        return log.make_executor(None, gpus or [])

    c.executor_for = fake
    study = StudyConfig.model_validate_json(Path(sys.argv[1]).read_text())
    options = StudyOptions(results_dir=sys.argv[2], gpu_pool=[0, 1])
    runner = StudyRunner(study, options, user_config=UserConfig())
    log.behaviour = {r.run_id: "hang" for r in runner.plan()}
    try:
        runner.run()
    except StudyInterrupted as exc:
        for i in log.intervals:
            print("INTERVAL", i.run_id, i.how, flush=True)
        print("EXIT", exc.exit_code, flush=True)
        sys.exit(exc.exit_code)
    """
)


def _await_both_started(proc: subprocess.Popen[str], results: Path, timeout: float = 120) -> Path:
    """The study directory once both executors are running (not just marked running). The
    controller is a fresh interpreter importing the source tree as it is now: if it exits first
    (a crash, an import error), fail at once with its output instead of waiting out ``timeout``."""
    from tests.helpers import wait_for_manifest

    def both(m: dict) -> bool:
        return (
            sum(r["status"] == "running" for r in m["runs"]) == 2
            and len(list(results.glob(f"*/*/{STARTED_FILE}"))) == 2
        )

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(
                f"the controller exited ({proc.returncode}) before both runs started:\n{out}"
            )
        try:
            return wait_for_manifest(results, both, timeout=0.5)[0]
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def test_ctrl_c_stops_every_run_in_flight_and_resume_finishes(tmp_path: Path, log: Log) -> None:
    study = _study(2)
    (tmp_path / "study.json").write_text(study.model_dump_json())
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CONTROLLER, str(tmp_path / "study.json"), str(results)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'src'}"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        d = _await_both_started(proc, results)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:  # its runs hang until stopped: never leave it behind a failed wait
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out
    stopped = [line.split()[1:] for line in out.splitlines() if line.startswith("INTERVAL")]
    assert len(stopped) == 2 and all(how == "stopped" for _, how in stopped), out
    manifest = _manifest(d)
    statuses = [r["status"] for r in manifest["runs"]]
    assert statuses == ["interrupted", "interrupted", "pending", "pending", "pending", "pending"]
    assert all("Ctrl-C" in r["message"] for r in manifest["runs"][:2])
    assert sorted(r["gpus"][0] for r in manifest["runs"][:2]) == [0, 1]

    resumed = _runner(tmp_path, None, [0, 1], resume_dir=d)  # type: ignore[arg-type]
    res = within(120, "the resumed study", resumed.run)
    after = _manifest(d)
    assert [r["status"] for r in after["runs"]] == ["completed"] * 6
    assert [r["run_dir"].endswith("_a2") for r in after["runs"][:2]] == [True, True]
    assert len(res.runs) == 6 and not res.failures
    assert {i.run_id for i in log.intervals} == {r["run_id"] for r in after["runs"]}
    for a, b in overlapping_pairs(log.intervals):
        assert not set(a.gpus) & set(b.gpus)


@pytest.mark.timeout(600)  # the study runs in this (main) thread, where SIGINT lands
def test_interrupt_in_process_records_every_running_run(tmp_path: Path, log: Log) -> None:
    """The same stop inside one process: the main thread's KeyboardInterrupt reaches each
    worker's executor (which cleans up and re-raises), and the study says how to resume."""
    runner = _runner(tmp_path, _study(2), [0, 1])
    plan = runner.plan()
    log.behaviour = {r.run_id: "hang" for r in plan}
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupt_when_both_run() -> None:
        for _ in range(2):
            assert log.running.acquire(timeout=120)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=interrupt_when_both_run, daemon=True)
    t.start()
    try:
        with pytest.raises(StudyInterrupted) as err:
            runner.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    t.join(10)
    assert err.value.exit_code == 130 and "llem run --resume" in str(err.value)
    assert sorted(i.how for i in log.intervals) == ["stopped", "stopped"]
    statuses = [r["status"] for r in _manifest(runner.study_dir or Path())["runs"]]
    assert statuses[:2] == ["interrupted", "interrupted"] and "running" not in statuses


def _resume_finishes(tmp_path: Path, d: Path, log: Log) -> None:
    log.behaviour = {}
    within(120, "the resumed study", _runner(tmp_path, None, [0, 1], resume_dir=d).run)  # type: ignore[arg-type]
    assert [r["status"] for r in _manifest(d)["runs"]] == ["completed"] * 6


def test_ctrl_c_right_after_a_run_is_marked_running_leaves_no_run_running(
    tmp_path: Path, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop lands in the scheduler between the manifest's "running" and the run's slot (a
    Ctrl-C can land on any bytecode of the main thread): that run is recorded interrupted too."""
    from llenergymeasure.study.manifest import ManifestStore

    runner = _runner(tmp_path, _study(2), [0, 1])
    plan = runner.plan()
    log.behaviour = {r.run_id: "hang" for r in plan}
    transition = ManifestStore.transition

    def stop_after_marking_second(self: ManifestStore, run_id: str, status: str, *a, **kw):
        out = transition(self, run_id, status, *a, **kw)  # type: ignore[arg-type]
        if run_id == plan[1].run_id and status == "running":
            assert log.running.acquire(timeout=60)  # the first run's executor is running
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(ManifestStore, "transition", stop_after_marking_second)
    with pytest.raises(StudyInterrupted) as err:
        within(120, "the study", runner.run)
    monkeypatch.setattr(ManifestStore, "transition", transition)
    assert err.value.exit_code == 130
    d = runner.study_dir or Path()
    runs = _manifest(d)["runs"]
    assert [r["status"] for r in runs] == ["interrupted"] * 2 + ["pending"] * 4
    assert all("Ctrl-C" in r["message"] for r in runs[:2])
    assert [(i.run_id, i.how) for i in log.intervals] == [(plan[0].run_id, "stopped")]
    _resume_finishes(tmp_path, d, log)


def test_ctrl_c_while_a_run_thread_starts_never_runs_its_executor(
    tmp_path: Path, log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop lands inside ``Thread.start`` of the second run, before that thread begins (it
    begins only after the study has stopped): the study still stops cleanly, that run is
    recorded interrupted, and its executor never starts once its thread does begin."""
    runner = _runner(tmp_path, _study(2), [0, 1])
    plan = runner.plan()
    log.behaviour = {plan[0].run_id: "hang"}  # the second run would complete if it ran
    start = threading.Thread.start
    late: list[threading.Thread] = []

    def interrupted_start(self: threading.Thread) -> None:
        if self.name == f"llem-run-{plan[1].run_id}":
            late.append(self)
            assert log.running.acquire(timeout=60)  # the first run's executor is running
            raise KeyboardInterrupt
        start(self)

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with pytest.raises(StudyInterrupted) as err:
        within(120, "the study", runner.run)
    monkeypatch.setattr(threading.Thread, "start", start)
    assert err.value.exit_code == 130
    d = runner.study_dir or Path()
    runs = _manifest(d)["runs"]
    assert [r["status"] for r in runs] == ["interrupted"] * 2 + ["pending"] * 4
    assert "had not returned" not in runs[1]["message"]
    assert len(late) == 1
    start(late[0])  # the thread begins only now, after the stop
    late[0].join(60)
    assert not late[0].is_alive()
    assert [(i.run_id, i.how) for i in log.intervals] == [(plan[0].run_id, "stopped")]
    assert _manifest(d)["runs"] == runs  # and it changed nothing
    _resume_finishes(tmp_path, d, log)


def test_manifest_transitions_from_several_threads_all_reach_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is rewritten whole at each change: without the store's lock, a rewrite built
    before another thread's change can land after it and lose that change (a disk that is slow
    every other write makes that likely)."""
    from llenergymeasure.study import manifest as manifest_mod
    from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore

    write = manifest_mod.atomic_write_text
    calls = itertools.count()

    written: list[int] = []  # transitions each rewrite holds, in the order the rewrites land

    def slow_write(path: Path, text: str) -> Path:
        time.sleep(0.004 if next(calls) % 2 else 0.0)  # every other write is slow
        out = write(path, text)
        written.append(sum(len(r["history"]) for r in json.loads(text)["runs"]))
        return out

    monkeypatch.setattr(manifest_mod, "atomic_write_text", slow_write)

    runs = [
        ManifestRun(run_id=f"r{k}", index=k, config_hash="h", config_index=k, cycle=1, backend="x")
        for k in range(40)
    ]
    store = ManifestStore(
        tmp_path, Manifest(study_name="m", study_design_hash="d", n_cycles=1, runs=runs)
    )
    store.save()

    def drive(ids: list[str]) -> None:
        for rid in ids:
            store.transition(rid, "running", run_dir=rid, gpus=[int(rid[1:]) % 4])
            store.transition(rid, "completed")

    threads = [
        threading.Thread(target=drive, args=([f"r{k}" for k in range(j, 40, 8)],)) for j in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert written == sorted(written) and written[-1] == 80  # no rewrite ever went back
    assert [r["status"] for r in on_disk["runs"]] == ["completed"] * 40
    assert all(len(r["history"]) == 2 and r["attempts"] == 1 for r in on_disk["runs"])
    assert [r["gpus"] for r in on_disk["runs"]] == [[k % 4] for k in range(40)]


def test_dry_run_shows_the_pool_or_why_it_would_be_refused(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from llenergymeasure.cli import app

    f = tmp_path / "study.yaml"
    f.write_text(yaml.safe_dump(json.loads(_study(2).model_dump_json())))
    cli = CliRunner()
    env = {"COLUMNS": "300", "CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}
    res = cli.invoke(app, ["run", str(f), "--dry-run"], env=env)
    assert res.exit_code == 0, res.output
    assert "side by side: up to 2 run(s) at once on disjoint GPUs of 2 GPU(s): 0 (GPU-a)" in (
        " ".join(res.output.split())
    )
    res = cli.invoke(app, ["run", str(f), "--dry-run"], env={**env, "CUDA_VISIBLE_DEVICES": ""})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "would be refused: execution.concurrent_runs = 2: the controller sees no GPU" in text
