"""How ``llem run`` names and formats things: the fields that tell a study's experiments apart,
numbers and durations."""

from __future__ import annotations

__all__ = ["fmt", "hms"]


def fmt(value: float | None, digits: int = 4, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.1f}"
    elif abs(value) >= 1:
        text = f"{value:.{max(1, digits - 2)}f}"
    else:
        text = f"{value:.{digits}g}"
    return f"{text}{unit}"


def hms(seconds: float) -> str:
    s = round(seconds)
    return (
        f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
    )
