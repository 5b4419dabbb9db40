"""Planning: experiments x cycles in the study's order, with the gap before each run."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.user import DEFAULT_CONFIG_GAP_S, DEFAULT_CYCLE_GAP_S, UserConfig


@dataclass(frozen=True)
class PlannedRun:
    """One run: a config in a cycle, at position ``index`` (1-based) of the plan."""

    index: int
    run_id: str
    config_index: int
    config: ExperimentConfig
    cycle: int
    gap_before_s: float
    gap_kind: str  # "none" | "config" | "cycle"


@dataclass(frozen=True)
class Gaps:
    config_gap_s: float
    config_gap_source: str
    cycle_gap_s: float
    cycle_gap_source: str


#: For a plan whose runs alone matter (ids, configs, cycles), not the waits between them: the
#: manifest rebuilt from the run folders on ``--resume``.
NO_GAPS = Gaps(0.0, "none", 0.0, "none")


def resolve_gaps(
    study: StudyConfig,
    user_config: UserConfig | None,
    no_gaps: bool = False,
    n_cycles: int | None = None,
    no_gaps_reason: str | None = None,
) -> Gaps:
    """Study execution block > user config > defaults; ``no_gaps`` (development) zeroes both.

    A single run (one config, one cycle: an experiment file, ``run_experiment``) has no gap to
    leave; its source says so, not ``--no-gaps``, which nobody passed. ``no_gaps_reason`` names
    who else zeroed them (an experiment file run over several cycles), ``--no-gaps`` otherwise.
    """
    if no_gaps:
        single = len(study.expand()) == 1 and (n_cycles or study.execution.n_cycles) == 1
        why = "single run (no gap to leave)" if single else (no_gaps_reason or "--no-gaps")
        return Gaps(0.0, why, 0.0, why)

    def pick(
        study_value: float | None, user_value: float | None, default: float, field: str
    ) -> tuple[float, str]:
        if study_value is not None:
            return study_value, f"study:execution.{field}"
        if user_config is not None and user_config.source_path and user_value is not None:
            return user_value, f"user_config:execution.{field}"
        return default, "default"

    ex = study.execution
    uc = user_config.execution if user_config else None
    cg, cgs = pick(
        ex.config_gap_seconds,
        uc.config_gap_seconds if uc else None,
        DEFAULT_CONFIG_GAP_S,
        "config_gap_seconds",
    )
    yg, ygs = pick(
        ex.cycle_gap_seconds,
        uc.cycle_gap_seconds if uc else None,
        DEFAULT_CYCLE_GAP_S,
        "cycle_gap_seconds",
    )
    return Gaps(cg, cgs, yg, ygs)


def run_id_for(index: int, width: int, cycle: int, config: ExperimentConfig) -> str:
    return f"{index:0{width}d}_c{cycle}_{config.backend}_{config.short_hash}"


def order_pairs(
    n_configs: int, n_cycles: int, order: str, seed: int | None
) -> list[tuple[int, int]]:
    """(config index, cycle) pairs in execution order; cycles are 1-based."""
    if order == "sequential":
        return [(c, y) for c in range(n_configs) for y in range(1, n_cycles + 1)]
    if order == "interleaved":
        return [(c, y) for y in range(1, n_cycles + 1) for c in range(n_configs)]
    if order == "shuffled":
        rng = random.Random(0 if seed is None else seed)
        pairs: list[tuple[int, int]] = []
        for y in range(1, n_cycles + 1):
            idx = list(range(n_configs))
            rng.shuffle(idx)
            pairs.extend((c, y) for c in idx)
        return pairs
    raise ValueError(f"unknown cycle_order {order!r}; accepted: sequential, interleaved, shuffled")


def plan_study(
    study: StudyConfig,
    gaps: Gaps,
    n_cycles: int | None = None,
) -> list[PlannedRun]:
    """The ordered list of runs with the gap that precedes each."""
    configs = study.expand()
    cycles = n_cycles if n_cycles is not None else study.execution.n_cycles
    pairs = order_pairs(
        len(configs), cycles, study.execution.cycle_order, study.execution.shuffle_seed
    )
    width = max(3, len(str(len(pairs))))
    plan: list[PlannedRun] = []
    prev: tuple[int, int] | None = None
    for i, (c, y) in enumerate(pairs, start=1):
        if prev is None:
            gap, kind = 0.0, "none"
        elif prev[0] == c or (prev[1] != y and study.execution.cycle_order != "sequential"):
            gap, kind = gaps.cycle_gap_s, "cycle"
        else:
            gap, kind = gaps.config_gap_s, "config"
        plan.append(PlannedRun(i, run_id_for(i, width, y, configs[c]), c, configs[c], y, gap, kind))
        prev = (c, y)
    return plan


def measurement_protocol(study: StudyConfig, gaps: Gaps, n_cycles: int) -> dict[str, Any]:
    """The execution block actually used, stored in the StudyResult (not in the design hash)."""
    return {
        "n_cycles": n_cycles,
        "cycle_order": study.execution.cycle_order,
        "shuffle_seed": study.execution.shuffle_seed
        if study.execution.cycle_order == "shuffled"
        else None,
        "vary_prompt_seed": study.execution.vary_prompt_seed,
        "concurrent_runs": study.execution.concurrent_runs,
        "config_gap_seconds": gaps.config_gap_s,
        "config_gap_source": gaps.config_gap_source,
        "cycle_gap_seconds": gaps.cycle_gap_s,
        "cycle_gap_source": gaps.cycle_gap_source,
    }


def estimate_duration_s(
    plan: list[PlannedRun], per_run_s: float | None = None
) -> tuple[float, float]:
    """(total gap seconds, rough total including ``per_run_s`` per run when given)."""
    gaps_total = sum(r.gap_before_s for r in plan)
    return gaps_total, gaps_total + (per_run_s or 0.0) * len(plan)
