"""Deciding a run's outcome from the files it left and how its process or container ended.

Shared by the local and docker runners: ``result.json`` with a clean exit wins; else the
harness's own ``error.json``; else the runner writes ``error.json`` itself, naming how the run
ended (the caller's words), the phase it was in and the last lines of its log, so no failure is
ever silent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from llenergymeasure.results.io import atomic_write_json, damage_of
from llenergymeasure.results.layout import ERROR_FILE, LOG_FILE, PROGRESS_FILE, RESULT_FILE
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.runners.base import RunOutcome


def read_back(outcome: RunOutcome, advice: str = "") -> tuple[RunOutcome, ExperimentResult | None]:
    """A completed run's ``result.json``, parsed, with its outcome; a file that cannot be read or
    parsed turns the outcome into a failure in phase ``result`` (``advice`` is added to the
    message). Outcomes other than completed come back as they are, with no result."""
    if outcome.status != "completed" or outcome.result_path is None:
        return outcome, None
    try:
        return outcome, ExperimentResult.model_validate_json(outcome.result_path.read_text())
    except (OSError, ValueError) as exc:
        failed = RunOutcome(
            status="failed",
            run_dir=outcome.run_dir,
            message=f"result.json could not be read back{advice}: {exc}",
            phase="result",
            error_type=type(exc).__name__,
            extra=outcome.extra,
        )
        return failed, None


def tail_lines(path: Path, n: int = 25) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


def progress_phase(run_dir: Path) -> str | None:
    """The phase the harness last reported (``progress.json``), if any."""
    try:
        phase = json.loads((run_dir / PROGRESS_FILE).read_text(errors="replace")).get("phase")
    except (OSError, ValueError, AttributeError):
        return None  # no progress file, or a damaged one: the phase is unknown
    return str(phase) if isinstance(phase, str) else None


def _error_payload(path: Path) -> dict[str, object]:
    """``error.json`` as a mapping; a damaged one says so in its message (with the log's last
    lines), so the failure keeps a reason."""
    text = None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        payload = json.loads(text)
    except (OSError, ValueError) as exc:
        problem = damage_of(exc, text)
    else:
        if isinstance(payload, dict):
            return payload
        problem = f"it holds a JSON {type(payload).__name__}, not an object"
    message = f"the experiment failed; its {ERROR_FILE} is damaged ({problem})"
    tail = tail_lines(path.parent / LOG_FILE)
    return {"message": message + ("\nlast lines of run.log:\n" + tail if tail else "")}


def outcome_from_dir(
    run_dir: Path,
    exit_code: int | None,
    *,
    ended: str,
    timed_out: bool = False,
    error_type: str = "ProcessDied",
    extra: dict[str, object] | None = None,
) -> RunOutcome:
    """The run's outcome. ``ended`` says how the process ended when it left no result or error."""
    extra = extra or {}
    result = run_dir / RESULT_FILE
    error = run_dir / ERROR_FILE
    if not timed_out and exit_code == 0 and result.exists():
        return RunOutcome(
            status="completed",
            run_dir=run_dir,
            result_path=result,
            exit_code=exit_code,
            extra=extra,
        )
    if not timed_out and error.exists():
        payload = _error_payload(error)
        recorded_phase, recorded_type = payload.get("phase"), payload.get("error_type")
        return RunOutcome(
            status="failed",
            run_dir=run_dir,
            error_path=error,
            message=str(payload.get("message") or "the experiment failed"),
            phase=str(recorded_phase) if recorded_phase else progress_phase(run_dir),
            error_type=str(recorded_type) if recorded_type is not None else None,
            exit_code=exit_code,
            extra=extra,
        )
    status: Literal["failed", "timeout"] = "timeout" if timed_out else "failed"
    kind = "Timeout" if timed_out else error_type
    phase = progress_phase(run_dir)
    message = ended
    tail = tail_lines(run_dir / LOG_FILE)
    if tail:
        message += "\nlast lines of run.log:\n" + tail
    atomic_write_json(
        error,
        {
            "phase": phase,
            "error_type": kind,
            "message": message,
            "exit_code": exit_code,
            "traceback": None,
        },
    )
    return RunOutcome(
        status=status,
        run_dir=run_dir,
        error_path=error,
        message=message,
        phase=phase,
        error_type=kind,
        exit_code=exit_code,
        extra=extra,
    )
