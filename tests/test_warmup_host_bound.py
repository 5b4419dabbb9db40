"""Issue 26 item 3: a warmup that waited out its cap on a host-bound workload says so."""

from __future__ import annotations

from pathlib import Path

from llenergymeasure.harness.warmup_host_bound import warmup_host_bound
from llenergymeasure.results.models import WarmupRecord


class SeriesMeter:
    """A meter whose last window's series is a fixed utilisation and power for 20 samples."""

    def __init__(self, util_pct: float, power_w: float) -> None:
        self.util_pct, self.power_w = util_pct, power_w

    def write_timeseries(self, path: Path) -> Path:
        rows = ["nvml_index,t_s,power_w,gpu_util_pct"]
        rows += [f"0,{0.1 * i:.1f},{self.power_w},{self.util_pct}" for i in range(20)]
        path.write_text("\n".join(rows) + "\n")
        return path


def _warmup(stopped_by: str, energy_j: float | None = 5000.0) -> WarmupRecord:
    return WarmupRecord(
        mode="cv",
        runs=40,
        duration_s=120.0,
        stopped_by=stopped_by,
        energy_j=energy_j,  # type: ignore[arg-type]
    )


def test_a_capped_warmup_on_a_near_idle_gpu_is_named() -> None:
    w = warmup_host_bound(_warmup("max_s"), SeriesMeter(20.0, 130.0), {0: 120.0}, {0: 700.0})
    assert w is not None and w.code == "warmup_host_bound" and w.device == 0
    assert "120.0 s" in w.message and "max_s" in w.message and "warmup.mode: fixed" in w.message
    assert w.details["warmup_s"] == 120.0


def test_no_note_when_the_gpu_was_busy_or_warmup_settled_or_was_not_metered() -> None:
    busy = SeriesMeter(95.0, 600.0)
    idle = SeriesMeter(20.0, 130.0)
    assert warmup_host_bound(_warmup("max_runs"), busy, {0: 120.0}, {0: 700.0}) is None
    assert warmup_host_bound(_warmup("converged"), idle, {0: 120.0}, {0: 700.0}) is None
    assert warmup_host_bound(_warmup("max_s", energy_j=None), idle) is None
