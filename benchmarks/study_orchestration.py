"""Benchmark the study machinery itself (targets from issue 5, CI-class machine):

- per-run orchestration overhead (spawn, imports, environment snapshot, result handling; excluding
  model load, warmup and the measured window): < 3 s
- planning a 1,000-run study: < 1 s
- one manifest update of a 1,000-run study: < 10 ms

Run: .venv/bin/python benchmarks/study_orchestration.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def bench_planning() -> float:
    from llenergymeasure import StudyConfig
    from llenergymeasure.study.planning import Gaps, plan_study

    t0 = time.perf_counter()
    study = StudyConfig(
        name="plan",
        base={"model": "synthetic/llama-1b"},
        sweep={
            "batch_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
            "max_output_tokens": [32, 64, 128, 256, 512] * 1,
            "seed": [1, 2, 3, 4],
        },
        execution={"n_cycles": 5, "cycle_order": "shuffled", "shuffle_seed": 1},
    )
    plan = plan_study(study, Gaps(0, "x", 0, "x"))
    elapsed = time.perf_counter() - t0
    assert len(plan) == 1000, len(plan)
    return elapsed


def bench_manifest_update(tmp: Path) -> float:
    from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore

    runs = [
        ManifestRun(
            run_id=f"{i:04d}_c1_pytorch_deadbeef",
            index=i,
            config_hash="h" * 64,
            config_index=i,
            cycle=1,
            backend="pytorch",
        )
        for i in range(1, 1001)
    ]
    store = ManifestStore(
        tmp, Manifest(study_name="m", study_design_hash="x" * 64, n_cycles=1, runs=runs)
    )
    store.save()
    times = []
    for i in range(1, 201):
        rid = runs[i - 1].run_id
        t0 = time.perf_counter()
        store.transition(rid, "running", run_dir=rid)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_overhead(tmp: Path, repeats: int = 3) -> list[tuple[float, float, float]]:
    import json

    from llenergymeasure import ExperimentConfig
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
    from llenergymeasure.runners.local import LocalRunner

    cfg = ExperimentConfig(
        model="synthetic/tiny-llama",
        precision="fp32",
        n=4,
        batch_size=2,
        max_output_tokens=4,
        dataset={"input_tokens": 8},
        warmup={"runs": 1},
        baseline={"enabled": False},
    )
    out = []
    for i in range(repeats):
        req = HarnessRequest(
            config=cfg,
            settings=HarnessSettings(energy_backend="none", model_cache_dir=str(tmp / "cache")),
        )
        t0 = time.perf_counter()
        outcome = LocalRunner().run(req, tmp / f"run{i}")
        wall = time.perf_counter() - t0
        assert outcome.status == "completed", outcome.message
        r = json.loads((tmp / f"run{i}" / "result.json").read_text())
        inside = r["load"]["duration_s"] + r["warmup"]["duration_s"] + r["duration_s"]
        out.append((wall, inside, wall - inside))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plan_s = bench_planning()
        upd_s = bench_manifest_update(tmp / "m")
        overhead = bench_overhead(tmp)
    print(f"planning a 1,000-run study: {plan_s * 1000:.0f} ms (target < 1000 ms)")
    print(
        f"one manifest update, 1,000 runs (median of 200): {upd_s * 1000:.2f} ms (target < 10 ms)"
    )
    for i, (wall, inside, over) in enumerate(overhead):
        print(
            f"run {i}: wall {wall:.2f} s, load+warmup+window {inside:.2f} s, orchestration overhead {over:.2f} s"
        )
    print(
        f"orchestration overhead, median: {statistics.median(o for *_, o in overhead):.2f} s (target < 3 s)"
    )


if __name__ == "__main__":
    main()
