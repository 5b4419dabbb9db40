"""Which clock-event reasons and NVML violation counters move during a loaded window, on a real
GPU (issue 25 item 14: ``power_capped`` on an H100 at a mean 450 W of its 700 W limit).

Run on a GPU machine from the repository root:

    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/gpu_clock_events.py --out $OUT

Windows of ``--seconds`` (default 10 s) each on cuda:0, in this order:

  idle      a resident CUDA context, nothing running
  matmul    a bf16 8192^3 matmul loop, back to back: power at the limit
  bursts    the same matmul in 40 ms bursts with 60 ms pauses: a mean well below the limit, peaks
            at it
  generate  ``transformers`` generate on a random-weight Llama-3-8B shape (bf16, static cache,
            ``--layers`` of 32), batch 8, 128 prompt and 128 new tokens, warmed up: the reported
            workload, without torch.compile

For each window: a ``--poll-ms`` (10 ms) poll of the clock-event reason mask (each bit's share of
the polls), instant power (mean, max) and SM clock (min, mean); every NVML violation counter
(power, thermal, sync boost, board limit, low utilisation, reliability, total application
clocks, total base clocks) at both ends; the counter's energy and mean power against the
enforced limit; and the warnings ``energy/checks.py`` writes for the same window sampled at
100 ms (what a result would say). It leaves clocks and power limits alone.

It writes ``clock_events.json`` under --out after each window and prints a table last.
``--cpu-smoke`` runs the same code on the CPU with a small matmul and the fake NVML
(``tests/fakes/nvml.py``: 450 W of a 700 W limit, sw_power_cap 13 % of the time) to check the
script's logic; its numbers mean nothing and are labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (REPO / "src", REPO):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

#: nvmlPerfPolicyType_t
POLICIES = {
    "power": 0,
    "thermal": 1,
    "sync_boost": 2,
    "board_limit": 3,
    "low_utilization": 4,
    "reliability": 5,
    "total_app_clocks": 10,
    "total_base_clocks": 11,
}
#: nvmlClocksEventReasons bits
REASON_BITS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}


def violations_ns(nvml: Any, index: int) -> dict[str, int]:
    from llenergymeasure.energy.errors import NvmlError

    out: dict[str, int] = {}
    for name, policy in POLICIES.items():
        try:
            out[name] = nvml.violation_time_ns(index, policy)
        except NvmlError:
            continue
    return out


def device_facts(nvml: Any, index: int) -> dict[str, Any]:
    """Limits and clocks that decide when power management acts (null where not reported)."""
    m, h = nvml.module, nvml.handle(index)
    sm = getattr(m, "NVML_CLOCK_SM", 1)
    calls: dict[str, Callable[[], Any]] = {
        "name": lambda: nvml.name(index),
        "enforced_power_limit_w": lambda: nvml.power_limit_mw(index) / 1000,
        "power_management_limit_w": lambda: m.nvmlDeviceGetPowerManagementLimit(h) / 1000,
        "default_power_limit_w": lambda: m.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000,
        "applications_sm_clock_mhz": lambda: m.nvmlDeviceGetApplicationsClock(h, sm),
        "default_applications_sm_clock_mhz": lambda: m.nvmlDeviceGetDefaultApplicationsClock(h, sm),
        "max_sm_clock_mhz": lambda: m.nvmlDeviceGetMaxClockInfo(h, sm),
        "power_source": lambda: nvml.power_source(index),
    }
    out: dict[str, Any] = {}
    for key, call in calls.items():
        try:
            out[key] = call()
        except Exception as exc:  # not supported on this GPU, or absent from the fake
            out[key] = None
            out[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
    return out


class Poller(threading.Thread):
    """(perf_counter, reason mask, power W, SM clock MHz) every ``period_s``."""

    def __init__(self, nvml: Any, index: int, period_s: float):
        super().__init__(daemon=True, name="clock-event-poller")
        self.nvml, self.index, self.period_s = nvml, index, period_s
        self.rows: list[tuple[float, int, float, float]] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        nvml, i = self.nvml, self.index
        while not self.stop_event.is_set():
            self.rows.append(
                (
                    time.perf_counter(),
                    nvml.clock_event_reasons(i),
                    nvml.power_mw(i) / 1000,
                    float(nvml.sm_clock_mhz(i)),
                )
            )
            self.stop_event.wait(self.period_s)


def measure(
    nvml: Any, index: int, work: Callable[[float], None], seconds: float, poll_s: float
) -> dict[str, Any]:
    """One window of ``work``: polled reasons, violation deltas, energy, the project's warnings."""
    import numpy as np

    from llenergymeasure.energy import checks

    limit_w = nvml.power_limit_mw(index) / 1000
    v0, e0 = violations_ns(nvml, index), nvml.total_energy_mj(index)
    poller = Poller(nvml, index, poll_s)
    t0 = time.perf_counter()
    poller.start()
    work(seconds)
    poller.stop_event.set()
    poller.join()
    t1 = time.perf_counter()
    v1, e1 = violations_ns(nvml, index), nvml.total_energy_mj(index)
    duration = t1 - t0
    rows = np.asarray(poller.rows, dtype=float).reshape(-1, 4)
    reasons = rows[:, 1].astype(np.int64)
    energy_j = (e1 - e0) / 1000
    mean_w = energy_j / duration if duration > 0 else None
    deltas = {k: v1[k] - v0[k] for k in v1 if k in v0}
    # what a result says: the same window sampled every 100 ms, with its mean power and limit
    every = max(1, round(0.1 / poll_s))
    warnings = checks.clock_events(
        index,
        rows[::every, 1],
        {k: deltas[k] for k in ("power", "thermal") if k in deltas},
        duration,
        mean_power_w=mean_w,
        power_limit_w=limit_w,
    )
    return {
        "duration_s": duration,
        "n_polls": int(rows.shape[0]),
        "reason_share": {
            name: float(np.mean((reasons & bit) != 0)) if reasons.size else None
            for bit, name in REASON_BITS.items()
        },
        "violation_s": {k: v / 1e9 for k, v in deltas.items()},
        "violation_share": {k: v / 1e9 / duration for k, v in deltas.items()},
        "energy_j": energy_j,
        "mean_power_w": mean_w,
        "mean_power_share_of_limit": mean_w / limit_w if mean_w is not None else None,
        "polled_power_mean_w": float(rows[:, 2].mean()) if rows.size else None,
        "polled_power_max_w": float(rows[:, 2].max()) if rows.size else None,
        "sm_clock_min_mhz": float(rows[:, 3].min()) if rows.size else None,
        "sm_clock_mean_mhz": float(rows[:, 3].mean()) if rows.size else None,
        "warnings": [w.model_dump() for w in warnings],
    }


def workloads(smoke: bool, layers: int) -> dict[str, Callable[[float], None]]:
    import torch

    dev = "cpu" if smoke else "cuda"
    n = 256 if smoke else 8192
    dtype = torch.float32 if smoke else torch.bfloat16
    a = torch.randn(n, n, device=dev, dtype=dtype)
    sync = (lambda: None) if smoke else torch.cuda.synchronize

    def idle(seconds: float) -> None:
        time.sleep(seconds)

    def matmul(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            (a @ a).clamp_(-1, 1)
            sync()

    def bursts(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            burst = time.perf_counter() + 0.04
            while time.perf_counter() < burst:
                (a @ a).clamp_(-1, 1)
                sync()
            time.sleep(0.06)

    out = {"idle": idle, "matmul": matmul, "bursts": bursts}
    if smoke:
        return out
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=layers,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=1024,
    )
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16).eval()
    ids = torch.randint(0, cfg.vocab_size, (8, 128), device="cuda")
    kw = dict(max_new_tokens=128, min_new_tokens=128, do_sample=False, pad_token_id=0)

    def generate_once() -> None:
        with torch.inference_mode():
            model.generate(
                ids, attention_mask=torch.ones_like(ids), cache_implementation="static", **kw
            )  # type: ignore[operator]
        torch.cuda.synchronize()

    for _ in range(2):  # warmup, outside every window
        generate_once()

    def generate(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            generate_once()

    out["generate"] = generate
    return out


def open_nvml(smoke: bool) -> Any:
    from llenergymeasure.energy.nvml import Nvml

    if not smoke:
        nvml = Nvml()
    else:
        from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

        gpu = FakeGpu(
            name="FAKE (cpu smoke)",
            trace=ConstantPower(450.0),
            power_limit_mw=700_000,
            clock_event_reasons=lambda t: 0x4 if (t % 1.0) < 0.13 else 0,
            violation_ns_per_s={0: 0.13e9},
        )
        nvml = Nvml(FakeNvml([gpu]))
    nvml.init()
    return nvml


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "results/clock-events"))
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--poll-ms", type=float, default=10.0)
    ap.add_argument("--layers", type=int, default=32, help="Llama-3-8B shape layers (generate)")
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    seconds = min(args.seconds, 1.0) if args.cpu_smoke else args.seconds
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "clock_events.json"
    nvml = open_nvml(args.cpu_smoke)
    report: dict[str, Any] = {
        "label": "CPU SMOKE: fake NVML, numbers mean nothing" if args.cpu_smoke else "GPU",
        "command": " ".join(sys.argv),
        "device": device_facts(nvml, 0),
        "windows": {},
    }
    try:
        try:
            works = workloads(args.cpu_smoke, args.layers)
        except Exception as exc:
            report["setup_error"] = f"{type(exc).__name__}: {exc}"
            report["setup_tb"] = traceback.format_exc()
            path.write_text(json.dumps(report, indent=2, default=str))
            return 1
        for name, work in works.items():
            try:
                report["windows"][name] = measure(nvml, 0, work, seconds, args.poll_ms / 1000)
            except Exception as exc:
                report["windows"][name] = {
                    "error": f"{type(exc).__name__}: {exc}",
                    "tb": traceback.format_exc(),
                }
            path.write_text(json.dumps(report, indent=2, default=str))
    finally:
        nvml.shutdown()
    print(report["label"], json.dumps(report["device"], default=str))
    for name, r in report["windows"].items():
        if "error" in r:
            print(f"{name}: ERROR {r['error']}")
            continue
        shares = {k: round(v, 3) for k, v in r["reason_share"].items() if v}
        viol = {k: round(v, 3) for k, v in r["violation_share"].items() if v}
        print(
            f"{name}: {r['duration_s']:.1f} s, mean {r['mean_power_w']:.0f} W "
            f"({r['mean_power_share_of_limit'] * 100:.0f} % of limit), polled max "
            f"{r['polled_power_max_w']:.0f} W, SM {r['sm_clock_min_mhz']:.0f}-"
            f"{r['sm_clock_mean_mhz']:.0f} MHz; reasons {shares}; violation share {viol}"
        )
        for w in r["warnings"]:
            print(f"    {w['code']}: {w['message']}")
    ok = all("error" not in r for r in report["windows"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
