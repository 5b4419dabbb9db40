"""Leaderboard export: per (model, GPU), the Pareto fronts of energy per token against throughput
and against latency, over every configuration in the archive.

The GPU of a board is what the runs *measured* (``energy.gpus``: the devices of the energy record
with their power limit, e.g. ``1x NVIDIA H100 80GB HBM3 @ 700 W``), not the machine they ran on: a
1-GPU run on an 8-GPU node belongs on a 1-GPU board, and a run at a 400 W cap is not ranked with
runs at 700 W. The machine's GPUs are kept in each point as ``node_gpus``.

A point is one configuration of one study (the archive's ``configs`` view: means and 95 % CIs over
that study's cycles); configurations of different studies are separate points, so a point never
mixes environments. Each point carries its study directory, config hash, run ids and run
directories, so any number in a leaderboard can be traced to the ``result.json`` files behind it.
Points and fronts use valid runs only (the validity gates); runs marked invalid, and configurations
without a valid energy figure, are listed under ``excluded`` with the gates they failed.
The front is ``llenergymeasure.results.pareto.pareto_front``, the one the HTML report draws.
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

from llenergymeasure._version import __version__
from llenergymeasure.results.archive.store import Archive
from llenergymeasure.results.io import atomic_write_text
from llenergymeasure.results.pareto import pareto_front

ENERGY = "energy_per_output_token_j"
THROUGHPUT = "output_tokens_per_s"
LATENCY = "ttft_p50_ms"
#: quality runs (docs/quality.md): accuracy over the tasks with an accuracy-type metric, and
#: joules per correct answer (the quality ranking's key, lower first)
ACCURACY = "quality_accuracy"
PER_CORRECT = "quality_energy_per_correct_j"
RANKED = (ENERGY, THROUGHPUT, LATENCY, ACCURACY, PER_CORRECT)

#: the per-point fields of the CSV, in order.
POINT_FIELDS = (
    "model",
    "gpu",
    "node_gpus",
    "study_name",
    "study_dir",
    "config_hash",
    "config_label",
    "backend",
    "precision",
    "batch_size",
    "n_runs",
    *(f"{m}_{s}" for m in RANKED for s in ("mean", "ci95_low", "ci95_high")),
    "on_throughput_front",
    "on_latency_front",
    "on_quality_front",
    "quality_rank",
    "run_ids",
    "run_dirs",
)


NO_GPU = "no measured GPU"


def _node_label(count: Any, model: Any) -> str:
    """The machine's GPUs (NVML's count and GPU 0's model): information, not the board."""
    return f"{count}x {model}" if model else "no GPU"


def _label_from_lists(row: dict[str, Any]) -> str | None:
    """A run's measured-GPU label from its per-GPU JSON lists (``env.gpus.*``, by NVML index) and
    ``energy.nvml_indices``: for results exported before ``energy.gpus`` existed."""
    indices = [int(i) for i in str(row.get("nvml_indices") or "").split(",") if i.strip()]
    if not indices:
        return None

    def listed(col: str) -> list[Any]:
        try:
            value = json.loads(row.get(col) or "[]")
        except (TypeError, ValueError):
            return []
        return value if isinstance(value, list) else []

    names, limits, enforced = listed("names"), listed("limits"), listed("enforced")
    groups: dict[str, int] = {}
    for i in indices:
        name = names[i] if i < len(names) and names[i] else "unknown GPU"
        limit = enforced[i] if i < len(enforced) and enforced[i] is not None else None
        if limit is None and i < len(limits):
            limit = limits[i]
        key = f"{name} @ {limit:g} W" if limit is not None else f"{name} @ unknown limit"
        groups[key] = groups.get(key, 0) + 1
    return " + ".join(f"{n}x {key}" for key, n in groups.items())


def _measured_gpus(archive: Archive) -> dict[tuple[str, str], dict[str, str]]:
    """(study dir, config hash) -> {run id: the GPUs its energy was measured on and their power
    limit} (``energy.gpus``; rebuilt from the per-GPU lists where an older export lacks it)."""
    rows = archive.records(
        'SELECT "study.dir" AS study_dir, config_hash, run_id, "energy.gpus" AS label, '
        '"energy.nvml_indices" AS nvml_indices, "env.gpus.name" AS names, '
        '"env.gpus.power_limit_w" AS limits, "env.gpus.enforced_power_limit_w" AS enforced '
        "FROM runs ORDER BY run_id"
    )
    out: dict[tuple[str, str], dict[str, str]] = {}
    for r in rows:
        label = r["label"] or _label_from_lists(r) or NO_GPU
        out.setdefault((str(r["study_dir"]), str(r["config_hash"])), {})[str(r["run_id"])] = label
    return out


def _board_gpu(labels: dict[str, str], run_ids: list[str]) -> str:
    """The board of a point: the measured GPUs of the runs behind it (every run when none is
    valid); runs that measured different GPUs give each label, joined by `` | ``."""
    chosen = [labels[i] for i in run_ids if i in labels] or list(labels.values())
    return " | ".join(sorted(set(chosen))) or NO_GPU


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "none"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _invalid_runs(archive: Archive) -> dict[tuple[str, str], dict[str, list[str]]]:
    """(study dir, config hash) -> {run id, and run dir: the validity gates it failed}, for the
    runs marked invalid."""
    rows = archive.records(
        'SELECT "study.dir" AS study_dir, config_hash, run_id, run_dir, failed_gates FROM runs '
        "WHERE valid IS FALSE ORDER BY run_id"
    )
    out: dict[tuple[str, str], dict[str, list[str]]] = {}
    for r in rows:
        gates = [g for g in str(r["failed_gates"] or "").split(",") if g]
        runs = out.setdefault((str(r["study_dir"]), str(r["config_hash"])), {})
        runs[str(r["run_id"])] = gates
        if r["run_dir"]:
            runs[str(r["run_dir"])] = gates
    return out


def _exclusion(point: dict[str, Any], on_board: bool) -> dict[str, Any] | None:
    """What of a configuration the leaderboard leaves out, and why; None when nothing is."""
    invalid: dict[str, list[str]] = point["invalid_runs"]
    gates = sorted({g for gs in invalid.values() for g in gs})
    listed = "; ".join(f"{i} ({', '.join(g) or 'unnamed gate'})" for i, g in invalid.items())
    if on_board and not invalid:
        return None
    if on_board:
        short = "some runs invalid"
        reason = (
            f"{len(invalid)} of {point['n_runs']} runs invalid (failed validity gates: "
            f"{', '.join(gates)}): left out of the point's means: {listed}"
        )
    elif invalid and not point["run_ids"]:
        short = f"every run invalid: {', '.join(gates)}"
        reason = (
            f"every run invalid (failed validity gates: {', '.join(gates)}): "
            f"no valid energy per output token: {listed}"
        )
    else:
        short = "no energy measured"
        reason = "no energy per output token (energy was not measured in its runs)"
    return {
        "study_dir": point["study_dir"],
        "config_hash": point["config_hash"],
        "config_label": point["config_label"],
        "whole_config": not on_board,
        "run_ids": list(invalid) if invalid else point["run_ids"],
        "reason": reason,
        "short_reason": short,
    }


def leaderboards(archive: Archive) -> list[dict[str, Any]]:
    """One leaderboard per (model, GPU) found in the archive, each with its points and fronts."""
    stats = [f"{m}_{s}" for m in RANKED for s in ("mean", "ci95_low", "ci95_high")]
    cols = ", ".join(f'"{c}"' for c in stats)
    rows = archive.records(
        'SELECT "study.dir" AS study_dir, "study.name" AS study_name, config_hash, config_label, '
        '"config.model" AS model, "config.backend" AS backend, "config.precision" AS precision, '
        '"config.batch_size" AS batch_size, "env.gpu_model" AS gpu_model, '
        f'"env.gpu_count" AS gpu_count, n_runs, run_ids, run_dirs, {cols} '
        'FROM configs ORDER BY "config.model", "env.gpu_model", "study.dir", config_label'
    )
    invalid = _invalid_runs(archive)
    measured = _measured_gpus(archive)
    boards: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        node = _node_label(r.pop("gpu_count"), r.pop("gpu_model"))
        key = (str(r["study_dir"]), str(r["config_hash"]))
        run_ids = (r["run_ids"] or "").split(";") if r["run_ids"] else []
        run_dirs = (r["run_dirs"] or "").split(";") if r["run_dirs"] else []
        bad = invalid.get(key, {})
        valid_ids = [i for i in run_ids if i not in bad]
        # the board is the GPUs the runs behind the numbers measured, not the machine's
        gpu = _board_gpu(measured.get(key, {}), valid_ids)
        point = {"model": r["model"], "gpu": gpu, "node_gpus": node, **r}
        # the point's runs are those behind its numbers: the valid ones
        point["run_ids"] = valid_ids
        point["run_dirs"] = [d for d in run_dirs if d not in bad]
        point["invalid_runs"] = {i: bad[i] for i in run_ids if i in bad}
        boards.setdefault((str(r["model"]), gpu), []).append(point)
    out = []
    for (model, gpu), points in boards.items():
        with_energy = [p for p in points if _finite(p[f"{ENERGY}_mean"])]
        excluded = [_exclusion(p, on_board=_finite(p[f"{ENERGY}_mean"])) for p in points]
        excluded = [e for e in excluded if e is not None]
        fronts: dict[str, list[str]] = {}
        for name, metric, maximise in (
            ("throughput", THROUGHPUT, True),
            ("latency", LATENCY, False),
        ):
            usable = [p for p in with_energy if _finite(p[f"{metric}_mean"])]
            idx = pareto_front(
                [(p[f"{metric}_mean"], p[f"{ENERGY}_mean"]) for p in usable], maximise_x=maximise
            )
            on = {id(usable[i]) for i in idx}
            for p in with_energy:
                p[f"on_{name}_front"] = id(p) in on
            fronts[name] = [f"{usable[i]['study_dir']}#{usable[i]['config_hash']}" for i in idx]
        quality_front, quality_ranking = _quality_boards(with_energy)
        out.append(
            {
                "model": model,
                "gpu": gpu,
                "generated_by": f"llenergymeasure {__version__}",
                "roots": [str(r) for r in archive.roots],
                "metrics": {
                    "energy": f"{ENERGY} (J per generated token, mean over the study's valid runs)",
                    "throughput": f"{THROUGHPUT} (generated tokens per second)",
                    "latency": f"{LATENCY} (median time to first token, ms)",
                    "accuracy": f"{ACCURACY} (correct answers / items of the quality tasks)",
                    "per_correct": f"{PER_CORRECT} (J per correct answer of the quality tasks)",
                },
                "points": with_energy,
                "throughput_front": fronts["throughput"],
                "latency_front": fronts["latency"],
                "quality_front": quality_front,
                "quality_ranking": quality_ranking,
                "excluded": excluded,
            }
        )
    return out


def _quality_boards(points: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The accuracy / J-per-token front and the ranking by J per correct answer (lower first),
    over the points with quality figures; marks each point's ``on_quality_front``/``quality_rank``."""

    def key(p: dict[str, Any]) -> str:
        return f"{p['study_dir']}#{p['config_hash']}"

    scored = [p for p in points if _finite(p.get(f"{ACCURACY}_mean"))]
    idx = pareto_front(
        [(p[f"{ACCURACY}_mean"], p[f"{ENERGY}_mean"]) for p in scored], maximise_x=True
    )
    on = {id(scored[i]) for i in idx}
    ranked = sorted(
        (p for p in scored if _finite(p.get(f"{PER_CORRECT}_mean"))),
        key=lambda p: p[f"{PER_CORRECT}_mean"],
    )
    rank = {id(p): k + 1 for k, p in enumerate(ranked)}
    has_quality = {id(p) for p in scored}
    for p in points:
        p["on_quality_front"] = id(p) in on if id(p) in has_quality else None
        p["quality_rank"] = rank.get(id(p))
    return [key(scored[i]) for i in idx], [key(p) for p in ranked]


def board_summary(board: dict[str, Any]) -> str:
    """One line: the board, its entries, and the configs left out with why (grouped).

    ``leaderboard model on GPU: 0 entries; 4 configs excluded (no energy measured)``.
    """
    whole = [e for e in board["excluded"] if e["whole_config"]]
    partial = [e for e in board["excluded"] if not e["whole_config"]]
    n = len(board["points"])
    text = f"{board['model']} on {board['gpu']}: {n} entr{'y' if n == 1 else 'ies'}"
    if whole:
        why: dict[str, int] = {}
        for e in whole:
            why[e["short_reason"]] = why.get(e["short_reason"], 0) + 1
        reasons = ", ".join(f"{k}: {v}" if len(why) > 1 else k for k, v in why.items())
        text += f"; {len(whole)} config{'' if len(whole) == 1 else 's'} excluded ({reasons})"
    if partial:
        n_part = len(partial)
        text += f"; {n_part} entr{'y' if n_part == 1 else 'ies'} with invalid runs left out"
    return text


def write_leaderboards(
    archive: Archive, out_dir: Path, formats: tuple[str, ...] = ("json", "csv")
) -> list[Path]:
    """Write ``leaderboard_<model>_<gpu>.json`` / ``.csv`` into ``out_dir``; returns the paths."""
    return write_boards(leaderboards(archive), out_dir, formats)


def board_stem(board: dict[str, Any]) -> str:
    return f"leaderboard_{_slug(board['model'])}_{_slug(board['gpu'])}"


def write_boards(
    boards: list[dict[str, Any]], out_dir: Path, formats: tuple[str, ...] = ("json", "csv")
) -> list[Path]:
    """Write each board as ``<board_stem>.json`` / ``.csv`` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for board in boards:
        stem = board_stem(board)
        if "json" in formats:
            written.append(
                atomic_write_text(
                    out_dir / f"{stem}.json", json.dumps(board, indent=2, default=str)
                )
            )
        if "csv" in formats:
            import io

            buf = io.StringIO()
            writer = csv.DictWriter(
                buf, fieldnames=list(POINT_FIELDS), lineterminator="\n", extrasaction="ignore"
            )
            writer.writeheader()
            for p in board["points"]:
                row = {k: ("" if p.get(k) is None else p.get(k)) for k in POINT_FIELDS}
                row["run_ids"] = ";".join(p["run_ids"])
                row["run_dirs"] = ";".join(p["run_dirs"])
                writer.writerow(row)
            written.append(atomic_write_text(out_dir / f"{stem}.csv", buf.getvalue()))
    return written
