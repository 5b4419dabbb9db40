"""Say when warmup was long because the workload is host-bound (issue 26 item 3).

``cv`` warmup stops when the per-token latency settles. A host-bound workload (the GPU waits on
Python between small kernels) has latencies that move with the host's load, so they may never
settle and warmup waits out ``warmup.max_s`` or ``max_runs``: minutes of GPU time outside the
window that no amount of warming would cure. When warmup stopped at a cap and its own time series
shows the GPU near idle (``energy.checks.host_bound``, the window's rule), the result says so with
``warmup_host_bound`` instead of leaving a silent long warmup.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

from llenergymeasure.energy.types import ValidityWarning
from llenergymeasure.results.models import WarmupRecord


def warmup_host_bound(
    warmup: WarmupRecord,
    meter: Any,
    idle_w: dict[int, float] | None = None,
    limit_w: dict[int, float] | None = None,
) -> ValidityWarning | None:
    """``warmup_host_bound`` when warmup hit a cap and the GPU sat near idle through it; None
    otherwise (converged, fixed count, or no time series). Call before the meter's next window:
    it reads the warmup's series, which the meter still holds."""
    if warmup.stopped_by not in ("max_s", "max_runs") or warmup.energy_j is None:
        return None
    from llenergymeasure.energy import checks
    from llenergymeasure.harness.window import read_timeseries

    with tempfile.TemporaryDirectory(prefix="llem-warmup-") as scratch:
        written = None
        with contextlib.suppress(OSError):
            written = meter.write_timeseries(Path(scratch) / "warmup.csv")
        if written is None:
            return None
        series = read_timeseries(written)
    for index, cols in sorted(series.items()):
        nan = cols["t_s"] * float("nan")
        util = cols.get("gpu_util_pct")
        power = cols.get("power_w")
        found = checks.host_bound(
            index,
            util if util is not None else nan,
            power if power is not None else nan,
            (idle_w or {}).get(index),
            (limit_w or {}).get(index),
        )
        if found is None or found.code != "host_bound":
            continue
        return ValidityWarning(
            code="warmup_host_bound",
            severity="info",
            message=(
                f"warmup ran {warmup.duration_s:.1f} s ({warmup.runs} batches) and stopped at "
                f"its cap ({warmup.stopped_by}) without settling, and GPU {index} was near idle "
                "through it: the host sets this workload's pace, so its latencies move with the "
                "host's load and more warming would not settle them. A fixed warmup "
                "(warmup.mode: fixed) or a lower warmup.max_s saves that time; a static cache "
                "with torch_compile, a larger batch or another engine keeps the GPU busy"
            ),
            device=index,
            details={**found.details, "warmup_s": warmup.duration_s},
        )
    return None
