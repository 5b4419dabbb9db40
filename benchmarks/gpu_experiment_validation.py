"""Issue 4's verification on a GPU: `llem run` end to end against a bare `generate` loop.

On an H200 the whole run takes about 11 minutes, more than one device call allows, so split it
(each part writes its JSON to --out after every stage, and prints its table; run it without a
pipe so a call cut short still returns what it printed):

    PYTHONPATH=src python3 benchmarks/gpu_experiment_validation.py --out $OUT --batch-sizes 1,8 --compile
    PYTHONPATH=src python3 benchmarks/gpu_experiment_validation.py --out $OUT --batch-sizes 32 --no-compile

1. `llem run` (the real CLI, local runner, NVML meter) of synthetic/llama-1b, bf16, 128 input and
   256 output tokens, batch sizes 1, 8 and 32, three cycles interleaved: J per output token,
   tokens/s, TTFT, ITL, and the CV of J/token across the three runs of each batch size.
2. A bare `model.generate` loop on the same model (same seed, same prompts, same batching),
   warmed the same way, in the same call: llem's throughput against it.
3. `static_cache + torch_compile` at batch 1, one run: speed-up and
   energy change against the dynamic cache.

`--cpu-smoke` runs the same code with synthetic/tiny-llama on the CPU (no energy) to check the
script before spending GPU time.
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

import yaml


def run_llem(study: dict[str, Any], work: Path, name: str, env: dict[str, str]) -> dict[str, Any]:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "run", str(path), "--no-gaps"],
        env=env,
        capture_output=True,
        text=True,
    )
    print(
        f"[{name}] llem exited {proc.returncode} after {time.perf_counter() - t0:.0f} s", flush=True
    )
    print(proc.stdout[-4000:], proc.stderr[-3000:], flush=True)
    dirs = sorted((work / "results").glob(f"{study['name']}_*"))
    return json.loads((dirs[-1] / "study_result.json").read_text())


def bare_loop(cfg_data: dict[str, Any], cache: Path, repeats: int = 3) -> dict[str, float]:
    """Plain transformers: same synthetic model, prompts and batching as llem; no llem in the loop."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from llenergymeasure import ExperimentConfig
    from llenergymeasure.datasets import load_prompts
    from llenergymeasure.models.synthetic import resolve_model

    cfg = ExperimentConfig.from_dict(cfg_data)
    resolved = resolve_model(cfg.model, cache)
    tok = AutoTokenizer.from_pretrained(resolved.path)
    prompts = load_prompts(cfg, tok)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[cfg.precision]
    torch.manual_seed(cfg.seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            AutoConfig.from_pretrained(resolved.path), dtype=dtype
        )
    model.eval()
    batches = [prompts[i : i + cfg.batch_size] for i in range(0, len(prompts), cfg.batch_size)]

    def one_pass(items: list[list[Any]]) -> int:
        n = 0
        for batch in items:
            ids = torch.tensor([p.token_ids for p in batch], device=device)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    max_new_tokens=cfg.max_output_tokens,
                    min_new_tokens=cfg.max_output_tokens,
                    pad_token_id=tok.pad_token_id,
                )
            n += (out.shape[1] - ids.shape[1]) * ids.shape[0]
        if cuda:
            torch.cuda.synchronize()
        return n

    for _ in range(cfg.warmup.runs):
        one_pass(batches[:1])
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = one_pass(batches)
        rates.append(n / (time.perf_counter() - t0))
    return {"tok_s_mean": statistics.mean(rates), "tok_s_runs": rates}


def metric(summary: dict[str, Any], name: str, key: str = "mean") -> float | None:
    m = summary["metrics"].get(name) or {}
    return m.get(key)


def _fmt(v: float | None, p: int = 4) -> str:
    return "—" if v is None else f"{v:.{p}g}"


def _print_rows(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'bs':>3} {'runs':>4} {'J/tok':>8} {'J/tok adj':>9} {'CV J/tok':>8} {'tok/s':>8} "
        f"{'bare tok/s':>10} {'llem-bare':>9} {'TTFT ms':>8} {'ITL ms':>7} {'W':>6}",
        flush=True,
    )
    for r in rows:
        cv = None if r["j_per_token_cv"] is None else 100 * r["j_per_token_cv"]
        bare = r.get("llem_vs_bare_pct")
        print(
            f"{r['batch_size']:>3} {r['n_runs']:>4} {_fmt(r['j_per_out_token']):>8} "
            f"{_fmt(r['j_per_out_token_adjusted']):>9} {_fmt(cv, 3):>7}% {_fmt(r['tok_s']):>8} "
            f"{_fmt(r.get('bare_tok_s')):>10} {'—' if bare is None else f'{bare:+.2f}':>8}% "
            f"{_fmt(r['ttft_ms']):>8} {_fmt(r['itl_ms']):>7} {_fmt(r['mean_power_w']):>6}",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("OUT", "/tmp/llem-gpu-validation")),
        help="where the JSON summary goes (kept shallow: the device tool returns 2 levels)",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/llem-gpu-validation-work"),
        help="study directories and the model cache",
    )
    ap.add_argument("--batch-sizes", default="1,8,32", help="comma-separated; '' skips the sweep")
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run static cache + torch.compile at batch 1",
    )
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    smoke = args.cpu_smoke
    model = "synthetic/tiny-llama" if smoke else "synthetic/llama-1b"
    precision = "fp32" if smoke else "bf16"
    in_tok, out_tok = (16, 8) if smoke else (128, 256)
    uc = work / "user-config.yaml"
    uc.write_text(
        yaml.safe_dump(
            {
                "output": {"results_dir": str(work / "results"), "model_cache_dir": str(cache)},
                "measurement": {"energy_backend": "none" if smoke else "nvml"},
            }
        )
    )
    env = {**os.environ, "LLEM_CONFIG": str(uc), "COLUMNS": "160"}
    base = {
        "model": model,
        "backend": "pytorch",
        "precision": precision,
        "dataset": {"source": "synthetic", "input_tokens": in_tok},
        "max_output_tokens": out_tok,
        "warmup": {"mode": "fixed", "runs": 2},
        "baseline": {"enabled": not smoke, "duration_s": 10, "cache_ttl_s": 3600},
    }
    prompts_for = {1: 2, 8: 8, 32: 32}  # batch size -> prompts in the window
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    summary_path = args.out / "gpu_experiment_validation.json"
    out: dict[str, Any] = {"rows": [], "static_variants": [], "failures": []}
    t_all = time.perf_counter()

    def save() -> None:  # after every stage, so a call cut short still returns what it measured
        out["wall_s"] = time.perf_counter() - t_all
        summary_path.write_text(json.dumps(out, indent=2))

    if sizes:
        study = {
            "name": "bs-sweep",
            "base": base,
            "experiments": [{"batch_size": b, "n": prompts_for.get(b, b)} for b in sizes],
            "execution": {"n_cycles": args.cycles, "cycle_order": "interleaved"},
        }
        res = run_llem(study, work, "bs-sweep", env)
        env_snap = res["runs"][0]["environment"] if res["runs"] else {}
        out.update(
            {
                "gpu": env_snap.get("gpu_model"),
                "driver": env_snap.get("driver_version"),
                "cuda": env_snap.get("cuda_driver_version"),
                "packages": env_snap.get("packages"),
                "warning_codes": sorted({w["code"] for r in res["runs"] for w in r["warnings"]}),
                "failures": res["failures"],
            }
        )
        for s in res["summaries"]:
            out["rows"].append(
                {
                    "batch_size": s["config"]["batch_size"],
                    "n_runs": s["n_completed"],
                    "j_per_out_token": metric(s, "energy_per_output_token_j"),
                    "j_per_out_token_adjusted": metric(s, "energy_per_output_token_adjusted_j"),
                    "j_per_token_cv": metric(s, "energy_per_output_token_j", "cv"),
                    "tok_s": metric(s, "output_tokens_per_s"),
                    "tok_s_cv": metric(s, "output_tokens_per_s", "cv"),
                    "ttft_ms": metric(s, "ttft_mean_ms"),
                    "itl_ms": metric(s, "itl_mean_ms"),
                    "mean_power_w": metric(s, "mean_power_w"),
                }
            )
        save()
        _print_rows(out["rows"])
        for row in out["rows"]:  # the bare loop, same model/prompts/batching, same call
            bs = row["batch_size"]
            bare = bare_loop({**base, "batch_size": bs, "n": prompts_for.get(bs, bs)}, cache)
            row["bare_tok_s"] = bare["tok_s_mean"]
            row["llem_vs_bare_pct"] = 100.0 * (row["tok_s"] / bare["tok_s_mean"] - 1.0)
            save()
        _print_rows(out["rows"])

    if args.compile:
        study2 = {
            "name": "bs1-static",
            "base": {**base, "batch_size": 1, "n": 2, "timeout_s": 240},
            "experiments": [{"pytorch": {"static_cache": True, "torch_compile": True}}],
            "execution": {"n_cycles": 1},
        }
        res2 = run_llem(study2, work, "bs1-static", env)
        dyn = next((r for r in out["rows"] if r["batch_size"] == 1), None)
        for s in res2["summaries"]:
            tok_s = metric(s, "output_tokens_per_s")
            jt = metric(s, "energy_per_output_token_j")
            v: dict[str, Any] = {"variant": "static+compile", "tok_s": tok_s, "j_per_out_token": jt}
            if dyn and tok_s:
                v["speedup_vs_dynamic"] = tok_s / dyn["tok_s"]
            if dyn and jt and dyn["j_per_out_token"]:
                v["energy_change_pct"] = 100.0 * (jt / dyn["j_per_out_token"] - 1.0)
            out["static_variants"].append(v)
        for f in res2["failures"]:
            out["static_variants"].append({"variant": f["run_id"], "failed": f["message"][:300]})
        save()
        for v in out["static_variants"]:
            print("bs1", json.dumps(v), flush=True)
    print(
        f"{out.get('gpu')}  driver {out.get('driver')}  CUDA {out.get('cuda')}  wall {out['wall_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
