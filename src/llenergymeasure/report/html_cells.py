"""The report's HTML building blocks: escaping, number formatting, table cells and tables.

Every value from a result file, a config or the environment goes through ``esc`` before it reaches
the page; callers of ``table`` pass cells that are HTML already.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

from llenergymeasure.results.models import MetricStats


def esc(value: Any) -> str:
    """``value`` as escaped HTML text (None as nothing)."""
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


def num(value: Any) -> str:
    """A value for a cell: numbers formatted, None as a muted dash."""
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return esc(value)
    if isinstance(value, int):
        return esc(value)
    if isinstance(value, float):
        return esc(fmt_number(value))
    return esc(value)


def stat_cell(stats: MetricStats) -> str:
    """A numeric cell: mean ± 95 % CI half-width (n), the interval, SD and CV on hover."""
    if stats.n == 0 or stats.mean is None:
        return '<td class="num"><span class="muted">—</span></td>'
    mean = fmt_number(stats.mean)
    if stats.ci95_half_width is None or stats.ci95_low is None or stats.ci95_high is None:
        return (
            f'<td class="num" title="a single run: no confidence interval">{esc(mean)}'
            f' <span class="muted">(n={stats.n})</span></td>'
        )
    title = (
        f"95 % CI [{fmt_number(stats.ci95_low)}, {fmt_number(stats.ci95_high)}], n={stats.n}"
        + (f", sd={fmt_number(stats.std, 3)}" if stats.std is not None else "")
        + (f", cv={stats.cv:.1%}" if stats.cv is not None else "")
    )
    return (
        f'<td class="num" title="{esc(title)}">{esc(mean)} ± '
        f'{esc(fmt_number(stats.ci95_half_width, 2))} <span class="muted">(n={stats.n})</span></td>'
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table of cells that are HTML already (callers escape); a cell may bring its own ``<td>``."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            cells.append(cell if cell.startswith("<td") else f"<td>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of names and values."""
    rows = [(f"<th>{esc(k)}</th>", f"<td>{num(v)}</td>") for k, v in items]
    return "<table><tbody>" + "".join(f"<tr>{a}{b}</tr>" for a, b in rows) + "</tbody></table>"
