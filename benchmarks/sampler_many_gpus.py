"""The NVML sampler's achieved period with many GPUs and a busy main thread (issue 25 item 8).

Eight fake GPUs whose every NVML call takes 3 ms (``time.sleep``, which releases the GIL as a
ctypes call into libnvidia-ml does), a main thread that spins in pure Python (as a CPU-bound
generate loop does), and the sampler at a 100 ms period for a few seconds. Each ctypes call
re-takes the GIL on return, and a thread that wants the GIL back from a busy one waits up to the
switch interval (5 ms), so the cost of a sample grows with the number of calls in it, not only
with their own latency. Reported: the mean and 95th-percentile interval between one GPU's successive
reads (its own read times, ``SampleBuffer.device_times``), and the NVML calls per row.

    .venv/bin/python benchmarks/sampler_many_gpus.py [--gpus 8] [--read-ms 3] [--seconds 5]

A benchmark, not a test: its numbers depend on the machine. ``docs/performance.md`` records a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llenergymeasure.energy.nvml import Nvml
from llenergymeasure.energy.sampler import Sampler
from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml


def run(gpus: int, read_s: float, seconds: float, period_s: float, busy: bool) -> dict:
    reads = [0]

    def read_latency(s: float) -> None:  # every device call: counted, then its latency
        reads[0] += 1
        time.sleep(s)

    fake = FakeNvml(
        [FakeGpu(trace=ConstantPower(300.0)) for _ in range(gpus)],
        read_latency_s=read_s,
        advance=read_latency,
    )
    nvml = Nvml(fake)
    nvml.init()
    sampler = Sampler(nvml, list(range(gpus)), period_s)
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    spinner = threading.Thread(target=spin, daemon=True) if busy else None
    calls_before = reads[0]
    if spinner is not None:
        spinner.start()
    sampler.begin(time.perf_counter())
    time.sleep(seconds)
    sampler.end()
    stop.set()
    if spinner is not None:
        spinner.join()
    times, _ = sampler.buffer.view()
    dev_t = sampler.buffer.device_times()[1:-1]  # the reader threads' own reads, not begin/end
    per_device = [col[~np.isnan(col)] for col in dev_t.T]
    gaps = np.concatenate([np.diff(c) for c in per_device])  # each GPU's interval between reads
    n = max(len(times), 1)
    return {
        "gpus": gpus,
        "read_ms": read_s * 1000,
        "busy_main_thread": busy,
        "period_ms": period_s * 1000,
        "rows": len(times),
        "reads_per_gpu": [int(c.size) for c in per_device],
        "mean_interval_ms": round(float(gaps.mean()) * 1000, 1) if gaps.size else None,
        "p95_interval_ms": round(float(np.percentile(gaps, 95)) * 1000, 1) if gaps.size else None,
        "nvml_calls_per_sample": round((reads[0] - calls_before) / n, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--read-ms", type=float, default=3.0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--period-ms", type=float, default=100.0)
    args = ap.parse_args()
    for busy in (False, True):
        out = run(args.gpus, args.read_ms / 1000, args.seconds, args.period_ms / 1000, busy)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
