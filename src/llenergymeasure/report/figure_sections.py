"""The report's figure sections: energy against each swept axis, Pareto fronts, power time series
(with a served run's engine state beneath its power).

matplotlib is imported (through ``report.figures``) only when a section is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llenergymeasure.report.data import (
    ENERGY_METRIC,
    METRIC_LABELS,
    THROUGHPUT_METRIC,
    ConfigPoint,
    latency_metric,
)
from llenergymeasure.report.embedded_figures import EmbeddedFigures
from llenergymeasure.report.html_cells import esc, table
from llenergymeasure.results.export_rows import run_identity
from llenergymeasure.results.models import ExperimentResult, StudyResult


def axes_section(
    points: Sequence[ConfigPoint],
    axes: Sequence[str],
    figs: EmbeddedFigures,
    energy_note: str | None,
) -> str:
    from llenergymeasure.report.figures import axis_figure

    parts = ['<h2 id="axes">Energy per output token against each swept axis</h2>']
    if not axes:
        parts.append(
            "<p>Every config of this study has the same settings apart from its label, so there is "
            "no swept axis to plot. The summary table holds the figures.</p>"
        )
        return "\n".join(parts)
    parts.append(
        "<p>Swept axes (config fields that differ between configs): "
        + ", ".join(f"<code>{esc(a)}</code>" for a in axes)
        + ". One series per backend and per combination of the other axes; points are means over "
        "cycles with 95 % confidence intervals, open circles are single runs.</p>"
    )
    for axis in axes:
        png = axis_figure(points, axis, axes, energy_note)
        parts.append(f"<h3>{esc(axis)}</h3>")
        parts.append(
            figs.add(
                f"axis_{axis}",
                png,
                alt=f"energy per output token and throughput against {axis}",
                caption=f"Energy per output token (left) and output tokens per second (right) against <code>{esc(axis)}</code>.",
            )
        )
    return "\n".join(parts)


def _overlap_note(points: Sequence[ConfigPoint], x_metric: str, keys: Sequence[str]) -> str:
    from llenergymeasure.report.data import overlapping_pairs

    pairs = overlapping_pairs(points, x_metric, keys)
    if not pairs:
        return ""
    return (
        " CIs overlap on both axes (not told apart at 95 %): "
        + esc(", ".join(f"{a} ≈ {b}" for a, b in pairs))
        + "."
    )


def pareto_section(
    points: Sequence[ConfigPoint], figs: EmbeddedFigures, energy_note: str | None
) -> str:
    from llenergymeasure.report.figures import pareto_figure

    parts = ['<h2 id="pareto">Pareto fronts</h2>']
    with_energy = [p for p in points if p.stats(ENERGY_METRIC).mean is not None]
    if not with_energy:
        parts.append(
            f"<p>No config has an energy figure, so there is no front to draw. {esc(energy_note or '')}</p>"
        )
        return "\n".join(parts)
    parts.append(
        "<p>Configs that no other config beats on both energy per output token and the other "
        "measure are on the front (bold keys, dashed line). Means over the valid cycles, 95 % CIs "
        "as bars; invalid runs are left out. A front config marked ≈ has a 95 % CI overlapping "
        "another config's on both axes: the data do not tell the two apart.</p>"
    )
    png, keys = pareto_figure(points, THROUGHPUT_METRIC, maximise_x=True)
    parts.append(
        figs.add(
            "pareto_throughput",
            png,
            alt="Pareto front of energy per token against throughput",
            caption="Energy per output token against throughput. Front: "
            + esc(", ".join(keys))
            + "."
            + _overlap_note(points, THROUGHPUT_METRIC, keys),
        )
    )
    lat = latency_metric(points)
    if lat is None:
        parts.append(
            "<p>No config reported per-request latencies, so there is no latency front.</p>"
        )
    else:
        png, keys = pareto_figure(points, lat, maximise_x=False)
        parts.append(
            figs.add(
                "pareto_latency",
                png,
                alt=f"Pareto front of energy per token against {lat}",
                caption=f"Energy per output token against {esc(METRIC_LABELS.get(lat, lat))}. Front: "
                + esc(", ".join(keys))
                + "."
                + _overlap_note(points, lat, keys),
            )
        )
    return "\n".join(parts)


def _power_series(r: ExperimentResult, folder: Path) -> tuple[Any, str | None]:
    """The run's power series, or None and why there is none."""
    from llenergymeasure.report.figures import read_power_series

    name = r.timeseries_file
    if name is None:
        return None, f"meter {r.energy.meter} wrote no time series"
    path = folder / name
    if not path.exists():
        return None, f"{name} not found in {folder.name}/"
    try:
        series = read_power_series(path)
    except (OSError, ValueError) as exc:
        return None, str(exc)
    return (series, None) if series else (None, f"{name} holds no power samples")


def _engine_series(r: ExperimentResult, folder: Path) -> tuple[Any, str | None]:
    """A served run's engine series (``engine_telemetry.csv``), or None and why there is none."""
    from llenergymeasure.report.engine_panel import read_engine_series

    tel = r.engine_telemetry
    if tel is None:
        return None, None
    if tel.timeseries_file is None:
        return None, f"the server's /metrics gave no readable scrape ({tel.last_scrape_error})"
    path = folder / tel.timeseries_file
    try:
        series = read_engine_series(path)
    except FileNotFoundError:
        return None, f"{tel.timeseries_file} not found in {folder.name}/"
    except (OSError, ValueError) as exc:
        return None, str(exc)
    return (series, None) if series.t_s else (None, f"{tel.timeseries_file} holds no scrapes")


def power_section(
    study: StudyResult, study_dir: Path, points: Sequence[ConfigPoint], figs: EmbeddedFigures
) -> str:
    from llenergymeasure.report.engine_panel import telemetry_caption
    from llenergymeasure.report.figures import power_figure
    from llenergymeasure.results.loading import manifest_run_dirs

    parts = [
        '<h2 id="power">Power time series</h2>',
        "<p>Sampled power of each measured GPU; the shaded band is the measured window "
        "(t = 0 to its duration), dashed lines the idle baseline.</p>",
    ]
    if any(r.engine_telemetry is not None for r in study.runs):
        parts.append(
            "<p>Runs that measured an inference server over HTTP whose "
            "<code>/metrics</code> page was read have the engine's own state beneath their "
            "power, on the same time axis: running and waiting requests, and the share of the "
            "KV cache in use (right axis), scraped once a second.</p>"
        )
    folders = manifest_run_dirs(study_dir)
    key_of = {p.config_hash: p for p in points}
    missing: list[tuple[str, str]] = []
    blocks: list[str] = []
    for r in sorted(study.runs, key=lambda r: run_identity(r)[0]):
        run_id = run_identity(r)[0]
        folder = folders.get(run_id, study_dir / run_id)
        series, no_power = _power_series(r, folder)
        engine, no_engine = _engine_series(r, folder)
        if no_power is not None:
            missing.append((run_id, no_power))
        if no_engine is not None:
            missing.append((run_id, f"engine telemetry: {no_engine}"))
        if series is None and engine is None:
            continue
        idle = r.baseline.idle_power_w if r.baseline is not None and r.baseline.available else {}
        point = key_of.get(r.config_hash)
        name = f"{point.key} {point.label}" if point else r.config.label()
        title = f"{run_id} · {name}"
        png = power_figure(series or {}, r.duration_s, dict(idle), title, engine, no_power)
        caption = f"Run <code>{esc(run_id)}</code>: measured window {r.duration_s:.3g} s."
        if r.engine_telemetry is not None:
            caption += " " + telemetry_caption(r.engine_telemetry)
        blocks.append(
            figs.add(
                f"power_{run_id}",
                png,
                alt=f"power {'and engine state ' if engine is not None else ''}over time of run "
                f"{run_id}",
                caption=caption,
            )
        )
    if blocks:
        parts.append('<div class="grid">' + "".join(blocks) + "</div>")
    if missing:
        parts.append(
            f"<p>{len(missing)} time series missing:</p>"
            + table(["run", "why"], [(f"<code>{esc(a)}</code>", esc(b)) for a, b in missing])
        )
    return "\n".join(parts)
