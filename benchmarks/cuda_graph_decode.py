"""Issue 26 item 4 on a GPU: llem's static decode loop with and without the CUDA-graph step.

The decode loop alone (``backends/pytorch/decode.py::StaticDecoder``), no harness, no meter: the
quickest check that the captured step decodes the same greedy tokens and how far it moves the
launch-bound batch-1 step towards the HBM roofline. The figures the issue's targets are judged
on come from the harness (``benchmarks/compile_cache.py --stage graphs``); this script is the
check that runs first and names a capture failure if there is one.

Arms, in one process, one model (``synthetic/llama-1b`` bf16, random weights, seed 42), one
prompt batch (bs 1, 128 random tokens, 256 new tokens, EOS masked as ``fixed_output_length``):

    eager     the loop without torch.compile (the reference tokens)
    compiled  compile_mode default: the compiled step launched op by op
    graphs    compile_mode reduce-overhead: the compiled step captured as a CUDA graph

Per arm: the first batch's wall time (compile, and for ``graphs`` the capture), then ``--reps``
timed batches: tok/s (new tokens / batch wall time), mean ITL and TTFT from the loop's CUDA
events, and how many of the greedy tokens equal the eager arm's. Saved after every arm to
``$OUT/cuda_graph_decode.json``.

    PYTHONUNBUFFERED=1 python3 benchmarks/cuda_graph_decode.py --out $OUT

``--cpu-smoke`` runs the script on the CPU with synthetic/tiny-llama in fp32 and 8 new tokens
(the graph arm is then a compiled step: CUDA graphs need CUDA); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ARMS = {
    "eager": {"compile": False},
    "compiled": {"compile": True, "compile_mode": "default"},
    "graphs": {"compile": True, "compile_mode": "reduce-overhead"},
}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/llem-cg")))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    import torch
    import transformers

    from llenergymeasure.backends.pytorch.decode import DecodeSettings, StaticDecoder
    from llenergymeasure.models.synthetic import build_random_model, resolve_model

    smoke = args.cpu_smoke
    device = "cpu" if smoke else "cuda"
    name = "synthetic/tiny-llama" if smoke else "synthetic/llama-1b"
    dtype = torch.float32 if smoke else torch.bfloat16
    width, new = (8, 8) if smoke else (128, 256)
    model_dir = Path(tempfile.mkdtemp(prefix="llem-cg-"))
    path = resolve_model(name, model_dir).path
    model, _ = build_random_model(torch, transformers, path, dtype=dtype, device=device, seed=42)
    model.eval()
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(10, vocab, (args.batch, width), generator=gen).to(device)
    mask = torch.ones_like(ids)
    save = args.out / "cuda_graph_decode.json"
    summary: dict[str, Any] = {
        "argv": sys.argv,
        "model": name,
        "dtype": str(dtype),
        "batch": args.batch,
        "prompt_tokens": width,
        "new_tokens": new,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "arms": {},
    }
    reference = None
    compiled_tokens = None
    for arm, opts in ARMS.items():
        settings = DecodeSettings(eos_ids=[2], pad_id=0, **opts)  # type: ignore[arg-type]
        decoder = StaticDecoder(torch, model, settings, max_cache_len=width + new)
        t0 = time.perf_counter()
        try:
            tokens, _ = decoder.generate(ids, mask, new)
        except Exception as exc:
            summary["arms"][arm] = {"failed": f"{type(exc).__name__}: {exc}"[:2000]}
            save.write_text(json.dumps(summary, indent=2))
            print(arm, "FAILED", exc, flush=True)
            continue
        first_s = time.perf_counter() - t0
        walls, itls, ttfts, equal, equal_c = [], [], [], [], []
        if reference is None:
            reference = tokens.cpu()
        for _ in range(args.reps):
            tokens, timing = decoder.generate(ids, mask, new)
            offs = timing.step_offsets_s
            walls.append(timing.wall_s)
            ttfts.append(offs[0] * 1e3)
            itls.append((offs[-1] - offs[0]) / max(len(offs) - 1, 1) * 1e3)
            equal.append(int((tokens.cpu() == reference).sum()))
            if compiled_tokens is not None:
                equal_c.append(int((tokens.cpu() == compiled_tokens).sum()))
        if arm == "compiled":
            compiled_tokens = tokens.cpu()
        one = {
            "decode_mode": decoder.decode_mode,
            "prefill_mode": decoder.prefill_mode,
            "first_batch_s": first_s,
            "tok_s": args.batch * new / statistics.median(walls),
            "itl_ms_mean": statistics.median(itls),
            "ttft_ms": statistics.median(ttfts),
            "batch_wall_s": walls,
            "tokens_equal_to_eager": min(equal),
            "tokens_equal_to_compiled": min(equal_c) if equal_c else None,
            "tokens": args.batch * new,
        }
        summary["arms"][arm] = one
        save.write_text(json.dumps(summary, indent=2))
        print(arm, json.dumps({k: v for k, v in one.items() if k != "batch_wall_s"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
