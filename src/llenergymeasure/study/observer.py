"""What a study tells its watcher (the CLI's live view) as it goes, and a watcher that ignores it.

Every study loop (one run at a time, side by side, on SLURM) calls the same hooks, so the CLI
shows any of them the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study.planning import PlannedRun


class StudyObserver(Protocol):
    """Progress hooks for the CLI's live view."""

    def on_start(
        self, study_dir: Path, plan: list[PlannedRun], to_run: list[PlannedRun]
    ) -> None: ...
    def on_gap(self, seconds: float, kind: str) -> None: ...
    def on_run_start(self, run: PlannedRun, position: int, total: int, run_dir: Path) -> None: ...
    def on_run_end(
        self, run: PlannedRun, outcome: RunOutcome, result: ExperimentResult | None
    ) -> None: ...


class NullObserver:
    """A ``StudyObserver`` that shows nothing (the API, ``llem status``)."""

    def on_start(self, study_dir: Path, plan: list[PlannedRun], to_run: list[PlannedRun]) -> None:
        pass

    def on_gap(self, seconds: float, kind: str) -> None:
        pass

    def on_run_start(self, run: PlannedRun, position: int, total: int, run_dir: Path) -> None:
        pass

    def on_run_end(
        self, run: PlannedRun, outcome: RunOutcome, result: ExperimentResult | None
    ) -> None:
        pass
