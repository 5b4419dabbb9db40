"""Process faults with real processes (issue 13, items 1, 2 and 4).

A controller killed in the gap between spawning an experiment and the experiment arming its
parent-death signal; a controller killed after the harness wrote ``result.json`` but before the
manifest said so; ``llem`` started with SIGINT ignored; SIGTERM.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llenergymeasure.study.runner import StudyRunner
from tests.builders import llem_env, study_file
from tests.helpers import user_config_file, wait_for_manifest

LLEM = [sys.executable, "-m", "llenergymeasure"]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_spawned_child(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # the local runner's child interpreter (python -m llenergymeasure.runners.local_child ...)
    return b"llenergymeasure.runners.local_child" in cmdline


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- item 1: the spawn gap -------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_controller_killed_in_the_spawn_gap_leaves_no_orphan(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    env = llem_env(user_config_file(tmp_path, shared_model_cache), 200)
    f = study_file(tmp_path, {"batch_size": [1]})
    controller = subprocess.Popen(
        [*LLEM, "run", str(f)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    # The moment the controller has a child (the experiment, still starting its interpreter), kill
    # the controller alone, as the OOM killer or `kill -9 PID` would.
    child = None
    deadline = time.monotonic() + 240
    while child is None and time.monotonic() < deadline:
        # the experiment, not another child of the controller
        child = next((k for k in _children(controller.pid) if _is_spawned_child(k)), None)
        if child is None:
            time.sleep(0.002)
    assert child is not None, "the controller never spawned an experiment"
    # The child is still starting its interpreter and importing the harness (its request is on
    # disk already): the spawn gap.
    time.sleep(0.05)
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait(30)
    assert controller.stdout is not None
    controller.stdout.close()

    # The experiment must not outlive its controller: it would keep the GPU and write result.json
    # while the manifest still says `running`.
    deadline = time.monotonic() + 300
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(child), f"experiment process {child} outlived its controller"
    d, manifest = wait_for_manifest(tmp_path / "results", lambda m: True)
    assert manifest["runs"][0]["status"] == "running"
    # an orphan would have run the experiment to its end before exiting
    assert not list(d.glob("*/result.json")), "the orphaned experiment measured and wrote a result"

    res = subprocess.run(
        [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    after = json.loads((d / "manifest.json").read_text())
    assert [r["status"] for r in after["runs"]] == ["completed"]


def _start_ticks(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_resume_refuses_while_the_recorded_experiment_process_is_alive(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    d, _ = _completed_study(tmp_path, shared_model_cache)
    entry = _as_if_killed_before_the_manifest(d, 1)
    run_dir = d / entry["run_dir"]
    (run_dir / "result.json").unlink()  # still measuring: no result yet
    recorded = json.loads((run_dir / "process.json").read_text())
    assert set(recorded) >= {"pid", "start_ticks", "boot_id", "host"}  # written by the experiment

    # A live process under the recorded pid and start time: the experiment of a controller that
    # died (or of one on another machine sharing this directory) still holding the GPUs.
    alive = subprocess.Popen(["sleep", "300"])
    try:
        record = {**recorded, "pid": alive.pid, "start_ticks": _start_ticks(alive.pid)}
        record["boot_id"] = _boot_id()
        (run_dir / "process.json").write_text(json.dumps(record))
        env = llem_env(user_config_file(tmp_path, shared_model_cache), 200)
        res = subprocess.run(
            [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=120
        )
        out = res.stdout + res.stderr
        assert res.returncode == 2, out
        assert "Traceback" not in out
        assert str(alive.pid) in out and "still running" in out, out
        after = json.loads((d / "manifest.json").read_text())
        assert after["runs"][1]["attempts"] == 1  # nothing new was started

        # The same pid with another start time is a reused pid, not the experiment: resume goes on.
        record["start_ticks"] += 1
        (run_dir / "process.json").write_text(json.dumps(record))
        res = subprocess.run(
            [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=600
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.loads((d / "manifest.json").read_text())["runs"][1]["attempts"] == 2
    finally:
        alive.kill()
        alive.wait()


# -- item 2: adopting a finished result ------------------------------------------------------------


def _completed_study(tmp_path: Path, cache: Path) -> tuple[Path, dict]:
    uc = user_config_file(tmp_path, cache)
    f = study_file(tmp_path, {"batch_size": [1, 2]})
    from llenergymeasure.config.study import StudyConfig

    sr = StudyRunner(StudyConfig.from_yaml(f), user_config_path=uc, source_path=f)
    sr.run()
    assert sr.study_dir is not None
    return sr.study_dir, json.loads((sr.study_dir / "manifest.json").read_text())


def _as_if_killed_before_the_manifest(d: Path, run_index: int) -> dict:
    """The manifest as a controller killed between result.json and the manifest update leaves it."""
    manifest = json.loads((d / "manifest.json").read_text())
    entry = manifest["runs"][run_index]
    entry["status"] = "running"
    entry["ended_at"] = None
    entry["history"] = entry["history"][:-1]
    (d / "manifest.json").write_text(json.dumps(manifest))
    (d / "study_result.json").unlink()
    return entry


def test_resume_adopts_a_complete_result_instead_of_measuring_again(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    d, _ = _completed_study(tmp_path, shared_model_cache)
    entry = _as_if_killed_before_the_manifest(d, 1)
    result = d / entry["run_dir"] / "result.json"
    before = (_digest(result), result.stat().st_mtime_ns)

    env = llem_env(user_config_file(tmp_path, shared_model_cache), 200)
    res = subprocess.run(
        [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    after = json.loads((d / "manifest.json").read_text())
    run = after["runs"][1]
    assert run["status"] == "completed" and run["attempts"] == 1
    assert run["run_dir"] == entry["run_dir"]
    assert "adopted" in (run["history"][-1].get("note") or "")
    assert (_digest(result), result.stat().st_mtime_ns) == before  # never rewritten
    assert not list(d.glob(f"{entry['run_id']}_a*"))  # no second measurement
    study_result = json.loads((d / "study_result.json").read_text())
    assert len(study_result["runs"]) == 2


def test_resume_sets_aside_an_invalid_result_and_names_it(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    d, _ = _completed_study(tmp_path, shared_model_cache)
    entry = _as_if_killed_before_the_manifest(d, 0)
    result = d / entry["run_dir"] / "result.json"
    text = result.read_text()
    result.write_text(text[: len(text) // 2])  # a partial file (e.g. written by hand, or torn)
    partial = _digest(result)

    env = llem_env(user_config_file(tmp_path, shared_model_cache), 200)
    res = subprocess.run(
        [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    run = json.loads((d / "manifest.json").read_text())["runs"][0]
    assert run["status"] == "completed" and run["attempts"] == 2
    assert run["run_dir"] == f"{entry['run_id']}_a2"
    assert run["set_aside"] == [f"{entry['run_dir']}/result.json"]
    assert _digest(result) == partial  # kept as it was, for inspection


def test_resume_after_a_kill_as_the_first_result_appears_keeps_one_result_per_run(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    env = llem_env(user_config_file(tmp_path, shared_model_cache), 200)
    f = study_file(tmp_path, {"batch_size": [1, 2]})
    controller = subprocess.Popen(
        [*LLEM, "run", str(f)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    results: list[Path] = []
    while not results and time.monotonic() < deadline:
        results = list((tmp_path / "results").glob("*/*/result.json"))
        time.sleep(0.005)
    assert results, "no result.json appeared"
    os.killpg(controller.pid, signal.SIGKILL)
    controller.wait(30)
    d = results[0].parent.parent
    res = subprocess.run(
        [*LLEM, "run", "--resume", str(d)], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr
    after = json.loads((d / "manifest.json").read_text())
    assert [r["status"] for r in after["runs"]] == ["completed", "completed"]
    first = after["runs"][0]
    assert first["attempts"] == 1 and first["run_dir"] == results[0].parent.name
    assert len(list(d.glob("*/result.json"))) == 2  # one result per run, none measured twice


# -- item 4: SIGINT ignored at start, SIGTERM ------------------------------------------------------


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("sig", "code", "why"),
    [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")],
)
def test_stop_signal_stops_cleanly_even_when_started_with_sigint_ignored(
    tmp_path: Path, shared_model_cache: Path, sig: signal.Signals, code: int, why: str
) -> None:
    env = llem_env(user_config_file(tmp_path, shared_model_cache), 200)
    f = study_file(tmp_path, {"batch_size": [1, 2]}, n=32, max_output_tokens=32)
    # A background job of a non-interactive shell (`llem run ... &`, CI wrappers) starts with
    # SIGINT ignored.
    proc = subprocess.Popen(
        [*LLEM, "run", str(f)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    # mid-experiment: a running run's experiment process has started (it writes process.json
    # before importing its engine; the stop comes long before the run could end), not "1 s after
    # running", which may land between the two runs, where no run is interrupted
    results = tmp_path / "results"
    d, _ = wait_for_manifest(
        results,
        lambda m: any(
            r["status"] == "running" and list(results.glob(f"*/{r['run_dir']}/process.json"))
            for r in m["runs"]
        ),
    )
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=90)
    assert proc.returncode == code, out
    assert "Traceback" not in out
    assert f"llem run --resume {d}" in out.replace("\n", "")
    manifest = json.loads((d / "manifest.json").read_text())
    statuses = [r["status"] for r in manifest["runs"]]
    assert "interrupted" in statuses and "running" not in statuses
    stopped = next(r for r in manifest["runs"] if r["status"] == "interrupted")
    assert why in (stopped["message"] or "")
    assert not list(d.glob("*/result.json")) or statuses.count("completed") >= 1
