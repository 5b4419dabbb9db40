"""The report's table sections: header and banners, summary, runs, warnings, failures, environment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.environment.snapshot import EnvironmentSnapshot
from llenergymeasure.report.data import (
    METRIC_LABELS,
    ConfigPoint,
    axis_value,
    energy_unavailable_reasons,
)
from llenergymeasure.report.html_cells import esc, kv_table, num, stat_cell, table
from llenergymeasure.results.campaign_time import campaign_time, describe
from llenergymeasure.results.export_rows import environment_values, run_identity, run_warnings
from llenergymeasure.results.models import StudyResult

#: metrics of the summary table, in order; a column is shown when any config has a value.
SUMMARY_TABLE_METRICS = (
    "energy_per_output_token_j",
    "energy_per_total_token_j",
    "energy_per_output_token_above_idle_j",
    "total_energy_j",
    "mean_power_w",
    "output_tokens_per_s",
    "ttft_p50_ms",
    "itl_p50_ms",
    "request_latency_p50_ms",
    "duration_s",
)


def header_section(study: StudyResult, study_dir: Path, points: Sequence[ConfigPoint]) -> str:
    parts = [f"<h1>Study report: {esc(study.name)}</h1>"]
    n_failed = len(study.failures)
    if study.interrupted:
        parts.append(
            '<div class="banner bad">This study did not finish: some planned runs never ran. '
            f"Resume it with <code>llem run --resume {esc(study_dir)}</code>, then "
            f"<code>llem report {esc(study_dir)}</code>.</div>"
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
    invalid = [r for r in study.runs if not r.valid]
    if invalid:
        parts.append(
            f'<div class="banner bad">{len(invalid)} run(s) failed a validity gate and are left '
            "out of the summary, the figures and the Pareto fronts (listed in "
            '<a href="#runs">runs</a>): '
            + "; ".join(
                f"<code>{esc(run_identity(r)[0])}</code> ({esc(', '.join(r.failed_gates))})"
                for r in invalid
            )
            + "</div>"
        )
    reasons = energy_unavailable_reasons(study)
    if reasons:
        parts.append(
            '<div class="banner warn">Energy was not measured for some runs: '
            + "; ".join(esc(r) for r in reasons)
            + "</div>"
        )
    parts.append(
        kv_table(
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
    spent = campaign_time(study.runs)
    if spent is not None:  # issue 26: how much of the campaign's time was measured window
        parts.append(f"<p>Time: {esc(describe(spent))}.</p>")
    if study.measurement_protocol:
        parts.append("<h3>Measurement protocol</h3>")
        parts.append(kv_table(sorted(study.measurement_protocol.items())))
    if study.runners:
        parts.append("<h3>Runners</h3>")
        parts.append(
            table(
                ["backend", "runner", "image", "chosen by"],
                [
                    (esc(b), esc(r.get("kind")), num(r.get("image")), esc(r.get("source")))
                    for b, r in sorted(study.runners.items())
                ],
            )
        )
    return "\n".join(parts)


def summary_section(points: Sequence[ConfigPoint], axes: Sequence[str]) -> str:
    metrics = [m for m in SUMMARY_TABLE_METRICS if any(p.stats(m).n > 0 for p in points)]
    axes = [a for a in axes if a != "backend"]  # already a column of its own
    headers = ["key", "config", "backend", *axes, "runs ok", "invalid", "failed"]
    headers += [METRIC_LABELS.get(m, m) for m in metrics]
    rows = []
    for p in points:
        row = [f"<b>{esc(p.key)}</b>", esc(p.label), esc(p.backend)]
        for axis in axes:
            try:
                row.append(esc(axis_value(p.config, axis)))
            except KeyError:
                row.append('<span class="muted">n/a</span>')
        row += [
            f'<td class="num">{len(p.runs)}</td>',
            f'<td class="num">{len(p.invalid)}</td>',
            f'<td class="num">{p.n_failed}</td>',
        ]
        row += [stat_cell(p.stats(m)) for m in metrics]
        rows.append(row)
    note = (
        '<p class="muted">Mean over the valid cycles ± half-width of the Student-t 95 % confidence '
        "interval (hover a cell for the interval, SD and CV). A single run has no interval. The "
        "cycles are repeats on one machine and day, not independent replicates. Config hashes: "
        + ", ".join(f"{esc(p.key)} = <code>{esc(p.config_hash[:12])}</code>" for p in points)
        + "</p>"
    )
    return (
        '<h2 id="summary">Summary</h2><div class="scroll">' + table(headers, rows) + "</div>" + note
    )


def runs_section(study: StudyResult, points: Sequence[ConfigPoint]) -> str:
    key_of = {p.config_hash: p.key for p in points}
    rows = []
    for r in sorted(study.runs, key=lambda r: run_identity(r)[0]):
        run_id, cycle = run_identity(r)
        warns = run_warnings(r)
        rows.append(
            (
                f"<code>{esc(run_id)}</code>",
                esc(key_of.get(r.config_hash, "")),
                f'<td class="num">{num(cycle)}</td>',
                f'<td class="num">{num(r.duration_s)}</td>',
                f'<td class="num">{num(r.output_tokens)}</td>',
                f'<td class="num">{num(r.output_tokens_per_s)}</td>',
                f'<td class="num">{num(r.total_energy_j)}</td>',
                f'<td class="num">{num(r.energy_per_output_token_j)}</td>',
                f'<td class="num">{num(_pct(r.energy_quantisation_bound_rel))}</td>',
                f'<td class="num">{num(r.energy_per_output_token_above_idle_j)}</td>',
                f'<td class="num">{_idle(r.cold_baseline)} / {_idle(r.baseline)}</td>',
                "yes" if r.valid else f"<b>no</b>: {esc(', '.join(r.failed_gates))}",
                esc(r.energy.meter),
                esc(", ".join(sorted({w.code for w in warns}))) if warns else "",
            )
        )
    return '<h2 id="runs">Runs</h2>' + table(
        [
            "run",
            "config",
            "cycle",
            "window (s)",
            "output tokens",
            "tokens / s",
            "energy (J)",
            "energy / token (J)",
            "± quantisation (%)",
            "above idle / token (J)",
            "idle W: cold / resident",
            "valid",
            "meter",
            "warnings",
        ],
        rows,
    )


def _idle(b: BaselineRecord | None) -> str:
    """Idle power summed over GPUs, '—' when none; '(rejected)' when not accepted."""
    if b is None or not b.available or not b.idle_power_w:
        return "—"
    text = f"{sum(b.idle_power_w.values()):.1f}"
    return text if b.accepted else f"{text} (rejected)"


def _pct(value: float | None) -> float | None:
    return value * 100.0 if value is not None else None


def warnings_section(study: StudyResult, points: Sequence[ConfigPoint]) -> str:
    key_of = {p.config_hash: p.key for p in points}
    rows = []
    for r in sorted(study.runs, key=lambda r: run_identity(r)[0]):
        for w in run_warnings(r):
            rows.append(
                (
                    f"<code>{esc(run_identity(r)[0])}</code>",
                    esc(key_of.get(r.config_hash, "")),
                    f"<code>{esc(w.code)}</code>",
                    esc(w.severity),
                    num(w.device),
                    esc(w.message),
                )
            )
    parts = ['<h2 id="warnings">Validity warnings</h2>']
    if not rows:
        parts.append('<div class="banner ok">No run raised a validity warning.</div>')
    else:
        parts.append(table(["run", "config", "code", "severity", "GPU", "message"], rows))
    return "\n".join(parts)


def failures_section(study: StudyResult, points: Sequence[ConfigPoint]) -> str:
    key_of = {p.config_hash: p.key for p in points}
    parts = ['<h2 id="failures">Failures and skipped sweep points</h2>']
    if study.failures:
        parts.append(
            table(
                ["run", "config", "cycle", "status", "phase", "error", "message"],
                [
                    (
                        f"<code>{esc(f.run_id)}</code>",
                        esc(key_of.get(f.config_hash, f.config_hash[:8])),
                        f'<td class="num">{f.cycle}</td>',
                        esc(f.status),
                        num(f.phase),
                        num(f.error_type),
                        esc(f.message),
                    )
                    for f in study.failures
                ],
            )
        )
    else:
        parts.append("<p>No run failed.</p>")
    if study.invalid_points:
        parts.append("<p>Sweep points that were not run:</p><ul>")
        parts.extend(f"<li>{esc(p)}</li>" for p in study.invalid_points)
        parts.append("</ul>")
    return "\n".join(parts)


def environment_section(study: StudyResult) -> str:
    env: EnvironmentSnapshot | None = study.environment or (
        study.runs[0].environment if study.runs else None
    )
    parts = ['<h2 id="environment">Environment</h2>']
    if env is None:
        parts.append("<p>No environment snapshot was recorded.</p>")
        return "\n".join(parts)
    source = "the study controller" if study.environment is not None else "the first run"
    parts.append(f'<p class="muted">Snapshot taken by {source} at {esc(env.captured_at)}.</p>')
    data = env.model_dump(mode="json")
    scalars = [
        (k, v)
        for k, v in data.items()
        if k not in ("gpus", "packages", "probe_errors", "captured_at")
    ]
    parts.append(kv_table(scalars))
    if env.gpus:
        parts.append("<h3>GPUs</h3>")
        cols = list(env.gpus[0].model_dump().keys())
        parts.append(table(cols, [[num(v) for v in g.model_dump().values()] for g in env.gpus]))
    if env.packages:
        parts.append("<h3>Packages</h3>" + kv_table(sorted(env.packages.items())))
    if env.probe_errors:
        parts.append(
            "<details><summary>Probes that could not answer "
            f"({len(env.probe_errors)})</summary>"
            + kv_table(sorted(env.probe_errors.items()))
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
            + kv_table(diffs)
        )
    elif study.runs:
        parts.append(
            f"<p>All {len(study.runs)} runs' environment snapshots agree on the key fields.</p>"
        )
    return "\n".join(parts)
