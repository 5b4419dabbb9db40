"""Lines ``llem run`` and ``llem run --dry-run`` print above the plan: what will surprise.

- ``--runner`` that lost to an env var or the user config (the source that won, how to change it);
- a model sized for a GPU about to run on a machine without one;
- a run on a machine without a GPU records no energy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.models.presets import gpu_sized
from llenergymeasure.runners.resolution import ResolvedRunner, cli_runner_overrides

QUICKSTART_CPU = "examples/study-cpu.yaml"


def no_gpu_lines(configs: Iterable[ExperimentConfig], energy_backend: str) -> list[str]:
    """On a machine without a GPU: each GPU-sized model, and that energy is not recorded."""
    lines = []
    for model in sorted({c.model for c in configs}):
        n = gpu_sized(model)
        if n is not None:
            lines.append(
                f"{model} ({n / 1e9:.1f} B parameters) is sized for a GPU and this machine has "
                "none: on the CPU each run loads and warms up for minutes before its window; "
                f"synthetic/tiny-llama fits a laptop CPU (see {QUICKSTART_CPU})"
            )
    if energy_backend != "none":
        lines.append(
            "no GPU here: this run records no energy (the meter falls back to none, each result "
            "says why); throughput and latency are measured"
        )
    else:
        lines.append(
            "energy_backend is none: no energy is recorded; throughput and latency are measured"
        )
    return lines


def plan_notes(
    configs: list[ExperimentConfig],
    runners: Mapping[str, ResolvedRunner],
    cli_runner: str | None,
    gpu_count: int,
    energy_backend: str,
) -> list[str]:
    """Every note for this plan (``gpu_count``: NVIDIA GPUs on this host)."""
    lines = cli_runner_overrides(runners, cli_runner)
    on_this_host = [r for r in runners.values() if r.kind != "slurm"]
    if gpu_count == 0 and on_this_host:
        lines += no_gpu_lines(configs, energy_backend)
    return lines


def host_gpus() -> int:
    from llenergymeasure.runners.docker.container_spec import host_gpu_count

    return host_gpu_count()
