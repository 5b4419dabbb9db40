"""Issue 14 on a GPU: what a campaign-grade run costs and how steady its numbers are.

Each part fits one device call (at most 10 minutes), writes its JSON under --out after every
stage and prints a short table last; run it without a pipe so a call cut short still returns
what it printed. Parts:

    probe   load-time breakdown (old and new synthetic build), whether engine import and CUDA
            context creation disturb an idle-power reading, and the decode paths profiled
            (transformers' generate with static cache + compile against llem's static decode
            loop): TTFT, decode tok/s, recompiles across prompt lengths, torch profiler tables
    study   `llem run` of each configuration in --config (comma-separated: dyn8 = dynamic cache
            bs 8, sc1 / sc8 = static cache + torch_compile bs 1 / 8) for --cycles cycles with
            measurement.min_window_s 30: wall per run, window share, load and warmup seconds,
            J/token mean, CI and CV, warnings (each run saved as its result.json appears); then
            a bare loop on the same model and prompts
    sampler the NVML sampler's cost on a GPU-bound workload (static+compile decode, sampler on
            and off, alternating)

    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_campaign.py --part probe --out $OUT
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_campaign.py --part study --config sc1 --out $OUT
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_campaign.py --part study --config dyn8 --out $OUT
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_campaign.py --part study --config sc8 --sampler --out $OUT

``--cpu-smoke`` runs the same code on the CPU with synthetic/tiny-llama and no energy meter, to
check the script before spending device time; its numbers mean nothing.
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

ROOT = Path(__file__).resolve().parents[1]
OUT: dict[str, Any] = {}
SAVE_PATH: Path | None = None
T_ALL = time.perf_counter()


def save() -> None:
    """Write what was measured so far (after every stage)."""
    OUT["wall_s"] = time.perf_counter() - T_ALL
    if SAVE_PATH is not None:
        SAVE_PATH.write_text(json.dumps(OUT, indent=2, default=str))


def left(budget_s: float) -> float:
    return budget_s - (time.perf_counter() - T_ALL)


# -- probe: idle power while the engine starts -------------------------------------------------


def _nvml_mean_power(seconds: float) -> dict[str, float]:
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    t0 = time.perf_counter()
    temps, powers = [], []
    while time.perf_counter() - t0 < seconds:
        powers.append(pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
        temps.append(pynvml.nvmlDeviceGetTemperature(h, 0))
        time.sleep(0.1)
    e1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    dt = time.perf_counter() - t0
    pynvml.nvmlShutdown()
    return {
        "mean_w": (e1 - e0) / 1000.0 / dt,
        "sampled_min_w": min(powers),
        "sampled_max_w": max(powers),
        "temp_c": statistics.mean(temps),
    }


_STARTER = """
import time, sys
t0 = time.perf_counter()
import torch, transformers
t1 = time.perf_counter()
torch.cuda.init(); torch.zeros(1, device='cuda'); torch.cuda.synchronize()
t2 = time.perf_counter()
print(f'import {t1 - t0:.2f} s, context {t2 - t1:.2f} s', flush=True)
time.sleep(float(sys.argv[1]))
"""


def probe_baseline(seconds: float) -> dict[str, Any]:
    res: dict[str, Any] = {"window_s": seconds}
    res["quiet_before"] = _nvml_mean_power(seconds)
    proc = subprocess.Popen(
        [sys.executable, "-c", _STARTER, str(seconds * 2 + 5)], text=True, stdout=subprocess.PIPE
    )
    res["during_import_and_context"] = _nvml_mean_power(seconds)
    res["context_held_idle"] = _nvml_mean_power(seconds)
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    res["starter"] = out.strip()
    time.sleep(2.0)
    res["quiet_after"] = _nvml_mean_power(seconds)
    return res


# -- probe: load ---------------------------------------------------------------------------------


def probe_load(model_path: str, device: str, dtype_name: str) -> dict[str, Any]:
    import torch
    import transformers

    from llenergymeasure.models.synthetic import build_random_model

    dtype = getattr(torch, dtype_name)
    res: dict[str, Any] = {}
    t0 = time.perf_counter()
    if device == "cuda":
        torch.cuda.init()
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
    res["cuda_context_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    import transformers.models.llama.modeling_llama

    res["import_modeling_llama_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    transformers.AutoTokenizer.from_pretrained(model_path)
    res["tokenizer_s"] = time.perf_counter() - t0
    # the old path: from_config under torch.device (transformers' own initialisation)
    t0 = time.perf_counter()
    config = transformers.AutoConfig.from_pretrained(model_path)
    torch.manual_seed(42)
    with torch.device(device):
        old = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    res["old_from_config_s"] = time.perf_counter() - t0
    del old
    if device == "cuda":
        torch.cuda.empty_cache()
    for k in range(2):
        t0 = time.perf_counter()
        new, timings = build_random_model(
            torch, transformers, model_path, dtype=dtype, device=device, seed=42
        )
        res[f"new_build_s_{k}"] = time.perf_counter() - t0
        res[f"new_build_parts_{k}"] = timings
        del new
        if device == "cuda":
            torch.cuda.empty_cache()
    return res


# -- probe: decode paths -------------------------------------------------------------------------


def _cfg(
    model: str, precision: str, bs: int, in_tok: int, out_tok: int, static: bool, compile_: bool
) -> Any:
    from llenergymeasure import ExperimentConfig

    data: dict[str, Any] = {
        "model": model,
        "precision": precision,
        "batch_size": bs,
        "n": bs,
        "dataset": {"source": "synthetic", "input_tokens": in_tok},
        "max_output_tokens": out_tok,
    }
    if static:
        data["pytorch"] = {"static_cache": True, "torch_compile": compile_}
    return ExperimentConfig.from_dict(data)


def _profile(fn: Any, path: Path, cuda: bool) -> dict[str, Any]:
    import torch
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    ka = prof.key_averages()
    path.write_text(ka.table(sort_by="self_cpu_time_total", row_limit=30))
    counts = {}
    for e in ka:
        if any(
            s in e.key
            for s in (
                "Synchronize",
                "Memcpy",
                "aten::item",
                "aten::_local_scalar",
                "cudaGraphLaunch",
                "cudaLaunchKernel",
                "CompiledFunction",
                "Torch-Compiled Region",
            )
        ):
            counts[e.key] = e.count
    gpu_us = sum(getattr(e, "self_device_time_total", 0) or 0 for e in ka)
    return {
        "wall_s": wall,
        "gpu_busy_share": gpu_us / 1e6 / wall if cuda else None,
        "counts": counts,
    }


def probe_decode(
    model: str, precision: str, cache: Path, out_dir: Path, smoke: bool, budget_s: float
) -> None:
    import torch

    from llenergymeasure.backends import create_backend
    from llenergymeasure.backends.pytorch.decode import DecodeSettings, StaticDecoder
    from llenergymeasure.datasets import load_prompts
    from llenergymeasure.models.synthetic import resolve_model

    cuda = torch.cuda.is_available()
    in_tok, out_tok = (16, 8) if smoke else (128, 256)
    resolved = resolve_model(model, cache)
    dec = OUT.setdefault("decode", {})
    for bs in (1, 8):
        if left(budget_s) < 120:
            dec[f"skipped_bs{bs}"] = "out of time"
            break
        # (a) transformers.generate, static cache + compile, through the backend as it is
        cfg = _cfg(model, precision, bs, in_tok, out_tok, static=True, compile_=not smoke)
        backend = create_backend(cfg, resolved.path, cache)
        t0 = time.perf_counter()
        backend.load()
        prompts = load_prompts(cfg, backend.tokenizer())
        load_s = time.perf_counter() - t0
        lat = []
        for _ in range(4):
            t0 = time.perf_counter()
            o = backend.generate(prompts)
            lat.append(time.perf_counter() - t0)
        r = o.requests[0]
        row: dict[str, Any] = {
            "load_s": load_s,
            "call_s": lat,
            "tok_s": o.output_tokens / lat[-1],
            "ttft_ms": (r.ttft_s or 0) * 1e3,
            "itl_ms": statistics.mean(r.itl_s) * 1e3 if r.itl_s else None,
        }
        row["profile"] = _profile(
            lambda b=backend, p=prompts: b.generate(p), out_dir / f"prof_generate_bs{bs}.txt", cuda
        )
        dec[f"generate_bs{bs}"] = row
        save()
        # (b) llem's static decode loop on the same model object
        model_obj = backend._model
        settings = DecodeSettings(
            greedy=True,
            fixed_output_length=True,
            eos_ids=sorted(backend._eos_ids),
            pad_id=int(backend._pad_id or 0),
            compile=not smoke,
            compile_mode="reduce-overhead",
        )
        dev = model_obj.get_input_embeddings().weight.device
        ids = torch.tensor([p.token_ids for p in prompts], device=dev)
        mask = torch.ones_like(ids)
        row2: dict[str, Any] = {}
        try:
            import torch._dynamo.utils as dyn_utils

            decoder = StaticDecoder(torch, model_obj, settings, in_tok + out_tok + 64)
            lat = []
            for _ in range(4):
                t0 = time.perf_counter()
                toks, timing = decoder.generate(ids, mask, out_tok)
                lat.append(time.perf_counter() - t0)
            offs = timing.step_offsets_s
            row2 = {
                "call_s": lat,
                "tok_s": bs * out_tok / lat[-1],
                "ttft_ms": offs[0] * 1e3,
                "itl_ms": (offs[-1] - offs[0]) / (len(offs) - 1) * 1e3,
                "decode_tok_s": bs * (len(offs) - 1) / (offs[-1] - offs[0]),
            }
            # same tokens as generate? (greedy, same weights)
            ref = o.output_token_ids[0][:out_tok] if o.output_token_ids else None
            row2["matches_generate_first_row"] = ref == toks[0].tolist() if ref else None
            frames0 = sum(dyn_utils.counters["frames"].values())
            ttfts = {}
            for width in (in_tok, max(in_tok - 28, 2), max(in_tok // 2, 1)):
                ids_w = ids[:, :width]
                _, tm = decoder.generate(ids_w, torch.ones_like(ids_w), out_tok)
                ttfts[width] = tm.step_offsets_s[0] * 1e3
            row2["ttft_ms_by_width"] = ttfts
            row2["dynamo_frames_during_3_widths"] = (
                sum(dyn_utils.counters["frames"].values()) - frames0
            )
            row2["profile"] = _profile(
                lambda d=decoder, i=ids, m=mask: d.generate(i, m, out_tok),
                out_dir / f"prof_llem_bs{bs}.txt",
                cuda,
            )
        except Exception as exc:  # keep going: the failure is itself the finding
            import traceback

            row2["error"] = f"{type(exc).__name__}: {exc}"
            row2["traceback"] = traceback.format_exc()[-3000:]
        dec[f"llem_loop_bs{bs}"] = row2
        save()
        backend.close()
        del backend, model_obj
        print(
            json.dumps(
                {
                    k: {kk: vv for kk, vv in v.items() if kk not in ("profile", "traceback")}
                    for k, v in dec.items()
                    if isinstance(v, dict)
                },
                default=str,
            )[-3000:],
            flush=True,
        )


# -- study ---------------------------------------------------------------------------------------

CONFIGS = {
    "dyn8": {"batch_size": 8, "n": 8},
    "sc1": {"batch_size": 1, "n": 2, "pytorch": {"static_cache": True, "torch_compile": True}},
    "sc8": {"batch_size": 8, "n": 8, "pytorch": {"static_cache": True, "torch_compile": True}},
}


def part_study(args: argparse.Namespace, work: Path, cache: Path) -> None:
    smoke = args.cpu_smoke
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
        "model": "synthetic/tiny-llama" if smoke else "synthetic/llama-1b",
        "backend": "pytorch",
        "precision": "fp32" if smoke else "bf16",
        "dataset": {"source": "synthetic", "input_tokens": 16 if smoke else 128},
        "max_output_tokens": 8 if smoke else 256,
        "measurement": {"min_window_s": 3 if smoke else args.min_window_s},
        "baseline": {"enabled": not smoke, "duration_s": 10, "cache_ttl_s": 3600},
    }
    name = f"campaign-{args.config}"
    exp = dict(CONFIGS[args.config])
    if smoke and "pytorch" in exp:
        exp["pytorch"] = {"static_cache": True, "torch_compile": False}
    study = {
        "name": name,
        "base": {**base, **exp},
        "experiments": [{}],
        "execution": {"n_cycles": args.cycles},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    t0 = time.perf_counter()
    log = work / f"{name}.log"
    # Popen and a poll loop, not run(): every finished run is parsed and saved as it appears, so
    # a call cut short at its limit still returns the runs it completed.
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llenergymeasure", "run", str(path), "--no-gaps", "--yes"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        seen: dict[str, dict[str, Any]] = {}
        deadline = t0 + max(60.0, left(args.budget_s) - 30.0)
        while True:
            done = proc.poll() is not None
            for f in sorted((work / "results").glob(f"{name}_*/*/result.json")):
                if f.parent.name not in seen:
                    try:
                        seen[f.parent.name] = _run_row(json.loads(f.read_text()))
                    except (OSError, ValueError, KeyError):
                        continue  # being written; next poll
                    OUT["runs"] = list(seen.values())
                    save()
                    print(
                        {k: v for k, v in seen[f.parent.name].items() if k != "warning_text"},
                        flush=True,
                    )
            if done:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=30)
                OUT["stopped"] = "out of time: the study was stopped, its finished runs are above"
                break
            time.sleep(5.0)
    OUT["llem_exit"] = proc.returncode
    OUT["llem_wall_s"] = time.perf_counter() - t0
    OUT["llem_log_tail"] = log.read_text()[-3000:]
    print(OUT["llem_log_tail"][-2500:], flush=True)
    runs = list(seen.values())
    OUT["runs"] = runs
    save()
    from llenergymeasure.results.stats import cycle_warnings, describe

    OUT["summary"] = {
        key: describe([r[key] for r in runs if r.get(key) is not None]).model_dump()
        for key in ("j_per_tok", "tok_s", "mean_w", "ttft_ms", "itl_ms", "window_share")
    }
    OUT["cycle_warnings"] = [
        w.message
        for w in cycle_warnings(describe([r["j_per_tok"] for r in runs if r["j_per_tok"]]))
    ]
    save()
    if args.bare and runs and left(args.budget_s) > 90:
        llem_tok_s = statistics.mean(r["tok_s"] for r in runs)
        OUT["bare"] = bare_loop(study["base"], cache, seconds=20.0 if not smoke else 2.0)
        OUT["bare"]["llem_tok_s_mean"] = llem_tok_s
        OUT["bare"]["llem_vs_bare_pct"] = 100.0 * (llem_tok_s / OUT["bare"]["tok_s"] - 1.0)
        save()
        print("bare", json.dumps(OUT["bare"]), flush=True)


def bare_loop(base: dict[str, Any], cache: Path, seconds: float) -> dict[str, Any]:
    """The same model, prompts and batching without llem's harness: no meter, no sampler, no
    subprocess. Dynamic cache: plain ``model.generate``; static + compile: the backend's
    ``generate`` alone (llem's decode loop, so this isolates the harness's cost)."""
    import torch

    from llenergymeasure import ExperimentConfig
    from llenergymeasure.backends import create_backend
    from llenergymeasure.datasets import load_prompts
    from llenergymeasure.models.synthetic import resolve_model

    cfg = ExperimentConfig.from_dict(base)
    resolved = resolve_model(cfg.model, cache)
    backend = create_backend(cfg, resolved.path, cache)
    backend.load()
    prompts = load_prompts(cfg, backend.tokenizer())
    cuda = torch.cuda.is_available()
    static = bool(cfg.pytorch and cfg.pytorch.static_cache)
    model = backend._model
    tok = backend.tokenizer()

    def one_pass() -> int:
        if static:
            return backend.generate(prompts).output_tokens
        n = 0
        for i in range(0, len(prompts), cfg.batch_size):
            batch = prompts[i : i + cfg.batch_size]
            ids = torch.tensor([p.token_ids for p in batch], device=model.device)
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

    t_warm = time.perf_counter()
    lat: list[float] = []
    while len(lat) < 20:  # warm up like llem's default: per-call CV of the last 3 under 2 %
        t0 = time.perf_counter()
        one_pass()
        lat.append(time.perf_counter() - t0)
        if len(lat) >= 3:
            w = lat[-3:]
            if statistics.stdev(w) / statistics.mean(w) < 0.02:
                break
    warm_s = time.perf_counter() - t_warm
    t0 = time.perf_counter()
    n = 0
    passes = 0
    while time.perf_counter() - t0 < seconds:
        n += one_pass()
        passes += 1
    dt = time.perf_counter() - t0
    backend.close()
    return {
        "tok_s": n / dt,
        "window_s": dt,
        "passes": passes,
        "warmup_s": warm_s,
        "loop": "backend.generate (llem decode loop)" if static else "model.generate",
    }


def part_sampler(args: argparse.Namespace, cache: Path) -> None:
    """Sampler on vs off (NVML meter with and without its thread), alternating windows of the
    same GPU-bound loop (static + compile, bs 8): the throughput difference is its cost."""
    import torch

    from llenergymeasure import ExperimentConfig
    from llenergymeasure.backends import create_backend
    from llenergymeasure.datasets import load_prompts
    from llenergymeasure.energy import select_meter
    from llenergymeasure.models.synthetic import resolve_model

    smoke = args.cpu_smoke
    base = {
        "model": "synthetic/tiny-llama" if smoke else "synthetic/llama-1b",
        "precision": "fp32" if smoke else "bf16",
        "batch_size": 8,
        "n": 8,
        "dataset": {"source": "synthetic", "input_tokens": 16 if smoke else 128},
        "max_output_tokens": 8 if smoke else 256,
        "pytorch": {"static_cache": True, "torch_compile": not smoke},
    }
    cfg = ExperimentConfig.from_dict(base)
    backend = create_backend(cfg, resolve_model(cfg.model, cache).path, cache)
    backend.load()
    prompts = load_prompts(cfg, backend.tokenizer())
    for _ in range(4):
        backend.generate(prompts)
    cuda = torch.cuda.is_available()
    rates: dict[str, list[float]] = {"on": [], "off": []}
    powers: dict[str, list[float]] = {"on": [], "off": []}
    window = 1.0 if smoke else args.sampler_window_s
    for k in range(2 * args.sampler_pairs):
        mode = "on" if k % 2 == 0 else "off"
        meter = None
        if cuda:
            meter = select_meter("nvml", [0], {})
            if mode == "off":  # the counter alone: no sampler thread (NvmlMeter allows None)
                meter.sampler = None  # type: ignore[attr-defined]
            meter.start()
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < window:
            n += backend.generate(prompts).output_tokens
        dt = time.perf_counter() - t0
        if meter is not None:
            m = meter.stop()
            powers[mode].append(m.total_energy_j / dt if m.total_energy_j else float("nan"))
            meter.close()
        rates[mode].append(n / dt)
    backend.close()
    on, off = statistics.mean(rates["on"]), statistics.mean(rates["off"])
    OUT["sampler"] = {
        "tok_s_on": rates["on"],
        "tok_s_off": rates["off"],
        "mean_w_on": powers["on"],
        "mean_w_off": powers["off"],
        "cost_pct": 100.0 * (off / on - 1.0),
        "window_s": window,
        "spread_off_pct": 100.0 * statistics.pstdev(rates["off"]) / off,
    }
    save()
    print("sampler", json.dumps(OUT["sampler"]), flush=True)


def _run_row(r: dict[str, Any]) -> dict[str, Any]:
    """One run's figures for the campaign table, from its result.json."""
    wall = _iso_s(r["ended_at"]) - _iso_s(r["started_at"])
    return {
        "run": r["experiment_id"],
        "wall_s": wall,
        "window_s": r["duration_s"],
        "window_share": r["duration_s"] / wall if wall > 0 else None,
        "passes": (r.get("window") or {}).get("passes"),
        "import_s": r["extra"].get("engine_import_s"),
        "load_s": r["load"]["duration_s"],
        "warmup_s": r["warmup"]["duration_s"],
        "warmup_runs": r["warmup"]["runs"],
        "warmup_stopped_by": r["warmup"].get("stopped_by"),
        "warmup_energy_j": r["warmup"].get("energy_j"),
        "j_per_tok": r["energy_per_output_token_j"],
        "tok_s": r["output_tokens_per_s"],
        "mean_w": r["mean_power_w"],
        "ttft_ms": (r.get("ttft_ms") or {}).get("mean_ms"),
        "itl_ms": (r.get("itl_ms") or {}).get("mean_ms"),
        "decode_loop": r["extra"].get("decode_loop"),
        "prefill": r["extra"].get("prefill"),
        "warnings": sorted({w["code"] for w in r["warnings"]}),
        "warning_text": [w["message"] for w in r["warnings"]][:6],
    }


def _iso_s(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text).timestamp()


def main() -> int:
    global SAVE_PATH
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--part", choices=("probe", "study", "sampler"), required=True)
    ap.add_argument("--config", default="sc1", help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--sampler", action="store_true", help="also run the sampler part last")
    ap.add_argument("--sampler-pairs", type=int, default=4)
    ap.add_argument("--sampler-window-s", type=float, default=5.0)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--min-window-s", type=float, default=30.0)
    ap.add_argument("--bare", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--budget-s", type=float, default=540.0, help="stop starting stages after this")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/llem-campaign")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/llem-campaign-work"))
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.work / "cache"
    SAVE_PATH = args.out / f"campaign_{args.part}.json"
    smoke = args.cpu_smoke
    model = "synthetic/tiny-llama" if smoke else "synthetic/llama-1b"
    precision = "fp32" if smoke else "bf16"
    OUT["part"] = args.part
    OUT["argv"] = sys.argv
    try:
        import torch
        import transformers

        OUT["torch"] = torch.__version__
        OUT["transformers"] = transformers.__version__
        OUT["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    save()
    if args.part == "probe":
        if not smoke:
            OUT["baseline_disturbance"] = probe_baseline(5.0)
            print(json.dumps(OUT["baseline_disturbance"]), flush=True)
            save()
        from llenergymeasure.models.synthetic import resolve_model

        path = resolve_model(model, cache).path
        OUT["load"] = probe_load(
            path, "cpu" if smoke else "cuda", "float32" if smoke else "bfloat16"
        )
        print(json.dumps(OUT["load"]), flush=True)
        save()
        probe_decode(model, precision, cache, args.out, smoke, args.budget_s)
    elif args.part == "study":
        for name in args.config.split(","):
            args_one = argparse.Namespace(**{**vars(args), "config": name})
            OUT.clear()
            OUT.update({"part": "study", "config": name, "argv": sys.argv})
            SAVE_PATH = args.out / f"campaign_study_{name}.json"
            part_study(args_one, args.work, cache)
            save()
            if left(args.budget_s) < 60:
                print("stopping: out of time", flush=True)
                break
    if args.part == "sampler" or args.sampler:
        if args.part != "sampler":
            SAVE_PATH = args.out / "campaign_sampler.json"
        part_sampler(args, cache)
    save()
    print(f"part {args.part} done in {OUT['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
