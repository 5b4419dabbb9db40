"""Validity gates, stated uncertainty and the window's estimates, for ``build_result``.

- **Gates** (``evaluate_gates``): each run is ``valid`` or names the gates it failed; thresholds
  come from the user config's ``validity:`` section (``config/validity.py``).
- **Quantisation bound** (``quantisation_bound``): the largest error of the energy from the
  window's edges, summed over GPUs: the meter's own ``quantisation_bound_j`` where it states one
  (the NVML meter places each edge on a counter update: power x the update time's resolution),
  else period * max(P_start, P_end) (``energy/edges.py`` says why: the two ends' errors have
  opposite signs); gated by ``validity.max_quantisation_rel``.
- **Prefill/decode split** (``energy_split``): an estimate from each batch's prefill span and
  the sampled power: the energy integrated over every batch's [start, last first token] is
  prefill, the rest decode; the shares scale the counter's energy. None, with the reason, when
  the engine ran prefills beside decodes (vLLM with more prompts than ``max_num_seqs``, serving).
- **Boundary** (``energy_boundary``): what the energy covers.

``docs/methodology.md`` states each formula; the tests check them with hand-computed values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.energy.types import CpuEnergy, EnergyMeasurement
from llenergymeasure.results.models import EnergyBoundary, EnergySplit, GateResult

GATES = (
    "short_window",
    "foreign_process",
    "counter_reset",
    "counter_power_mismatch",
    "sampler_gap",
    "thermal_slowdown",
    "hw_slowdown",
    "quantisation",
)


def _slowdown_share(details: dict[str, Any], th: ValiditySettings, period_s: float) -> float:
    """The share a slowdown warning counts for: its sample share only when at least
    ``min_slowdown_samples`` samples saw it, its violation-time share only when that time is at
    least as long as that many sensor periods; the larger of the two."""
    share = 0.0
    if int(details.get("n_samples") or 0) >= th.min_slowdown_samples:
        share = float(details.get("sample_share") or 0.0)
    v_s = float(details.get("violation_s") or 0.0)
    if details.get("violation_share") is not None and v_s >= th.min_slowdown_samples * period_s:
        share = max(share, float(details["violation_share"]))
    return share


def evaluate_gates(
    energy: EnergyMeasurement, duration_s: float, th: ValiditySettings
) -> list[GateResult]:
    """One ``GateResult`` per gate. With no energy measured (no GPU, null meter) there is no
    energy figure to invalidate: no gate applies and the list is empty."""
    if not energy.available:
        return []
    period = float(energy.sensor_period_s or 0.1)
    gates: list[GateResult] = [
        GateResult(
            name="short_window",
            passed=duration_s >= th.min_window_s,
            value=duration_s,
            threshold=th.min_window_s,
            detail=f"window {duration_s:.3f} s, minimum {th.min_window_s:g} s",
        )
    ]
    foreign = [
        w for w in energy.warnings if w.code == "foreign_process" and w.severity == "warning"
    ]
    gates.append(
        GateResult(
            name="foreign_process",
            passed=not (foreign and th.fail_on_foreign_process),
            value=float(len(foreign)),
            threshold=0.0,
            detail="; ".join(w.message for w in foreign) or "no other process on a measured GPU",
        )
    )
    resets = sum(d.counter_resets for d in energy.devices)
    gates.append(
        GateResult(
            name="counter_reset",
            passed=resets == 0,
            value=float(resets),
            threshold=0.0,
            detail=f"{resets} backward step(s) of the energy counter",
        )
    )
    worst = 0.0
    for d in energy.devices:
        if d.method in ("counter", "zeus") and d.integrated_energy_j is not None and d.energy_j > 0:
            worst = max(worst, abs(d.integrated_energy_j - d.energy_j) / d.energy_j)
    gates.append(
        GateResult(
            name="counter_power_mismatch",
            passed=worst <= th.max_counter_mismatch,
            value=worst,
            threshold=th.max_counter_mismatch,
            detail=f"largest |integrated - counter| / counter {worst * 100:.2f} %",
        )
    )
    gap = max(
        (
            float(w.details.get("max_gap_s", 0.0))
            for w in energy.warnings
            if w.code == "sampler_gap"
        ),
        default=0.0,
    )
    gates.append(
        GateResult(
            name="sampler_gap",
            passed=gap <= th.max_sampler_gap_s,
            value=gap,
            threshold=th.max_sampler_gap_s,
            detail=f"longest gap between power samples {gap:.3f} s",
        )
    )
    for code in ("thermal_slowdown", "hw_slowdown"):
        share = max(
            (_slowdown_share(w.details, th, period) for w in energy.warnings if w.code == code),
            default=0.0,
        )
        gates.append(
            GateResult(
                name=code,
                passed=share <= th.max_slowdown_share,
                value=share,
                threshold=th.max_slowdown_share,
                detail=f"{code.replace('_', ' ')} in {share * 100:.1f} % of the window "
                f"(counted from {th.min_slowdown_samples} samples on)",
            )
        )
    _, rel = quantisation_bound(energy, {})
    gates.append(
        GateResult(
            name="quantisation",
            passed=rel is None or rel <= th.max_quantisation_rel,
            value=rel,
            threshold=th.max_quantisation_rel,
            detail=(
                "no quantisation bound (no total energy)"
                if rel is None
                else f"edge quantisation bound {rel * 100:.2f} % of the energy"
            ),
        )
    )
    return gates


def window_edges(timeseries: Path | None, duration_s: float) -> dict[int, dict[str, float]]:
    """Per GPU, the first and last sampled power, temperature and SM clock inside
    [0, duration_s] of the time series: ``{start,end}_{power_w,temperature_c,sm_clock_mhz}``."""
    from llenergymeasure.harness.window import read_timeseries

    out: dict[int, dict[str, float]] = {}
    if timeseries is None or not Path(timeseries).is_file():
        return out
    for index, cols in read_timeseries(timeseries).items():
        t = cols["t_s"]
        edges: dict[str, float] = {}
        for col in ("power_w", "temperature_c", "sm_clock_mhz"):
            v = cols.get(col)
            if v is None:
                continue
            ok = (t >= 0.0) & (t <= duration_s) & ~np.isnan(v)
            if ok.any():
                edges[f"start_{col}"] = float(v[ok][0])
                edges[f"end_{col}"] = float(v[ok][-1])
        if edges:
            out[index] = edges
    return out


def edge_powers(edges: dict[int, dict[str, float]]) -> dict[int, tuple[float, float]]:
    """(power at the window's start, at its end) per GPU from ``window_edges``."""
    return {
        i: (e["start_power_w"], e["end_power_w"])
        for i, e in edges.items()
        if "start_power_w" in e and "end_power_w" in e
    }


def quantisation_bound(
    energy: EnergyMeasurement, edges: dict[int, tuple[float, float]]
) -> tuple[float | None, float | None]:
    """(bound in J, bound / total energy), summed over GPUs: the device's own
    ``quantisation_bound_j`` where the meter gave one, else sensor_period_s * max(P_start,
    P_end); a GPU without sampled edges counts its mean power at both ends."""
    total = energy.total_energy_j
    period = energy.sensor_period_s
    if not energy.available or total is None or not period or not energy.devices:
        return None, None
    bound = 0.0
    for d in energy.devices:
        if d.quantisation_bound_j is not None:
            bound += d.quantisation_bound_j
            continue
        if d.nvml_index in edges:
            p0, p1 = edges[d.nvml_index]
        elif d.mean_power_w is not None:
            p0 = p1 = d.mean_power_w
        else:
            return None, None
        bound += period * max(p0, p1)
    return bound, (bound / total if total > 0 else None)


def _integral(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    """Trapezoidal integral of p(t) over [a, b], with p interpolated at the ends."""
    if b <= a or t.size < 2:
        return 0.0
    inside = (t > a) & (t < b)
    tt = np.concatenate(([a], t[inside], [b]))
    pp = np.concatenate(([np.interp(a, t, p)], p[inside], [np.interp(b, t, p)]))
    return float(np.sum((tt[1:] - tt[:-1]) * (pp[1:] + pp[:-1]) / 2.0))


def prefill_spans(output: Any) -> tuple[list[tuple[float, float]] | None, str | None]:
    """One pass's prefill spans (seconds from the pass's start), or None and why.

    ``output`` is the pass's ``GenerationOutput`` (or just its last first-token time: the pass
    as one batch). The engine's own spans when it gives them (one per static batch); none when it
    says it ran prefills beside decodes; else the whole call as one batch: [0, largest TTFT]."""
    if output is None or isinstance(output, (int, float)):
        if output is None:
            return None, "the backend reported no first-token time for every pass"
        return [(0.0, float(output))], None
    if getattr(output, "prefill_overlap_reason", None):
        return None, f"prefill and decode overlapped: {output.prefill_overlap_reason}"
    spans = getattr(output, "prefill_spans_s", None)
    if spans is not None:
        return [(float(a), float(b)) for a, b in spans], None
    ft = first_token_s(output)
    if ft is None:
        return None, "the backend reported no first-token time for every pass"
    return [(0.0, ft)], None


def energy_split(
    timeseries: Path | None,
    energy: EnergyMeasurement,
    pass_starts_s: list[float],
    pass_durations_s: list[float],
    outputs: list[Any],
    input_tokens: int,
    output_tokens: int,
) -> EnergySplit:
    """Prefill/decode estimate: each batch's prefill span (``prefill_spans``) is prefill, the
    rest of the pass decode; their integrated power (summed over GPUs) gives the prefill share,
    which scales the counter's total. Null, with the reason, when a pass has no spans."""
    from llenergymeasure.harness.window import read_timeseries

    def none(reason: str) -> EnergySplit:
        return EnergySplit(unavailable_reason=reason)

    total = energy.total_energy_j
    if not energy.available or total is None:
        return none("no energy was measured")
    if not outputs:
        return none("no pass")
    # per pass: its absolute prefill spans, clipped to the pass
    cuts: list[list[tuple[float, float]]] = []
    for s0, dur, out in zip(pass_starts_s, pass_durations_s, outputs, strict=True):
        spans, reason = prefill_spans(out)
        if spans is None:
            return none(reason or "no prefill span")
        clipped = [(s0 + min(max(a, 0.0), dur), s0 + min(max(b, 0.0), dur)) for a, b in spans]
        cuts.append(sorted((a, b) for a, b in clipped if b > a))
    if timeseries is None or not Path(timeseries).is_file():
        return none("no power time series")
    series = read_timeseries(timeseries)
    prefill = whole = 0.0
    for cols in series.values():
        t, p = cols["t_s"], cols.get("power_w")
        if p is None:
            continue
        ok = ~np.isnan(p)
        t, p = t[ok], p[ok]
        for s0, dur, spans in zip(pass_starts_s, pass_durations_s, cuts, strict=True):
            whole += _integral(t, p, s0, s0 + dur)
            prefill += sum(_integral(t, p, a, b) for a, b in spans)
    prefill_s = sum(b - a for spans in cuts for a, b in spans)
    if whole <= 0:
        return none("the power time series does not cover the passes")
    share = min(max(prefill / whole, 0.0), 1.0)
    e_pre, e_dec = share * total, (1.0 - share) * total
    return EnergySplit(
        prefill_energy_j=e_pre,
        decode_energy_j=e_dec,
        prefill_share=share,
        prefill_s=prefill_s,
        energy_per_input_token_prefill_j=e_pre / input_tokens if input_tokens > 0 else None,
        energy_per_output_token_decode_j=e_dec / output_tokens if output_tokens > 0 else None,
    )


def energy_boundary(energy: EnergyMeasurement, cpu: CpuEnergy | None) -> EnergyBoundary:
    """What the energy figures cover: the GPU boards measured, CPU and DRAM via RAPL or not."""
    gpus = [
        f"GPU {d.nvml_index}" + (f" {d.name}" if d.name else "") + (f" {d.uuid}" if d.uuid else "")
        for d in energy.devices
    ]
    cpu_ok = cpu is not None and cpu.available and cpu.package_j is not None
    dram_ok = cpu is not None and cpu.available and cpu.dram_j is not None
    return EnergyBoundary(
        gpu_boards=gpus,
        cpu="rapl" if cpu_ok else "not measured",
        dram="rapl" if dram_ok else "not measured",
    )


def first_token_s(output: Any) -> float | None:
    """A pass's last first-token time (its requests' largest TTFT): when the whole batch had
    left prefill. None when any request lacks a TTFT."""
    ttfts = [r.ttft_s for r in output.requests]
    if not ttfts or any(t is None for t in ttfts):
        return None
    return float(max(ttfts))
