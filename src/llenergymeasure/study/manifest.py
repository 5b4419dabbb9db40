"""The crash-safe study manifest: every planned run with its status, rewritten atomically.

Statuses: pending -> [queued ->] running -> completed | failed | interrupted | timeout (queued:
submitted to SLURM by the slurm runner, not yet started). A run left ``running``
by a controller that died is, on resume, adopted as completed when its folder holds a valid
``result.json`` of this run, and otherwise rerun in a new attempt folder (``study/recovery.py``),
so nothing already written is ever rewritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure._version import __version__
from llenergymeasure.errors import RunnerError, filesystem_error
from llenergymeasure.results.io import atomic_write_text, damage_of
from llenergymeasure.results.layout import LOCK_FILE, MANIFEST_FILE, STUDY_FILE
from llenergymeasure.results.loading import StudyDirError
from llenergymeasure.results.models import SCHEMA_VERSION
from llenergymeasure.timestamps import utc_now

if TYPE_CHECKING:
    from llenergymeasure.runners.base import RunOutcome

#: A manifest of another major schema version is refused; minor versions are read.
SCHEMA_MAJOR = SCHEMA_VERSION.partition(".")[0]

RunState = Literal[
    "pending", "queued", "running", "completed", "failed", "interrupted", "timeout"
]  # queued: submitted to a scheduler (slurm runner), not started yet


class ManifestRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str
    index: int
    config_hash: str
    config_index: int
    cycle: int
    backend: str
    status: RunState = "pending"
    attempts: int = 0
    run_dir: str | None = Field(
        None, description="folder of the latest attempt, relative to the study dir"
    )
    started_at: str | None = None
    ended_at: str | None = None
    message: str | None = None
    phase: str | None = None
    #: slurm runner: the attempt's job id (``A_i`` for array elements), node, accounting state,
    #: exit code and submission time; None for runs on this machine
    job_id: str | None = None
    node: str | None = None
    scheduler_state: str | None = None
    exit_code: int | None = None
    submitted_at: str | None = None
    #: execution.concurrent_runs > 1: the GPUs (controller CUDA indices) the attempt held
    gpus: list[int] | None = None
    #: result files of earlier attempts found partial or invalid on resume, kept as they were
    #: (paths relative to the study dir) and not counted
    set_aside: list[str] = Field(default_factory=list)
    history: list[dict[str, Any]] = Field(default_factory=list)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: str = SCHEMA_VERSION
    llenergymeasure_version: str = __version__
    study_name: str
    study_design_hash: str
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    controller: dict[str, Any] = Field(default_factory=dict)
    n_cycles: int
    runs: list[ManifestRun] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.runs:
            out[r.status] = out.get(r.status, 0) + 1
        return out


class ManifestStore:
    """Owns ``manifest.json`` in one study directory; every change is one atomic rewrite.

    Changes are serialised by a lock, so threads of one controller never interleave a transition
    with another's rewrite (the side-by-side scheduler makes them all from its main thread)."""

    def __init__(self, study_dir: Path, manifest: Manifest):
        self.study_dir = Path(study_dir)
        self.manifest = manifest
        self._index = {r.run_id: r for r in manifest.runs}
        self._lock = threading.RLock()

    @property
    def path(self) -> Path:
        return self.study_dir / MANIFEST_FILE

    @classmethod
    def load(cls, study_dir: Path) -> ManifestStore:
        return cls(Path(study_dir), read_manifest(Path(study_dir)))

    def save(self) -> None:
        with self._lock:
            self.manifest.updated_at = utc_now()
            atomic_write_text(self.path, self.manifest.model_dump_json())

    def claim_controller(self) -> None:
        self.manifest.controller = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": utc_now(),
        }
        self.save()

    def get(self, run_id: str) -> ManifestRun:
        return self._index[run_id]

    def has(self, run_id: str) -> bool:
        return run_id in self._index

    def append(self, run: ManifestRun) -> ManifestRun:
        """Add a run decided while the study runs (an SLO search's next rate), saved at once."""
        with self._lock:
            self.manifest.runs.append(run)
            self._index[run.run_id] = run
            self.save()
        return run

    def transition(
        self, run_id: str, status: RunState, note: str | None = None, **fields: Any
    ) -> ManifestRun:
        with self._lock:
            return self._transition(run_id, status, note, **fields)

    def end(self, run_id: str, outcome: RunOutcome, **fields: Any) -> ManifestRun:
        """Record how an attempt ended: its status, its phase and (unless it completed) the
        first 4,000 characters of its message."""
        message = None if outcome.status == "completed" else (outcome.message or "")[:4000]
        return self.transition(
            run_id, outcome.status, message=message, phase=outcome.phase, **fields
        )

    def _transition(
        self, run_id: str, status: RunState, note: str | None, **fields: Any
    ) -> ManifestRun:
        run = self._index[run_id]
        # an attempt begins when it starts, or when it is queued on a scheduler (then "running"
        # is the same attempt starting on its node)
        if status == "queued" or (status == "running" and run.status != "queued"):
            run.attempts += 1
            run.started_at = None if status == "queued" else utc_now()
            run.ended_at = None
            run.message = None
            run.phase = None
            run.job_id = run.node = run.scheduler_state = run.submitted_at = None
            run.exit_code = None
            run.gpus = None
        elif status == "running":
            run.started_at = utc_now()
        else:
            run.ended_at = utc_now()
        run.status = status
        for key, value in fields.items():
            setattr(run, key, value)
        event: dict[str, Any] = {"status": status, "time": utc_now(), "attempt": run.attempts}
        if note:
            event["note"] = note
        run.history.append(event)
        self.save()
        return run


class DamagedManifest(StudyDirError):
    """``manifest.json`` is empty, cut short, not JSON or has a field of the wrong type (exit 2);
    ``problem`` says which. ``llem run --resume`` rebuilds such a manifest from the run folders."""

    def __init__(self, path: Path, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(
            f"{path} is damaged: {problem}. Restore it from a backup, or resume with "
            f"`llem run --resume {path.parent}`, which rebuilds it from {STUDY_FILE} and the run "
            "folders (the damaged file is kept beside it)"
        )


def read_manifest(study_dir: Path) -> Manifest:
    """The manifest of ``study_dir``. A file that cannot be read raises ``FileSystemError``
    (exit 74), one of another schema major version ``StudyDirError``, a damaged one
    ``DamagedManifest`` (both exit 2); each names the file, what is wrong and what to do."""
    path = Path(study_dir) / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise filesystem_error(exc, "read the study's manifest") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DamagedManifest(path, damage_of(exc, text)) from None
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, str) and version.partition(".")[0] != SCHEMA_MAJOR:
        raise StudyDirError(
            f"{path}: schema_version {version!r} is not this llenergymeasure's "
            f"({SCHEMA_VERSION}, version {__version__}): resume the study with the llenergymeasure "
            "version that wrote it, or start it again with `llem run STUDY.yaml`"
        )
    try:
        return Manifest.model_validate(data)
    except ValueError as exc:  # valid JSON by now: the text has nothing more to say
        raise DamagedManifest(path, damage_of(exc)) from None


@contextlib.contextmanager
def study_lock(study_dir: Path) -> Iterator[None]:
    """Exclusive lock so two controllers never drive one study directory."""
    with open(study_dir / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunnerError(
                f"{study_dir} is being run by another llem process right now; wait for it or stop it"
            ) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
