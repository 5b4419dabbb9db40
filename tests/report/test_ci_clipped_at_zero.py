"""Issue 29 item 9: a throughput interval of 2 cycles can reach below 0 (t = 12.7); the figure
draws it down to 0 and says n is small, the numbers keep the interval as computed."""

from __future__ import annotations

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.report.data import ConfigPoint
from llenergymeasure.report.figures import _panel, clip_at_zero
from llenergymeasure.results.models import ConfigSummary, MetricStats

pytest.importorskip("matplotlib")


def test_clip_at_zero() -> None:
    assert clip_at_zero(1000.0, -7500.0) == (1000.0, True)
    assert clip_at_zero(1000.0, 400.0) == (600.0, False)
    assert clip_at_zero(1000.0, None) == (0.0, False)


def test_the_panel_draws_down_to_zero_and_says_n_is_small() -> None:
    from matplotlib.figure import Figure

    stats = MetricStats(
        n=2, mean=1000.0, ci95_low=-7500.0, ci95_high=9500.0, ci95_half_width=8500.0
    )
    points = []
    for bs in (1, 2):
        cfg = ExperimentConfig(model="synthetic/tiny-llama", batch_size=bs)
        summary = ConfigSummary(
            config_hash=cfg.config_hash,
            label=cfg.label(),
            backend=cfg.backend,
            model=cfg.model,
            config=cfg,
            n_completed=2,
            n_failed=0,
            metrics={"output_tokens_per_s": stats},
        )
        points.append(ConfigPoint(f"C{bs}", cfg.config_hash, cfg.label(), "pytorch", cfg, summary))
    ax = Figure().subplots()
    assert _panel(ax, points, "batch_size", ["batch_size"], "output_tokens_per_s")
    assert ax.get_ylim()[0] == 0
    segments = [seg for coll in ax.collections for seg in getattr(coll, "get_segments", list)()]
    assert segments and min(y for seg in segments for _, y in seg) >= 0
    notes = [t.get_text() for t in ax.texts]
    assert any("clipped at 0" in t and "n = 2 cycles is small" in t for t in notes), notes
    assert stats.ci95_low == -7500.0  # the interval itself is untouched
