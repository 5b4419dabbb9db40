"""The report's figures, drawn with matplotlib's Agg renderer and returned as PNG bytes.

matplotlib is imported inside each function (it is an optional dependency, and importing it costs
time the CLI should not pay at start-up). Figures are built with ``matplotlib.figure.Figure``
directly rather than through ``pyplot``, so no global backend or figure registry is touched: the
report can be generated inside a notebook or a long-lived process without side effects.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llenergymeasure.backends import registry
from llenergymeasure.report.data import (
    ENERGY_METRIC,
    METRIC_LABELS,
    THROUGHPUT_METRIC,
    ConfigPoint,
    axis_value,
    finite,
    is_numeric_axis,
    overlapping_pairs,
    short_value,
)
from llenergymeasure.results.pareto import pareto_front

if TYPE_CHECKING:
    from llenergymeasure.report.engine_panel import EngineSeries

_FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_LINESTYLES = ("-", "--", ":", "-.")
_DPI = 110


def _figure(width_in: float, height_in: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, layout="constrained")
    return fig


def png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # No Software/creation metadata: the same study gives byte-identical figures.
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def backend_colour(backend: str) -> str:
    colour = registry.colours().get(backend)
    if colour is not None:
        return colour
    return _FALLBACK_COLOURS[sum(map(ord, backend)) % len(_FALLBACK_COLOURS)]


def _message(ax: Any, text: str) -> None:
    """A panel that explains why it is empty (the text wrapped to fit inside the axes)."""
    import textwrap

    text = "\n".join(textwrap.wrap(text, width=48))
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        fontsize=9,
        color="#555",
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


# -- metric against one swept axis ----------------------------------------------------------------


def clip_at_zero(mean: float, low: float | None) -> tuple[float, bool]:
    """The lower error-bar length drawn for an interval of a non-negative metric: down to 0 at
    most, and whether it was clipped (a wide t-interval of few cycles can reach below 0)."""
    lower = low if finite(low) else mean
    if lower is not None and lower < 0 <= mean:
        return mean, True
    return mean - float(lower if lower is not None else mean), False


def clipped_note(ax: Any, ns: Sequence[int], axis: str = "y", top: float = 0.99) -> None:
    """Say on the panel that intervals were clipped at 0 for drawing, and that n is small."""
    if not ns:
        return
    n = min(ns)
    if axis == "y":
        ax.set_ylim(bottom=0)
    else:
        ax.set_xlim(left=0)
    ax.text(
        0.01,
        top,
        f"95 % CI clipped at 0 (the table gives it as computed): n = {n} cycle"
        f"{'' if n == 1 else 's'} is small, so its t-interval is wide",
        transform=ax.transAxes,
        fontsize=7,
        va="top",
        ha="left",
        color="#555555",
    )


def _series(
    points: Sequence[ConfigPoint], axis: str, other_axes: Sequence[str]
) -> dict[tuple[str, str], list[ConfigPoint]]:
    """Configs that have ``axis``, grouped by backend and by their values on the other axes."""
    groups: dict[tuple[str, str], list[ConfigPoint]] = {}
    for p in points:
        try:
            axis_value(p.config, axis)
        except KeyError:
            continue
        rest = []
        for other in other_axes:
            if other in (axis, "backend"):
                continue
            try:
                rest.append(f"{other}={short_value(axis_value(p.config, other))}")
            except KeyError:
                continue
        groups.setdefault((p.backend, ", ".join(rest)), []).append(p)
    return groups


def _panel(
    ax: Any, points: Sequence[ConfigPoint], axis: str, other_axes: Sequence[str], metric: str
) -> bool:
    """Draw ``metric`` (mean with 95 % CI, runs as dots) against ``axis``; False if nothing to draw."""
    groups = _series(points, axis, other_axes)
    values = [axis_value(p.config, axis) for g in groups.values() for p in g]
    numeric = is_numeric_axis(values)
    categories: list[str] = []
    if not numeric:
        for v in values:
            if short_value(v) not in categories:
                categories.append(short_value(v))
    drawn = False
    clipped: list[int] = []
    per_backend: dict[str, int] = {}
    n_groups = len(groups)
    for gi, ((backend, rest), members) in enumerate(groups.items()):
        k = per_backend.get(backend, 0)
        per_backend[backend] = k + 1
        colour = backend_colour(backend)
        marker = _MARKERS[k % len(_MARKERS)]
        style = _LINESTYLES[k % len(_LINESTYLES)]
        # Categorical axes: nudge series apart so their error bars do not hide each other.
        offset = 0.0 if numeric or n_groups == 1 else (gi - (n_groups - 1) / 2) * 0.08
        xs: list[float] = []
        ys: list[float] = []
        lo: list[float] = []
        hi: list[float] = []
        for p in members:
            v = axis_value(p.config, axis)
            x = float(v) if numeric else categories.index(short_value(v)) + offset
            stats = p.stats(metric)
            runs = p.run_values(metric)
            if runs:
                # Open circles, so single runs stay visible on top of the error bar.
                ax.scatter(
                    [x] * len(runs),
                    runs,
                    s=22,
                    marker="o",
                    facecolors="none",
                    edgecolors=colour,
                    alpha=0.7,
                    linewidths=1.0,
                    zorder=4,
                )
            if not finite(stats.mean):
                continue
            xs.append(x)
            ys.append(stats.mean)
            high = stats.ci95_high if finite(stats.ci95_high) else stats.mean
            below, was_clipped = clip_at_zero(stats.mean, stats.ci95_low)
            if was_clipped:
                clipped.append(stats.n)
            lo.append(below)
            hi.append(high - stats.mean)
        if not xs:
            continue
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        label = backend + (f" · {rest}" if rest else "")
        ax.errorbar(
            [xs[i] for i in order],
            [ys[i] for i in order],
            yerr=[[lo[i] for i in order], [hi[i] for i in order]],
            color=colour,
            marker=marker,
            linestyle=style if numeric else "none",
            capsize=3,
            markersize=5,
            linewidth=1.2,
            label=label,
            zorder=3,
        )
        drawn = True
    if numeric and values:
        positive = [float(v) for v in values if float(v) > 0]
        if len(positive) == len(values) and max(positive) / min(positive) >= 8:
            ax.set_xscale("log", base=2)
        ticks = sorted({float(v) for v in values})
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{t:g}" for t in ticks])
        ax.minorticks_off()
    elif categories:
        ax.set_xticks(range(len(categories)))
        ax.set_xticklabels(categories, rotation=20 if max(map(len, categories)) > 8 else 0)
        ax.set_xlim(-0.5, len(categories) - 0.5)
    ax.set_xlabel(axis)
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3)
    clipped_note(ax, clipped)
    return drawn


def axis_figure(
    points: Sequence[ConfigPoint], axis: str, other_axes: Sequence[str], energy_note: str | None
) -> bytes:
    """Energy per output token (left) and throughput (right) against one swept axis.

    One series per backend and per combination of the other swept axes' values; each point is the
    mean over cycles with its 95 % confidence interval, and the open circles are the single runs.
    """
    fig = _figure(10.0, 3.8)
    left, right = fig.subplots(1, 2)
    if not _panel(left, points, axis, other_axes, ENERGY_METRIC):
        left.set_title("energy per output token")
        _message(left, energy_note or "no energy figure for these configs")
    else:
        left.set_title("energy per output token (mean, 95 % CI)", fontsize=10)
    _panel(right, points, axis, other_axes, THROUGHPUT_METRIC)
    right.set_title("throughput (mean, 95 % CI)", fontsize=10)
    handles, labels = right.get_legend_handles_labels()
    if not handles:
        handles, labels = left.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside lower center",
            ncols=min(3, len(labels)),
            fontsize=8,
            frameon=False,
        )
    return png(fig)


# -- Pareto fronts --------------------------------------------------------------------------------


def _pareto_panel(
    ax: Any, points: Sequence[ConfigPoint], x_metric: str, maximise_x: bool
) -> list[str]:
    """Scatter configs (mean ± CI) and draw the front; returns the keys on the front."""
    usable = [
        p for p in points if finite(p.stats(ENERGY_METRIC).mean) and finite(p.stats(x_metric).mean)
    ]
    if not usable:
        _message(ax, f"no config has both {METRIC_LABELS.get(x_metric, x_metric)} and energy")
        return []
    coords = [
        (float(p.stats(x_metric).mean or 0.0), float(p.stats(ENERGY_METRIC).mean or 0.0))
        for p in usable
    ]
    front = pareto_front(coords, maximise_x=maximise_x)
    overlap = {
        k
        for pair in overlapping_pairs(usable, x_metric, [usable[i].key for i in front])
        for k in pair
    }
    seen_backends: set[str] = set()
    clipped_x: list[int] = []
    clipped_y: list[int] = []
    for i, p in enumerate(usable):
        xs, ys = p.stats(x_metric), p.stats(ENERGY_METRIC)
        x, y = coords[i]
        xerr = ys_err = None
        if finite(xs.ci95_half_width):
            below, was_clipped = clip_at_zero(x, xs.ci95_low)
            clipped_x += [xs.n] if was_clipped else []
            xerr = [[below], [float(xs.ci95_high or x) - x]]
        if finite(ys.ci95_half_width):
            below, was_clipped = clip_at_zero(y, ys.ci95_low)
            clipped_y += [ys.n] if was_clipped else []
            ys_err = [[below], [float(ys.ci95_high or y) - y]]
        on_front = i in front
        ax.errorbar(
            [x],
            [y],
            xerr=xerr,
            yerr=ys_err,
            marker="o",
            markersize=7 if on_front else 5,
            color=backend_colour(p.backend),
            markeredgecolor="black" if on_front else backend_colour(p.backend),
            linestyle="none",
            capsize=2,
            elinewidth=0.8,
            alpha=1.0 if on_front else 0.6,
            label=p.backend if p.backend not in seen_backends else None,
            zorder=3,
        )
        seen_backends.add(p.backend)
        ax.annotate(
            p.key + (" ≈" if p.key in overlap else ""),
            (x, y),
            textcoords="offset points",
            xytext=(5, 4),
            fontsize=8,
            fontweight="bold" if on_front else "normal",
        )
    fx = [coords[i][0] for i in front]
    fy = [coords[i][1] for i in front]
    ax.plot(fx, fy, color="black", linewidth=1, linestyle="--", zorder=2, label="Pareto front")
    ax.set_xlabel(
        METRIC_LABELS.get(x_metric, x_metric)
        + (" (higher is better)" if maximise_x else " (lower is better)")
    )
    ax.set_ylabel(METRIC_LABELS[ENERGY_METRIC] + " (lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    clipped_note(ax, clipped_x, axis="x", top=0.93)
    clipped_note(ax, clipped_y, axis="y")
    return [usable[i].key for i in front]


def pareto_figure(
    points: Sequence[ConfigPoint], x_metric: str, maximise_x: bool
) -> tuple[bytes, list[str]]:
    """Energy per output token against ``x_metric`` with the non-dominated configs joined."""
    fig = _figure(6.0, 4.2)
    ax = fig.subplots()
    keys = _pareto_panel(ax, points, x_metric, maximise_x)
    ax.set_title(f"energy per token vs {METRIC_LABELS.get(x_metric, x_metric)}", fontsize=10)
    return png(fig), keys


# -- power time series ----------------------------------------------------------------------------


def read_power_series(path: Path) -> dict[int, tuple[list[float], list[float]]]:
    """NVML index -> (t_s, power_w) from a run's ``timeseries.csv``.

    Rows without a power reading (a sampler gap) are skipped; a file without ``t_s`` and
    ``power_w`` columns is refused with the columns it has.
    """
    out: dict[int, tuple[list[float], list[float]]] = {}
    with Path(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = reader.fieldnames or []
        if "t_s" not in fields or "power_w" not in fields:
            raise ValueError(
                f"{path}: needs columns t_s and power_w, has {', '.join(fields) or 'none'}"
            )
        for row in reader:
            try:
                t = float(row["t_s"])
                p = float(row["power_w"])
            except (TypeError, ValueError):
                continue
            if not (math.isfinite(t) and math.isfinite(p)):
                continue
            idx_text = row.get("nvml_index") or "0"
            try:
                idx = int(float(idx_text))
            except ValueError:
                idx = 0
            ts, ps = out.setdefault(idx, ([], []))
            ts.append(t)
            ps.append(p)
    return out


def power_figure(
    series: dict[int, tuple[list[float], list[float]]],
    duration_s: float,
    idle_power_w: dict[int, float],
    title: str,
    engine: EngineSeries | None = None,
    no_power_reason: str | None = None,
) -> bytes:
    """Power of each GPU over time, the measured window [0, duration_s] shaded, idle power dashed;
    with ``engine`` (a served run's ``/metrics``), the engine's state in a panel beneath, on the
    same time axis (``report/engine_panel.py``)."""
    if engine is None:
        fig = _figure(6.4, 2.5)
        ax = fig.subplots()
    else:
        from llenergymeasure.report.engine_panel import draw_engine_panel

        fig = _figure(6.4, 4.4)
        ax, ax_engine = fig.subplots(2, 1, sharex=True, height_ratios=[1.2, 1.0])
        draw_engine_panel(ax_engine, engine, duration_s)
        ax_engine.set_xlabel("time from the start of the measured window (s)")
    ax.axvspan(0.0, duration_s, color="#ffcc66", alpha=0.3, lw=0, label="measured window")
    if not series:  # the engine panel shares the time axis: keep its ticks, say why it is empty
        ax.text(
            0.5,
            0.5,
            no_power_reason or "no power samples",
            ha="center",
            va="center",
            fontsize=8,
            color="#555",
            transform=ax.transAxes,
            wrap=True,
        )
        ax.set_xlim(0.0, max(duration_s, 1e-9))
    for k, (idx, (ts, ps)) in enumerate(sorted(series.items())):
        colour = _FALLBACK_COLOURS[k % len(_FALLBACK_COLOURS)] if len(series) > 1 else "#1f77b4"
        ax.plot(ts, ps, linewidth=1.0, color=colour, label=f"GPU {idx}")
        if idx in idle_power_w:
            ax.axhline(
                idle_power_w[idx],
                color=colour,
                linestyle="--",
                linewidth=0.8,
                label=f"GPU {idx} idle",
            )
    if engine is None:
        ax.set_xlabel("time from the start of the measured window (s)")
    ax.set_ylabel("power (W)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    fig.legend(fontsize=7, frameon=False, loc="outside right upper")
    return png(fig)
