"""Energy per request: a window's energy split among the requests that were running in it.

Pure functions over a power time series and per-request token timelines; no meter, no engine.
The rule (docs/methodology.md, "Energy per request"):

1. The window ``[t0, t1]`` is cut at every power sample inside it. Interval ``k`` gets the energy
   of the trapezoid of the power between its ends (power interpolated linearly at the window's
   edges, negative readings taken as 0). When the meter measured the window's total
   (``total_energy_j``, e.g. from the hardware energy counter), every interval is scaled by
   ``total / sum(intervals)``: the series gives the shape, the meter the amount.
2. Interval ``k``'s energy goes to the requests in proportion to the tokens each processed in it.
   A request's tokens are spans ``(start, end, tokens)``: its prompt (prefill) from when the engine
   scheduled it to its first output token, and each engine step's output tokens as a point at the
   step's time. A span's tokens are spread evenly over its duration; a point falls in the interval
   that holds it (the later one on a boundary).
3. An interval in which no request processed a token (the engine waiting, or between steps) goes
   in equal parts to the requests *in flight* in it (sent and not yet finished); an interval with
   none in flight (an idle gap in an open-loop load) goes to all requests of the window in
   proportion to the energy they already had (in proportion to their tokens when none had any).
4. The idle share: ``idle_w * dt`` of each interval, split like the interval's energy. A
   request's energy above idle is its energy minus its idle share; like the window's energy above
   idle it is not clamped (it can be negative when the power fell below the idle power).

So every joule of the window goes to exactly one request: the per-request energies sum to the
window's energy (to float rounding), none is negative, and a request with no time in flight
inside the window gets no entry.

**Prompt tokens against output tokens** (step 2's weighting). Charging a prompt token like an
output token (``weighting="tokens"``) is the compute-bound view: a transformer's forward pass
costs about 2 x parameters FLOPs per token, prompt or output. But a decode step is bound by
memory: it reads every weight once whatever the batch, so a request that decoded 5 tokens next to
a 2,000-token prefill cost far more than 5/2,005 of the interval. ``weighting="requests"`` is that
memory-bound view: an interval's energy goes in equal parts to the requests that processed a
token in it, however many. The truth lies between the two. ``attribute_energy_band`` computes
both and reports each request's **midpoint** (the estimate whose worst-case error over the band
is smallest) with the band ``[low, high]``; both ends conserve the window's energy, so the
midpoints do too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass
class RequestActivity:
    """One request for attribution: when it was in flight and the tokens it processed when."""

    key: int
    inflight_start_s: float
    inflight_end_s: float
    #: (start, end, tokens); start == end for a point (one engine step's output tokens)
    spans: list[tuple[float, float, float]] = field(default_factory=list)


@dataclass
class Attribution:
    """Per-request energy over one window."""

    window_start_s: float
    window_end_s: float
    energy_j: dict[int, float]
    idle_j: dict[int, float]
    window_energy_j: float
    window_idle_j: float
    #: intervals with tokens / with requests in flight but no tokens / with no request in flight
    intervals_by_tokens: int = 0
    intervals_by_inflight: int = 0
    intervals_spread: int = 0
    #: the attribution band's ends per request (``attribute_energy_band``; empty otherwise)
    low_j: dict[int, float] = field(default_factory=dict)
    high_j: dict[int, float] = field(default_factory=dict)

    def above_idle_j(self, key: int) -> float:
        return self.energy_j[key] - self.idle_j.get(key, 0.0)


def interval_energies(
    times_s: Sequence[float] | np.ndarray,
    power_w: Sequence[float] | np.ndarray,
    t0: float,
    t1: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Interval edges over ``[t0, t1]`` (the window's ends and every sample inside) and the
    trapezoid energy of each interval, from a power series (NaN samples dropped)."""
    t = np.asarray(times_s, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    ok = ~(np.isnan(t) | np.isnan(p))
    t, p = t[ok], np.clip(p[ok], 0.0, None)
    if t1 <= t0:
        raise ValueError(f"an empty window: end {t1} is not after start {t0}")
    if t.size == 0:
        raise ValueError("no power samples to attribute")
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    inside = t[(t > t0) & (t < t1)]
    edges = np.concatenate(([t0], inside, [t1]))
    pw = np.interp(edges, t, p)  # held flat beyond the first and last sample
    energies = (pw[:-1] + pw[1:]) / 2.0 * np.diff(edges)
    return edges, energies


def _token_matrix(requests: list[RequestActivity], edges: np.ndarray) -> np.ndarray:
    """Tokens of each request in each interval (rows: requests, columns: intervals)."""
    n_int = edges.size - 1
    out = np.zeros((len(requests), n_int))
    lo_edge, hi_edge = edges[0], edges[-1]
    for r, req in enumerate(requests):
        for start, end, tokens in req.spans:
            if tokens <= 0:
                continue
            if end <= start:  # a point
                if start < lo_edge or start > hi_edge:
                    continue
                k = int(np.searchsorted(edges, start, side="right")) - 1
                out[r, min(max(k, 0), n_int - 1)] += tokens
                continue
            a = np.clip(edges[:-1], start, end)
            b = np.clip(edges[1:], start, end)
            out[r] += tokens * (b - a) / (end - start)
    return out


def _inflight_matrix(requests: list[RequestActivity], edges: np.ndarray) -> np.ndarray:
    """1 where a request was in flight during (part of) an interval."""
    a, b = edges[:-1], edges[1:]
    out = np.zeros((len(requests), edges.size - 1))
    for r, req in enumerate(requests):
        out[r] = (req.inflight_start_s < b) & (req.inflight_end_s > a)
    return out


def attribute_energy(
    times_s: Sequence[float] | np.ndarray,
    power_w: Sequence[float] | np.ndarray,
    requests: Sequence[RequestActivity],
    t0: float,
    t1: float,
    *,
    total_energy_j: float | None = None,
    idle_w: float = 0.0,
    weighting: Literal["tokens", "requests"] = "tokens",
) -> Attribution:
    """Split the energy of ``[t0, t1]`` among ``requests`` (the module docstring's rule), an
    interval with tokens by each request's tokens or in equal parts to the requests with one."""
    if weighting not in ("tokens", "requests"):
        raise ValueError(f"weighting must be 'tokens' or 'requests', got {weighting!r}")
    if idle_w < 0:
        raise ValueError(f"idle power must be >= 0 W, got {idle_w}")
    edges, energies = interval_energies(times_s, power_w, t0, t1)
    measured = float(energies.sum())
    if total_energy_j is not None:
        if total_energy_j < 0:
            raise ValueError(f"window energy must be >= 0 J, got {total_energy_j}")
        if measured > 0:
            energies = energies * (total_energy_j / measured)
        else:  # a flat zero series: spread the meter's total evenly over time
            energies = total_energy_j * np.diff(edges) / (t1 - t0)
    idle = idle_w * np.diff(edges)
    active = [r for r in requests if r.inflight_start_s < t1 and r.inflight_end_s > t0]
    window_total = float(energies.sum())
    if not active:
        return Attribution(t0, t1, {}, {}, window_total, float(idle.sum()))

    tokens = _token_matrix(active, edges)
    if weighting == "requests":
        tokens = (tokens > 0).astype(np.float64)
    inflight = _inflight_matrix(active, edges)
    tok_sum = tokens.sum(axis=0)
    fl_sum = inflight.sum(axis=0)
    shares = np.zeros_like(tokens)
    by_tokens = tok_sum > 0
    by_inflight = ~by_tokens & (fl_sum > 0)
    spread = ~by_tokens & ~by_inflight
    shares[:, by_tokens] = tokens[:, by_tokens] / tok_sum[by_tokens]
    shares[:, by_inflight] = inflight[:, by_inflight] / fl_sum[by_inflight]
    energy = shares @ energies
    idle_r = shares @ idle
    if spread.any():
        weights = energy.copy()
        if weights.sum() <= 0:
            weights = tokens.sum(axis=1)
        if weights.sum() <= 0:
            weights = np.ones(len(active))
        weights = weights / weights.sum()
        energy = energy + weights * float(energies[spread].sum())
        idle_r = idle_r + weights * float(idle[spread].sum())
    return Attribution(
        window_start_s=t0,
        window_end_s=t1,
        energy_j={r.key: float(e) for r, e in zip(active, energy, strict=True)},
        idle_j={r.key: float(i) for r, i in zip(active, idle_r, strict=True)},
        window_energy_j=window_total,
        window_idle_j=float(idle.sum()),
        intervals_by_tokens=int(by_tokens.sum()),
        intervals_by_inflight=int(by_inflight.sum()),
        intervals_spread=int(spread.sum()),
    )


#: what ``ServingRecord.attribution_weighting`` says of ``attribute_energy_band``
BAND_WEIGHTING = (
    "midpoint of two splits of each interval with tokens: by tokens (a prompt token costs an "
    "output token: compute-bound) and in equal parts per request with a token (a step costs the "
    "same per request: memory-bound); energy_low_j / energy_high_j are the band's ends"
)


def attribute_energy_band(
    times_s: Sequence[float] | np.ndarray,
    power_w: Sequence[float] | np.ndarray,
    requests: Sequence[RequestActivity],
    t0: float,
    t1: float,
    *,
    total_energy_j: float | None = None,
    idle_w: float = 0.0,
) -> Attribution:
    """Each request's energy as the midpoint of the ``tokens`` and ``requests`` weightings, with
    the band's ends in ``low_j`` / ``high_j`` (the module docstring says why)."""
    args = (times_s, power_w, requests, t0, t1)
    by_tok = attribute_energy(*args, total_energy_j=total_energy_j, idle_w=idle_w)
    by_req = attribute_energy(
        *args, total_energy_j=total_energy_j, idle_w=idle_w, weighting="requests"
    )
    keys = by_tok.energy_j.keys()
    return Attribution(
        window_start_s=t0,
        window_end_s=t1,
        energy_j={k: (by_tok.energy_j[k] + by_req.energy_j[k]) / 2.0 for k in keys},
        idle_j={k: (by_tok.idle_j[k] + by_req.idle_j[k]) / 2.0 for k in keys},
        window_energy_j=by_tok.window_energy_j,
        window_idle_j=by_tok.window_idle_j,
        intervals_by_tokens=by_tok.intervals_by_tokens,
        intervals_by_inflight=by_tok.intervals_by_inflight,
        intervals_spread=by_tok.intervals_spread,
        low_j={k: min(by_tok.energy_j[k], by_req.energy_j[k]) for k in keys},
        high_j={k: max(by_tok.energy_j[k], by_req.energy_j[k]) for k in keys},
    )
