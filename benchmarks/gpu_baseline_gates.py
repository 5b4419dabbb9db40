"""Idle baselines and validity gates on a real GPU, through the real harness (issue 19).

Run on a GPU machine from the repository root:

    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_baseline_gates.py --out $OUT

Two experiments on synthetic/llama-1b (random bf16 weights, PyTorch on cuda:0, batch 8, 32
prompts of 128 tokens, 64 new tokens, a window of at least 8 s (15 s for B), baselines of 6 s,
no cache):

  A. undisturbed: its cold idle (before the engine starts), resident idle (model loaded, after
     warmup, once power settled), and validity gates, which should all pass;
  B. the same, with a foreign process (a bf16 matmul loop in another Python process) started on
     the same GPU the moment the measured window opens: the foreign_process gate must fail.

It writes ``baseline_gates.json`` under --out after each experiment and prints a table last.
``--cpu-smoke`` runs the same path on the CPU with synthetic/tiny-llama and the fake NVML
(``tests/fakes/nvml.py``: idle 70 W, 250 W in the window, a real ``sleep`` process listed on the
GPU for B) to check the script's logic; its numbers mean nothing and are labelled so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (REPO / "src", REPO):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

FOREIGN = (
    "import torch, time\n"
    "a = torch.randn(8192, 8192, device='cuda', dtype=torch.bfloat16)\n"
    "t = time.time()\n"
    "while time.time() - t < {seconds}:\n"
    "    a = (a @ a).clamp_(-1, 1)\n"
    "    torch.cuda.synchronize()\n"
)


def experiment(cpu: bool, cache: Path, min_window_s: float) -> Any:
    from llenergymeasure import ExperimentConfig
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings

    data: dict[str, Any] = {
        "model": "synthetic/tiny-llama" if cpu else "synthetic/llama-1b",
        "backend": "pytorch",
        "precision": "fp32" if cpu else "bf16",
        "batch_size": 2 if cpu else 8,
        "n": 4 if cpu else 32,
        "dataset": {"source": "synthetic", "input_tokens": 8 if cpu else 128},
        "max_output_tokens": 4 if cpu else 64,
        "warmup": {"mode": "fixed", "runs": 1 if cpu else 2},
        "baseline": {"enabled": True, "duration_s": 2.0 if cpu else 6.0, "cache_ttl_s": 0},
        "measurement": {"min_window_s": min_window_s},
    }
    return HarnessRequest(
        config=ExperimentConfig.from_dict(data),
        settings=HarnessSettings(energy_backend="nvml", model_cache_dir=str(cache), run_id="gates"),
    )


def summary(result: Any) -> dict[str, Any]:
    def base(b: Any) -> dict[str, Any] | None:
        if b is None:
            return None
        return {
            "kind": b.kind,
            "available": b.available,
            "idle_power_w": b.idle_power_w,
            "idle_power_se_w": b.idle_power_se_w,
            "drift": b.drift,
            "n_windows": b.n_windows,
            "settle_s": b.settle_s,
            "state": b.state,
            "accepted": b.accepted,
            "rejected_reason": b.rejected_reason,
            "warnings": [w.code for w in b.warnings],
            "unavailable_reason": b.unavailable_reason,
        }

    return {
        "valid": result.valid,
        "failed_gates": result.failed_gates,
        "gates": [g.model_dump() for g in result.gates],
        "cold_baseline": base(result.cold_baseline),
        "resident_baseline": base(result.baseline),
        "duration_s": result.duration_s,
        "total_energy_j": result.total_energy_j,
        "total_energy_above_idle_j": result.total_energy_above_idle_j,
        "total_energy_above_idle_se_j": result.total_energy_above_idle_se_j,
        "energy_per_output_token_j": result.energy_per_output_token_j,
        "energy_per_total_token_j": result.energy_per_total_token_j,
        "energy_quantisation_bound_rel": result.energy_quantisation_bound_rel,
        "energy_split": result.energy_split.model_dump() if result.energy_split else None,
        "mean_power_w": result.mean_power_w,
        "warnings": [(w.code, w.severity) for w in result.warnings],
        "gpus": [g.model_dump() for g in result.environment.gpus],
        "window_gpu_state": result.window_gpu_state,
        "cudnn_version": result.environment.cudnn_version,
        "nccl_version": result.environment.nccl_version,
        "cpu_governor": result.environment.cpu_governor,
    }


def spawn_detached(cmd: list[str]) -> int:
    """Start ``cmd`` as an orphan (its parent shell exits at once), so it is not in this process's
    tree: the harness counts its own descendants as its own processes, never as foreign."""
    sh = subprocess.run(
        ["sh", "-c", shlex.join(cmd) + " >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(sh.stdout.strip())


def run_one(cpu: bool, cache: Path, out: Path, foreign: bool) -> dict[str, Any]:
    from llenergymeasure.energy import select_meter
    from llenergymeasure.harness.core import run_harness

    procs: list[int | None] = []
    run_dir = out / ("run_foreign" if foreign else "run_clean")
    fake = trace = None
    if cpu:
        from tests.fakes.nvml import FakeGpu, FakeNvml
        from tests.test_harness import IdleThenLoad

        trace = IdleThenLoad(idle_w=70.0, load_w=250.0)
        fake = FakeNvml([FakeGpu(trace=trace, gpu_util_pct=0)])

    def factory(backend: str, devices: list[int]) -> Any:
        if cpu:
            meter = select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)
        else:
            meter = select_meter("nvml", devices or [0])
        real_start = meter.start

        def start() -> None:
            phase = json.loads((run_dir / "progress.json").read_text()).get("phase")
            if phase == "measure" and not procs:
                if cpu:
                    assert trace is not None and fake is not None
                    trace.load_from_s = fake.now()
                if foreign:
                    cmd = (
                        ["sleep", "60"]
                        if cpu
                        else [sys.executable, "-c", FOREIGN.format(seconds=60)]
                    )
                    procs.append(spawn_detached(cmd))
                    if cpu:
                        fake.gpus[0].pids.append(procs[0])  # type: ignore[union-attr,arg-type]
                else:
                    procs.append(None)
            real_start()

        meter.start = start  # type: ignore[method-assign]
        return meter

    t0 = time.time()
    try:
        # B's window is longer: the foreign process needs a few seconds to import torch and
        # reach the GPU after it is started at the window's opening
        window = (2.5 if foreign else 1.2) if cpu else (15.0 if foreign else 8.0)
        result = run_harness(experiment(cpu, cache, window), run_dir, meter_factory=factory)
    finally:
        for pid in procs:
            if pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
    out_ = summary(result)
    out_["wall_s"] = time.time() - t0
    out_["foreign_pid"] = procs[0] if procs else None
    return out_


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "results/baseline-gates"))
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(os.environ.get("LLEM_BENCH_CACHE", "/tmp/llem-bench-cache"))
    report: dict[str, Any] = {
        "label": "CPU SMOKE: fake NVML, numbers mean nothing" if args.cpu_smoke else "H200",
        "command": " ".join(sys.argv),
    }
    path = out / "baseline_gates.json"
    for name, foreign in (("clean", False), ("foreign", True)):
        try:
            report[name] = run_one(args.cpu_smoke, cache, out, foreign)
        except Exception as exc:
            report[name] = {"error": f"{type(exc).__name__}: {exc}", "tb": traceback.format_exc()}
        path.write_text(json.dumps(report, indent=2, default=str))
    print(report["label"])
    for name in ("clean", "foreign"):
        r = report[name]
        if "error" in r:
            print(f"{name}: ERROR {r['error']}")
            continue
        cold, res = r["cold_baseline"] or {}, r["resident_baseline"] or {}
        print(
            f"{name}: valid={r['valid']} failed={r['failed_gates']} "
            f"cold={cold.get('idle_power_w')} W (SE {cold.get('idle_power_se_w')}) "
            f"resident={res.get('idle_power_w')} W (SE {res.get('idle_power_se_w')}, "
            f"settle {res.get('settle_s')} s, accepted {res.get('accepted')}) "
            f"window {r['duration_s']:.2f} s, {r['mean_power_w']} W mean, "
            f"E {r['total_energy_j']} J, above idle {r['total_energy_above_idle_j']} "
            f"+- {r['total_energy_above_idle_se_j']} J, quant {r['energy_quantisation_bound_rel']}"
        )
    ok = all("error" not in report[n] for n in ("clean", "foreign"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
