"""How ``llem run`` names and formats things: the fields that tell a study's experiments apart,
numbers and durations."""

from __future__ import annotations

from llenergymeasure.config.labels import config_fields as _config_fields
from llenergymeasure.config.labels import distinguish as _distinguish
from llenergymeasure.config.labels import flatten as _flatten
from llenergymeasure.config.labels import varying_fields as _varying_fields

__all__ = ["_config_fields", "_distinguish", "_flatten", "_fmt", "_hms", "_varying_fields"]


def _fmt(value: float | None, digits: int = 4, unit: str = "") -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.1f}"
    elif abs(value) >= 1:
        text = f"{value:.{max(1, digits - 2)}f}"
    else:
        text = f"{value:.{digits}g}"
    return f"{text}{unit}"


def _hms(seconds: float) -> str:
    s = round(seconds)
    return (
        f"{s // 3600}h{(s % 3600) // 60:02d}m{s % 60:02d}s"
        if s >= 3600
        else f"{s // 60}m{s % 60:02d}s"
    )
