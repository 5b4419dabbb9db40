"""What the harness's phases hand on: the loaded model and the measured window, as plain records.

``build_result`` (``harness/result.py``) turns them into an ``ExperimentResult``; the phases
(``harness/core.py``, ``harness/phases.py``) fill them. They hold data only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt
from llenergymeasure.energy.types import EnergyMeasurement
from llenergymeasure.results.models import EnergySplit, LoadRecord, WindowRecord


@dataclass(frozen=True)
class LoadedModel:
    """The model the backend loaded: where from, what it is, and its timed, metered load."""

    resolved: Any  # models.synthetic.ResolvedModel: path and weights
    load_info: LoadInfo
    load: LoadRecord
    import_s: float  # engine import, before the load timer started


@dataclass(frozen=True)
class MeasuredWindow:
    """The measured window: its energy (baseline applied), what ran in it, and its estimates.

    ``prompts`` holds one prompt per request the window sent (every pass's prompts in order), so
    a fixed output length can be checked against ``out``.
    """

    energy: EnergyMeasurement
    cpu_energy: Any  # energy.types.CpuEnergy
    out: GenerationOutput
    prompts: list[Prompt]
    duration_s: float
    record: WindowRecord | None = None
    edges: dict[int, dict[str, float]] | None = None  # GPU state at the window's two edges
    split: EnergySplit | None = None
    timeseries_file: str | None = None
    peak_bytes: int | None = None
