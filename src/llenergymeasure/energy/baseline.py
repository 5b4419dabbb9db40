"""Idle-power baselines and energy above idle.

A GPU draws power doing nothing; over a long window that idle draw is a large share of the raw
energy, and how much depends on the GPU's state: the same H200 idled at 77-81 W with no context
and at 124-126 W right after warmup with a model resident. So two baselines are kept apart
(``docs/methodology.md``):

- **cold idle**: before the engine starts (no CUDA context of ours), cached on disk per GPU,
  keyed by what changes idle power (UUID, driver, enforced power limit, persistence mode,
  application clocks; ``gpu_state.baseline_identity``).
- **resident idle**: this experiment's process, model loaded, after warmup, once the power has
  settled (two successive ~1 s means within ``baseline_settle_tolerance``); cached only under a
  key that adds the experiment's config hash, so one engine's or model's resident idle is never
  reused for another.

Each idle window is a series of ~1 s sub-windows: the mean is their energy over their time, its
standard error is the sub-window means' standard deviation / sqrt(n), and the drift is the
relative change of the least-squares line through the sub-window means (on the sampled power where
there is one: a 1 s counter window sees 10 or 11 updates), with its own standard error. A window
whose GPU utilisation exceeds ``baseline_max_util_pct``, or whose drift exceeds
``baseline_max_drift`` and is significant against its SE, is rejected (recorded, not applied, not
cached).

The cache file is read and written by ``energy/baseline_cache.py``.

Energy above resident idle = raw - idle_power_w * duration_s, **not clamped**: a negative value
says the baseline was higher than the window's own draw, which is information. Its standard error
is duration_s * SE(idle W) per GPU, root-sum-square over GPUs. Raw energy stays the headline.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llenergymeasure.clocks import boot_id
from llenergymeasure.config.validity import ValiditySettings
from llenergymeasure.energy import checks
from llenergymeasure.energy.baseline_cache import CACHE_FILE, from_cache, load_cache, store_entries
from llenergymeasure.energy.meters import EnergyMeter
from llenergymeasure.energy.types import (
    BaselineRecord,
    EnergyMeasurement,
    MonotonicWindow,
    ValidityWarning,
)
from llenergymeasure.results.stats import t_quantile_975
from llenergymeasure.timestamps import utc_now

SUB_WINDOW_S = 1.0  # length of the idle sub-windows (10 sensor periods on an H200)
# Warnings of a ~1 s sub-window that do not make it less valid as an idle reading. A 1 s window
# is short by design (the statistics come from many of them), and its counter / integrated-power
# cross-check is judged over the whole idle window instead (_mismatch), where the 100 ms
# quantisation of each sub-window's ends averages out: on the H200 single 1 s idle windows
# disagreed by more than 5 % while the whole window agreed.
_IGNORED_IN_BASELINE = {"short_window", "power_capped", "counter_power_mismatch"}


def drift_fit(points: list[tuple[float, float]]) -> tuple[float, float | None]:
    """(drift, its standard error) of ``[(mid-time s, mean W)]`` in time order: the least-squares
    line through the sub-window means, drift = fitted W at the last mid-time / at the first - 1,
    SE = SE(slope) * (last - first mid-time) / fitted W at the first. With two points the drift
    is their ratio and has no SE (None); with fewer, 0 and None. A fit at or below 0 W: 0."""
    n = len(points)
    if n < 2:
        return 0.0, None
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx <= 0:
        return 0.0, None
    slope = sum((x - mx) * (y - my) for x, y in points) / sxx
    span = xs[-1] - xs[0]
    first = my + slope * (xs[0] - mx)
    if first <= 0:
        return 0.0, None
    drift = slope * span / first
    if n == 2:
        return drift, None
    ssr = sum((y - (my + slope * (x - mx))) ** 2 for x, y in points)
    se_slope = math.sqrt(ssr / (n - 2) / sxx)
    return drift, se_slope * span / first


def drift_statistics(
    sub_windows: list[tuple[float, dict[int, float]]],
) -> tuple[dict[int, float], dict[int, float | None]]:
    """(drift, SE of the drift) per GPU from ``[(duration_s, {gpu: energy_j})]`` in time order,
    each sub-window's mean W placed at its mid-time (``drift_fit``); sub-windows without time
    are left out. A GPU missing from a sub-window gets nothing."""
    drifts: dict[int, float] = {}
    ses: dict[int, float | None] = {}
    gpus = sorted(set().union(*(e.keys() for _, e in sub_windows))) if sub_windows else []
    for g in gpus:
        if any(g not in e for _, e in sub_windows):
            continue
        points: list[tuple[float, float]] = []
        t = 0.0
        for d, e in sub_windows:
            if d > 0:
                points.append((t + d / 2, e[g] / d))
            t += max(d, 0.0)
        drifts[g], ses[g] = drift_fit(points)
    return drifts, ses


def idle_statistics(
    sub_windows: list[tuple[float, dict[int, float]]],
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """(mean W, SE of the mean W, drift) per GPU from ``[(duration_s, {gpu: energy_j})]``.

    mean = sum(energy) / sum(duration); SE = stdev(sub-window mean W) / sqrt(n) (0 for n = 1);
    drift = the fitted relative change over the window (``drift_statistics``)."""
    means: dict[int, float] = {}
    ses: dict[int, float] = {}
    total_s = sum(d for d, _ in sub_windows)
    gpus = sorted(set().union(*(e.keys() for _, e in sub_windows))) if sub_windows else []
    for g in gpus:
        if total_s <= 0 or any(g not in e for _, e in sub_windows):
            continue
        means[g] = sum(e[g] for _, e in sub_windows) / total_s
        powers = [e[g] / d for d, e in sub_windows if d > 0]
        n = len(powers)
        ses[g] = statistics.stdev(powers) / math.sqrt(n) if n >= 2 else 0.0
    drifts, _ = drift_statistics(sub_windows)
    return means, ses, {g: d for g, d in drifts.items() if g in means}


def _window(
    meter: EnergyMeter, seconds: float, sleep: Callable[[float], None]
) -> EnergyMeasurement:
    meter.start()
    try:
        sleep(seconds)
    finally:
        m = meter.stop()
    return m


def _state(meter: EnergyMeter) -> dict[int, dict[str, Any]]:
    nvml = getattr(meter, "nvml", None)
    if nvml is None:
        return {}
    from llenergymeasure.energy.gpu_state import idle_state

    return {i: idle_state(nvml, i) for i in meter.nvml_indices}


def settle(
    meter: EnergyMeter,
    tolerance: float,
    max_s: float,
    *,
    step_s: float = SUB_WINDOW_S,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Wait until every GPU's mean power over two successive ``step_s`` windows differs by less
    than ``tolerance`` (relative), or ``max_s`` has passed. Returns the seconds spent."""
    spent = 0.0
    previous: dict[int, float] | None = None
    while spent < max_s:
        m = _window(meter, step_s, sleep)
        spent += m.duration_s if m.duration_s > 0 else step_s
        if m.duration_s <= 0 or not m.devices:
            return spent
        now = {d.nvml_index: d.energy_j / m.duration_s for d in m.devices}
        if previous is not None and all(
            previous.get(i, 0.0) > 0 and abs(p / previous[i] - 1.0) < tolerance
            for i, p in now.items()
        ):
            return spent
        previous = now
    return spent


@dataclass
class _IdleWindows:
    """What the idle sub-windows saw, gathered for ``measure_idle_baseline``."""

    counter: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    power: list[tuple[float, dict[int, float]]] = field(default_factory=list)
    warnings: dict[tuple[str, int | None], ValidityWarning] = field(default_factory=dict)
    n_samples: dict[int, int] = field(default_factory=dict)
    max_util: dict[int, float] = field(default_factory=dict)
    integrated: dict[int, float | None] = field(default_factory=dict)

    def add(self, m: EnergyMeasurement) -> None:
        self.counter.append((m.duration_s, {d.nvml_index: d.energy_j for d in m.devices}))
        self.power.append(
            (
                m.duration_s,
                {
                    d.nvml_index: d.integrated_energy_j
                    for d in m.devices
                    if d.integrated_energy_j is not None
                },
            )
        )
        for d in m.devices:
            self.n_samples[d.nvml_index] = self.n_samples.get(d.nvml_index, 0) + d.n_samples
            prev = self.integrated.get(d.nvml_index, 0.0)
            self.integrated[d.nvml_index] = (
                prev + d.integrated_energy_j
                if prev is not None and d.integrated_energy_j is not None and d.method == "counter"
                else None
            )
        for w in m.warnings:
            if w.code not in _IGNORED_IN_BASELINE:
                self.warnings.setdefault((w.code, w.device), w)

    def drift(self) -> tuple[dict[int, float], dict[int, float | None]]:
        """Drift and its SE per GPU from the sampled power where every sub-window has it (no
        counter quantisation: a 1 s counter window sees 10 or 11 updates), else the counter."""
        by_counter = drift_statistics(self.counter)
        by_power = drift_statistics(self.power)
        drifts = {g: by_power[0].get(g, d) for g, d in by_counter[0].items()}
        ses = {g: by_power[1][g] if g in by_power[0] else se for g, se in by_counter[1].items()}
        return drifts, ses


def _measure_windows(
    meter: EnergyMeter, n: int, step: float, sleep: Callable[[float], None]
) -> tuple[_IdleWindows | None, dict[int, dict[str, Any]]]:
    """``n`` sub-windows of ``step`` s: (what they saw, or None when one measured nothing; the
    GPU state at the end, with the start state and the highest utilisation seen)."""
    seen = _IdleWindows()
    state: dict[int, dict[str, Any]] = _state(meter)
    for _ in range(n):
        m = _window(meter, step, sleep)
        if m.duration_s <= 0 or not m.devices:
            return None, {}
        seen.add(m)
        for i, st in _state(meter).items():
            if "util_pct" in st:
                seen.max_util[i] = max(seen.max_util.get(i, 0.0), float(st["util_pct"]))
    end_state = _state(meter)
    for i, st in end_state.items():
        st["start"] = state.get(i, {})
        if i in seen.max_util:
            st["max_util_pct"] = seen.max_util[i]
    return seen, end_state


def measure_idle_baseline(
    meter: EnergyMeter,
    duration_s: float,
    cache_dir: Path | None,
    ttl_s: float,
    *,
    kind: Literal["cold", "resident"] = "cold",
    key_extra: str | None = None,
    thresholds: ValiditySettings | None = None,
    cache_write: bool = True,
    clock: Any = time.time,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    monotonic_boot_id: str | None = None,
) -> BaselineRecord:
    """Mean idle power per GPU over ``duration_s`` seconds (in ~1 s sub-windows), or from the
    cache when every measured GPU has an entry of this ``kind`` (and ``key_extra``, e.g. the
    config hash for resident idle) younger than ``ttl_s`` (0 or ``cache_dir=None``: no cache).

    ``kind="resident"`` waits for the power to settle first. The caller makes sure the GPUs are
    idle (no work queued) before calling. ``cache_write=False`` (runs side by side, when another
    run may load the node) reads the cache but never writes a window measured now to it.

    ``clock`` (wall time) stamps cache entries and judges their age, across processes and boots;
    the window itself is recorded on ``monotonic`` (``window_monotonic``, with the boot it counts
    from: ``monotonic_boot_id``, else this boot's for ``time.monotonic``), which a wall-clock step
    does not move: the controller compares it with the runs beside it (study/placement.py).
    """
    th = thresholds or ValiditySettings()
    if not meter.available:
        return BaselineRecord(
            available=False,
            kind=kind,
            unavailable_reason=meter.unavailable_reason or "no energy meter is available",
        )
    if not (isinstance(duration_s, (int, float)) and duration_s > 0 and math.isfinite(duration_s)):
        raise ValueError(
            f"baseline duration_s must be a positive number of seconds, got {duration_s!r}"
        )
    identity = meter.cache_identity() or {}
    suffix = f"|{kind}" + (f"|{key_extra}" if key_extra else "")
    keys = {i: ident + suffix for i, ident in identity.items()}
    use_cache = cache_dir is not None and ttl_s > 0 and bool(keys)
    cache_path = Path(cache_dir) / CACHE_FILE if cache_dir is not None and use_cache else None
    cache_key = ",".join(keys[i] for i in sorted(keys)) or None

    cache_problems: list[str] = []
    if cache_path is not None:
        entries = load_cache(cache_path, cache_problems)
        try:
            cached = from_cache(entries, keys, clock(), ttl_s, kind, cache_key)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # an entry of wrong type
            cached = None
            cache_problems.append(f"an entry has a field of the wrong type ({exc})")
        if cached is not None:
            return cached

    mono_start = monotonic()
    settle_s = (
        settle(meter, th.baseline_settle_tolerance, th.baseline_settle_max_s, sleep=sleep)
        if kind == "resident"
        else None
    )
    n = max(2, round(duration_s / SUB_WINDOW_S))
    seen, end_state = _measure_windows(meter, n, duration_s / n, sleep)
    boot = monotonic_boot_id or (boot_id() if monotonic is time.monotonic else None)
    window = MonotonicWindow(start_s=mono_start, end_s=monotonic(), boot_id=boot)
    if seen is None:
        return BaselineRecord(
            available=False, kind=kind, unavailable_reason="the idle window measured nothing"
        )
    means, ses, _ = idle_statistics(seen.counter)
    drifts, drift_ses = seen.drift()
    for i, total_integrated in seen.integrated.items():
        counter_j = sum(e.get(i, 0.0) for _, e in seen.counter)
        mismatch = checks.counter_power_mismatch(i, counter_j, total_integrated)
        if mismatch is not None:
            seen.warnings.setdefault((mismatch.code, mismatch.device), mismatch)
    rejected = rejection_reason(seen.max_util, drifts, drift_ses, th, n)
    record = BaselineRecord(
        kind=kind,
        idle_power_w=means,
        idle_power_se_w=ses,
        drift=drifts,
        drift_se={i: se for i, se in drift_ses.items() if se is not None},
        n_windows=n,
        settle_s=settle_s,
        state=end_state,
        accepted=rejected is None,
        rejected_reason=rejected,
        duration_s=sum(d for d, _ in seen.counter),
        measured_at=utc_now("seconds"),
        from_cache=False,
        cache_key=cache_key,
        n_samples=sum(seen.n_samples.values()),
        warnings=list(seen.warnings.values()),
        window_monotonic=window,
    )
    # A window that saw other processes, throttling, load or drift is not cached: it is not idle.
    # Nor is one that has no mean for some GPU (a device missing from a sub-window).
    stored = (
        cache_write
        and cache_path is not None
        and not record.warnings
        and record.accepted
        and all(i in means for i in keys)
    )
    if stored and cache_path is not None:
        store_entries(cache_path, keys, record, clock(), seen.n_samples)
    if cache_problems:  # after the store decision: this note is no reason not to cache
        record.warnings.append(
            ValidityWarning(
                code="baseline_cache_unreadable",
                severity="info",
                message=f"the idle-baseline cache {cache_path} could not be used "
                f"({'; '.join(cache_problems)}): ignored, the baseline measured now"
                + (" and the cache rebuilt" if stored else ""),
            )
        )
    return record


def rejection_reason(
    max_util: dict[int, float],
    drifts: dict[int, float],
    drift_ses: dict[int, float | None],
    th: ValiditySettings,
    n_windows: int,
) -> str | None:
    """Why an idle window is rejected, or None. Utilisation above the limit rejects; a drift
    rejects when it is both above ``baseline_max_drift`` and significant: above t(0.975, n - 2)
    times its standard error (a drift without an SE, from two sub-windows, is judged on its
    size alone). Noise and the counter's quantisation raise the SE, a real trend does not."""
    reasons = [
        f"GPU {i} utilisation reached {u:g} % (limit {th.baseline_max_util_pct:g} %)"
        for i, u in sorted(max_util.items())
        if u > th.baseline_max_util_pct
    ]
    t_crit = t_quantile_975(n_windows - 2) if n_windows > 2 else math.inf
    for i, d in sorted(drifts.items()):
        se = drift_ses.get(i)
        if abs(d) <= th.baseline_max_drift or (se is not None and abs(d) <= t_crit * se):
            continue
        se_text = f", SE {se * 100:.1f} %" if se is not None else ""
        reasons.append(
            f"GPU {i} idle power drifted {d * 100:+.1f} % over the window (fitted line"
            f"{se_text}; limit {th.baseline_max_drift * 100:g} %)"
        )
    return "; ".join(reasons) or None


def apply_baseline(
    measurement: EnergyMeasurement, baseline: BaselineRecord | None
) -> EnergyMeasurement:
    """A copy of ``measurement`` with, per device, ``energy_above_idle_j = raw - idle_w *
    duration_s`` (not clamped) and ``energy_above_idle_se_j = duration_s * SE(idle_w)``, and
    their total (sum; SE root-sum-square). Devices without a baseline value stay None, and then
    so does the total; a rejected baseline (``accepted: false``) is not applied."""
    out = measurement.model_copy(deep=True)
    if baseline is None or not baseline.available or not baseline.accepted or not out.available:
        return out
    total = 0.0
    var = 0.0
    complete = bool(out.devices)
    for d in out.devices:
        idle = baseline.idle_power_w.get(d.nvml_index)
        if idle is None or math.isnan(d.energy_j):
            complete = False
            continue
        se_w = baseline.idle_power_se_w.get(d.nvml_index, 0.0)
        d.idle_power_w = idle
        d.energy_above_idle_j = d.energy_j - idle * out.duration_s
        d.energy_above_idle_se_j = out.duration_s * se_w
        total += d.energy_above_idle_j
        var += d.energy_above_idle_se_j**2
    out.total_energy_above_idle_j = total if complete else None
    out.total_energy_above_idle_se_j = math.sqrt(var) if complete else None
    return out
