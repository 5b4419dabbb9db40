"""cv-mode warmup on the CPU with the real harness and synthetic/tiny-llama: the recorded CV is the
sample CV of the last ``window`` batch latencies, recomputed here by hand, and warmup stopped at
the first batch where it fell under the threshold with no trend (or ran to ``max_runs``).

Whether real CPU latencies settle depends on how busy the machine is, so nothing here asserts
*that* they settle: only that the harness's decision matches its own recorded latencies, which
holds on a loaded machine and a quiet one alike. The exact stopping points on fixed latencies are
in ``tests/test_window_and_trends.py`` (fake clock)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.harness.window import trending
from tests.helpers import tiny_experiment


def sample_cv(values: list[float]) -> float:
    """By hand: sqrt(sum((x - mean)^2) / (n - 1)) / |mean|."""
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) / abs(mean)


@pytest.mark.parametrize("threshold", [0.9, 0.001], ids=["loose", "tight"])
def test_cv_warmup_stops_where_the_sample_cv_falls_under_the_threshold(
    tmp_path: Path, shared_model_cache: Path, threshold: float
) -> None:
    warmup = {"mode": "cv", "runs": 3, "window": 3, "max_runs": 5, "cv_threshold": threshold}
    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment(n=2, warmup=warmup)),
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(shared_model_cache)),
    )
    w = run_harness(request, tmp_path / "run").warmup
    lat = w.latencies_s
    assert w.mode == "cv" and w.runs == len(lat) and 3 <= w.runs <= 5
    assert w.final_cv == pytest.approx(sample_cv(lat[-3:]), rel=1e-9)
    # every earlier full window had a CV at or above the threshold or a trend, else warmup would
    # have stopped there
    for end in range(3, w.runs):
        window = lat[end - 3 : end]
        assert sample_cv(window) >= threshold or trending(window, threshold)[0], (end, lat)
    last = lat[-3:]
    if w.converged:
        assert w.final_cv < threshold and not trending(last, threshold)[0]
        assert w.stopped_by == "converged"
    else:
        assert w.converged is False and w.runs == 5 and w.stopped_by == "max_runs"
        assert w.final_cv >= threshold or trending(last, threshold)[0]
    assert w.final_trend_per_run == pytest.approx(trending(last, threshold)[1], rel=1e-9)
