"""Overhead of llem's vLLM backend against a plain ``LLM.generate`` script, in one run.

Target (issue 7, docs/performance.md): on the same model, prompts and engine arguments, the
backend's generation throughput is within 3 % of a plain script's.

What is compared
    plain  ``vllm.LLM(**engine args)`` (vLLM's defaults otherwise, i.e. stat logging off) and one
           ``LLM.generate(token prompts, SamplingParams, use_tqdm=False)`` call per repetition.
    llem   ``VLLMBackend.generate(prompts)``: the same prompts submitted at once, the engine
           stepped to completion, per-request timing from the engine's metrics.

Both engines live in their own worker process for the whole run and are warmed up first. The
coordinator then alternates repetitions in ABBA order (plain, llem, llem, plain, ...), so that
slow drifts and other load on the machine hit both sides alike, and reports the median
throughput of each side and the median of the per-round ratios llem/plain.

Run it in the vLLM environment (``make vllm-env``)::

    .venv-vllm/bin/python benchmarks/vllm_overhead.py            # synthetic/tiny-llama on the CPU
    .venv-vllm/bin/python benchmarks/vllm_overhead.py --n 256 --rounds 10 --json out.json

The verdict uses a 95 % bootstrap interval of the median per-round ratio: PASS when the whole
interval is at or above ``1 - tolerance`` (``--tolerance``, default 0.03), FAIL when all of it is
below, INCONCLUSIVE when the machine was too noisy to tell (other load on a small machine easily
moves single repetitions by 20 %; add ``--rounds``). Exit status 0 PASS, 1 FAIL, 3 INCONCLUSIVE,
2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _experiment(args: argparse.Namespace) -> Any:
    from llenergymeasure.config.experiment import ExperimentConfig

    engine: dict[str, Any] = {
        "enforce_eager": args.enforce_eager,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "max_model_len": args.max_model_len,
    }
    if args.max_num_seqs:
        engine["max_num_seqs"] = args.max_num_seqs
    # Every repetition sends the same prompts; with the prefix cache on, all but the first would
    # skip their prefill. The measured window of an experiment never repeats its prompts.
    engine["enable_prefix_caching"] = args.prefix_caching
    return ExperimentConfig(
        model=f"synthetic/{args.preset}",
        backend="vllm",
        precision=args.precision,
        n=args.n,
        dataset={"source": "synthetic", "input_tokens": args.input_tokens},
        max_input_tokens=max(args.input_tokens, 1),
        max_output_tokens=args.output_tokens,
        seed=args.seed,
        vllm=engine,
    )


def _worker(side: str, args: argparse.Namespace, model_dir: str, conn: Any) -> None:
    """Hold one engine; on each "run" message generate all prompts once and report the time."""
    try:
        from llenergymeasure.backends.base import Prompt
        from llenergymeasure.backends.vllm.args import engine_kwargs, sampling_kwargs
        from llenergymeasure.backends.vllm.backend import VLLMBackend

        config = _experiment(args)
        prompts_ids = conn.recv()
        if side == "llem":
            backend = VLLMBackend(config, model_dir)
            backend.load()
            prompts = [
                Prompt(token_ids=ids, max_new_tokens=args.output_tokens) for ids in prompts_ids
            ]

            def run() -> tuple[float, int]:
                t0 = time.perf_counter()
                out = backend.generate(prompts)
                backend.synchronize()
                return time.perf_counter() - t0, out.output_tokens

            close = backend.close
        else:
            import vllm
            from vllm.inputs import TokensPrompt

            kwargs = engine_kwargs(config, model_dir, synthetic=True)
            kwargs.pop("disable_log_stats")  # a plain script keeps LLM's default
            llm = vllm.LLM(**kwargs)
            params = vllm.SamplingParams(**sampling_kwargs(config, args.output_tokens))
            token_prompts = [TokensPrompt(prompt_token_ids=ids) for ids in prompts_ids]

            def run() -> tuple[float, int]:
                t0 = time.perf_counter()
                outs = llm.generate(token_prompts, params, use_tqdm=False)
                return time.perf_counter() - t0, sum(len(o.outputs[0].token_ids) for o in outs)

            def close() -> None:
                llm.llm_engine.engine_core.shutdown()

        for _ in range(args.warmup):
            run()
        conn.send(("ready", None))
        while True:
            message = conn.recv()
            if message == "stop":
                break
            conn.send(("result", run()))
        close()
        conn.send(("closed", None))
    except BaseException as exc:  # report, then let the coordinator fail cleanly
        conn.send(("error", f"{side}: {exc.__class__.__name__}: {exc}"))
        raise


def _expect(conn: Any, kind: str, timeout_s: float) -> Any:
    if not conn.poll(timeout_s):
        raise TimeoutError(f"no {kind!r} message from a worker within {timeout_s:.0f} s")
    got, payload = conn.recv()
    if got == "error":
        raise RuntimeError(payload)
    if got != kind:
        raise RuntimeError(f"expected {kind!r} from a worker, got {got!r}")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--preset", default="tiny-llama", help="synthetic preset (default tiny-llama)"
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--n", type=int, default=128, help="prompts per repetition")
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=128)
    parser.add_argument("--max-num-seqs", type=int, default=None)
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.1)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--warmup", type=int, default=2, help="untimed repetitions per side")
    parser.add_argument("--rounds", type=int, default=8, help="ABBA rounds (2 timed runs per side)")
    parser.add_argument("--tolerance", type=float, default=0.03)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--model-cache", type=Path, default=None)
    args = parser.parse_args(argv)

    from llenergymeasure.models.synthetic import materialise_synthetic

    cache = args.model_cache or Path(tempfile.gettempdir()) / "llem-bench-models"
    model_dir = str(materialise_synthetic(args.preset, cache))
    config = _experiment(args)

    import numpy as np

    # Random regular token ids (ids 0..3 are the synthetic tokenizer's special tokens).
    from llenergymeasure.models.synthetic import SPECIAL_TOKENS

    vocab = int(json.loads(Path(model_dir, "config.json").read_text())["vocab_size"])
    rng = np.random.default_rng(config.seed)
    prompt_ids = rng.integers(len(SPECIAL_TOKENS), vocab, size=(args.n, args.input_tokens)).tolist()

    ctx = mp.get_context("spawn")
    sides = ("plain", "llem")
    conns: dict[str, Any] = {}
    procs: dict[str, Any] = {}
    try:
        for side in sides:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(side, args, model_dir, child), daemon=False)
            proc.start()
            parent.send(prompt_ids)
            conns[side], procs[side] = parent, proc
            # One engine start at a time: two at once on a small machine time out.
            _expect(parent, "ready", 1200)
        times: dict[str, list[float]] = {s: [] for s in sides}
        tokens: dict[str, set[int]] = {s: set() for s in sides}
        ratios: list[float] = []
        for round_index in range(args.rounds):
            order = (
                ("plain", "llem", "llem", "plain")
                if round_index % 2 == 0
                else ("llem", "plain", "plain", "llem")
            )
            got: dict[str, list[float]] = {s: [] for s in sides}
            for side in order:
                conns[side].send("run")
                seconds, n_tokens = _expect(conns[side], "result", 600)
                got[side].append(seconds)
                times[side].append(seconds)
                tokens[side].add(n_tokens)
            ratios.append(statistics.mean(got["plain"]) / statistics.mean(got["llem"]))
        for side in sides:
            conns[side].send("stop")
            _expect(conns[side], "closed", 120)
    except BaseException as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        for proc in procs.values():
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()

    expected_tokens = args.n * args.output_tokens
    for side in sides:
        if tokens[side] != {expected_tokens}:
            print(
                f"{side} generated {sorted(tokens[side])} tokens, expected {expected_tokens}",
                file=sys.stderr,
            )
            return 2
    throughput = {s: expected_tokens / statistics.median(times[s]) for s in sides}
    ratio = statistics.median(ratios)  # llem throughput / plain throughput, per round
    low, high = _bootstrap_median_ci(ratios, seed=args.seed)
    target = 1.0 - args.tolerance
    # PASS needs the whole 95 % interval of the median ratio above the target; FAIL means even its
    # upper end is below; otherwise the machine was too noisy to tell at this tolerance.
    verdict = "PASS" if low >= target else "FAIL" if high < target else "INCONCLUSIVE"
    import vllm

    report = {
        "benchmark": "vllm_overhead",
        "host": {
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "processor": _cpu_model(),
            "load_average_1m_end": os.getloadavg()[0],
        },
        "vllm_version": vllm.__version__,
        "workload": {
            "preset": args.preset,
            "precision": args.precision,
            "n": args.n,
            "input_tokens": args.input_tokens,
            "output_tokens": args.output_tokens,
            "max_num_seqs": args.max_num_seqs,
            "enforce_eager": args.enforce_eager,
            "prefix_caching": args.prefix_caching,
            "rounds": args.rounds,
            "warmup": args.warmup,
        },
        "plain_seconds": times["plain"],
        "llem_seconds": times["llem"],
        "plain_output_tokens_per_s_median": throughput["plain"],
        "llem_output_tokens_per_s_median": throughput["llem"],
        "llem_over_plain_per_round": ratios,
        "llem_over_plain_median": ratio,
        "llem_over_plain_median_ci95": [low, high],
        "tolerance": args.tolerance,
        "verdict": verdict,
    }
    print(
        f"plain LLM.generate : {throughput['plain']:10.1f} output tok/s (median of {len(times['plain'])})\n"
        f"llem VLLMBackend   : {throughput['llem']:10.1f} output tok/s (median of {len(times['llem'])})\n"
        f"llem / plain       : {ratio:.4f} (median of {len(ratios)} paired rounds; "
        f"95 % CI {low:.4f} .. {high:.4f}; rounds min {min(ratios):.4f}, max {max(ratios):.4f})\n"
        f"target             : >= {target:.2f} -> {verdict}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return {"PASS": 0, "FAIL": 1}.get(verdict, 3)


def _bootstrap_median_ci(
    values: list[float], seed: int, resamples: int = 10_000
) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the median of ``values``."""
    import numpy as np

    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(data, size=(resamples, len(data)), replace=True), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


if __name__ == "__main__":
    sys.exit(main())
