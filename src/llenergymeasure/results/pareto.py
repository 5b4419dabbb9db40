"""Pareto fronts over (x, energy per token) points: which configurations no other beats on both.

Results-level, so the report's figures and the leaderboard export draw the same front from one
rule without the results layer reaching up into the report.
"""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]], maximise_x: bool) -> list[int]:
    """Indices of the non-dominated points; y is always minimised (energy per token).

    A point is dominated when another is at least as good on both coordinates and strictly better
    on one. Ties (identical points) are all kept. Returned in order of increasing x.
    """
    front: list[int] = []
    for i, (xi, yi) in enumerate(points):
        dominated = False
        for j, (xj, yj) in enumerate(points):
            if i == j:
                continue
            better_x = xj > xi if maximise_x else xj < xi
            as_good_x = xj >= xi if maximise_x else xj <= xi
            if as_good_x and yj <= yi and (better_x or yj < yi):
                dominated = True
                break
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
