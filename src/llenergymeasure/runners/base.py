"""What every executor (local process, docker container) returns for one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from llenergymeasure.harness.request import HarnessRequest

RunStatus = Literal["completed", "failed", "timeout", "interrupted"]


@dataclass
class RunOutcome:
    """The end of one run. ``completed`` means ``result_path`` holds a valid result.json."""

    status: RunStatus
    run_dir: Path
    result_path: Path | None = None
    error_path: Path | None = None
    message: str | None = None
    phase: str | None = None
    error_type: str | None = None
    exit_code: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


class Executor(Protocol):
    """Runs the harness for one request with ``run_dir`` as its output directory.

    Contract: never raises for a failure inside the experiment (that is a ``RunOutcome`` with
    status failed/timeout and, where the harness could not write one, an ``error.json`` written by
    the executor itself); raises ``KeyboardInterrupt`` after cleaning up when interrupted.
    """

    def run(
        self, request: HarnessRequest, run_dir: Path, timeout_s: float | None = None
    ) -> RunOutcome: ...
