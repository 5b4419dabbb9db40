"""Runs side by side end to end on the CPU: the real CLI, the real local runner and
synthetic/tiny-llama, ``execution.concurrent_runs: 2`` over two fake GPUs (the controller's
``CUDA_VISIBLE_DEVICES`` names two UUIDs no machine has; the CPU engine ignores them). Ctrl-C with
both runs in flight stops both experiment processes and marks both interrupted; ``--resume``
finishes the study, and every result.json carries its placement, neighbours and neighbour_load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.helpers import tiny_experiment, user_config_file, wait_for_manifest, write

FAKE_GPUS = "GPU-fake-0000,GPU-fake-1111"


def _llem(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "llenergymeasure", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _experiment_pids(d: Path) -> dict[str, int]:
    """Run folder -> pid of its experiment process (process.json, written once it started)."""
    out = {}
    for path in d.glob("*/process.json"):
        try:
            out[path.parent.name] = int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_side_by_side_study_ctrl_c_and_resume(tmp_path: Path, shared_model_cache: Path) -> None:
    uc = user_config_file(tmp_path, shared_model_cache)
    study = {
        "name": "side",
        # enough work that both runs are still measuring when Ctrl-C comes
        "base": tiny_experiment(n=32, max_output_tokens=32),
        "sweep": {"batch_size": [1, 2]},
        "execution": {
            "n_cycles": 2,
            "cycle_order": "interleaved",
            "config_gap_seconds": 0,
            "cycle_gap_seconds": 0,
            "concurrent_runs": 2,
        },
    }
    f = write(tmp_path / "study.yaml", yaml.safe_dump(study))
    env = {
        **os.environ,
        "LLEM_CONFIG": str(uc),
        "COLUMNS": "200",
        "CUDA_VISIBLE_DEVICES": FAKE_GPUS,
    }
    proc = _llem("run", str(f), env=env)
    results = tmp_path / "results"
    try:
        d, manifest = wait_for_manifest(
            results,
            lambda m: sum(r["status"] == "running" for r in m["runs"]) == 2,
            timeout=300,
        )
        running = [r for r in manifest["runs"] if r["status"] == "running"]
        # both experiment processes exist (each writes process.json once it started)
        deadline = time.monotonic() + 300
        while len(_experiment_pids(d)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = _experiment_pids(d)
        assert len(pids) == 2, f"experiment processes: {pids}"
        assert sorted(r["gpus"][0] for r in running) == [0, 1]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out
    assert "llem run --resume" in out
    after = json.loads((d / "manifest.json").read_text())
    statuses = {r["run_id"]: r["status"] for r in after["runs"]}
    assert [statuses[r["run_id"]] for r in running] == ["interrupted", "interrupted"], out
    assert "running" not in statuses.values()
    # every experiment process stopped (a bounded wait: the runner SIGTERMs, then SIGKILLs)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids.values() if _alive(p)], f"left running: {pids}"
    # each child was given only its own GPU
    for r in running:
        request = json.loads((d / r["run_dir"] / "request.json").read_text())
        assert request["settings"]["concurrent"] is True

    resumed = _llem("run", "--resume", str(d), env=env)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out
    final = json.loads((d / "manifest.json").read_text())
    assert [r["status"] for r in final["runs"]] == ["completed"] * 4
    by_id = {r["run_id"]: r for r in final["runs"]}
    for r in running:
        assert by_id[r["run_id"]]["run_dir"].endswith("_a2")
    labels = {0: "GPU-fake-0000", 1: "GPU-fake-1111"}
    placements = {}
    for entry in final["runs"]:
        result = json.loads((d / entry["run_dir"] / "result.json").read_text())
        assert result["schema_version"] == "1.3"
        p = result["placement"]
        placements[entry["run_id"]] = p
        assert p["gpus"] == entry["gpus"] and len(p["gpus"]) == 1
        assert p["devices"] == [labels[p["gpus"][0]]]
        assert p["concurrent"] is True and p["concurrent_runs"] == 2
        codes = [w["code"] for w in result["warnings"]]
        assert ("neighbour_load" in codes) == bool(p["neighbours"])
        for n in p["neighbours"]:
            assert n["overlap_s"] > 0 and not set(n["gpus"]) & set(p["gpus"])
    # runs that overlapped say so on both sides
    pairs = {(a, n["run_id"]) for a, p in placements.items() for n in p["neighbours"]}
    assert pairs and all((b, a) in pairs for a, b in pairs)
    study_result = json.loads((d / "study_result.json").read_text())
    assert len(study_result["runs"]) == 4
    assert study_result["measurement_protocol"]["concurrent_runs"] == 2
