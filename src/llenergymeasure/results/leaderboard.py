"""Leaderboard export: per (model, GPU), the Pareto fronts of energy per token against throughput
and against latency, over every configuration in the archive.

A point is one configuration of one study (the archive's ``configs`` view: means and 95 % CIs over
that study's cycles); configurations of different studies are separate points, so a point never
mixes environments. Each point carries its study directory, config hash, run ids and run
directories, so any number in a leaderboard can be traced to the ``result.json`` files behind it.
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
from llenergymeasure.results.archive import Archive
from llenergymeasure.results.io import atomic_write_text
from llenergymeasure.results.pareto import pareto_front

ENERGY = "energy_per_output_token_j"
THROUGHPUT = "output_tokens_per_s"
LATENCY = "ttft_p50_ms"

#: the per-point fields of the CSV, in order.
POINT_FIELDS = (
    "model",
    "gpu",
    "study_name",
    "study_dir",
    "config_hash",
    "config_label",
    "backend",
    "precision",
    "batch_size",
    "n_runs",
    *(f"{m}_{s}" for m in (ENERGY, THROUGHPUT, LATENCY) for s in ("mean", "ci95_low", "ci95_high")),
    "on_throughput_front",
    "on_latency_front",
    "run_ids",
    "run_dirs",
)


def _gpu_label(count: Any, model: Any) -> str:
    return f"{count}x {model}" if model else "no GPU"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "none"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def leaderboards(archive: Archive) -> list[dict[str, Any]]:
    """One leaderboard per (model, GPU) found in the archive, each with its points and fronts."""
    stats = [
        f"{m}_{s}" for m in (ENERGY, THROUGHPUT, LATENCY) for s in ("mean", "ci95_low", "ci95_high")
    ]
    cols = ", ".join(f'"{c}"' for c in stats)
    rows = archive.records(
        'SELECT "study.dir" AS study_dir, "study.name" AS study_name, config_hash, config_label, '
        '"config.model" AS model, "config.backend" AS backend, "config.precision" AS precision, '
        '"config.batch_size" AS batch_size, "env.gpu_model" AS gpu_model, '
        f'"env.gpu_count" AS gpu_count, n_runs, run_ids, run_dirs, {cols} '
        'FROM configs ORDER BY "config.model", "env.gpu_model", "study.dir", config_label'
    )
    boards: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        gpu = _gpu_label(r.pop("gpu_count"), r.pop("gpu_model"))
        point = {"model": r["model"], "gpu": gpu, **r}
        point["run_ids"] = (r["run_ids"] or "").split(";") if r["run_ids"] else []
        point["run_dirs"] = (r["run_dirs"] or "").split(";") if r["run_dirs"] else []
        boards.setdefault((str(r["model"]), gpu), []).append(point)
    out = []
    for (model, gpu), points in boards.items():
        with_energy = [p for p in points if _finite(p[f"{ENERGY}_mean"])]
        excluded = [
            {
                "study_dir": p["study_dir"],
                "config_hash": p["config_hash"],
                "reason": "no energy per output token (energy was not measured in its runs)",
            }
            for p in points
            if not _finite(p[f"{ENERGY}_mean"])
        ]
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
        out.append(
            {
                "model": model,
                "gpu": gpu,
                "generated_by": f"llenergymeasure {__version__}",
                "roots": [str(r) for r in archive.roots],
                "metrics": {
                    "energy": f"{ENERGY} (J per generated token, mean over the study's cycles)",
                    "throughput": f"{THROUGHPUT} (generated tokens per second)",
                    "latency": f"{LATENCY} (median time to first token, ms)",
                },
                "points": with_energy,
                "throughput_front": fronts["throughput"],
                "latency_front": fronts["latency"],
                "excluded": excluded,
            }
        )
    return out


def write_leaderboards(
    archive: Archive, out_dir: Path, formats: tuple[str, ...] = ("json", "csv")
) -> list[Path]:
    """Write ``leaderboard_<model>_<gpu>.json`` / ``.csv`` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for board in leaderboards(archive):
        stem = f"leaderboard_{_slug(board['model'])}_{_slug(board['gpu'])}"
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
