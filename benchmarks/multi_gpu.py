"""Issue 18 on GPUs: one experiment spread over several GPUs, and experiments side by side.

Every experiment runs as llem runs it: ``LocalRunner(gpus=...)`` starts the harness in a fresh
process that sees only the selected GPUs (its ``CUDA_VISIBLE_DEVICES``), and its ``result.json``
is read back. Per GPU the result holds the energy counter's joules and the sampler's integrated
power (the cross-check), how busy the GPU was, and the total behind J/token. Each part fits one
device call (at most 10 minutes), writes its JSON under --out after every run and prints a table
last; run it without a pipe so a call cut short still returns what it printed. Parts:

    single      1 GPU: synthetic/llama-8b bf16 on GPU 0 (gpus: [0]), then the same with
                pytorch.device_map: auto over that one GPU (the device_map path on real NVML)
    split       2 GPUs: the same model on GPU 0 alone, then device_map: auto over gpus [0, 1]
    neighbours  2 GPUs: the 1-GPU configuration alone, then beside a neighbour on GPU 1 (the same
                model generating without pause in a second process, started before and stopped
                after the measured run), --cycles times interleaved (alone, beside, alone, ...);
                the paired differences in J/token and tokens/s with their 95 % CI.
                With --neighbour study the same comparison goes through llem's own scheduler
                instead: `llem run` of a study alone (--cycles runs of the configuration, one at a
                time), then of a study with execution.concurrent_runs: 2 (each cycle the
                configuration on gpus [0] beside a longer-window copy on gpus [1]); every result's
                placement (neighbours, overlap) and neighbour_load warning are kept; the
                difference of the two groups' means with a Welch 95 % CI

    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/multi_gpu.py --part single --out $OUT
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/multi_gpu.py --part split --out $OUT
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/multi_gpu.py --part neighbours --out $OUT
    PYTHONUNBUFFERED=1 PYTHONPATH=src python3 benchmarks/multi_gpu.py --part neighbours --neighbour study --out $OUT

Every process it starts (the experiments through the runner, the neighbour) inherits
NCCL_NVLS_ENABLE=0, TORCH_SYMM_MEM_DISABLE_MULTICAST=1 and NVSHMEM_DISABLE_NVLS=1 (NVLink
multicast off). A part that needs 2 GPUs refuses to start when fewer are visible.

``--cpu-smoke`` runs the same flow on the CPU with synthetic/tiny-llama, measured by the fake NVML
(``tests/fakes/nvml.py``, a test double kept out of the package) inside each experiment process:
two fake GPUs named by UUID in ``CUDA_VISIBLE_DEVICES``, so the selection and its mapping to NVML
devices are exercised; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "src", REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import gpu_campaign as gc  # noqa: E402  (its save/left/_run_row: one house style for GPU parts)

#: NVLink multicast off in every process this script starts (the device's KINDS.md)
NVLINK_ENV = {
    "NCCL_NVLS_ENABLE": "0",
    "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
    "NVSHMEM_DISABLE_NVLS": "1",
}
#: the fake GPUs of --cpu-smoke: a busy one and an idle one, named by UUID
SMOKE_UUIDS = (
    "GPU-5a0e0000-0000-4000-8000-000000000000",
    "GPU-5a0e0001-0000-4000-8000-000000000001",
)
OUT = gc.OUT
AGREEMENT_TARGET_PCT = 2.0


# -- the experiments ---------------------------------------------------------------------------


def config_dict(args: argparse.Namespace, **over: Any) -> dict[str, Any]:
    """The measured configuration: llama-8b bf16, bs 8, 128 in / 128 out, a >= 30 s window."""
    smoke = args.cpu_smoke
    data: dict[str, Any] = {
        "name": over.pop("name", None),
        "model": "synthetic/tiny-llama" if smoke else args.model,
        "backend": "pytorch",
        "precision": "fp32" if smoke else "bf16",
        "batch_size": args.batch_size,
        "n": args.batch_size,
        "dataset": {"source": "synthetic", "input_tokens": 16 if smoke else 128},
        "max_output_tokens": 8 if smoke else args.output_tokens,
        "warmup": {"mode": "fixed", "runs": 1 if smoke else 3},
        "measurement": {"min_window_s": 1.0 if smoke else args.min_window_s},
        "baseline": {
            "enabled": args.baseline,
            "duration_s": 2.0 if smoke else 10.0,
            "cache_ttl_s": 0,
        },
        "timeout_s": 120.0 if smoke else 420.0,
    }
    data.update(over)
    return data


def device_row(d: dict[str, Any]) -> dict[str, Any]:
    """One GPU of a result: counter vs sampler, busy-ness, above idle."""
    counter, integrated = d["energy_j"], d.get("integrated_energy_j")
    agree = 100.0 * (integrated - counter) / counter if integrated and counter else None
    return {
        "nvml_index": d["nvml_index"],
        "cuda_index": d.get("cuda_index"),
        "uuid": d.get("uuid"),
        "name": d.get("name"),
        "method": d.get("method"),
        "counter_j": counter,
        "sampler_integrated_j": integrated,
        "sampler_vs_counter_pct": agree,
        "within_target": None if agree is None else abs(agree) <= AGREEMENT_TARGET_PCT,
        "above_idle_j": d.get("energy_above_idle_j"),
        "idle_power_w": d.get("idle_power_w"),
        "mean_power_w": d.get("mean_power_w"),
        "peak_power_w": d.get("peak_power_w"),
        "mean_utilization_pct": d.get("mean_utilization_pct"),
        "max_memory_used_mb": d.get("max_memory_used_mb"),
        "n_samples": d.get("n_samples"),
    }


def run_experiment(
    args: argparse.Namespace, label: str, cfg: dict[str, Any], gpus: list[int]
) -> dict[str, Any]:
    """One experiment through the local runner on ``gpus``; its figures, saved at once."""
    from llenergymeasure import ExperimentConfig
    from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
    from llenergymeasure.runners.local import LocalRunner

    config = ExperimentConfig.from_dict({**cfg, "gpus": gpus, "name": label})
    request = HarnessRequest(
        config=config,
        settings=HarnessSettings(
            energy_backend="nvml",
            model_cache_dir=str(args.work / "cache"),
            baseline_cache_dir=str(args.work / "baseline"),
        ),
    )
    run_dir = args.work / "runs" / f"{len(OUT.setdefault('runs', [])):02d}_{label}"
    runner = LocalRunner(gpus=gpus, target=smoke_child if args.cpu_smoke else None)
    t0 = time.perf_counter()
    outcome = runner.run(request, run_dir, config.timeout_s)
    row: dict[str, Any] = {
        "label": label,
        "gpus": gpus,
        "device_map": (config.pytorch.device_map if config.pytorch else None),
        "status": outcome.status,
        "wall_s": time.perf_counter() - t0,
        "run_dir": str(run_dir),
    }
    if outcome.status != "completed" or outcome.result_path is None:
        row["message"] = (outcome.message or "")[-2000:]
        log = run_dir / "run.log"
        row["log_tail"] = log.read_text()[-3000:] if log.exists() else None
    else:
        r = json.loads(outcome.result_path.read_text())
        row.update(gc._run_row(r))
        e = r["energy"]
        row["meter"] = e["meter"]
        row["total_energy_j"] = r["total_energy_j"]
        row["total_energy_above_idle_j"] = r.get("total_energy_above_idle_j")
        row["output_tokens"] = r["output_tokens"]
        row["devices"] = [device_row(d) for d in e["devices"]]
        row["device_sum_j"] = sum(d["counter_j"] for d in row["devices"])
        row["cuda_visible_devices"] = (r.get("environment") or {}).get("cuda_visible_devices")
        row["synthetic_device_map"] = r["extra"].get("synthetic_device_map")
    OUT["runs"].append(row)
    gc.save()
    print(json.dumps(_brief(row), default=str), flush=True)
    return row


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("label", "gpus", "status", "tok_s", "j_per_tok", "total_energy_j", "window_s", "wall_s")
    out = {k: row.get(k) for k in keep}
    out["devices"] = [
        {
            k: d[k]
            for k in ("nvml_index", "counter_j", "sampler_vs_counter_pct", "mean_utilization_pct")
        }
        for d in row.get("devices", [])
    ]
    if row.get("message"):
        out["message"] = row["message"][-600:]
    return out


# -- --cpu-smoke: the experiment process measures fake GPUs -------------------------------------


def smoke_child(request_path: str, output_dir: str) -> None:
    """The experiment process under --cpu-smoke: the real harness, metered by the fake NVML. The
    fake has both smoke GPUs; the meter finds this process's ones through the UUIDs the runner
    put in its CUDA_VISIBLE_DEVICES (as on a real machine)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from llenergymeasure.energy import select_meter
    from llenergymeasure.harness.core import run_harness
    from llenergymeasure.harness.request import HarnessRequest
    from tests.fakes.nvml import ConstantPower, FakeGpu, FakeNvml

    fake = FakeNvml(
        [
            FakeGpu(uuid=SMOKE_UUIDS[0], trace=ConstantPower(300.0), gpu_util_pct=90),
            FakeGpu(uuid=SMOKE_UUIDS[1], trace=ConstantPower(90.0), gpu_util_pct=0),
        ]
    )

    def factory(backend: str, devices: list[int]) -> Any:
        return select_meter(backend, devices, os.environ, nvml_module=fake, sample_period_s=0.05)

    request = HarnessRequest.read(Path(request_path))
    try:
        run_harness(request, Path(output_dir), meter_factory=factory)
    except Exception as exc:  # error.json is written by the harness; the runner reads it
        print(f"smoke child: {type(exc).__name__}: {exc}", flush=True)
        os._exit(1)


# -- the neighbour: the same model, generating without pause on another GPU -------------------


def neighbour_main(cfg_path: str, stop_file: str, ready_file: str, cache: str) -> None:
    """A second process keeping its GPU busy until ``stop_file`` appears."""
    from llenergymeasure import ExperimentConfig
    from llenergymeasure.backends import create_backend
    from llenergymeasure.datasets import load_prompts
    from llenergymeasure.models.synthetic import resolve_model

    cfg = ExperimentConfig.from_dict(json.loads(Path(cfg_path).read_text()))
    backend = create_backend(cfg, resolve_model(cfg.model, Path(cache)).path, Path(cache))
    backend.load()
    prompts = load_prompts(cfg, backend.tokenizer())
    calls, tokens, t0 = 0, 0, time.perf_counter()
    while not Path(stop_file).exists():
        tokens += backend.generate(prompts).output_tokens
        calls += 1
        if calls == 2:
            Path(ready_file).write_text(json.dumps({"pid": os.getpid()}))
    dt = time.perf_counter() - t0
    print(json.dumps({"neighbour_calls": calls, "neighbour_tok_s": tokens / dt}), flush=True)
    backend.close()


class Neighbour:
    """Starts the neighbour on ``gpu`` (a CUDA index of this process) and waits until it runs."""

    def __init__(self, args: argparse.Namespace, cfg: dict[str, Any], gpu: int, tag: str):
        from llenergymeasure.runners.placement import device_entries

        self.dir = args.work / "neighbour" / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stop_file, self.ready_file = self.dir / "stop", self.dir / "ready"
        for stale in (self.stop_file, self.ready_file):  # from an earlier invocation
            stale.unlink(missing_ok=True)
        cfg_path = self.dir / "config.json"
        cfg_path.write_text(json.dumps({k: v for k, v in cfg.items() if k != "gpus"}))
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": ",".join(device_entries([gpu], os.environ)),
        }
        self.log = (self.dir / "neighbour.log").open("w")
        argv = [sys.executable, __file__, "--neighbour-worker", str(cfg_path)]
        argv += [str(self.stop_file), str(self.ready_file), str(args.work / "cache")]
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started = time.perf_counter()

    def wait_ready(self, timeout_s: float) -> float:
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the neighbour exited ({self.proc.returncode}): {self.tail()}")
            if time.perf_counter() - self.started > timeout_s:
                raise RuntimeError(f"the neighbour was not ready after {timeout_s:g} s")
            time.sleep(0.5)
        return time.perf_counter() - self.started

    def stop(self) -> str:
        self.stop_file.write_text("stop")
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=30)
        self.log.close()
        return self.tail()

    def tail(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.dir / "neighbour.log").read_text()[-800:]


# -- parts ------------------------------------------------------------------------------------


def visible_gpu_count(smoke: bool) -> int:
    """GPUs this process sees: its CUDA_VISIBLE_DEVICES entries, else every NVML GPU."""
    from llenergymeasure.energy.devices import parse_cuda_visible_devices
    from llenergymeasure.runners.docker.container_spec import host_gpu_count

    entries = parse_cuda_visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
    if entries is not None:
        return len(entries)
    return 0 if smoke else host_gpu_count()


def require_gpus(part: str, needed: int, smoke: bool) -> None:
    seen = visible_gpu_count(smoke)
    OUT["visible_gpus"] = seen
    if seen < needed:
        message = (
            f"--part {part} needs {needed} GPUs but this machine shows {seen} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); run it on a "
            f"{needed}-GPU machine (nvidia-h200-x{needed}), or run --part single here"
        )
        OUT["refused"] = message
        gc.save()
        print(message, file=sys.stderr, flush=True)
        sys.exit(2)


def enough_time(args: argparse.Namespace, need_s: float, what: str) -> bool:
    if gc.left(args.budget_s) >= need_s:
        return True
    OUT.setdefault("skipped", []).append(f"{what}: {gc.left(args.budget_s):.0f} s left")
    gc.save()
    print(f"skipping {what}: out of time", flush=True)
    return False


def part_single(args: argparse.Namespace) -> None:
    require_gpus("single", 1, args.cpu_smoke)
    cfg = config_dict(args)
    run_experiment(args, "gpu0", cfg, [0])
    if enough_time(args, args.run_estimate_s, "device_map auto on one GPU"):
        run_experiment(args, "gpu0_device_map", {**cfg, "pytorch": {"device_map": "auto"}}, [0])


def part_split(args: argparse.Namespace) -> None:
    require_gpus("split", 2, args.cpu_smoke)
    cfg = config_dict(args)
    run_experiment(args, "one_gpu", cfg, [0])
    if enough_time(args, args.run_estimate_s, "device_map auto over gpus [0, 1]"):
        run_experiment(args, "two_gpus", {**cfg, "pytorch": {"device_map": "auto"}}, [0, 1])
    runs = {r["label"]: r for r in OUT["runs"] if r["status"] == "completed"}
    if "one_gpu" in runs and "two_gpus" in runs:
        one, two = runs["one_gpu"], runs["two_gpus"]
        OUT["split_vs_one"] = {
            "j_per_tok_ratio": two["j_per_tok"] / one["j_per_tok"],
            "tok_s_ratio": two["tok_s"] / one["tok_s"],
            "per_device_j_per_tok": [d["counter_j"] / two["output_tokens"] for d in two["devices"]],
        }
        gc.save()


def part_neighbours(args: argparse.Namespace) -> None:
    require_gpus("neighbours", 2, args.cpu_smoke)
    from llenergymeasure.results.stats import describe

    cfg = config_dict(args, baseline={"enabled": False})
    pairs: list[dict[str, Any]] = []
    OUT["pairs"] = pairs
    for cycle in range(1, args.cycles + 1):
        if not enough_time(args, 2 * args.run_estimate_s, f"cycle {cycle}"):
            break
        alone = run_experiment(args, f"alone_c{cycle}", cfg, [0])
        neighbour = Neighbour(args, cfg, 1, f"c{cycle}")
        try:
            ready_s = neighbour.wait_ready(timeout_s=300.0)
            beside = run_experiment(args, f"beside_c{cycle}", cfg, [0])
        finally:
            tail = neighbour.stop()
        beside["neighbour"] = {"gpu": 1, "ready_after_s": ready_s, "log_tail": tail}
        ok = alone["status"] == beside["status"] == "completed"
        pairs.append(
            {
                "cycle": cycle,
                "alone_j_per_tok": alone.get("j_per_tok"),
                "beside_j_per_tok": beside.get("j_per_tok"),
                "alone_tok_s": alone.get("tok_s"),
                "beside_tok_s": beside.get("tok_s"),
                "complete": ok,
            }
        )
        gc.save()
    done = [p for p in pairs if p["complete"]]
    if not done:
        return
    summary: dict[str, Any] = {"n_pairs": len(done), "design": "paired, interleaved"}
    for key in ("j_per_tok", "tok_s"):
        alone = [p[f"alone_{key}"] for p in done]
        beside = [p[f"beside_{key}"] for p in done]
        summary[key] = {
            "alone": describe(alone).model_dump(),
            "beside": describe(beside).model_dump(),
            "difference": describe(
                [b - a for a, b in zip(alone, beside, strict=True)]
            ).model_dump(),
            "difference_pct": describe(
                [100.0 * (b / a - 1.0) for a, b in zip(alone, beside, strict=True)]
            ).model_dump(),
        }
        d = summary[key]["difference_pct"]
        low, high = d.get("ci95_low"), d.get("ci95_high")
        summary[key]["ci_excludes_zero"] = (
            None if low is None or high is None else (low > 0 or high < 0)
        )
    OUT["neighbours_summary"] = summary
    gc.save()


def study_rows(args: argparse.Namespace, study: dict[str, Any]) -> list[dict[str, Any]]:
    """``llem run`` of ``study`` (no gaps); each result's figures and placement as it appears."""
    import yaml

    name = study["name"]
    results = args.work / "results"
    uc = args.work / "user-config.yaml"
    uc.write_text(
        yaml.safe_dump(
            {
                "output": {
                    "results_dir": str(results),
                    "model_cache_dir": str(args.work / "cache"),
                },
                "measurement": {"energy_backend": "none" if args.cpu_smoke else "nvml"},
            }
        )
    )
    path = args.work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(study))
    env = {**os.environ, "LLEM_CONFIG": str(uc), "COLUMNS": "160"}
    log = args.work / f"{name}.log"
    rows: dict[str, dict[str, Any]] = {}
    key = f"study_{name}"
    OUT[key] = {"runs": []}
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llenergymeasure", "run", str(path), "--no-gaps", "--yes"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while True:
            done = proc.poll() is not None
            for f in sorted(results.glob(f"{name}_*/*/result.json")):
                if f.parent.name in rows:
                    continue
                try:
                    r = json.loads(f.read_text())
                    if r.get("placement") is None and study["execution"].get("concurrent_runs"):
                        continue  # the controller adds the placement once the run has ended
                    row = {"folder": f.parent.name, "name": r["config"].get("name")}
                    row.update(gc._run_row(r))
                    row["devices"] = [device_row(d) for d in r["energy"]["devices"]]
                    row["placement"] = r.get("placement")
                except (OSError, ValueError, KeyError):
                    continue  # being written: the next poll
                rows[f.parent.name] = row
                OUT[key]["runs"] = list(rows.values())
                gc.save()
                print(json.dumps(_brief({**row, "label": row["name"], "status": "completed"})))
            if done:
                break
            if gc.left(args.budget_s) < 0:
                os.killpg(proc.pid, 15)
                proc.wait(timeout=60)
                OUT[key]["stopped"] = "out of time: stopped; its finished runs are kept"
                break
            time.sleep(2.0)
    OUT[key].update(
        exit=proc.returncode,
        wall_s=time.perf_counter() - t0,
        log_tail=log.read_text()[-2500:],
    )
    gc.save()
    return list(rows.values())


def welch(alone: list[float], beside: list[float]) -> dict[str, Any]:
    """Difference of means (beside - alone) with a Welch 95 % CI, absolute and in % of alone."""
    import math

    from llenergymeasure.results.stats import describe, t_quantile_975

    a, b = describe(alone), describe(beside)
    out: dict[str, Any] = {"alone": a.model_dump(), "beside": b.model_dump()}
    if a.n < 2 or b.n < 2 or a.mean is None or b.mean is None or a.std is None or b.std is None:
        return out
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    diff = b.mean - a.mean
    se = math.sqrt(va + vb)
    if se == 0:
        df = float(a.n + b.n - 2)
    else:
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = t_quantile_975(max(1, math.floor(df))) * se
    out["difference"] = {"mean": diff, "ci95_low": diff - half, "ci95_high": diff + half}
    out["difference_pct"] = {k: 100.0 * v / a.mean for k, v in out["difference"].items() if a.mean}
    out["welch_df"] = df
    out["ci_excludes_zero"] = diff - half > 0 or diff + half < 0
    return out


def part_neighbours_study(args: argparse.Namespace) -> None:
    """Alone vs beside through llem's scheduler (execution.concurrent_runs: 2)."""
    require_gpus("neighbours", 2, args.cpu_smoke)
    base = config_dict(args, baseline={"enabled": False})
    base.pop("name", None)
    window = dict(base["measurement"])
    longer = {"min_window_s": 2.0 * float(window["min_window_s"]) + 10.0}
    measured = {"name": "measured", "gpus": [0]}
    alone_study = {
        "name": "mgpu-alone",
        "base": base,
        "experiments": [measured],
        "execution": {"n_cycles": args.cycles},
    }
    beside_study = {
        "name": "mgpu-beside",
        "base": base,
        "experiments": [
            measured,
            {"name": "neighbour", "gpus": [1], "seed": 7, "measurement": longer},
        ],
        "execution": {"n_cycles": args.cycles, "concurrent_runs": 2},
    }
    alone = [r for r in study_rows(args, alone_study) if r["name"] == "measured"]
    beside_all = study_rows(args, beside_study)
    beside = [r for r in beside_all if r["name"] == "measured"]
    summary: dict[str, Any] = {"design": "two studies: alone, then side by side (unpaired)"}
    for key in ("j_per_tok", "tok_s"):
        summary[key] = welch(
            [r[key] for r in alone if r.get(key) is not None],
            [r[key] for r in beside if r.get(key) is not None],
        )
    summary["beside_overlap_s"] = [
        max((n["overlap_s"] for n in (r.get("placement") or {}).get("neighbours", [])), default=0)
        for r in beside
    ]
    summary["beside_neighbour_load"] = ["neighbour_load" in r["warnings"] for r in beside]
    summary["beside_window_s"] = [r["window_s"] for r in beside]
    OUT["neighbours_summary"] = summary
    gc.save()


def table() -> str:
    lines = [
        f"{'run':<18} {'gpus':<7} {'tok/s':>8} {'J/tok':>8} {'total J':>9}  per GPU: "
        "nvml counter J / sampler vs counter % / util % / mem MiB"
    ]
    for r in OUT.get("runs", []):
        if r["status"] != "completed":
            lines.append(f"{r['label']:<18} {r['status']}: {(r.get('message') or '')[:90]}")
            continue
        per = "; ".join(
            f"{d['nvml_index']}: {d['counter_j']:.0f} / {_num(d['sampler_vs_counter_pct'], '+.2f')}"
            f" / {_num(d['mean_utilization_pct'], '.0f')} / {_num(d['max_memory_used_mb'], '.0f')}"
            for d in r["devices"]
        )
        lines.append(
            f"{r['label']:<18} {r['gpus']!s:<7} {r['tok_s']:>8.1f} {r['j_per_tok']:>8.4f} "
            f"{r['total_energy_j']:>9.0f}  {per}"
        )
    for key in ("study_mgpu-alone", "study_mgpu-beside"):
        for r in OUT.get(key, {}).get("runs", []):
            lines.append(
                f"{key[6:]:<12} {r['name']:<9} tok/s {_num(r.get('tok_s'), '.1f')} J/tok "
                f"{_num(r.get('j_per_tok'), '.4f')} window {_num(r.get('window_s'), '.1f')} s "
                f"warnings {','.join(r.get('warnings', []))}"
            )
    s = OUT.get("neighbours_summary")
    if s:
        for key in ("j_per_tok", "tok_s"):
            d = s[key].get("difference_pct", {})
            lines.append(
                f"beside - alone, {key}: mean {_num(d.get('mean'), '+.2f')} % "
                f"(95 % CI {_num(d.get('ci95_low'), '+.2f')} .. {_num(d.get('ci95_high'), '+.2f')}"
                f" %, n = {d.get('n')})"
            )
    return "\n".join(lines)


def package_versions() -> dict[str, str | None]:
    """Versions of the engine packages, read without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "accelerate", "psutil", "nvidia-ml-py"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--neighbour-worker":
        neighbour_main(*sys.argv[2:6])
        return 0
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--part", choices=("single", "split", "neighbours"), required=True)
    ap.add_argument("--model", default="synthetic/llama-8b")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--output-tokens", type=int, default=128)
    ap.add_argument("--min-window-s", type=float, default=30.0)
    ap.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument(
        "--neighbour",
        choices=("process", "study"),
        default="process",
        help="neighbours: a second process of ours (paired, interleaved), or llem's scheduler",
    )
    ap.add_argument("--budget-s", type=float, default=540.0, help="start no run after this")
    ap.add_argument(
        "--run-estimate-s", type=float, default=90.0, help="time one run needs (budget checks)"
    )
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/llem-multigpu")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/llem-multigpu-work"))
    ap.add_argument("--cpu-smoke", action="store_true")
    args = ap.parse_args()
    if args.cpu_smoke:
        args.run_estimate_s = min(args.run_estimate_s, 20.0)
        # the fake GPUs, named the way a scheduler or a user names GPUs: by UUID
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(SMOKE_UUIDS)
    os.environ.update(NVLINK_ENV)  # inherited by every experiment and neighbour process
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    gc.SAVE_PATH = args.out / f"multigpu_{args.part}.json"
    OUT.update(
        {
            "part": args.part,
            "argv": sys.argv,
            "cpu_smoke": args.cpu_smoke,
            "nvlink_env": NVLINK_ENV,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
    )
    OUT["versions"] = package_versions()
    if OUT["versions"].get("accelerate") is None:
        print(
            "accelerate is not installed: the device_map runs will fail (a synthetic model is "
            "dispatched over GPUs by accelerate); install its wheel first",
            flush=True,
        )
    if not args.cpu_smoke:
        try:
            smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
            OUT["nvidia_smi_L"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            OUT["nvidia_smi_L"] = f"unavailable: {exc}"
    gc.save()
    parts = {"single": part_single, "split": part_split, "neighbours": part_neighbours}
    if args.part == "neighbours" and args.neighbour == "study":
        parts["neighbours"] = part_neighbours_study
    parts[args.part](args)
    gc.save()
    print(table(), flush=True)
    print(f"part {args.part} done in {OUT['wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
