"""Run columns of serving experiments (``ExperimentResult.serving``; empty for offline runs).

``results/export.py`` merges them into ``results.parquet``; ``docs/results.md`` documents each
column. The figures are those of the steady-state window when the run had one, else of the full
window (``serving.window`` says which).
"""

from __future__ import annotations

from typing import Any

from llenergymeasure.results.models import ExperimentResult

SERVING_COLUMNS: dict[str, str] = {
    "serving.load": "the load, e.g. poisson@4rps or closed@8 (empty for offline runs)",
    "serving.window": "steady or full: the window the serving.* figures below come from",
    "serving.injection_lag_p99_ms": "p99 of the driver's lag, actual minus scheduled send time",
    "serving.requests_per_s": "requests finished per second",
    "serving.output_tokens_per_s": "output tokens per second",
    "serving.goodput_rps": "requests meeting the SLO per second",
    "serving.slo_attainment": "fraction of requests meeting the SLO",
    "serving.ttft_p90_ms": "p90 time to first token",
    "serving.itl_p90_ms": "p90 inter-token latency",
    "serving.e2e_p90_ms": "p90 end-to-end latency",
    "serving.energy_per_output_token_j": "window energy / output tokens in the window",
    "serving.energy_per_good_request_j": "window energy / requests meeting the SLO",
    "serving.request_energy_p50_j": "median attributed energy per request",
    "serving.request_energy_p90_j": "p90 attributed energy per request",
}


def serving_values(result: ExperimentResult) -> dict[str, Any]:
    s = result.serving
    if s is None:
        return {}
    w = s.steady or s.full

    def p90(stats: Any) -> float | None:
        return stats.p90_ms if stats is not None else None

    return {
        "serving.load": s.load,
        "serving.window": "steady" if s.steady is not None else "full",
        "serving.injection_lag_p99_ms": s.injection_lag_ms.p99_ms if s.injection_lag_ms else None,
        "serving.requests_per_s": w.requests_per_s,
        "serving.output_tokens_per_s": w.output_tokens_per_s,
        "serving.goodput_rps": w.goodput_rps,
        "serving.slo_attainment": w.slo_attainment,
        "serving.ttft_p90_ms": p90(w.ttft_ms),
        "serving.itl_p90_ms": p90(w.itl_ms),
        "serving.e2e_p90_ms": p90(w.e2e_ms),
        "serving.energy_per_output_token_j": w.energy_per_output_token_j,
        "serving.energy_per_good_request_j": w.energy_per_good_request_j,
        "serving.request_energy_p50_j": w.request_energy_j.p50_j if w.request_energy_j else None,
        "serving.request_energy_p90_j": w.request_energy_j.p90_j if w.request_energy_j else None,
    }
