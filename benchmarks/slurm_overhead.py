"""What the slurm runner costs: SLURM's own dispatch latency, llem's per-run overhead beyond it,
and a 50-run study with max_concurrent 2 (wall time; no run lost or duplicated).

Needs a live cluster (``bash scripts/slurm-cluster.sh`` makes a single-node one) and runs
synthetic/tiny-llama on the CPU. Results go to stdout as JSON (and ``--out FILE``); they are
recorded in docs/performance.md with the machine they were measured on.

    .venv/bin/python benchmarks/slurm_overhead.py --repeats 3 --study-runs 50

Measured:

* ``dispatch_s``: ``sbatch --wrap 'date +%s.%N'``: from sbatch returning to the job's first
  command, i.e. the scheduler's own dispatch (plus bash start), no llem involved;
* per run through llem, from the manifest and the job's ``node.json``: submission -> job start
  (``submit_to_start_s``), job start -> harness start (``job_to_harness_s``: Python, submitit
  unpickling, llem's node code), harness end -> controller recorded the end
  (``end_to_record_s``: the ``sacct`` poll period, here ``poll_interval_s``);
* ``added_wall_s``: wall time of ``llem run`` for a 1-run study through slurm minus through the
  local runner, and ``added_beyond_dispatch_s``: that minus ``dispatch_s``;
* ``*_around_s``: each wall time minus the experiment itself (the local run / the harness on the
  node), so a noisy machine's run-to-run variation of the experiment cancels, and
  ``added_around_median_s``: what the slurm runner adds around one experiment (dispatch included).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

LLEM = [sys.executable, "-m", "llenergymeasure"]
EXPERIMENT = {
    "model": "synthetic/tiny-llama",
    "backend": "pytorch",
    "precision": "fp32",
    "batch_size": 1,
    "n": 2,
    "dataset": {"source": "synthetic", "input_tokens": 8},
    "max_output_tokens": 2,
    "warmup": {"mode": "fixed", "runs": 1},
    "baseline": {"enabled": False},
}


def _ts(text: str) -> float:
    return _dt.datetime.fromisoformat(text).timestamp()


def dispatch_latency(partition: str, repeats: int, work: Path) -> list[float]:
    out = []
    for i in range(repeats):
        stamp = work / f"dispatch-{i}.txt"
        t0 = time.time()
        job = subprocess.run(
            ["sbatch", "--parsable", "-p", partition, "--mem=100M", "-o", "/dev/null",
             "--wrap", f"date +%s.%N > {stamp}"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        submitted = time.time()
        while not stamp.exists() or not stamp.read_text().strip():
            time.sleep(0.02)
            if time.time() - t0 > 300:
                raise SystemExit(f"job {job} never started")
        out.append(float(stamp.read_text()) - submitted)
    return out


def _user_config(work: Path, partition: str, max_concurrent: int, poll_s: float) -> Path:
    path = work / "user-config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "output": {
                    "results_dir": str(work / "results"),
                    "model_cache_dir": str(work / "cache"),
                },
                "measurement": {"energy_backend": "none"},
                "execution": {"config_gap_seconds": 0, "cycle_gap_seconds": 0},
                "ui": {"prompt": False, "verbosity": "quiet"},
                "slurm": {
                    "partition": partition,
                    "gpus_per_job": 0,
                    "max_concurrent": max_concurrent,
                    "poll_interval_s": poll_s,
                    "time_limit_min": 30,
                },
            }
        )
    )
    return path


def _study(work: Path, name: str, sweep: list[int], cycles: int) -> Path:
    path = work / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "base": EXPERIMENT,
                "sweep": {"batch_size": sweep},
                "execution": {"n_cycles": cycles, "config_gap_seconds": 0, "cycle_gap_seconds": 0},
            }
        )
    )
    return path


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([*LLEM, *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"llem {' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return wall, proc.stdout


def _latest_study(results: Path) -> Path:
    return max(results.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime).parent


def _sacct_names(name: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-S", "now-3hours", "--name", name, "-o", "JobID"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if line]


def per_run(partition: str, repeats: int, poll_s: float, work: Path) -> dict[str, object]:
    env = dict(os.environ)
    env["LLEM_CONFIG"] = str(_user_config(work, partition, 1, poll_s))
    study = _study(work, "one", [1], 1)
    _run(["run", str(study), "--runner", "local"], env)  # builds the synthetic model once
    local, slurm, submit_start, job_harness, end_record = [], [], [], [], []
    local_run, slurm_harness = [], []
    for _ in range(repeats):
        local.append(_run(["run", str(study), "--runner", "local"], env)[0])
        d = _latest_study(work / "results")
        run = json.loads((d / "manifest.json").read_text())["runs"][0]
        local_run.append(_ts(run["ended_at"]) - _ts(run["started_at"]))
        slurm.append(_run(["run", str(study), "--runner", "slurm"], env)[0])
        d = _latest_study(work / "results")
        run = json.loads((d / "manifest.json").read_text())["runs"][0]
        node = json.loads((d / run["run_dir"] / "node.json").read_text())
        slurm_harness.append(_ts(node["ended_at"]) - _ts(node["harness_started_at"]))
        submit_start.append(_ts(node["started_at"]) - _ts(run["submitted_at"]))
        job_harness.append(_ts(node["harness_started_at"]) - _ts(node["started_at"]))
        end_record.append(_ts(run["ended_at"]) - _ts(node["ended_at"]))
    return {
        "local_wall_s": local,
        "slurm_wall_s": slurm,
        # the experiment itself: the local runner's run (spawn to end) / the harness on the node
        "local_run_s": local_run,
        "slurm_harness_s": slurm_harness,
        # llem's wall time around the experiment, per runner (the experiment's own noise removed)
        "local_around_s": [w - r for w, r in zip(local, local_run, strict=True)],
        "slurm_around_s": [w - h for w, h in zip(slurm, slurm_harness, strict=True)],
        "submit_to_start_s": submit_start,
        "job_to_harness_s": job_harness,
        "end_to_record_s": end_record,
    }


def big_study(partition: str, n_runs: int, poll_s: float, work: Path) -> dict[str, object]:
    env = dict(os.environ)
    env["LLEM_CONFIG"] = str(_user_config(work, partition, 2, poll_s))
    configs = 5
    study = _study(work, "fifty", list(range(1, configs + 1)), n_runs // configs)
    wall, _ = _run(["run", str(study), "--runner", "slurm"], env)
    d = _latest_study(work / "results")
    runs = json.loads((d / "manifest.json").read_text())["runs"]
    jobs = [r["job_id"] for r in runs]
    sacct = _sacct_names(f"llem-{d.name}")
    return {
        "runs": len(runs),
        "completed": sum(r["status"] == "completed" for r in runs),
        "attempts_max": max(r["attempts"] for r in runs),
        "distinct_job_ids": len(set(jobs)),
        "sacct_jobs": len(sacct),
        "sacct_matches_manifest": sorted(sacct) == sorted(jobs),
        "result_files": len(list(d.glob("*/result.json"))),
        "wall_s": wall,
        "mean_run_s": statistics.mean(_ts(r["ended_at"]) - _ts(r["started_at"]) for r in runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--partition", default="debug")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--poll", type=float, default=0.5, help="slurm.poll_interval_s")
    ap.add_argument("--study-runs", type=int, default=50, help="0 skips the big study")
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--workdir", type=Path, default=Path.cwd(), help="on a filesystem the nodes share"
    )
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llem-slurm-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        dispatch = dispatch_latency(args.partition, max(args.repeats, 5), work)
        runs = per_run(args.partition, args.repeats, args.poll, work)
        med = statistics.median
        added = med(runs["slurm_wall_s"]) - med(runs["local_wall_s"])  # type: ignore[arg-type]
        report: dict[str, object] = {
            "dispatch_s": dispatch,
            "dispatch_median_s": med(dispatch),
            **runs,
            "added_wall_median_s": added,
            "added_beyond_dispatch_median_s": added - med(dispatch),
            "added_around_median_s": med(runs["slurm_around_s"]) - med(runs["local_around_s"]),  # type: ignore[arg-type]
            "poll_interval_s": args.poll,
        }
        if args.study_runs:
            report["study"] = big_study(args.partition, args.study_runs, args.poll, work)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
