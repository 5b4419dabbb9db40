"""Issue 26 on a GPU: compile-cache miss against hit, where the time goes, and CUDA graphs at bs 1.

Every run is a fresh process through the real harness (``python -m llenergymeasure.harness``),
with the product's defaults (30 s window, ``cv`` warmup, both idle baselines, NVML meter) unless
a flag says otherwise, and one compile cache (``--work``/models/compile) shared by the stage's
runs. A stage runs its config twice: ``miss`` with ``measurement.compile_cache: refresh`` (the
key's directory emptied first: a cold compile that leaves a warm cache), then ``hit`` with
``on`` (the next process, the same key). Stages, each under 9 minutes on an H100:

    c1      synthetic/llama-1b static + compile, bs 1 (miss, hit)
    c8      synthetic/llama-8b static + compile, bs 8 (miss, hit)
    d8      synthetic/llama-1b dynamic cache, bs 8 (nothing compiles: two runs, cache off)
    graphs  synthetic/llama-1b static + compile, bs 1, compile_mode default (no CUDA graph)
            against reduce-overhead (the decode step replayed as a CUDA graph; its capture is in
            the compile phase), baseline off to fit: tok/s and TTFT (the HBM roofline for
            1.1 B bf16 at 3.35 TB/s: 1,520 tok/s; target >= 760 tok/s, TTFT <= 10 ms)

Per run it saves (after every run, to ``$OUT/compile_cache_<stage>.json``): the compile record
(cache, duration, counters), warmup (s, batches, how it stopped), the timings block (every phase,
total, window share), J/output token, tok/s, mean W, TTFT and ITL; per stage, hit/miss ratios of
compile time and the hit's J/token and tok/s against the miss's. Against issue 26's targets:
compile on a hit <= 10 % of the miss's, warmup <= 15 s, window share >= 55 % (static + compile)
and >= 45 % (dynamic bs 8) at 30 s, >= 70 % at ``--min-window-s 60``.

On the device (torch 2.11 + transformers 5.17, no pydantic: carry the wheels in .whl):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src
    PYTHONUNBUFFERED=1 python3 benchmarks/compile_cache.py --stage c1 --out $OUT

``--cpu-smoke`` runs every stage on the CPU with synthetic/tiny-llama, tiny shapes, the null
meter and no baseline: it checks the script, its numbers mean nothing.
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
STAGES = ("c1", "c8", "d8", "graphs")


def experiment(stage: str, smoke: bool, min_window_s: float | None, mode: str) -> dict[str, Any]:
    """The stage's config (``mode``: the compile mode for static + compile configs)."""
    compiled = {"static_cache": True, "torch_compile": True, "compile_mode": mode}
    if smoke:
        data: dict[str, Any] = {
            "model": "synthetic/tiny-llama",
            "precision": "fp32",
            "batch_size": 8 if stage in ("c8", "d8") else 1,
            "n": 2,
            "dataset": {"source": "synthetic", "input_tokens": 8},
            "max_input_tokens": 16,
            "max_output_tokens": 4,
            "warmup": {"mode": "fixed", "runs": 1},
            "baseline": {"enabled": False},
        }
        if stage != "d8":
            data["pytorch"] = compiled
        return {"backend": "pytorch", **data}
    data = {
        "model": "synthetic/llama-8b" if stage == "c8" else "synthetic/llama-1b",
        "backend": "pytorch",
        "precision": "bf16",
        "batch_size": 1 if stage in ("c1", "graphs") else 8,
        "n": 8,
        "dataset": {"source": "synthetic", "input_tokens": 128},
        "max_output_tokens": 256,
    }
    if stage != "d8":
        data["pytorch"] = compiled
    if stage == "graphs":
        data["baseline"] = {"enabled": False}
    if min_window_s is not None:
        data["measurement"] = {"min_window_s": min_window_s}
    return data


def arms(stage: str) -> list[tuple[str, str, str]]:
    """(arm name, compile_cache mode, compile_mode) of the stage's runs, in order."""
    if stage == "d8":
        return [("run1", "on", "reduce-overhead"), ("run2", "on", "reduce-overhead")]
    if stage == "graphs":  # two keys (the compile mode is in the key): both compile here
        return [("no-graphs", "on", "default"), ("cuda-graphs", "on", "reduce-overhead")]
    return [("miss", "refresh", "reduce-overhead"), ("hit", "on", "reduce-overhead")]


def row(arm: str, r: dict[str, Any], wall_s: float) -> dict[str, Any]:
    c = r.get("compile") or {}
    t = r.get("timings") or {}
    w = r.get("warmup") or {}
    ttft = r.get("ttft_ms") or {}
    itl = r.get("itl_ms") or {}
    return {
        "arm": arm,
        "process_wall_s": wall_s,
        "compile_cache": c.get("cache"),
        "compile_s": c.get("duration_s"),
        "compile_counters": c.get("counters"),
        "compile_key": c.get("key"),
        "warmup_s": w.get("duration_s"),
        "warmup_batches": w.get("runs"),
        "warmup_stopped_by": w.get("stopped_by"),
        "timings": t,
        "window_share": t.get("window_share"),
        "window_s": r.get("duration_s"),
        "j_per_tok": r.get("energy_per_output_token_j"),
        "j_per_tok_above_idle": r.get("energy_per_output_token_above_idle_j"),
        "tok_s": r.get("output_tokens_per_s"),
        "mean_w": r.get("mean_power_w"),
        "ttft_ms_mean": ttft.get("mean_ms"),
        "ttft_ms_p50": ttft.get("p50_ms"),
        "itl_ms_mean": itl.get("mean_ms"),
        "gpu": ((r.get("environment") or {}).get("gpus") or [{}])[0].get("name"),
        "warnings": sorted({x["code"] for x in r.get("warnings", [])}),
    }


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The second run against the first (hit / miss; reduce-overhead / default)."""
    if len(rows) < 2:
        return {}
    a, b = rows[0], rows[1]

    def ratio(key: str) -> float | None:
        x, y = a.get(key), b.get(key)
        return y / x if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x else None

    return {
        f"{b['arm']}/{a['arm']}": {
            k: ratio(k) for k in ("compile_s", "warmup_s", "process_wall_s", "j_per_tok", "tok_s")
        },
        "window_share": [r.get("window_share") for r in rows],
    }


def run_stage(stage: str, args: argparse.Namespace) -> dict[str, Any]:
    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings

    save = args.out / f"compile_cache_{stage}.json"
    summary: dict[str, Any] = {"stage": stage, "argv": sys.argv, "runs": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TORCHINDUCTOR", "TRITON"))}
    for arm, cache_mode, compile_mode in arms(stage):
        data = experiment(stage, args.cpu_smoke, args.min_window_s, compile_mode)
        data.setdefault("measurement", {})["compile_cache"] = cache_mode
        config = ExperimentConfig.from_dict(data)
        run_dir = args.work / stage / arm
        run_dir.mkdir(parents=True, exist_ok=True)
        request = HarnessRequest(
            config=config,
            settings=HarnessSettings(
                energy_backend="none" if args.cpu_smoke else "auto",
                model_cache_dir=str(args.work / "models"),
                run_id=f"{stage}-{arm}",
            ),
        )
        request.write(run_dir / "request.json")
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "llenergymeasure.harness", "--config"]
        cmd += [str(run_dir / "request.json"), "--output", str(run_dir)]
        done = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        wall = time.perf_counter() - t0
        result = run_dir / "result.json"
        if done.returncode != 0 or not result.exists():
            error = run_dir / "error.json"
            summary["runs"].append({"arm": arm, "failed": done.returncode, "error": _tail(error)})
            save.write_text(json.dumps(summary, indent=2))
            break
        one = row(arm, json.loads(result.read_text()), wall)
        summary["runs"].append(one)
        print(json.dumps({k: v for k, v in one.items() if k != "timings"}), flush=True)
        save.write_text(json.dumps(summary, indent=2))
    ok = [r for r in summary["runs"] if "failed" not in r]
    summary["ratios"] = ratios(ok)
    shares = [r["window_share"] for r in ok if r.get("window_share") is not None]
    summary["mean_window_share"] = statistics.fmean(shares) if shares else None
    save.write_text(json.dumps(summary, indent=2))
    print(json.dumps({"stage": stage, "ratios": summary["ratios"]}, indent=2), flush=True)
    return summary


def _tail(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text()).get("message"))[-2000:]
    except (OSError, ValueError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    ap.add_argument("--min-window-s", type=float, default=None, help="none: the default (30 s)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/llem-cc")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/llem-cc-work"))
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    stages = STAGES if args.stage == "all" else (args.stage,)
    for stage in stages:
        run_stage(stage, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
