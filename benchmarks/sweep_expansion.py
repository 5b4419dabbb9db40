"""Benchmark: expanding and hashing a 10,000-point sweep (target: < 2 s and < 300 MB on CI).

Run: .venv/bin/python benchmarks/sweep_expansion.py
Prints wall time for validation + expansion + hashing and the process's peak RSS, and the time to
refuse a 1,000,000-point sweep (counted against execution.max_runs before anything is expanded).
"""

from __future__ import annotations

import resource
import time


def main() -> None:
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    from llenergymeasure import StudyConfig

    sweep = {
        "batch_size": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
        "max_output_tokens": [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
        "dataset.input_tokens": [8, 16, 32, 64, 128, 256, 320, 384, 448, 512],
        "precision": [
            "fp32",
            "fp16",
            "bf16",
            "bf16",
            "fp16",
            "fp32",
            "bf16",
            "fp16",
            "fp32",
            "bf16",
        ][:10],
    }
    # 10 x 10 x 10 x 3 distinct precisions -> use seed as the 4th axis for exactly 10,000 points
    sweep.pop("precision")
    sweep["seed"] = list(range(10))
    t0 = time.perf_counter()
    study = StudyConfig(
        name="bench",
        base={"model": "synthetic/llama-1b", "backend": "pytorch"},
        sweep=sweep,
        execution={"n_cycles": 1},  # 10,000 runs: within the default execution.max_runs
    )
    exps = study.expand()
    hashes = [e.config_hash for e in exps]
    design = study.study_design_hash
    elapsed = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    assert len(exps) == 10_000 and len(set(hashes)) == 10_000
    print(f"points: {len(exps)}  design hash: {design[:12]}")
    print(f"validate + expand + hash: {elapsed:.2f} s")
    print(f"peak RSS: {rss / 1024:.0f} MB (at start {rss0 / 1024:.0f} MB)")
    refuse_million()


def refuse_million() -> None:
    """A 1,000,000-point sweep is refused (execution.max_runs) without expanding it."""
    from pydantic import ValidationError

    from llenergymeasure import StudyConfig

    axes = ["batch_size", "max_output_tokens", "max_input_tokens", "n", "dataset.input_tokens"]
    sweep: dict[str, list[int]] = {k: list(range(1, 11)) for k in axes}
    sweep["seed"] = list(range(10))
    t0 = time.perf_counter()
    try:
        StudyConfig(name="big", base={"model": "synthetic/tiny-llama"}, sweep=sweep)
    except ValidationError:
        print(f"refuse a 1,000,000-point sweep: {time.perf_counter() - t0:.4f} s")
    else:
        raise AssertionError("a 1,000,000-point sweep was accepted")


if __name__ == "__main__":
    main()
