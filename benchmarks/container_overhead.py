"""Per-experiment overhead of the docker runner: container start to result, minus the experiment.

Run from the repository root, with a Docker daemon and the CI images (``make images-ci``):

    .venv/bin/python benchmarks/container_overhead.py [--repeats 5] [--image llenergymeasure:pytorch-ci]

For each repeat it runs the same tiny experiment (synthetic tiny-llama, fp32, 4 prompts x 8 tokens,
one warmup batch, no baseline, energy meter ``none``) through ``DockerRunner.run`` and through
``LocalRunner.run``, timing the call on the host. The overhead of a run is

    wall time of run()  -  (model load + warmup + measured window)   [from its result.json]

i.e. everything that is not the experiment: container create/start, interpreter start and imports,
the environment snapshot, writing the result, container exit and removal. The docker figure is
the one with the target (< 5 s); the local figure beside it shows how much of that is the
fresh Python process that both runners pay. A warm-up run (not counted) first builds the synthetic
model in the cache and warms the page cache, as any study's first experiment would.

It also times the two pieces the container adds on its own: an empty container
(``python3 -c pass``: create, start, wait, remove) and ``import`` of the harness inside one.
Prints a table and writes JSON to --out (default results/container_overhead.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from llenergymeasure.config.experiment import ExperimentConfig  # noqa: E402
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings  # noqa: E402
from llenergymeasure.results.models import ExperimentResult  # noqa: E402

TARGET_S = 5.0


def _request(cache: Path) -> HarnessRequest:
    config = ExperimentConfig.from_dict(
        {
            "model": "synthetic/tiny-llama",
            "backend": "pytorch",
            "precision": "fp32",
            "n": 4,
            "batch_size": 2,
            "dataset": {"source": "synthetic", "input_tokens": 16},
            "max_input_tokens": 32,
            "max_output_tokens": 8,
            "warmup": {"runs": 1},
            "baseline": {"enabled": False},
        }
    )
    return HarnessRequest(
        config=config,
        settings=HarnessSettings(
            energy_backend="none",
            model_cache_dir=str(cache),
            baseline_cache_dir=str(cache / "baseline"),
        ),
    )


def _one(runner: Any, request: HarnessRequest, run_dir: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    outcome = runner.run(request, run_dir)
    wall = time.perf_counter() - t0
    if outcome.status != "completed":
        raise SystemExit(f"run failed ({outcome.status}): {outcome.message}")
    result = ExperimentResult.model_validate_json((run_dir / "result.json").read_text())
    experiment = result.load.duration_s + result.warmup.duration_s + result.duration_s
    if result.baseline is not None:
        experiment += float(getattr(result.baseline, "duration_s", 0.0) or 0.0)
    row = {"wall_s": wall, "experiment_s": experiment, "overhead_s": wall - experiment}
    row.update({k: float(v) for k, v in outcome.extra.items() if k.endswith("_s")})  # type: ignore[arg-type]
    return row


def _container_pieces(image: str, repeats: int) -> dict[str, list[float]]:
    from llenergymeasure.runners.docker.daemon import docker_client

    client = docker_client()
    out: dict[str, list[float]] = {"empty_container_s": [], "import_harness_in_container_s": []}
    for _ in range(repeats):
        for key, cmd in (
            ("empty_container_s", ["python3", "-c", "pass"]),
            (
                "import_harness_in_container_s",
                ["python3", "-c", "import llenergymeasure.harness.core, torch, transformers"],
            ),
        ):
            t0 = time.perf_counter()
            c = client.containers.create(image, cmd, network_mode="none", init=True)
            try:
                c.start()
                c.wait()
            finally:
                c.remove(force=True)
            out[key].append(time.perf_counter() - t0)
    client.close()
    return out


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "stdev": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--image", default="llenergymeasure:pytorch-ci")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/container_overhead.json"))
    parser.add_argument("--no-local", action="store_true", help="skip the local-runner comparison")
    args = parser.parse_args()

    from llenergymeasure.runners.docker.images import check_image_versions
    from llenergymeasure.runners.docker.runner import DockerRunner
    from llenergymeasure.runners.local import LocalRunner

    check_image_versions([args.image])
    work = Path(tempfile.mkdtemp(prefix="llem-overhead-"))
    cache = work / "cache"
    request = _request(cache)
    runners: dict[str, Any] = {"docker": DockerRunner(args.image)}
    if not args.no_local:
        runners["local"] = LocalRunner()

    rows: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
    for name, runner in runners.items():
        _one(runner, request, work / f"{name}-warm")  # builds the model cache; not counted
    for i in range(args.repeats):
        for name, runner in runners.items():  # alternate, so drift hits both alike
            rows[name].append(_one(runner, request, work / f"{name}-{i}"))
            print(
                f"[{name} {i + 1}/{args.repeats}] "
                + ", ".join(f"{k}={v:.3f}" for k, v in rows[name][-1].items()),
                flush=True,
            )

    pieces = _container_pieces(args.image, args.repeats)
    report: dict[str, Any] = {
        "image": args.image,
        "repeats": args.repeats,
        "host": {
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "runs": rows,
        "summary": {
            name: {k: _summary([r[k] for r in rs]) for k in rs[0]} for name, rs in rows.items()
        },
        "container_pieces": {k: _summary(v) for k, v in pieces.items()},
        "target_overhead_s": TARGET_S,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))

    print(f"\nper-experiment overhead (s), {args.repeats} runs each, {os.cpu_count()} CPUs:")
    print(
        f"{'runner':8} {'mean':>7} {'median':>7} {'min':>7} {'max':>7}   (wall mean, experiment mean)"
    )
    for name in rows:
        o = report["summary"][name]["overhead_s"]
        w = report["summary"][name]["wall_s"]["mean"]
        e = report["summary"][name]["experiment_s"]["mean"]
        print(
            f"{name:8} {o['mean']:7.2f} {o['median']:7.2f} {o['min']:7.2f} {o['max']:7.2f}   ({w:.2f}, {e:.2f})"
        )
    for k, s in report["container_pieces"].items():
        print(f"{k:32} mean {s['mean']:.2f} s (min {s['min']:.2f}, max {s['max']:.2f})")
    docker_mean = report["summary"]["docker"]["overhead_s"]["mean"]
    verdict = "meets" if docker_mean < TARGET_S else "MISSES"
    print(
        f"docker overhead {docker_mean:.2f} s {verdict} the {TARGET_S:g} s target; JSON: {args.out}"
    )
    return 0 if docker_mean < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
