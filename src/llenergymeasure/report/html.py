"""The study report: one self-contained ``report.html`` plus the figures as PNG files beside it.

Self-contained means that the file opens offline, on a machine that never saw the study: the CSS is
inline, every figure is embedded as a base64 PNG, and nothing is loaded from anywhere (no script,
font, stylesheet or image reference to a network location). The same PNGs are written to
``figures/`` for papers and slides.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.report.data import (
    ENERGY_METRIC,
    METRIC_LABELS,
    THROUGHPUT_METRIC,
    ConfigPoint,
    axis_value,
    config_points,
    energy_unavailable_reasons,
    latency_metric,
    swept_axes,
)
from llenergymeasure.results.export import environment_values, require, run_identity, run_warnings
from llenergymeasure.results.models import MetricStats, StudyResult

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"

#: metrics of the summary table, in order; a column is shown when any config has a value.
SUMMARY_TABLE_METRICS = (
    "energy_per_output_token_j",
    "energy_per_output_token_adjusted_j",
    "total_energy_j",
    "mean_power_w",
    "output_tokens_per_s",
    "ttft_p50_ms",
    "itl_p50_ms",
    "request_latency_p50_ms",
    "duration_s",
)

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       margin: 0 auto; max-width: 1250px; padding: 0 1.5em 3em; color: #222; font-size: 14px; }
h1 { font-size: 1.5em; margin: 1em 0 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #777; }
.banner { padding: 0.6em 0.9em; border-radius: 4px; margin: 0.8em 0; }
.warn { background: #fff4e0; border: 1px solid #f0b040; }
.bad { background: #fdecea; border: 1px solid #e57373; }
.ok { background: #eef7ee; border: 1px solid #8bc48b; }
figure { margin: 0.6em 0 1.2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 0.4em 1em; }
code { background: #f5f5f5; padding: 0 3px; }
.scroll { overflow-x: auto; }
details { margin: 0.4em 0; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt_number(value: float, significant: int = 4) -> str:
    """``significant`` digits without an exponent between 1e-3 and 1e7 (143771, not 1.438e+05)."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e7:
        decimals = max(0, significant - 1 - math.floor(math.log10(magnitude)))
        text = f"{value:.{decimals}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{value:.{significant - 1}e}"


def _num(value: Any) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return _e(value)
    if isinstance(value, int):
        return _e(value)
    if isinstance(value, float):
        return _e(fmt_number(value))
    return _e(value)


def _stat_cell(stats: MetricStats) -> str:
    if stats.n == 0 or stats.mean is None:
        return '<td class="num"><span class="muted">—</span></td>'
    mean = fmt_number(stats.mean)
    if stats.ci95_half_width is None or stats.ci95_low is None or stats.ci95_high is None:
        return (
            f'<td class="num" title="a single run: no confidence interval">{_e(mean)}'
            f' <span class="muted">(n={stats.n})</span></td>'
        )
    title = (
        f"95 % CI [{fmt_number(stats.ci95_low)}, {fmt_number(stats.ci95_high)}], n={stats.n}"
        + (f", sd={fmt_number(stats.std, 3)}" if stats.std is not None else "")
        + (f", cv={stats.cv:.1%}" if stats.cv is not None else "")
    )
    return (
        f'<td class="num" title="{_e(title)}">{_e(mean)} ± '
        f'{_e(fmt_number(stats.ci95_half_width, 2))} <span class="muted">(n={stats.n})</span></td>'
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of cells that are HTML already (callers escape); a cell may bring its own ``<td>``."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            cells.append(cell if cell.startswith("<td") else f"<td>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_table(items: Iterable[tuple[str, Any]]) -> str:
    rows = [(f"<th>{_e(k)}</th>", f"<td>{_num(v)}</td>") for k, v in items]
    return "<table><tbody>" + "".join(f"<tr>{a}{b}</tr>" for a, b in rows) + "</tbody></table>"


class _Figures:
    """Writes each figure to ``figures/`` and returns the HTML that embeds the same bytes."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.written: list[Path] = []
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, png: bytes, alt: str, caption: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") + ".png"
        path = self.directory / safe
        tmp = path.with_name(f".{safe}.tmp")
        tmp.write_bytes(png)
        tmp.replace(path)
        self.written.append(path)
        data = base64.b64encode(png).decode("ascii")
        return (
            f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{caption} <span class="muted">({_e(FIGURES_DIR + "/" + safe)})</span>'
            "</figcaption></figure>"
        )

    def remove_stale(self) -> None:
        """Drop PNGs of an earlier generation that this one did not write (e.g. renamed runs)."""
        keep = set(self.written)
        for old in self.directory.glob("*.png"):
            if old not in keep:
                old.unlink(missing_ok=True)


# -- sections -------------------------------------------------------------------------------------


def _header(study: StudyResult, study_dir: Path, points: Sequence[ConfigPoint]) -> str:
    parts = [f"<h1>Study report: {_e(study.name)}</h1>"]
    n_failed = len(study.failures)
    if study.interrupted:
        parts.append(
            '<div class="banner bad">This study did not finish: some planned runs never ran. '
            f"Resume it with <code>llem run --resume {_e(study_dir)}</code>, then "
            f"<code>llem report {_e(study_dir)}</code>.</div>"
        )
    if n_failed:
        parts.append(
            f'<div class="banner bad">{n_failed} run(s) failed: see <a href="#failures">failures</a>.</div>'
        )
    n_warn = sum(len(run_warnings(r)) for r in study.runs)
    if n_warn:
        parts.append(
            f'<div class="banner warn">{n_warn} validity warning(s) in {sum(1 for r in study.runs if run_warnings(r))} '
            'run(s): see <a href="#warnings">validity warnings</a> before using these numbers.</div>'
        )
    reasons = energy_unavailable_reasons(study)
    if reasons:
        parts.append(
            '<div class="banner warn">Energy was not measured for some runs: '
            + "; ".join(_e(r) for r in reasons)
            + "</div>"
        )
    parts.append(
        _kv_table(
            [
                ("study directory", str(study_dir)),
                ("study design hash", study.study_design_hash),
                ("started", study.started_at),
                ("ended", study.ended_at),
                ("configs", len(points)),
                ("runs completed", len(study.runs)),
                ("runs failed", n_failed),
                ("llenergymeasure", study.llenergymeasure_version),
            ]
        )
    )
    if study.measurement_protocol:
        parts.append("<h3>Measurement protocol</h3>")
        parts.append(_kv_table(sorted(study.measurement_protocol.items())))
    if study.runners:
        parts.append("<h3>Runners</h3>")
        parts.append(
            _table(
                ["backend", "runner", "image", "chosen by"],
                [
                    (_e(b), _e(r.get("kind")), _num(r.get("image")), _e(r.get("source")))
                    for b, r in sorted(study.runners.items())
                ],
            )
        )
    return "\n".join(parts)


def _summary(points: Sequence[ConfigPoint], axes: Sequence[str]) -> str:
    metrics = [m for m in SUMMARY_TABLE_METRICS if any(p.stats(m).n > 0 for p in points)]
    axes = [a for a in axes if a != "backend"]  # already a column of its own
    headers = ["key", "config", "backend", *axes, "runs ok", "failed"]
    headers += [METRIC_LABELS.get(m, m) for m in metrics]
    rows = []
    for p in points:
        row = [f"<b>{_e(p.key)}</b>", _e(p.label), _e(p.backend)]
        for axis in axes:
            try:
                row.append(_e(axis_value(p.config, axis)))
            except KeyError:
                row.append('<span class="muted">n/a</span>')
        row += [f'<td class="num">{len(p.runs)}</td>', f'<td class="num">{p.n_failed}</td>']
        row += [_stat_cell(p.stats(m)) for m in metrics]
        rows.append(row)
    note = (
        '<p class="muted">Mean over cycles ± half-width of the Student-t 95 % confidence interval '
        "(hover a cell for the interval, SD and CV). A single run has no interval. Config hashes: "
        + ", ".join(f"{_e(p.key)} = <code>{_e(p.config_hash[:12])}</code>" for p in points)
        + "</p>"
    )
    return (
        '<h2 id="summary">Summary</h2><div class="scroll">'
        + _table(headers, rows)
        + "</div>"
        + note
    )


def _axes_section(
    points: Sequence[ConfigPoint], axes: Sequence[str], figs: _Figures, energy_note: str | None
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
        + ", ".join(f"<code>{_e(a)}</code>" for a in axes)
        + ". One series per backend and per combination of the other axes; points are means over "
        "cycles with 95 % confidence intervals, open circles are single runs.</p>"
    )
    for axis in axes:
        png = axis_figure(points, axis, axes, energy_note)
        parts.append(f"<h3>{_e(axis)}</h3>")
        parts.append(
            figs.add(
                f"axis_{axis}",
                png,
                alt=f"energy per output token and throughput against {axis}",
                caption=f"Energy per output token (left) and output tokens per second (right) against <code>{_e(axis)}</code>.",
            )
        )
    return "\n".join(parts)


def _pareto_section(points: Sequence[ConfigPoint], figs: _Figures, energy_note: str | None) -> str:
    from llenergymeasure.report.figures import pareto_figure

    parts = ['<h2 id="pareto">Pareto fronts</h2>']
    with_energy = [p for p in points if p.stats(ENERGY_METRIC).mean is not None]
    if not with_energy:
        parts.append(
            f"<p>No config has an energy figure, so there is no front to draw. {_e(energy_note or '')}</p>"
        )
        return "\n".join(parts)
    parts.append(
        "<p>Configs that no other config beats on both energy per output token and the other "
        "measure are on the front (bold keys, dashed line). Means over cycles, 95 % CIs as bars.</p>"
    )
    png, keys = pareto_figure(points, THROUGHPUT_METRIC, maximise_x=True)
    parts.append(
        figs.add(
            "pareto_throughput",
            png,
            alt="Pareto front of energy per token against throughput",
            caption="Energy per output token against throughput. Front: "
            + _e(", ".join(keys))
            + ".",
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
                caption=f"Energy per output token against {_e(METRIC_LABELS.get(lat, lat))}. Front: "
                + _e(", ".join(keys))
                + ".",
            )
        )
    return "\n".join(parts)


def _power_section(
    study: StudyResult, study_dir: Path, points: Sequence[ConfigPoint], figs: _Figures
) -> str:
    from llenergymeasure.report.figures import power_figure, read_power_series
    from llenergymeasure.results.loading import manifest_run_dirs

    parts = [
        '<h2 id="power">Power time series</h2>',
        "<p>Sampled power of each measured GPU; the shaded band is the measured window "
        "(t = 0 to its duration), dashed lines the idle baseline.</p>",
    ]
    folders = manifest_run_dirs(study_dir)
    key_of = {p.config_hash: p for p in points}
    missing: list[tuple[str, str]] = []
    blocks: list[str] = []
    for r in sorted(study.runs, key=lambda r: run_identity(r)[0]):
        run_id = run_identity(r)[0]
        folder = folders.get(run_id, study_dir / run_id)
        name = r.timeseries_file
        if name is None:
            missing.append((run_id, f"meter {r.energy.meter} wrote no time series"))
            continue
        path = folder / name
        if not path.exists():
            missing.append((run_id, f"{name} not found in {folder.name}/"))
            continue
        try:
            series = read_power_series(path)
        except (OSError, ValueError) as exc:
            missing.append((run_id, str(exc)))
            continue
        if not series:
            missing.append((run_id, f"{name} holds no power samples"))
            continue
        idle = r.baseline.idle_power_w if r.baseline is not None and r.baseline.available else {}
        point = key_of.get(r.config_hash)
        title = f"{run_id} · {point.key + ' ' if point else ''}{r.config.label()}"
        png = power_figure(series, r.duration_s, dict(idle), title)
        blocks.append(
            figs.add(
                f"power_{run_id}",
                png,
                alt=f"power over time of run {run_id}",
                caption=f"Run <code>{_e(run_id)}</code>: measured window {r.duration_s:.3g} s.",
            )
        )
    if blocks:
        parts.append('<div class="grid">' + "".join(blocks) + "</div>")
    if missing:
        parts.append(
            f"<p>{len(missing)} run(s) without a power time series:</p>"
            + _table(["run", "why"], [(f"<code>{_e(a)}</code>", _e(b)) for a, b in missing])
        )
    return "\n".join(parts)


def _runs_section(study: StudyResult, points: Sequence[ConfigPoint]) -> str:
    key_of = {p.config_hash: p.key for p in points}
    rows = []
    for r in sorted(study.runs, key=lambda r: run_identity(r)[0]):
        run_id, cycle = run_identity(r)
        warns = run_warnings(r)
        rows.append(
            (
                f"<code>{_e(run_id)}</code>",
                _e(key_of.get(r.config_hash, "")),
                f'<td class="num">{_num(cycle)}</td>',
                f'<td class="num">{_num(r.duration_s)}</td>',
                f'<td class="num">{_num(r.output_tokens)}</td>',
                f'<td class="num">{_num(r.output_tokens_per_s)}</td>',
                f'<td class="num">{_num(r.total_energy_j)}</td>',
                f'<td class="num">{_num(r.energy_per_output_token_j)}</td>',
                _e(r.energy.meter),
                _e(", ".join(sorted({w.code for w in warns}))) if warns else "",
            )
        )
    return '<h2 id="runs">Runs</h2>' + _table(
        [
            "run",
            "config",
            "cycle",
            "window (s)",
            "output tokens",
            "tokens / s",
            "energy (J)",
            "energy / token (J)",
            "meter",
            "warnings",
        ],
        rows,
    )


def _warnings_section(study: StudyResult, points: Sequence[ConfigPoint]) -> str:
    key_of = {p.config_hash: p.key for p in points}
    rows = []
    for r in sorted(study.runs, key=lambda r: run_identity(r)[0]):
        for w in run_warnings(r):
            rows.append(
                (
                    f"<code>{_e(run_identity(r)[0])}</code>",
                    _e(key_of.get(r.config_hash, "")),
                    f"<code>{_e(w.code)}</code>",
                    _e(w.severity),
                    _num(w.device),
                    _e(w.message),
                )
            )
    parts = ['<h2 id="warnings">Validity warnings</h2>']
    if not rows:
        parts.append('<div class="banner ok">No run raised a validity warning.</div>')
    else:
        parts.append(_table(["run", "config", "code", "severity", "GPU", "message"], rows))
    return "\n".join(parts)


def _failures_section(study: StudyResult, points: Sequence[ConfigPoint]) -> str:
    key_of = {p.config_hash: p.key for p in points}
    parts = ['<h2 id="failures">Failures and skipped sweep points</h2>']
    if study.failures:
        parts.append(
            _table(
                ["run", "config", "cycle", "status", "phase", "error", "message"],
                [
                    (
                        f"<code>{_e(f.run_id)}</code>",
                        _e(key_of.get(f.config_hash, f.config_hash[:8])),
                        f'<td class="num">{f.cycle}</td>',
                        _e(f.status),
                        _num(f.phase),
                        _num(f.error_type),
                        _e(f.message),
                    )
                    for f in study.failures
                ],
            )
        )
    else:
        parts.append("<p>No run failed.</p>")
    if study.invalid_points:
        parts.append("<p>Sweep points that were not run:</p><ul>")
        parts.extend(f"<li>{_e(p)}</li>" for p in study.invalid_points)
        parts.append("</ul>")
    return "\n".join(parts)


def _environment_section(study: StudyResult) -> str:
    env: EnvironmentSnapshot | None = study.environment or (
        study.runs[0].environment if study.runs else None
    )
    parts = ['<h2 id="environment">Environment</h2>']
    if env is None:
        parts.append("<p>No environment snapshot was recorded.</p>")
        return "\n".join(parts)
    source = "the study controller" if study.environment is not None else "the first run"
    parts.append(f'<p class="muted">Snapshot taken by {source} at {_e(env.captured_at)}.</p>')
    data = env.model_dump(mode="json")
    scalars = [
        (k, v)
        for k, v in data.items()
        if k not in ("gpus", "packages", "probe_errors", "captured_at")
    ]
    parts.append(_kv_table(scalars))
    if env.gpus:
        parts.append("<h3>GPUs</h3>")
        cols = list(env.gpus[0].model_dump().keys())
        parts.append(_table(cols, [[_num(v) for v in g.model_dump().values()] for g in env.gpus]))
    if env.packages:
        parts.append("<h3>Packages</h3>" + _kv_table(sorted(env.packages.items())))
    if env.probe_errors:
        parts.append(
            "<details><summary>Probes that could not answer "
            f"({len(env.probe_errors)})</summary>"
            + _kv_table(sorted(env.probe_errors.items()))
            + "</details>"
        )
    # The runs' own snapshots should agree with each other; show any field where they do not.
    differing: dict[str, set[str]] = {}
    for r in study.runs:
        for col, value in environment_values(r.environment).items():
            differing.setdefault(col, set()).add(repr(value))
    diffs = [(c[len("env.") :], ", ".join(sorted(v))) for c, v in differing.items() if len(v) > 1]
    if diffs:
        parts.append(
            '<div class="banner warn">The runs\' environment snapshots differ in these fields:</div>'
            + _kv_table(diffs)
        )
    elif study.runs:
        parts.append(
            f"<p>All {len(study.runs)} runs' environment snapshots agree on the key fields.</p>"
        )
    return "\n".join(parts)


def _document(title: str, body: str) -> str:
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("summary", "Summary"),
            ("axes", "Swept axes"),
            ("pareto", "Pareto"),
            ("power", "Power"),
            ("runs", "Runs"),
            ("warnings", "Warnings"),
            ("failures", "Failures"),
            ("environment", "Environment"),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<nav>{nav}</nav>\n{body}\n"
        '<p class="muted">Written by llenergymeasure. This file loads nothing from the network; the '
        "figures are embedded and also saved under figures/.</p></body></html>\n"
    )


def generate_report(study: StudyResult, study_dir: Path) -> Path:
    """Write ``report.html`` and ``figures/*.png`` into ``study_dir``; returns the report's path.

    Needs matplotlib (the ``[report]`` extra). Regenerating replaces the previous report and
    removes figures it no longer draws.
    """
    from llenergymeasure.results.io import atomic_write_text

    require("matplotlib")
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise FileNotFoundError(f"study directory {str(study_dir)!r} does not exist")
    figs = _Figures(study_dir / FIGURES_DIR)
    points = config_points(study)
    axes = swept_axes([p.config for p in points])
    reasons = energy_unavailable_reasons(study)
    energy_note = ("Energy was not measured: " + "; ".join(reasons)) if reasons else None
    body = "\n".join(
        [
            _header(study, study_dir, points),
            _summary(points, axes),
            _axes_section(points, axes, figs, energy_note),
            _pareto_section(points, figs, energy_note),
            _power_section(study, study_dir, points, figs),
            _runs_section(study, points),
            _warnings_section(study, points),
            _failures_section(study, points),
            _environment_section(study),
        ]
    )
    figs.remove_stale()
    return atomic_write_text(
        study_dir / REPORT_FILE, _document(f"{study.name} — llenergymeasure report", body)
    )
