"""A window's edges placed on the energy counter's own updates, and the quantisation bound.

NVML's total-energy counter changes about every 100 ms (``sensor_period_s``). A window read at
arbitrary times misses up to one period of energy at each end: the start reading holds the
value of the last update before it (energy ``P_start * u0`` too much is left out), the end
reading that of the last update before the end (``P_end * u1`` left out), ``u0, u1`` uniform on
one period. The error lies in ``(-T * P_end, +T * P_start)``: a range of width
``T * (P_start + P_end)``, a mean (bias) of ``T / 2 * (P_start - P_end)`` and at most
``T * max(P_start, P_end)`` in size, which is ``1 / N`` of the energy for ``N`` periods at
steady power.

``await_counter_updates`` polls each GPU's counter until it changes (a bounded wait of about one
period), so the update's time is known to within half the gap between the two reads that
bracket it (a few ms: one counter read is about 3 ms on an H200). The meter then takes the
window's edge there, and a GPU whose update came before the window's edge (several GPUs do not
update together) has the energy between its update and the edge corrected with the power read
at the edge: the error left is the power times that half-gap. ``quantisation_bound_j`` states
the bound that holds for each GPU's edges, aligned or not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CounterEdge:
    """One GPU's counter at one edge of a window."""

    counter_mj: int
    at_s: float  # when the counter held this value from: its update, or the read when not aligned
    resolution_s: float | None  # +- on ``at_s``; None when no update was seen (not aligned)

    @property
    def aligned(self) -> bool:
        return self.resolution_s is not None


def await_counter_updates(
    read_mj: Callable[[int], int],
    devices: Sequence[int],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    max_wait_s: float,
    poll_s: float = 0.001,
) -> list[CounterEdge]:
    """Read each device's counter, then poll those that have not changed until each has changed
    once or ``max_wait_s`` has passed on ``clock`` (at most ``max_wait_s / poll_s + 2`` rounds,
    so a clock that never moves cannot hold the caller). A change between reads at ``a`` and
    ``b`` dates the update at ``(a + b) / 2`` with resolution ``(b - a) / 2``; a device that did
    not change keeps its last reading, dated at that read, not aligned."""
    n = len(devices)
    last = [0] * n
    last_t = [0.0] * n
    for k, dev in enumerate(devices):
        last[k] = read_mj(dev)
        last_t[k] = clock()
    out: list[CounterEdge | None] = [None] * n
    start = clock()
    rounds = int(max_wait_s / poll_s) + 2 if poll_s > 0 else 10_000
    for _ in range(rounds):
        pending = [k for k in range(n) if out[k] is None]
        if not pending or clock() - start > max_wait_s:
            break
        if poll_s > 0:
            sleep(poll_s)
        for k in pending:
            value = read_mj(devices[k])
            now = clock()
            if value != last[k]:
                out[k] = CounterEdge(value, (last_t[k] + now) / 2, (now - last_t[k]) / 2)
            else:
                last_t[k] = now
    return [
        e if e is not None else CounterEdge(last[k], last_t[k], None) for k, e in enumerate(out)
    ]


def edge_correction_j(
    start: CounterEdge, end: CounterEdge, t0: float, t1: float, p_start_w: float, p_end_w: float
) -> float:
    """Joules to add to the counter's difference so that it covers [t0, t1]: an aligned start
    update before t0 counted ``p_start * (t0 - at)`` too much, an aligned end update before t1
    left ``p_end * (t1 - at)`` out. Edges that are not aligned get no correction (the counter's
    value there is what the window reads)."""
    out = 0.0
    if start.aligned:
        out -= p_start_w * (t0 - start.at_s)
    if end.aligned:
        out += p_end_w * (t1 - end.at_s)
    return out


def quantisation_bound_j(
    start: CounterEdge, end: CounterEdge, p_start_w: float, p_end_w: float, period_s: float
) -> float:
    """Largest error of one GPU's counter energy from its edges: ``P * resolution`` per aligned
    edge; for edges that are not aligned ``period * max(P)`` over them (their errors have
    opposite signs, so they do not add)."""
    bound = 0.0
    unaligned: list[float] = []
    for edge, p in ((start, p_start_w), (end, p_end_w)):
        if edge.resolution_s is not None:
            bound += p * edge.resolution_s
        else:
            unaligned.append(p)
    if unaligned:
        bound += period_s * max(unaligned)
    return bound
