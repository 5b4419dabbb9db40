"""Figures of the report: each PNG written to ``figures/`` and embedded in the page as base64."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from llenergymeasure.report.html_cells import esc
from llenergymeasure.results.layout import FIGURES_DIR


class EmbeddedFigures:
    """Writes each figure to ``figures/`` and returns the HTML that embeds the same bytes."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.written: list[Path] = []
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, name: str, png: bytes, alt: str, caption: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") + ".png"
        path = self.directory / safe
        tmp = path.with_name(f".{safe}.tmp")
        tmp.write_bytes(png)
        tmp.replace(path)
        self.written.append(path)
        data = base64.b64encode(png).decode("ascii")
        return (
            f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{caption} <span class="muted">({esc(FIGURES_DIR + "/" + safe)})</span>'
            "</figcaption></figure>"
        )

    def remove_stale(self) -> None:
        """Drop PNGs of an earlier generation that this one did not write (e.g. renamed runs)."""
        keep = set(self.written)
        for old in self.directory.glob("*.png"):
            if old not in keep:
                old.unlink(missing_ok=True)
