"""Validate the energy layer on a real NVIDIA GPU (issue 3, checks (a)-(f)).

Run on a GPU machine from the repository root:

    PYTHONUNBUFFERED=1 python benchmarks/gpu_energy_validation.py --out results/energy-validation

Workloads: a bf16 matmul loop (8192^3) and ``transformers.generate`` on a random-weight ~1.1 B
Llama-shaped model (hidden 2048, intermediate 5632, 22 layers, 32 heads, 4 KV heads, vocab
32000, bf16) at batch sizes 1, 8 and 32, 128 input and 128 output tokens, warmed up first.

Checks:
  (a) NVML meter energy vs an independent read of the NVML counter around the same window (< 1 %)
  (b) sampler cost: throughput with the sampler vs the same loop with a counter-only meter (< 1 %)
  (c) five repeated windows: coefficient of variation of energy per output token (< 3 %)
  (d) Zeus meter vs NVML meter on the same workload, alternating windows (< 2 %)
  (e) a 0.2 s window raises short_window; a 10 s window does not
  (f) idle baseline: value, stability over three measurements, cache hit

It leaves clocks and power limits alone. It writes JSON and two time-series CSVs to --out (or
$OUT) and prints a table last. ``--cpu-smoke`` runs the same code on the CPU with a tiny model
and the fake NVML (``tests/fakes/nvml.py``, a test double kept out of the package) to check the script's logic on a machine
without a GPU; its numbers mean nothing and are labelled so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def _import_energy() -> Any:
    """Import llenergymeasure.energy; if the package's top level fails to import (it pulls the
    whole library), load the energy subpackage on its own so this check still runs."""
    try:
        import llenergymeasure.energy as energy
    except Exception as exc:  # pragma: no cover - only when another module is broken
        print(f"[note] top-level package import failed ({exc}); loading energy/ alone")
        for name in [m for m in sys.modules if m.startswith("llenergymeasure")]:
            del sys.modules[name]
        pkg = types.ModuleType("llenergymeasure")
        pkg.__path__ = [str(SRC / "llenergymeasure")]
        sys.modules["llenergymeasure"] = pkg
        import llenergymeasure.energy as energy
    return energy


def cv(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    m = statistics.fmean(values)
    return statistics.stdev(values) / m if m else None


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.smoke = args.cpu_smoke
        self.out = Path(args.out or os.environ.get("OUT") or "results/energy-validation")
        self.out.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {"smoke_only_numbers_meaningless": self.smoke, "errors": {}}
        self.energy = _import_energy()
        import torch

        self.torch = torch
        self.device = torch.device("cpu" if self.smoke else "cuda:0")
        self.fake = None
        if self.smoke:
            # The fake NVML is a test double: it lives in tests/, importable from the repo root.
            if str(REPO) not in sys.path:
                sys.path.insert(0, str(REPO))
            from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

            self.fake = FakeNvml([FakeGpu(name="fake (cpu smoke)", trace=ConstantPower(300.0))])
            self.pynvml = self.fake
        else:
            import pynvml

            self.pynvml = pynvml
        self.pynvml.nvmlInit()
        self.handle = self.pynvml.nvmlDeviceGetHandleByIndex(0)

    # -- helpers -----------------------------------------------------------------------------

    def save(self) -> None:
        path = self.out / "gpu_energy_validation.json"
        path.write_text(json.dumps(self.results, indent=2, default=str))

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def raw_counter_j(self) -> float:
        return self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0

    def meter(self, sample: bool = True) -> Any:
        """NVML meter on CUDA device 0, with or without the sampler."""
        e = self.energy
        if sample:
            return e.select_meter("nvml", [0], nvml_module=self.fake)
        from llenergymeasure.energy.nvml import Nvml

        nvml = Nvml(self.fake)
        nvml.init()
        mapping = e.resolve_devices([0], nvml, os.environ)
        return e.NvmlMeter(nvml, mapping, sample=False)

    def window(self, meter: Any, work: Any) -> dict[str, Any]:
        """One measured window around ``work()``, with the independent counter read around it."""
        self.sync()
        raw0 = self.raw_counter_j()
        meter.start()
        t0 = time.perf_counter()
        units = work()
        self.sync()
        elapsed = time.perf_counter() - t0
        m = meter.stop()
        raw1 = self.raw_counter_j()
        dev = m.devices[0]
        independent = raw1 - raw0
        return {
            "meter": m.meter,
            "duration_s": m.duration_s,
            "work_s": elapsed,
            "units": units,
            "units_per_s": units / elapsed,
            "energy_j": dev.energy_j,
            "independent_j": independent,
            "meter_vs_independent": (dev.energy_j - independent) / independent
            if independent
            else None,
            "meter_minus_independent_j": dev.energy_j - independent,
            "integrated_j": dev.integrated_energy_j,
            "counter_vs_integrated": (
                (dev.integrated_energy_j - dev.energy_j) / dev.energy_j
                if dev.integrated_energy_j and dev.energy_j
                else None
            ),
            "j_per_unit": dev.energy_j / units if units else None,
            "mean_power_w": dev.mean_power_w,
            "peak_power_w": dev.peak_power_w,
            "n_samples": dev.n_samples,
            "warnings": sorted({w.code for w in m.warnings}),
            "measurement": m,
        }

    @staticmethod
    def strip(w: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in w.items() if k != "measurement"}

    def section(self, name: str, fn: Any) -> None:
        t = time.perf_counter()
        print(f"== {name}", flush=True)
        try:
            fn()
        except Exception as exc:
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        self.results.setdefault("section_s", {})[name] = round(time.perf_counter() - t, 1)
        self.save()

    # -- environment -------------------------------------------------------------------------

    def environment(self) -> None:
        import importlib.metadata as md

        def ver(n: str) -> str | None:
            try:
                return md.version(n)
            except md.PackageNotFoundError:
                return None

        p = self.pynvml
        info: dict[str, Any] = {
            "python": platform.python_version(),
            "torch": self.torch.__version__,
            "torch_cuda": getattr(self.torch.version, "cuda", None),
            "transformers": ver("transformers"),
            "nvidia-ml-py": ver("nvidia-ml-py"),
            "zeus": ver("zeus"),
            "pydantic": ver("pydantic"),
            "gpu": p.nvmlDeviceGetName(self.handle),
            "driver": p.nvmlSystemGetDriverVersion(),
            "power_limit_w": p.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1000.0,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "command": " ".join(sys.argv),
        }
        if not self.smoke:
            v = p.nvmlSystemGetCudaDriverVersion()
            info["cuda_driver"] = f"{v // 1000}.{(v % 1000) // 10}"
        info["meter_availability"] = self.energy.meter_availability(
            nvml_module=self.fake, zeus_installed=None
        )
        self.results["environment"] = info

    def sensor_period(self) -> None:
        """Poll the instant power field and the counter as fast as possible for a while and
        take the median interval between changes: the sensors' update period."""
        from llenergymeasure.energy.nvml import Nvml

        nvml = Nvml(self.fake)
        nvml.init()
        dur = 0.3 if self.smoke else 2.0
        # keep the GPU busy so the readings move
        a = self.torch.randn(4096, 4096, device=self.device, dtype=self.torch.bfloat16)
        changes: dict[str, list[float]] = {"power": [], "counter": []}
        last: dict[str, float | None] = {"power": None, "counter": None}
        t_end = time.perf_counter() + dur
        while time.perf_counter() < t_end:
            for _ in range(4):
                a = a @ a
                a = a / (a.abs().max() + 1)
            for key, read in (
                ("power", lambda: nvml.power_mw(0)),
                ("counter", lambda: nvml.total_energy_mj(0)),
            ):
                v = read()
                now = time.perf_counter()
                if last[key] is not None and v != last[key]:
                    changes[key].append(now)
                last[key] = v
        self.sync()
        out = {}
        for key, ts in changes.items():
            iv = [b - a_ for a_, b in itertools.pairwise(ts)]
            out[f"{key}_update_period_s_median"] = statistics.median(iv) if iv else None
            out[f"{key}_changes"] = len(ts)
        out["power_source"] = nvml.power_source(0)
        nvml.shutdown()
        self.results["sensor"] = out

    # -- (f) idle baseline -------------------------------------------------------------------

    def baseline(self) -> None:
        e = self.energy
        dur = 0.5 if self.smoke else self.args.baseline_s
        meter = self.meter()
        self.sync()
        runs = []
        for _ in range(3):
            rec = e.measure_idle_baseline(meter, dur, cache_dir=None, ttl_s=0)
            runs.append(rec.idle_power_w[0])
        cache = self.out / "baseline-cache"
        first = e.measure_idle_baseline(meter, dur, cache_dir=cache, ttl_s=3600)
        second = e.measure_idle_baseline(meter, dur, cache_dir=cache, ttl_s=3600)
        meter.close()
        self.baseline_record = first
        self.results["f_baseline"] = {
            "window_s": dur,
            "idle_power_w": runs,
            "mean_w": statistics.fmean(runs),
            "spread_w": max(runs) - min(runs),
            "cv": cv(runs),
            "cached_value_w": second.idle_power_w[0],
            "second_call_from_cache": second.from_cache,
            "cache_key": second.cache_key,
            "warnings": [w.code for w in first.warnings],
        }

    # -- workloads ---------------------------------------------------------------------------

    def matmul_setup(self) -> None:
        torch = self.torch
        n = 512 if self.smoke else 8192
        g = torch.Generator(device=self.device).manual_seed(0)
        self.a = torch.randn(n, n, device=self.device, dtype=torch.bfloat16, generator=g)
        self.b = torch.randn(n, n, device=self.device, dtype=torch.bfloat16, generator=g)
        self.c = torch.empty(n, n, device=self.device, dtype=torch.bfloat16)
        self.mm_flop = 2 * n**3
        # warm up and calibrate iterations per second
        self.mm(20)
        self.sync()
        t = time.perf_counter()
        self.mm(200 if not self.smoke else 5)
        self.sync()
        self.mm_per_s = (200 if not self.smoke else 5) / (time.perf_counter() - t)
        t_end = time.perf_counter() + (0.2 if self.smoke else 3.0)  # reach steady clocks/temps
        while time.perf_counter() < t_end:
            self.mm(50)
            self.sync()
        self.results["matmul"] = {"n": n, "calibrated_per_s": self.mm_per_s}

    def mm(self, iters: int) -> int:
        for _ in range(iters):
            self.torch.mm(self.a, self.b, out=self.c)
        return iters

    def iters_for(self, seconds: float) -> int:
        return max(1, int(self.mm_per_s * seconds))

    def matmul_checks(self) -> None:
        e_short = 0.2
        long_s = 1.0 if self.smoke else 10.0
        meter = self.meter()
        long = self.window(meter, lambda: self.mm(self.iters_for(long_s)))
        meter.write_timeseries(self.out / "timeseries_matmul.csv")
        short = self.window(meter, lambda: self.mm(self.iters_for(e_short)))
        meter.close()
        self.results["a_matmul_10s"] = self.strip(long)
        self.results["e_short_window"] = {
            "short_window_s": short["duration_s"],
            "short_warnings": short["warnings"],
            "short_raises": "short_window" in short["warnings"],
            "long_window_s": long["duration_s"],
            "long_warnings": long["warnings"],
            "long_raises": "short_window" in long["warnings"],
        }
        self.results["matmul"]["tflops_in_10s_window"] = long["units_per_s"] * self.mm_flop / 1e12

        # (b) on matmul: alternate sampler on / off over the same iteration count
        reps = 2 if self.smoke else 3
        n = self.iters_for(0.3 if self.smoke else 3.0)
        on_m, off_m = self.meter(sample=True), self.meter(sample=False)
        on, off = [], []
        for _ in range(reps):
            off.append(self.window(off_m, lambda: self.mm(n))["units_per_s"])
            on.append(self.window(on_m, lambda: self.mm(n))["units_per_s"])
        on_m.close()
        off_m.close()
        self.results["b_matmul"] = {
            "iters": n,
            "on_per_s": on,
            "off_per_s": off,
            "overhead": 1 - statistics.median(on) / statistics.median(off),
        }

    def zeus_check(self) -> None:
        e = self.energy
        if self.smoke:
            self.results["d_zeus"] = {"skipped": "no Zeus in --cpu-smoke"}
            return
        t = time.perf_counter()
        zm = e.select_meter("zeus", [0])
        start_s = time.perf_counter() - t
        nm = self.meter()
        n = self.iters_for(4.0)
        z, v = [], []
        for _ in range(3):
            z.append(self.window(zm, lambda: self.mm(n)))
            v.append(self.window(nm, lambda: self.mm(n)))
        zm.write_timeseries(self.out / "timeseries_zeus_matmul.csv")
        # one generate workload too, at batch 8, if the model is loaded
        gen = {}
        if getattr(self, "model", None) is not None:
            k = self.calls_per_window.get(8, 1)
            zg, vg = [], []
            for _ in range(2):
                zg.append(self.window(zm, lambda: self.generate(8, k)))
                vg.append(self.window(nm, lambda: self.generate(8, k)))
            zj = statistics.fmean(w["j_per_unit"] for w in zg)
            vj = statistics.fmean(w["j_per_unit"] for w in vg)
            gen = {
                "zeus_j_per_token": [w["j_per_unit"] for w in zg],
                "nvml_j_per_token": [w["j_per_unit"] for w in vg],
                "relative_diff": (zj - vj) / vj,
            }
        zm.close()
        nm.close()
        zj = statistics.fmean(w["j_per_unit"] for w in z)
        vj = statistics.fmean(w["j_per_unit"] for w in v)
        self.results["d_zeus"] = {
            "zeus_meter_start_s": start_s,
            "iters": n,
            "zeus_j_per_matmul": [w["j_per_unit"] for w in z],
            "nvml_j_per_matmul": [w["j_per_unit"] for w in v],
            "relative_diff": (zj - vj) / vj,
            "zeus_vs_independent": [w["meter_vs_independent"] for w in z],
            "zeus_counter_vs_integrated": [w["counter_vs_integrated"] for w in z],
            "zeus_warnings": sorted({c for w in z for c in w["warnings"]}),
            "generate_bs8": gen,
        }

    def sampler_cost(self) -> None:
        """(b) bound that workload noise cannot hide: the time one sample() takes, as a share of
        the sampling period (the most the sampler thread can hold the GIL and a core)."""
        meter = self.meter()
        sampler = meter.sampler
        sampler.buffer.reset()
        n = 50 if self.smoke else 500
        t = time.perf_counter()
        for _ in range(n):
            sampler.sample()
        per = (time.perf_counter() - t) / n
        meter.close()
        self.results["b_sampler_cost"] = {
            "seconds_per_sample": per,
            "period_s": sampler.period_s,
            "duty": per / sampler.period_s,
            "columns": sorted(sampler.columns_read[0]),
        }

    def call_costs(self) -> None:
        """Median wall time of each NVML read the sampler makes, and of a few others."""
        from llenergymeasure.energy.nvml import Nvml
        from llenergymeasure.energy.sampler import COLUMNS, bind_readers

        nvml = Nvml(self.fake)
        nvml.init()
        h = nvml.handle(0)
        p = self.pynvml
        calls = [(COLUMNS[c], r) for c, r in bind_readers(nvml, 0, True, True)]
        calls += [
            ("nvmlDeviceGetPowerUsage", lambda: p.nvmlDeviceGetPowerUsage(h)),
            ("nvmlDeviceGetViolationStatus", lambda: p.nvmlDeviceGetViolationStatus(h, 0)),
            (
                "nvmlDeviceGetComputeRunningProcesses",
                lambda: p.nvmlDeviceGetComputeRunningProcesses(h),
            ),
        ]
        out = {}
        for name, fn in calls:
            ts = []
            for _ in range(200):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            ts.sort()
            out[name] = {"median_ms": ts[100] * 1e3, "p90_ms": ts[180] * 1e3}
        nvml.shutdown()
        self.results["nvml_call_cost"] = out

    def zeus_nested(self) -> None:
        """(d) Zeus and NVML meters around the very same windows (NVML outside, Zeus inside)."""
        e = self.energy
        if self.smoke:
            self.results["d_nested"] = {"skipped": "no Zeus in --cpu-smoke"}
            return
        zm = e.select_meter("zeus", [0])
        nm = self.meter()
        rows = []
        bs = 8
        g = self.torch.Generator(device="cpu").manual_seed(bs)
        self.inputs[bs] = self.torch.randint(
            3, self.model.config.vocab_size, (bs, self.in_tokens), generator=g
        ).to(self.device)
        for _ in range(2):
            self.generate(bs, 1)
        works = [("matmul", lambda: self.mm(self.iters_for(4.0)))] * 3 + [
            ("generate_bs8", lambda: self.generate(bs, 3))
        ] * 3
        for name, work in works:
            self.sync()
            nm.start()
            zm.start()
            work()
            self.sync()
            z = zm.stop()
            v = nm.stop()
            rows.append(
                {
                    "workload": name,
                    "zeus_j": z.total_energy_j,
                    "nvml_j": v.total_energy_j,
                    "zeus_s": z.duration_s,
                    "nvml_s": v.duration_s,
                    "relative_diff": (z.total_energy_j - v.total_energy_j) / v.total_energy_j,
                    "zeus_integrated_j": z.devices[0].integrated_energy_j,
                }
            )
        zm.close()
        nm.close()
        self.results["d_nested"] = {
            "windows": rows,
            "max_abs_relative_diff": max(abs(r["relative_diff"]) for r in rows),
        }

    def model_setup(self) -> None:
        torch = self.torch
        from transformers import AutoModelForCausalLM, LlamaConfig

        if self.smoke:
            dims = dict(
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=1000,
            )
        else:
            dims = dict(
                hidden_size=2048,
                intermediate_size=5632,
                num_hidden_layers=22,
                num_attention_heads=32,
                num_key_value_heads=4,
                vocab_size=32000,
            )
        cfg = LlamaConfig(max_position_embeddings=2048, **dims)
        t = time.perf_counter()
        torch.manual_seed(0)
        with torch.device(self.device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        model.eval()
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = 0
        self.model = model
        self.in_tokens = 16 if self.smoke else 128
        self.out_tokens = 8 if self.smoke else 128
        params = sum(p.numel() for p in model.parameters())
        self.results["model"] = {
            "config": dims,
            "params": params,
            "build_s": time.perf_counter() - t,
            "input_tokens": self.in_tokens,
            "output_tokens": self.out_tokens,
        }
        self.inputs: dict[int, Any] = {}
        self.calls_per_window: dict[int, int] = {}

    def generate(self, bs: int, calls: int) -> int:
        torch = self.torch
        ids = self.inputs[bs]
        with torch.inference_mode():
            for _ in range(calls):
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=self.out_tokens,
                    min_new_tokens=self.out_tokens,
                    do_sample=False,
                )
                assert out.shape[1] == ids.shape[1] + self.out_tokens
        return calls * bs * self.out_tokens

    def generate_checks(self) -> None:
        torch = self.torch
        target_s = 0.3 if self.smoke else self.args.window_s
        reps = 2 if self.smoke else 5
        out: dict[str, Any] = {}
        baseline = getattr(self, "baseline_record", None)
        for bs in (1, 8, 32):
            g = torch.Generator(device="cpu").manual_seed(bs)
            vocab = self.model.config.vocab_size
            self.inputs[bs] = torch.randint(3, vocab, (bs, self.in_tokens), generator=g).to(
                self.device
            )
            for _ in range(2):  # warmup: first calls are far slower
                self.generate(bs, 1)
            self.sync()
            t = time.perf_counter()
            self.generate(bs, 1)
            self.sync()
            t_call = time.perf_counter() - t
            k = max(1, math.ceil(target_s / t_call))
            self.calls_per_window[bs] = k
            on_m, off_m = self.meter(sample=True), self.meter(sample=False)
            on, off = [], []
            for _ in range(reps):
                off.append(self.window(off_m, lambda bs=bs, k=k: self.generate(bs, k)))
                on.append(self.window(on_m, lambda bs=bs, k=k: self.generate(bs, k)))
            if bs == 32:
                on_m.write_timeseries(self.out / "timeseries_generate_bs32.csv")
            on_m.close()
            off_m.close()
            jpt = [w["j_per_unit"] for w in on]
            adjusted = []
            if baseline is not None and baseline.available:
                for w in on:
                    adj = self.energy.apply_baseline(w["measurement"], baseline)
                    adjusted.append(adj.total_energy_adjusted_j / w["units"])
            out[f"bs{bs}"] = {
                "calls_per_window": k,
                "seconds_per_call": t_call,
                "tokens_per_window": on[0]["units"],
                "tok_per_s_on": [w["units_per_s"] for w in on],
                "tok_per_s_off": [w["units_per_s"] for w in off],
                "b_overhead": 1
                - statistics.median(w["units_per_s"] for w in on)
                / statistics.median(w["units_per_s"] for w in off),
                "c_j_per_token": jpt,
                "c_cv": cv(jpt),
                "c_cv_counter_only": cv([w["j_per_unit"] for w in off]),
                "adjusted_j_per_token": adjusted,
                "a_max_abs_meter_vs_independent": max(
                    abs(w["meter_vs_independent"]) for w in on + off
                ),
                "a_windows_within_1pct": sum(
                    abs(w["meter_vs_independent"]) < 0.01 for w in on + off
                ),
                "a_windows": len(on + off),
                "a_meter_minus_independent_j": [w["meter_minus_independent_j"] for w in on + off],
                "counter_vs_integrated": [w["counter_vs_integrated"] for w in on],
                "mean_power_w": statistics.fmean(w["mean_power_w"] for w in on),
                "window_s": statistics.fmean(w["duration_s"] for w in on),
                "warnings": sorted({c for w in on for c in w["warnings"]}),
            }
            print(
                json.dumps(
                    {f"bs{bs}": {k2: v for k2, v in out[f"bs{bs}"].items() if "per_s" not in k2}},
                    default=str,
                ),
                flush=True,
            )
        self.results["generate"] = out

    # -- table --------------------------------------------------------------------------------

    def table(self) -> str:
        r = self.results
        rows: list[tuple[str, str, str]] = []

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x * 100:+.3f} %"

        a = r.get("a_matmul_10s")
        if a:
            rows.append(
                (
                    "(a) matmul 10 s: meter vs independent counter read",
                    pct(a["meter_vs_independent"]),
                    "< 1 %",
                )
            )
            rows.append(
                (
                    "    matmul 10 s: integrated power vs counter",
                    pct(a["counter_vs_integrated"]),
                    "< 5 %",
                )
            )
        for bs, g in r.get("generate", {}).items():
            rows.append(
                (
                    f"(a) generate {bs}: max |meter - independent|",
                    f"{g['a_max_abs_meter_vs_independent'] * 100:.3f} % ({g['a_windows_within_1pct']}/{g['a_windows']} within 1 %)",
                    "< 1 %",
                )
            )
        b = r.get("b_matmul")
        if b:
            rows.append(("(b) sampler cost, matmul throughput", pct(b["overhead"]), "< 1 %"))
        for bs, g in r.get("generate", {}).items():
            rows.append((f"(b) sampler cost, generate {bs} tok/s", pct(g["b_overhead"]), "< 1 %"))
        for bs, g in r.get("generate", {}).items():
            rows.append(
                (
                    f"(c) generate {bs}: J/token CV over 5 windows",
                    f"{(g['c_cv'] or 0) * 100:.2f} % (mean {statistics.fmean(g['c_j_per_token']):.4f} J/tok, {statistics.fmean(g['tok_per_s_on']):.0f} tok/s, {g['window_s']:.1f} s)",
                    "< 3 %",
                )
            )
        d = r.get("d_zeus")
        if d and "relative_diff" in d:
            rows.append(("(d) Zeus vs NVML, matmul J/iter", pct(d["relative_diff"]), "< 2 %"))
            if d.get("generate_bs8"):
                rows.append(
                    (
                        "(d) Zeus vs NVML, generate bs8 J/token",
                        pct(d["generate_bs8"]["relative_diff"]),
                        "< 2 %",
                    )
                )
        bc = r.get("b_sampler_cost")
        if bc:
            rows.append(
                (
                    "(b) one sample() / sampling period",
                    f"{bc['seconds_per_sample'] * 1e3:.3f} ms / {bc['period_s'] * 1e3:.0f} ms = {bc['duty'] * 100:.2f} %",
                    "< 1 %",
                )
            )
        dn = r.get("d_nested")
        if dn and "windows" in dn:
            rows.append(
                (
                    "(d) Zeus vs NVML, same windows, max |diff|",
                    f"{dn['max_abs_relative_diff'] * 100:.3f} %",
                    "< 2 %",
                )
            )
        e = r.get("e_short_window")
        if e:
            rows.append(
                (
                    f"(e) {e['short_window_s']:.2f} s window raises short_window",
                    str(e["short_raises"]),
                    "True",
                )
            )
            rows.append(
                (
                    f"(e) {e['long_window_s']:.2f} s window raises short_window",
                    str(e["long_raises"]),
                    "False",
                )
            )
        f = r.get("f_baseline")
        if f:
            rows.append(
                (
                    f"(f) idle power, 3 x {f['window_s']:.0f} s",
                    " / ".join(f"{x:.2f}" for x in f["idle_power_w"])
                    + f" W (spread {f['spread_w']:.2f} W)",
                    "stable",
                )
            )
            rows.append(
                ("(f) second call served from cache", str(f["second_call_from_cache"]), "True")
            )
        width = max(len(x[0]) for x in rows) if rows else 10
        lines = [f"{'check':<{width}}  {'measured':<40}  target"]
        lines += [f"{c:<{width}}  {m:<40}  {t}" for c, m, t in rows]
        return "\n".join(lines)

    def run(self) -> None:
        only = set(self.args.only.split(",")) if self.args.only else None

        def want(x: str) -> bool:
            return only is None or x in only

        self.section("environment", self.environment)
        if want("sensor"):
            self.section("sensor", self.sensor_period)
        if want("f"):
            self.section("f_baseline", self.baseline)
        self.section("matmul_setup", self.matmul_setup)
        if want("a"):
            self.section("matmul_checks", self.matmul_checks)
        if want("c") or want("d"):
            self.section("model_setup", self.model_setup)
        if want("c"):
            self.section("generate", self.generate_checks)
        if want("d"):
            self.section("d_zeus", self.zeus_check)
        if want("calls"):
            self.section("nvml_call_cost", self.call_costs)
        if want("b2"):
            self.section("b_sampler_cost", self.sampler_cost)
        if want("d2"):
            if not hasattr(self, "model"):
                self.section("model_setup", self.model_setup)
            self.section("d_nested", self.zeus_nested)
        self.save()
        text = self.table()
        (self.out / "table.txt").write_text(text + "\n")
        print(json.dumps(self.results.get("environment", {}), default=str))
        print("errors:", self.results["errors"] or "none")
        print(text)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", default=None, help="output folder (default $OUT or results/energy-validation)"
    )
    p.add_argument("--cpu-smoke", action="store_true", help="logic check on CPU with the fake NVML")
    p.add_argument("--window-s", type=float, default=5.0, help="target generate window length")
    p.add_argument("--baseline-s", type=float, default=5.0, help="idle baseline window")
    p.add_argument(
        "--only", default="", help="comma list of sensor,f,a,c,d,b2,d2,calls (default all)"
    )
    Bench(p.parse_args()).run()


if __name__ == "__main__":
    main()
