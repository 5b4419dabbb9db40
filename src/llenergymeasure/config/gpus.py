"""The ``gpus`` field of an experiment: which GPUs it holds, and the checks on it.

``gpus`` lists CUDA indices as the process that starts the experiment (``llem``) sees them: 0..N-1
when ``CUDA_VISIBLE_DEVICES`` is unset, else positions in that list. The runner hands the
experiment exactly those GPUs (``runners/placement.py``), so inside it they are numbered 0..k-1.

How many GPUs an experiment holds is configuration (it changes the energy); which physical GPUs
they are is placement, not configuration: ``config_hash`` records only ``gpu_count``.
"""

from __future__ import annotations

from typing import Any

#: most GPUs one experiment may list (the largest tensor x pipeline parallel product allowed)
MAX_GPUS = 64


def check_gpu_list(value: list[int] | None) -> list[int] | None:
    """Non-empty, each index >= 0, each GPU once; ``ValueError`` naming the problem otherwise."""
    if value is None:
        return None
    if not value:
        raise ValueError(
            "an empty list selects no GPU; list CUDA indices, e.g. gpus: [0] or gpus: [0, 1], or leave "
            "gpus out for the runner's default"
        )
    if len(value) > MAX_GPUS:
        raise ValueError(f"{len(value)} GPUs listed; at most {MAX_GPUS} are supported")
    negative = [g for g in value if g < 0]
    if negative:
        raise ValueError(
            f"{value} has negative index {negative[0]}; CUDA indices are 0, 1, ... as llem "
            "sees them (positions in CUDA_VISIBLE_DEVICES when that is set)"
        )
    twice = sorted({g for g in value if value.count(g) > 1})
    if twice:
        raise ValueError(f"{value} lists GPU {twice[0]} more than once; give each GPU once")
    return value


def hashable_gpus(data: dict[str, Any], gpus: list[int] | None) -> None:
    """Replace ``gpus`` in a config's hashable data by ``gpu_count`` (absent when ``gpus`` is)."""
    data.pop("gpus", None)
    if gpus is not None:
        data["gpu_count"] = len(gpus)
