"""Validity checks on a measurement window, as structured warnings with stable codes.

Each check returns a ``ValidityWarning`` or None. Thresholds live here, named, and
``docs/methodology.md`` states each one and why it was chosen.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np

from llenergymeasure.energy.nvml import (
    CLOCK_EVENT_HW_POWER_BRAKE,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL,
    CLOCK_EVENT_SW_POWER_CAP,
    CLOCK_EVENT_SW_THERMAL,
    throttle_reason_names,
)
from llenergymeasure.energy.types import ValidityWarning

SHORT_WINDOW_PERIODS = 10  # window shorter than this many sensor update periods
SAMPLER_GAP_PERIODS = 3  # gap between samples longer than this many periods
COUNTER_POWER_TOLERANCE = 0.05  # counter vs integrated power relative disagreement
# host_bound: the GPU waits on the host for most of the window when, in more than
# HOST_BOUND_SHARE of the samples, its utilisation is under HOST_BOUND_UTIL_PCT or its power is
# within HOST_BOUND_POWER_SHARE of the headroom (power limit - idle) above idle.
HOST_BOUND_SHARE = 0.5
HOST_BOUND_UTIL_PCT = 50.0
HOST_BOUND_POWER_SHARE = 0.10
# unused_gpu: a held GPU whose utilisation stayed under this in every sample ran no kernel at all
UNUSED_UTIL_PCT = 1.0
THROUGHPUT_DRIFT_TOLERANCE = 0.05  # first vs last third of the window, relative
THERMAL_DRIFT_C = 2.0  # mean temperature of the last third minus the first third
MIN_TREND_SAMPLES = 6  # fewer samples (or passes) than this: no trend warning either way
# power_capped: a mean power at or above this share of the enforced limit is "at the limit"; below
# it the clocks were lowered in bursts (most likely short power peaks: power management reacts
# within milliseconds, the power reading is a ~100 ms average), not for time spent at the limit.
POWER_CAP_AT_LIMIT_SHARE = 0.9

CODES = (
    "short_window",
    "power_capped",
    "thermal_slowdown",
    "hw_slowdown",
    "foreign_process",
    "sampler_gap",
    "counter_reset",
    "counter_power_mismatch",
    "integrated_power_only",
    "host_bound",
    "unused_gpu",
    "throughput_drift",
    "thermal_drift",
)


def short_window(duration_s: float, sensor_period_s: float | None) -> ValidityWarning | None:
    """The counter and power sensor update about every ``sensor_period_s``; a window of a few
    periods can be off by a whole period's energy at each end."""
    if sensor_period_s is None or sensor_period_s <= 0:
        return None
    limit = SHORT_WINDOW_PERIODS * sensor_period_s
    if duration_s >= limit:
        return None
    return ValidityWarning(
        code="short_window",
        message=(
            f"the window lasted {duration_s:.3f} s, under {SHORT_WINDOW_PERIODS} sensor update "
            f"periods ({limit:.2f} s): each end can miss up to {sensor_period_s:.2f} s of energy; "
            "measure more prompts or repeat the workload inside one window"
        ),
        details={"duration_s": duration_s, "sensor_period_s": sensor_period_s, "limit_s": limit},
    )


def _share(bits: int, reasons: np.ndarray) -> tuple[int, float]:
    """(samples with any of ``bits`` set, their share of the samples that read the reasons)."""
    read = reasons[~np.isnan(reasons)].astype(np.int64)
    if read.size == 0:
        return 0, 0.0
    hit = int(np.count_nonzero(read & bits))
    return hit, hit / read.size


def power_capped(
    device: int,
    reasons: np.ndarray,
    violation_ns: int,
    duration_s: float,
    mean_power_w: float | None = None,
    power_limit_w: float | None = None,
) -> ValidityWarning | None:
    """``power_capped`` (info): NVML's power management lowered the clocks during the window.

    Two sources, reported apart because they measure different things: the ``sw_power_cap``
    clock-event reason in the samples ("the clocks have been optimised not to exceed the power
    limit", read at each sample) and NVML's power violation counter (``NVML_PERF_POLICY_POWER``:
    time the clocks were held below the application clocks because of power). Neither is the
    time the board spent *at* its limit: the cap acts on millisecond power peaks that the
    ~100 ms power reading averages away, so a GPU at 64 % of its limit on average can see it in
    bursts (prefill, dense kernels). The mean power against the enforced limit, when known, says
    which case it was. A hardware power brake is ``hw_slowdown``, not this. Never a gate."""
    read = reasons[~np.isnan(reasons)]
    n, share = _share(CLOCK_EVENT_SW_POWER_CAP, reasons)
    if not n and violation_ns <= 0:
        return None
    v_s = max(violation_ns, 0) / 1e9
    vshare = v_s / duration_s if violation_ns > 0 and duration_s > 0 else None
    seen: list[str] = []
    if n:
        seen.append(f"sw_power_cap in {n} of {read.size} samples ({share * 100:.0f} %)")
    if violation_ns > 0:
        of = f", {vshare * 100:.0f} % of the window" if vshare is not None else ""
        seen.append(f"NVML power violation time {v_s:.3f} s{of}")
    if mean_power_w is not None and not np.isfinite(mean_power_w):
        mean_power_w = None  # energy unknown (no counter, no samples)
    ratio = (
        mean_power_w / power_limit_w
        if mean_power_w is not None and power_limit_w and power_limit_w > 0
        else None
    )
    if ratio is None:
        why = (
            "the power limit is unknown here; at the limit this is normal at TDP, well below it "
            "the clocks were lowered in bursts, not for time spent at the limit"
        )
    elif ratio >= POWER_CAP_AT_LIMIT_SHARE:
        why = (
            f"mean power {mean_power_w:.0f} W is {ratio * 100:.0f} % of the {power_limit_w:.0f} W "
            "limit: the GPU ran at its power limit and the clocks followed the cap (normal at TDP)"
        )
    else:
        why = (
            f"mean power {mean_power_w:.0f} W is only {ratio * 100:.0f} % of the "
            f"{power_limit_w:.0f} W limit, so this is not time spent at the limit: the clocks were "
            "lowered in bursts, most likely on short power peaks (power management reacts within "
            "milliseconds; the power reading is a ~100 ms average)"
        )
    return ValidityWarning(
        code="power_capped",
        severity="info",
        message=f"GPU {device}: power management lowered the clocks ({'; '.join(seen)}); {why}",
        device=device,
        details={
            "n_samples": n,
            "sample_share": share,
            "violation_s": v_s,
            "violation_share": vshare,
            "mean_power_w": mean_power_w,
            "power_limit_w": power_limit_w,
            "mean_power_share_of_limit": ratio,
        },
    )


def clock_events(
    device: int,
    reasons: np.ndarray,
    violation_delta_ns: dict[str, int] | None,
    duration_s: float,
    *,
    mean_power_w: float | None = None,
    power_limit_w: float | None = None,
) -> list[ValidityWarning]:
    """Clock-event reasons over the window, split by what they mean (``docs/methodology.md``):

    - ``power_capped`` (info, ``power_capped`` above): power management lowered the clocks
      (sw_power_cap samples, NVML's power violation counter), judged against the mean power and
      the enforced limit when the meter passes them. The energy is what it is, so no gate.
    - ``thermal_slowdown`` (sw/hw thermal bits, thermal violation counter) and ``hw_slowdown``
      (hw_slowdown, hw_power_brake bits): the clocks were pulled down by heat or a hardware
      signal, so the run is not representative. ``details`` carry the number of samples and their
      share, which the validity gates judge (one 100 ms sample never fails a gate).

    ``reasons`` holds the window's per-sample reason masks (NaN where not read)."""
    reasons = np.asarray(reasons, dtype=float)
    viol = {k: v for k, v in (violation_delta_ns or {}).items() if v > 0}
    out: list[ValidityWarning] = []

    def share_of(ns: int) -> float | None:
        return ns / 1e9 / duration_s if duration_s > 0 else None

    cap = power_capped(
        device, reasons, viol.get("power", 0), duration_s, mean_power_w, power_limit_w
    )
    if cap is not None:
        out.append(cap)
    for code, bits, policy, what in (
        ("thermal_slowdown", CLOCK_EVENT_SW_THERMAL | CLOCK_EVENT_HW_THERMAL, "thermal", "heat"),
        (
            "hw_slowdown",
            CLOCK_EVENT_HW_SLOWDOWN | CLOCK_EVENT_HW_POWER_BRAKE,
            None,
            "a hardware slowdown signal (HW slowdown or power brake)",
        ),
    ):
        n, share = _share(bits, reasons)
        vns = viol.get(policy, 0) if policy else 0
        if not n and not vns:
            continue
        names = sorted(
            {nm for r in reasons[~np.isnan(reasons)] for nm in throttle_reason_names(int(r) & bits)}
        )
        vshare = share_of(vns) if vns else None
        out.append(
            ValidityWarning(
                code=code,
                message=(
                    f"GPU {device}: clocks pulled down by {what} in {n} sample(s) "
                    f"({share * 100:.1f} % of the samples"
                    + (f"; {vns / 1e9:.3f} s of thermal violation time" if vns else "")
                    + f"){': ' + ', '.join(names) if names else ''}"
                ),
                device=device,
                details={
                    "reasons": names,
                    "n_samples": n,
                    "sample_share": share,
                    "violation_s": vns / 1e9,
                    "violation_share": vshare,
                },
            )
        )
    return out


def own_process_tree(extra: Iterable[int] = (), proc: str = "/proc") -> set[int]:
    """This process, its descendants (engine workers), ``extra`` PIDs and their descendants,
    from the ``stat`` files under ``proc`` (another root only in tests)."""
    ours = {os.getpid(), *extra}
    parents: dict[int, int] = {}
    try:
        for entry in os.scandir(proc):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ..." -- comm may contain spaces and parentheses
            rest = stat.rsplit(")", 1)[-1].split()
            if len(rest) >= 2:
                parents[int(entry.name)] = int(rest[1])
    except OSError:
        return ours
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    return ours


def foreign_process(device: int, gpu_pids: set[int], ours: set[int]) -> ValidityWarning | None:
    """Another process used the measured GPU: its energy is in the counter too.

    NVML reports PIDs in the host's PID namespace. A PID that does not exist in this namespace
    (typical inside a container without ``--pid=host``) cannot be told apart from our own
    process seen from outside, so it is reported at severity ``info`` with that caveat."""
    foreign = sorted(gpu_pids - ours)
    if not foreign:
        return None
    visible = [p for p in foreign if Path(f"/proc/{p}").exists()]
    invisible = [p for p in foreign if p not in visible]
    names = {}
    for p in visible:
        try:
            names[p] = Path(f"/proc/{p}/comm").read_text().strip()
        except OSError:
            names[p] = "?"
    if visible:
        listed = ", ".join(f"{p} ({names[p]})" for p in visible)
        message = f"other process(es) ran on GPU {device} during the window: {listed}"
        if invisible:
            message += f"; plus PID(s) {invisible} not visible from this PID namespace"
        severity: Literal["info", "warning"] = "warning"
    else:
        message = (
            f"GPU {device} lists PID(s) {invisible} that are not visible from this PID namespace "
            "(inside a container?): they may be this experiment's own processes seen from the "
            "host, or other work; run with the host PID namespace to tell"
        )
        severity = "info"
    return ValidityWarning(
        code="foreign_process",
        message=message,
        severity=severity,
        device=device,
        details={
            "pids": foreign,
            "visible": {str(k): v for k, v in names.items()},
            "invisible": invisible,
        },
    )


def sampler_gap(device: int, times: np.ndarray, period_s: float) -> ValidityWarning | None:
    """Samples further apart than SAMPLER_GAP_PERIODS periods: the time series (and the
    integrated-power cross-check) has holes there."""
    if times.size < 2:
        return None
    gaps = np.diff(times)
    limit = SAMPLER_GAP_PERIODS * period_s
    big = gaps[gaps > limit]
    if big.size == 0:
        return None
    return ValidityWarning(
        code="sampler_gap",
        message=(
            f"GPU {device}: {big.size} gap(s) between power samples longer than "
            f"{SAMPLER_GAP_PERIODS} periods ({limit:.2f} s); the longest was {big.max():.3f} s"
        ),
        device=device,
        details={"n_gaps": int(big.size), "max_gap_s": float(big.max()), "limit_s": limit},
    )


def counter_power_mismatch(
    device: int, counter_j: float, integrated_j: float | None
) -> ValidityWarning | None:
    """The counter and the integral of sampled power disagree by more than the tolerance."""
    if integrated_j is None or counter_j <= 0:
        return None
    rel = (integrated_j - counter_j) / counter_j
    if abs(rel) <= COUNTER_POWER_TOLERANCE:
        return None
    return ValidityWarning(
        code="counter_power_mismatch",
        message=(
            f"GPU {device}: the energy counter ({counter_j:.1f} J) and integrated power "
            f"({integrated_j:.1f} J) disagree by {rel * 100:+.1f} % (tolerance "
            f"{COUNTER_POWER_TOLERANCE * 100:.0f} %); short windows, sampler gaps or a slow power "
            "reading cause this"
        ),
        device=device,
        details={"counter_j": counter_j, "integrated_j": integrated_j, "relative": rel},
    )


def integrated_power_only(device: int) -> ValidityWarning:
    """The GPU has no energy counter (pre-Volta): energy is integrated sampled power."""
    return ValidityWarning(
        code="integrated_power_only",
        message=(
            f"GPU {device} has no total-energy counter; its energy is the trapezoidal integral of "
            "sampled power, which misses changes faster than the sampling period"
        ),
        device=device,
    )


def _thirds(t: np.ndarray, v: np.ndarray, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """Values (NaN dropped) whose times fall in the first and the last third of [t0, t1]."""
    ok = ~np.isnan(v) & (t >= t0) & (t <= t1)
    t, v = t[ok], v[ok]
    third = (t1 - t0) / 3.0
    return v[t <= t0 + third], v[t >= t1 - third]


def host_bound(
    device: int,
    util_pct: np.ndarray,
    power_w: np.ndarray,
    idle_w: float | None,
    limit_w: float | None,
    *,
    serving: bool = False,
) -> ValidityWarning | None:
    """The GPU sat near idle for most of the window: the host (Python, the launch loop, the CPU
    share of the engine) sets the speed, so the number moves with the host's load and says little
    about the GPU. Utilisation is NVML's (share of time a kernel ran); power is judged against
    the measured idle baseline and the power limit, only when both are known.

    Not host-bound: a held GPU that ran no kernel at all (utilisation under ``UNUSED_UTIL_PCT``
    in every sample) is ``unused_gpu`` (info): nothing waited on the host there. In a serving
    run (``serving``) the caller passes only the samples with a request in flight (idle time
    between arrivals is the load, not the host), and the message speaks of the load point."""
    util = util_pct[~np.isnan(util_pct)]
    power = power_w[~np.isnan(power_w)]
    if util.size >= MIN_TREND_SAMPLES and float(np.max(util)) < UNUSED_UTIL_PCT:
        return ValidityWarning(
            code="unused_gpu",
            severity="info",
            message=(
                f"GPU {device} ran no kernel in the window (utilisation under "
                f"{UNUSED_UTIL_PCT:g} % in all {util.size} samples): it was held but unused; its "
                "energy is in the total (a held GPU counts busy or idle), not a host-bound engine"
            ),
            device=device,
            details={"max_util_pct": float(np.max(util)), "n_samples": int(util.size)},
        )
    reasons: list[str] = []
    details: dict[str, float | int | None] = {"idle_w": idle_w, "power_limit_w": limit_w}
    if util.size >= MIN_TREND_SAMPLES:
        low = float(np.mean(util < HOST_BOUND_UTIL_PCT))
        details.update(median_util_pct=float(np.median(util)), low_util_share=low)
        if low > HOST_BOUND_SHARE:
            reasons.append(
                f"utilisation under {HOST_BOUND_UTIL_PCT:.0f} % in {low * 100:.0f} % of samples "
                f"(median {np.median(util):.0f} %)"
            )
    if power.size >= MIN_TREND_SAMPLES and idle_w is not None and limit_w and limit_w > idle_w:
        near = idle_w + HOST_BOUND_POWER_SHARE * (limit_w - idle_w)
        low = float(np.mean(power < near))
        med = float(np.median(power))
        details.update(median_power_w=med, near_idle_w=near, near_idle_share=low)
        if low > HOST_BOUND_SHARE:
            reasons.append(
                f"power under {near:.0f} W (idle {idle_w:.0f} W + "
                f"{HOST_BOUND_POWER_SHARE * 100:.0f} % of the headroom to the {limit_w:.0f} W "
                f"limit) in {low * 100:.0f} % of samples (median {med:.0f} W)"
            )
    if not reasons:
        return None
    if serving:
        message = (
            f"GPU {device} was near idle for most of the time a request was in flight: "
            f"{'; '.join(reasons)}. At this load point the engine's host-side loop (scheduling, "
            "sampling, detokenising) paces the few requests in flight, so tokens/s and J/token "
            "move with the host's load; a higher load.rate_rps or concurrency fills the GPU"
        )
    else:
        message = (
            f"GPU {device} was near idle for most of the window: {'; '.join(reasons)}. The host "
            "sets this workload's speed, so its tokens/s and J/token move with the host's load; "
            "a larger batch, a static cache with torch_compile, or another engine keeps the GPU busy"
        )
    return ValidityWarning(
        code="host_bound",
        message=message,
        device=device,
        details=details,
    )


def thermal_drift(
    device: int, t: np.ndarray, temp_c: np.ndarray, t0: float, t1: float
) -> ValidityWarning | None:
    """The GPU was still warming up: mean temperature of the window's last third exceeds its
    first third's by more than THERMAL_DRIFT_C (power and clocks change with temperature)."""
    first, last = _thirds(t, temp_c, t0, t1)
    if first.size < MIN_TREND_SAMPLES // 2 or last.size < MIN_TREND_SAMPLES // 2:
        return None
    rise = float(np.mean(last) - np.mean(first))
    if rise <= THERMAL_DRIFT_C:
        return None
    return ValidityWarning(
        code="thermal_drift",
        message=(
            f"GPU {device} warmed from {np.mean(first):.1f} to {np.mean(last):.1f} °C between the "
            f"first and last third of the window (+{rise:.1f} °C, over {THERMAL_DRIFT_C:g} °C): "
            "it had not reached a steady temperature; warm up longer or lengthen the window"
        ),
        device=device,
        details={
            "first_third_c": float(np.mean(first)),
            "last_third_c": float(np.mean(last)),
            "rise_c": rise,
        },
    )


def throughput_drift(
    t_mid_s: list[float], tokens_per_s: list[float], duration_s: float
) -> ValidityWarning | None:
    """Throughput changed inside the window: the mean tokens/s of the passes centred in its last
    third differs from the first third's by more than THROUGHPUT_DRIFT_TOLERANCE."""
    if len(tokens_per_s) < 3 or duration_s <= 0:
        return None
    t = np.asarray(t_mid_s, dtype=float)
    r = np.asarray(tokens_per_s, dtype=float)
    first, last = _thirds(t, r, 0.0, duration_s)
    if first.size == 0 or last.size == 0 or float(np.mean(first)) <= 0:
        return None
    rel = float(np.mean(last) / np.mean(first) - 1.0)
    if abs(rel) <= THROUGHPUT_DRIFT_TOLERANCE:
        return None
    return ValidityWarning(
        code="throughput_drift",
        message=(
            f"throughput moved {rel * 100:+.1f} % between the first and last third of the window "
            f"({np.mean(first):.1f} -> {np.mean(last):.1f} tokens/s, tolerance "
            f"{THROUGHPUT_DRIFT_TOLERANCE * 100:.0f} %): the workload was not steady, so J/token "
            "depends on when it was measured"
        ),
        details={
            "first_third_tok_s": float(np.mean(first)),
            "last_third_tok_s": float(np.mean(last)),
            "relative": rel,
            "n_first": int(first.size),
            "n_last": int(last.size),
        },
    )
