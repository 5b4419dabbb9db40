"""Issue 25 item 5 on a GPU: is cycle 1 measured colder than the cycles after it?

Cycle 1 of a study measures the resident idle baseline (settle up to 30 s, then
``baseline.duration_s``) between warmup and window; later cycles read it from the cache and start
their window straight after warmup. The harness now re-warms after a baseline measured in the run
(``harness/rewarm.py``). This script runs one GPU-bound configuration (synthetic/llama-1b, bf16,
static cache + torch_compile, batch 8) for ``--cycles`` cycles, each in a fresh process through
the real harness with one baseline cache per arm (cycle 1 measures it, the others read it):

    after    the harness as it is (re-warm after the measured baseline)
    before   the same harness with the re-warm phase switched off in the child process (the
             protocol before issue 25 item 5; the switch lives in this script only)

Per cycle it prints J/output token (raw and above idle), the window's start temperature and
power (``window_gpu_state``), whether the baseline came from the cache, and the re-warm record;
then cycle 1 minus cycle 2 (and minus the mean of cycles 2..n) for J/token and start temperature.
One arm fits a device call (about 3 x 90 s); run the arms in separate calls, alternating order:

    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/rewarm_cycles.py --arm before --out $OUT
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/rewarm_cycles.py --arm after --out $OUT

``--cpu-smoke`` runs the same code on the CPU with synthetic/tiny-llama and a fake NVML (constant
100 W, from tests/fakes/nvml.py) so the baseline and the re-warm phases run; its numbers mean
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def experiment(smoke: bool, min_window_s: float) -> dict[str, Any]:
    if smoke:
        return {
            "model": "synthetic/tiny-llama",
            "backend": "pytorch",
            "precision": "fp32",
            "batch_size": 2,
            "n": 4,
            "dataset": {"source": "synthetic", "input_tokens": 8},
            "max_output_tokens": 4,
            "warmup": {"mode": "fixed", "runs": 2},
            "measurement": {"min_window_s": 0.5},
            "baseline": {"enabled": True, "duration_s": 1.0, "cache_ttl_s": 3600},
        }
    return {
        "model": "synthetic/llama-1b",
        "backend": "pytorch",
        "precision": "bf16",
        "batch_size": 8,
        "n": 8,
        "dataset": {"source": "synthetic", "input_tokens": 128},
        "max_output_tokens": 256,
        "pytorch": {"static_cache": True, "torch_compile": True},
        "measurement": {"min_window_s": min_window_s},
        "baseline": {"enabled": True, "duration_s": 15.0, "cache_ttl_s": 3600},
    }


def child(arm: str, request_path: Path, out_dir: Path, smoke: bool) -> int:
    """One cycle in this (fresh) process."""
    sys.path.insert(0, str(ROOT))  # tests.fakes for --cpu-smoke
    from llenergymeasure.harness import core
    from llenergymeasure.harness.request import HarnessRequest

    if arm == "before":  # the protocol before issue 25 item 5: no re-warm after the baseline
        core.rewarm_after_baseline = lambda *a, **k: None  # type: ignore[assignment]
    factory = None
    if smoke:
        from llenergymeasure.energy import select_meter
        from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

        fake = FakeNvml([FakeGpu(trace=ConstantPower(100.0), gpu_util_pct=0)])

        def factory(backend: str, devices: list[int]) -> Any:
            return select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.05)

    core.run_harness(HarnessRequest.read(request_path), out_dir, meter_factory=factory)
    return 0


def row(r: dict[str, Any]) -> dict[str, Any]:
    edges = r.get("window_gpu_state") or {}
    first = edges[sorted(edges)[0]] if edges else {}
    rw = r.get("rewarm") or {}
    return {
        "cycle": r["_cycle"],
        "j_per_tok": r["energy_per_output_token_j"],
        "j_per_tok_above_idle": r["energy_per_output_token_above_idle_j"],
        "tok_s": r["output_tokens_per_s"],
        "mean_w": r["mean_power_w"],
        "start_temperature_c": first.get("start_temperature_c"),
        "start_power_w": first.get("start_power_w"),
        "baseline_from_cache": (r.get("baseline") or {}).get("from_cache"),
        "rewarm_batches": rw.get("batches"),
        "rewarm_reached": rw.get("reached"),
        "rewarm_s": rw.get("duration_s"),
        "rewarm_before_c": rw.get("before_temperature_c"),
        "rewarm_after_c": rw.get("after_temperature_c"),
        "rewarm_target_c": rw.get("target_temperature_c"),
        "warnings": sorted({w["code"] for w in r["warnings"]}),
    }


def differences(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Cycle 1 minus cycle 2, and minus the mean of cycles 2..n, per figure."""
    out: dict[str, Any] = {}
    for key in ("j_per_tok", "j_per_tok_above_idle", "start_temperature_c", "start_power_w"):
        values = [r[key] for r in rows]
        if len(values) < 2 or any(v is None for v in values):
            out[key] = None
            continue
        out[key] = {
            "cycle1_minus_cycle2": values[0] - values[1],
            "cycle1_minus_rest": values[0] - statistics.fmean(values[1:]),
            "cycle1_minus_cycle2_pct": 100.0 * (values[0] / values[1] - 1.0) if values[1] else None,
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--arm", choices=("before", "after"), required=True)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--min-window-s", type=float, default=20.0)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/llem-rewarm")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/llem-rewarm-work"))
    ap.add_argument("--cpu-smoke", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("REQUEST", "OUT_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.arm, Path(args.child[0]), Path(args.child[1]), args.cpu_smoke)

    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings

    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work / args.arm
    cache = args.work / "models"
    baseline_cache = work / "baseline"  # one per arm: cycle 1 measures, the rest read it
    config = ExperimentConfig.from_dict(experiment(args.cpu_smoke, args.min_window_s))
    summary: dict[str, Any] = {"arm": args.arm, "argv": sys.argv, "runs": []}
    save = args.out / f"rewarm_cycles_{args.arm}.json"
    for cycle in range(1, args.cycles + 1):
        run_dir = work / f"cycle{cycle}"
        request = HarnessRequest(
            config=config,
            settings=HarnessSettings(
                energy_backend="nvml",
                model_cache_dir=str(cache),
                baseline_cache_dir=str(baseline_cache),
                run_id=f"{args.arm}-c{cycle}",
            ),
        )
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "request.json").write_text(request.model_dump_json())
        t0 = time.perf_counter()
        cmd = [
            sys.executable,
            __file__,
            "--arm",
            args.arm,
            "--child",
            str(run_dir / "request.json"),
            str(run_dir),
        ]
        if args.cpu_smoke:
            cmd.append("--cpu-smoke")
        rc = subprocess.run(cmd, cwd=ROOT, check=False).returncode
        result_file = run_dir / "result.json"
        if rc != 0 or not result_file.exists():
            summary["runs"].append({"cycle": cycle, "failed": rc})
            break
        r = json.loads(result_file.read_text())
        r["_cycle"] = cycle
        one = {**row(r), "wall_s": time.perf_counter() - t0}
        summary["runs"].append(one)
        print(json.dumps(one), flush=True)
        save.write_text(json.dumps(summary, indent=2))
    ok = [r for r in summary["runs"] if "failed" not in r]
    summary["differences"] = differences(ok)
    save.write_text(json.dumps(summary, indent=2))
    print(json.dumps({"arm": args.arm, "differences": summary["differences"]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
