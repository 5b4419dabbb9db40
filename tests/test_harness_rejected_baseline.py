"""A rejected idle baseline is never subtracted, in serving mode too (issue 25 item 7).

The harness handed the serving record the resident idle power whenever the baseline was
*available*, so a baseline rejected for load (or drift) still produced serving energies above
idle while the result's own above-idle figures were null. The fake GPU here reports 100 %
utilisation throughout, so both idle windows are rejected for load.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from llenergymeasure import ExperimentConfig
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from tests.helpers import tiny_experiment
from tests.test_harness import IdleThenLoad


def test_serving_energy_above_idle_is_null_against_a_rejected_baseline(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    from llenergymeasure.energy import select_meter
    from tests.fakes.nvml import FakeGpu, FakeNvml

    out = tmp_path / "run"
    trace = IdleThenLoad(idle_w=70.0, load_w=250.0)
    fake = FakeNvml([FakeGpu(trace=trace, gpu_util_pct=100)])  # busy while "idle": rejected

    def factory(backend: str, devices: list[int]):
        meter = select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)
        real_start = meter.start

        def start() -> None:
            progress = json.loads((out / "progress.json").read_text())
            if progress["phase"] == "measure" and trace.load_from_s == math.inf:
                trace.load_from_s = fake.now()
            real_start()

        meter.start = start  # type: ignore[method-assign]
        return meter

    data = tiny_experiment(
        workload="serving",
        load={"concurrency": 2, "n_requests": 4},
        slo={"ttft_ms": 60_000, "itl_ms": 60_000},
        baseline={"enabled": True, "duration_s": 0.3, "cache_ttl_s": 0},
    )
    request = HarnessRequest(
        config=ExperimentConfig.from_dict(data),
        settings=HarnessSettings(energy_backend="auto", model_cache_dir=str(shared_model_cache)),
    )
    result = run_harness(request, out, meter_factory=factory)
    assert result.baseline is not None and result.baseline.available
    assert not result.baseline.accepted and "utilisation" in (result.baseline.rejected_reason or "")
    assert "baseline_rejected" in {w.code for w in result.warnings}
    assert result.total_energy_j is not None and result.total_energy_above_idle_j is None
    s = result.serving
    assert s is not None and s.full.energy_j is not None  # raw energy is still attributed
    assert s.full.energy_above_idle_j is None
    assert s.steady is None or s.steady.energy_above_idle_j is None
