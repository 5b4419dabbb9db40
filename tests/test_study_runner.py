"""Studies end to end on the CPU: layout, manifest, statistics, failure isolation, kill + resume, Ctrl-C."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from llenergymeasure import StudyConfig, run_study
from llenergymeasure._proc import descendant_pids
from llenergymeasure.results.stats import describe
from tests.builders import study_file
from tests.helpers import user_config_file, wait_for_manifest, write


def test_study_layout_manifest_and_statistics(tmp_path: Path, shared_model_cache: Path) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    f = study_file(tmp_path, {"batch_size": [1, 2]}, n_cycles=2, order="interleaved")
    res = run_study(f, user_config_path=uc)
    d = Path(res.study_dir or "")
    assert d.parent == tmp_path / "results" and d.name.startswith("t_")
    assert (d / "study.yaml").read_text() == f.read_text()
    runs = sorted(p.name for p in d.iterdir() if p.is_dir() and p.name[:3].isdigit())
    assert len(runs) == 4 and all("_c" in r and "_pytorch_" in r for r in runs)
    assert (d / "report.html").exists() and (d / "results.parquet").exists()
    manifest = json.loads((d / "manifest.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["completed"] * 4
    assert [r["cycle"] for r in manifest["runs"]] == [1, 1, 2, 2]  # interleaved
    assert manifest["study_design_hash"] == StudyConfig.from_yaml(f).study_design_hash
    assert len(res.runs) == 4 and not res.failures and len(res.summaries) == 2
    assert (
        res.measurement_protocol["n_cycles"] == 2
        and res.measurement_protocol["cycle_order"] == "interleaved"
    )
    for s in res.summaries:
        mine = [r for r in res.runs if r.config_hash == s.config_hash]
        assert s.n_completed == 2
        tps = describe([r.output_tokens_per_s for r in mine])
        assert s.metrics["output_tokens_per_s"].mean == pytest.approx(tps.mean)
        assert s.metrics["output_tokens_per_s"].ci95_half_width == pytest.approx(
            tps.ci95_half_width
        )
    rows = list(csv.DictReader((d / "summary.csv").open()))
    assert len(rows) == 2 and {r["config.batch_size"] for r in rows} == {"1", "2"}
    assert json.loads((d / "study_result.json").read_text())["name"] == "t"


def test_failures_are_isolated_and_listed(tmp_path: Path, shared_model_cache: Path) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    good = write(tmp_path / "p.jsonl", '{"prompt": "hello there"}\n')
    # a file llem cannot check before running (a missing one is refused up front): its lines
    # lack the prompt key, found only when the experiment reads its prompts
    bad = write(tmp_path / "bad.jsonl", '{"text": "no prompt key"}\n')
    f = study_file(tmp_path, {"dataset.source": [str(good), str(bad)]}, n_cycles=1)
    res = run_study(f, user_config_path=uc)
    assert len(res.runs) == 1 and len(res.failures) == 1
    fail = res.failures[0]
    assert fail.phase == "prompts" and fail.error_file and Path(fail.error_file).exists()
    assert "bad.jsonl" in fail.message
    res2 = run_study(
        study_file(tmp_path, {"dataset.source": [str(bad), str(good)]}, n_cycles=1),
        user_config_path=uc,
        fail_fast=True,
    )
    assert len(res2.runs) == 0 and len(res2.failures) == 1  # stopped at the first failure


def _llem(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_controller_killed_then_resume_keeps_completed_results(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    f = study_file(tmp_path, {"batch_size": [1, 2]}, n_cycles=2, order="sequential")
    env = {**os.environ, "LLEM_CONFIG": str(uc), "COLUMNS": "200"}
    proc = _llem("run", str(f), env=env)
    d, _ = wait_for_manifest(
        tmp_path / "results",
        lambda m: (
            sum(r["status"] == "completed" for r in m["runs"]) >= 1
            and any(r["status"] == "running" for r in m["runs"])
        ),
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    manifest = json.loads((d / "manifest.json").read_text())
    done = {r["run_id"]: r["run_dir"] for r in manifest["runs"] if r["status"] == "completed"}
    stale = [r["run_id"] for r in manifest["runs"] if r["status"] == "running"]
    assert done and stale
    before = {
        rid: (_digest(d / folder / "result.json"), (d / folder / "result.json").stat().st_mtime_ns)
        for rid, folder in done.items()
    }

    res = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "run", "--resume", str(d)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "resuming:" in res.stdout
    after = json.loads((d / "manifest.json").read_text())
    assert [r["status"] for r in after["runs"]] == ["completed"] * 4
    for rid, folder in done.items():
        entry = next(r for r in after["runs"] if r["run_id"] == rid)
        assert entry["run_dir"] == folder and entry["attempts"] == 1
        p = d / folder / "result.json"
        assert (_digest(p), p.stat().st_mtime_ns) == before[rid]  # never rewritten
    for rid in stale:
        entry = next(r for r in after["runs"] if r["run_id"] == rid)
        assert entry["attempts"] == 2 and entry["run_dir"].endswith("_a2")
        assert (d / rid).is_dir()  # the dead attempt's folder is kept as it was
    study_result = json.loads((d / "study_result.json").read_text())
    assert len(study_result["runs"]) == 4


@pytest.mark.parametrize("delay_s", [0.0, 1.5])  # during the child's spawn, and mid-experiment
def test_ctrl_c_marks_interrupted_prints_resume_and_exits_130(
    tmp_path: Path, shared_model_cache: Path, delay_s: float
) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    f = study_file(tmp_path, {"batch_size": [1, 2]}, n_cycles=1, n=32, max_output_tokens=32)
    tag = f"LLEM_TEST_TAG={uuid.uuid4().hex}"  # inherited by every process the controller starts
    env = {**os.environ, "LLEM_CONFIG": str(uc), "COLUMNS": "200", **dict([tag.split("=")])}
    proc = _llem("run", str(f), env=env)
    d, _ = wait_for_manifest(
        tmp_path / "results", lambda m: any(r["status"] == "running" for r in m["runs"])
    )
    time.sleep(delay_s)
    # mid-experiment: wait for the experiment to lead its group (its interpreter start and imports
    # take seconds on a loaded 2-core CI machine)
    deadline = time.monotonic() + (120 if delay_s > 0 else 0)
    while True:
        assert proc.pid in _tagged_pids(tag)  # the scan below sees the controller's processes
        started = {pid: _start_time(pid) for pid in descendant_pids(proc.pid)}
        leaders = {pid for pid in started if _pgid(pid) == pid}  # the experiment leads its group
        if leaders or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if delay_s > 0:  # mid-experiment: the experiment process exists
        assert leaders, (
            f"no experiment process group under the controller: {_describe(set(started))}"
        )
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "llem run --resume" in out
    manifest = json.loads((d / "manifest.json").read_text())
    statuses = [r["status"] for r in manifest["runs"]]
    assert "interrupted" in statuses and "running" not in statuses

    # No process the controller started is left: none carries its tag, each PID seen under it
    # is gone (or is another process now), and each of their process groups is empty.
    def still_there() -> set[int]:
        seen = {pid for pid, t0 in started.items() if t0 is not None and _start_time(pid) == t0}
        return _tagged_pids(tag) | seen

    left = _wait_for(still_there, timeout_s=15.0)
    assert not left, f"processes left behind 15 s after Ctrl-C: {_describe(left)}"
    for pgid in leaders:
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)  # no member of the experiment's process group is left


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (PID + start time names one process), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _tagged_pids(tag: str) -> set[int]:
    """Live processes whose environment holds ``tag`` (children inherit it)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if tag.encode() in environ and _start_time(int(entry)) is not None:
            found.add(int(entry))
    return found


def _wait_for(probe, timeout_s: float) -> set[int]:
    """Poll ``probe`` until it returns an empty set or ``timeout_s`` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while (answer := probe()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return answer


def _describe(pids: set[int]) -> str:
    out = []
    for pid in sorted(pids):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        out.append(f"{pid}: {cmd[:200]}")
    return "; ".join(out)


def test_resume_refuses_a_changed_study(tmp_path: Path, shared_model_cache: Path) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    f = study_file(tmp_path, {"batch_size": [1]}, n_cycles=1)
    res = run_study(f, user_config_path=uc)
    changed = study_file(tmp_path / "other", {"batch_size": [1, 2]}, n_cycles=1)
    env = {**os.environ, "LLEM_CONFIG": str(uc), "COLUMNS": "200"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "llenergymeasure",
            "run",
            str(changed),
            "--resume",
            str(res.study_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "no longer matches this study" in out.stderr.replace("\n", " ")
