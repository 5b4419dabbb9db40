"""The slurm runner's controller: one SLURM job per run, the manifest as the single truth.

``StudyRunner`` hands a study's runs here when its runner resolves to ``slurm``. The controller

* reattaches to runs whose job (from the manifest) is still queued or running, and records the end
  of jobs that finished while no controller watched; it never resubmits a live job;
* submits every other run still to do (pending, failed, cancelled, timed out, node-failed) as one
  job array in plan order, throttled to ``slurm.max_concurrent`` (``runners/slurm/submit.py``),
  each in a new attempt folder, and records each job id in the manifest;
* checks the results directory is shared with the nodes: the first job that ran must have written
  its ``node.json`` where the controller can read it;
* polls ``sacct`` (``runners/slurm/state.py``), recording each run's state, node, exit code and
  times as they change; a job SLURM killed (time limit, scancel, node failure, memory) becomes a
  failed/timed-out run naming that cause, and the study goes on;
* on Ctrl-C cancels exactly this study's live jobs (``scancel`` by id), marks them interrupted and
  lets ``StudyRunner`` exit 130; with ``detach`` it returns right after submission.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llenergymeasure.config.user import SlurmSettings
from llenergymeasure.errors import LLEMError, RunnerError
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.results.io import atomic_write_json
from llenergymeasure.results.layout import ERROR_FILE, NODE_FILE, PROGRESS_FILE, REQUEST_FILE
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.outcome import outcome_from_dir, read_back
from llenergymeasure.runners.slurm.node import TIMEOUT_EXIT, NodeTask
from llenergymeasure.runners.slurm.state import (
    CAUSES,
    JobState,
    cancel_jobs,
    check_cluster,
    query_jobs,
)
from llenergymeasure.runners.slurm.submit import submit
from llenergymeasure.timestamps import utc_now

#: seconds the controller waits for a finished job's node.json to appear (NFS attribute caches)
MARKER_GRACE_S = 15.0
#: seconds a just-submitted job may be unknown to accounting before that is an error
UNKNOWN_GRACE_S = 300.0
LIVE = ("queued", "running")


class StudyDetached(LLEMError):
    """``--detach``: the runs are submitted; the message says how to follow them."""

    exit_code = 0


def outcome_for_job(run_dir: Path, job: JobState) -> RunOutcome:
    """A finished job's run outcome: the harness's own files first, else the SLURM cause."""
    extra: dict[str, object] = {"job_id": job.job_id, "node": job.node, "state": job.detail}
    node = _read_json(run_dir / NODE_FILE)
    harness_code = node.get("harness_exit_code")
    where = f" on {job.node}" if job.node else ""
    if job.state == "COMPLETED":
        return outcome_from_dir(
            run_dir,
            harness_code if isinstance(harness_code, int) else job.exit_code,
            ended=f"job {job.job_id} completed{where} without writing a result",
            extra=extra,
        )
    if job.state == "FAILED":
        err = _read_json(run_dir / ERROR_FILE)
        timed_out = harness_code == TIMEOUT_EXIT or err.get("error_type") == "SlurmTimeLimit"
        if timed_out or (run_dir / ERROR_FILE).exists():
            outcome = outcome_from_dir(run_dir, job.exit_code, ended="", extra=extra)
            if timed_out:
                outcome.status = "timeout"
            return outcome
        return outcome_from_dir(
            run_dir,
            job.exit_code,
            ended=f"job {job.job_id} failed{where} (exit {job.exit_code}:{job.signal}) before "
            "the harness wrote anything; see the job's log in the study's .slurm folder",
            error_type="SlurmJobFailed",
            extra=extra,
        )
    cause = CAUSES.get(job.state, f"the job ended in state {job.detail}")
    message = f"job {job.job_id}{where}: {cause} ({job.detail})"
    if job.state == "CANCELLED" and not job.started:
        message = f"job {job.job_id} was cancelled before it started ({job.detail})"
    err = _read_json(run_dir / ERROR_FILE)
    if err.get("message"):
        message += f"; on the node: {str(err['message']).splitlines()[0]}"
    # the harness's own error stays; what the node's launcher saw (a signal) gives way to the cause
    if err.get("error_type") in (None, "ProcessDied", "SlurmSignal"):
        atomic_write_json(
            run_dir / ERROR_FILE,
            {
                "phase": _read_json(run_dir / PROGRESS_FILE).get("phase"),
                "error_type": f"Slurm{job.state.title().replace('_', '')}",
                "message": message,
                "exit_code": job.exit_code,
                "traceback": None,
            },
        )
    return RunOutcome(
        status="timeout" if job.state == "TIMEOUT" else "failed",
        run_dir=run_dir,
        error_path=run_dir / ERROR_FILE,
        message=message,
        phase=_read_json(run_dir / PROGRESS_FILE).get("phase"),
        error_type=f"Slurm{job.state.title().replace('_', '')}",
        exit_code=job.exit_code,
        extra=extra,
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_gpus_per_job(settings: SlurmSettings, configs: list[Any]) -> None:
    """On SLURM a job's GPUs are SLURM's choice: an experiment's ``gpus`` can only say how many,
    and that must be what each job asks for (``gres`` is not parsed: the harness checks then)."""
    if settings.gres is not None:
        return
    for config in configs:
        gpus = getattr(config, "gpus", None)
        if gpus is not None and len(gpus) != settings.gpus_per_job:
            raise RunnerError(
                f"experiment {config.label()}: gpus: {gpus} lists {len(gpus)} GPU(s) but each SLURM "
                f"job gets slurm.gpus_per_job = {settings.gpus_per_job}; set slurm.gpus_per_job: "
                f"{len(gpus)} in the user config, or leave gpus out (on SLURM the job's GPUs are "
                "the ones SLURM allocates; gpus can only say how many)"
            )


class SlurmStudyDriver:
    """Drives one study's runs on SLURM (see the module docstring)."""

    def __init__(
        self,
        settings: SlurmSettings,
        store: Any,  # study.manifest.ManifestStore (not imported: runners never import study)
        observer: Any,
        make_request: Callable[[Any], HarnessRequest] | None,
        *,
        image: str | None = None,
        fail_fast: bool = False,
        poll_s: float | None = None,
        check: bool = True,
    ) -> None:
        self.settings = settings
        self.store = store
        self.observer = observer
        self.make_request = make_request
        self.image = image
        self.fail_fast = fail_fast
        self.poll_s = poll_s if poll_s is not None else settings.poll_interval_s
        self.check = check
        self.runs: dict[str, Any] = {}  # run_id -> PlannedRun, for the live ones
        self.fs_checked = False
        #: when each live run's job was last seen in accounting (or submitted)
        self.last_seen: dict[str, float] = {}
        self.outcomes: list[RunOutcome] = []

    # -- the study ---------------------------------------------------------------------------

    def drive(self, to_run: list[Any], detach: bool = False) -> None:
        if self.check:
            check_cluster()
        try:
            self._reattach([r for r in to_run if self.store.get(r.run_id).status in LIVE])
            submit_now = [r for r in to_run if self._needs_submission(r)]
            self._submit(submit_now)
            if detach:
                live = [rid for rid in self.runs]
                raise StudyDetached(
                    f"{len(live)} run(s) on the cluster (jobs "
                    f"{', '.join(self.store.get(r).job_id or '?' for r in live[:6])}"
                    f"{', ...' if len(live) > 6 else ''}). Follow with: llem status "
                    f"{self.store.study_dir}  ·  collect the results with: llem run --resume "
                    f"{self.store.study_dir}"
                )
            self._wait()
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM raised as a KeyboardInterrupt
            self.cancel_all(str(exc) or "stopped by the user (Ctrl-C)")
            raise

    def _needs_submission(self, run: Any) -> bool:
        entry = self.store.get(run.run_id)
        if run.run_id in self.runs:
            return False
        return entry.status != "completed"

    def _reattach(self, runs: list[Any]) -> None:
        """Runs the manifest says are queued/running: follow live jobs, record finished ones."""
        with_job = [r for r in runs if self.store.get(r.run_id).job_id]
        states = query_jobs(self.store.get(r.run_id).job_id for r in with_job)
        for run in runs:
            entry = self.store.get(run.run_id)
            job = states.get(entry.job_id) if entry.job_id else None
            if job is None:
                if entry.job_id:
                    # submitted but not (yet) in accounting: ask again while waiting
                    self.runs[run.run_id] = run
                    self.last_seen[run.run_id] = time.monotonic()
                    continue
                # the controller died between creating the folder and sbatch: nothing runs it
                self.store.transition(
                    run.run_id, "interrupted", message="never submitted (the controller stopped)"
                )
                continue
            if job.terminal:
                self._finish(run, job)
            else:
                self.runs[run.run_id] = run
                self.last_seen[run.run_id] = time.monotonic()
                self._update_live(run, job)

    # -- submission --------------------------------------------------------------------------

    def _attempt_dir(self, run: Any) -> tuple[str, Path]:
        entry = self.store.get(run.run_id)
        k = entry.attempts + 1
        folder = run.run_id if k == 1 else f"{run.run_id}_a{k}"
        while (self.store.study_dir / folder).exists():
            k += 1
            folder = f"{run.run_id}_a{k}"
        path = self.store.study_dir / folder
        path.mkdir(parents=True)
        return folder, path

    def _submit(self, runs: list[Any]) -> None:
        if not runs:
            return
        if self.make_request is None:
            raise RunnerError("internal: this slurm driver only follows jobs; it cannot submit")
        check_gpus_per_job(self.settings, [run.config for run in runs])
        tasks: list[NodeTask] = []
        folders: list[str] = []
        for position, run in enumerate(runs, start=1):
            folder, run_dir = self._attempt_dir(run)
            request = self.make_request(run)
            if self.image is not None:
                # the container's request: cache paths absolute, readable by the container's user
                from llenergymeasure.runners.docker.experiment_container import (
                    ContainerSettings,
                    write_container_request,
                )

                write_container_request(ContainerSettings(image=self.image), request, run_dir)
            else:
                request.write(run_dir / REQUEST_FILE)
            gap = run.gap_before_s if position > 1 else 0.0
            tasks.append(
                NodeTask(
                    run_dir=str(run_dir.resolve()),
                    gap_s=gap,
                    timeout_s=run.config.timeout_s,
                    requested_gpus=0
                    if self.settings.gres is None and self.settings.gpus_per_job == 0
                    else max(1, self.settings.gpus_per_job),
                    image=self.image,
                )
            )
            folders.append(folder)
        job_name = f"llem-{self.store.study_dir.name}"[:100]
        job_ids = submit(self.settings, self.store.study_dir, job_name, tasks)
        now = time.monotonic()
        for run, folder, job_id in zip(runs, folders, job_ids, strict=True):
            self.store.transition(
                run.run_id,
                "queued",
                run_dir=folder,
                job_id=job_id,
                scheduler_state="PENDING",
                submitted_at=utc_now(),
            )
            self.runs[run.run_id] = run
            self.last_seen[run.run_id] = now
        self._status_view()

    # -- following ---------------------------------------------------------------------------

    def _wait(self) -> None:
        while self.runs:
            time.sleep(self.poll_s)
            live = {rid: self.store.get(rid).job_id for rid in self.runs}
            states = query_jobs(j for j in live.values() if j)
            for run_id, job_id in live.items():
                run = self.runs[run_id]
                job = states.get(job_id) if job_id else None
                if job is None:
                    # accounting lags behind slurmctld (a new job, an array element being split
                    # off its pending range): only a long silence is an error
                    if time.monotonic() - self.last_seen.setdefault(run_id, time.monotonic()) > (
                        UNKNOWN_GRACE_S
                    ):
                        self._finish_unknown(run)
                    continue
                self.last_seen[run_id] = time.monotonic()
                if job.terminal:
                    self._finish(run, job)
                else:
                    self._update_live(run, job)
            self._status_view()

    def _update_live(self, run: Any, job: JobState) -> None:
        entry = self.store.get(run.run_id)
        if job.state == "RUNNING" and entry.status == "queued":
            self.store.transition(run.run_id, "running", node=job.node, scheduler_state=job.state)
            self.observer.on_run_start(
                run, run.index, len(self.store.manifest.runs), self.store.study_dir / entry.run_dir
            )
        elif entry.scheduler_state != job.state or (job.node and entry.node != job.node):
            entry.scheduler_state = job.state
            entry.node = job.node or entry.node
            self.store.save()

    def _check_shared_fs(self, run_dir: Path, job: JobState) -> None:
        # only a job that ran to its own end (not one SLURM cancelled or killed, maybe before
        # Python started) must have written its marker
        if self.fs_checked or not job.started or job.state not in ("COMPLETED", "FAILED"):
            return
        deadline = time.monotonic() + MARKER_GRACE_S
        while not (run_dir / NODE_FILE).exists():
            if time.monotonic() > deadline:
                self.cancel_all("cancelled: the results directory is not shared with the nodes")
                raise RunnerError(
                    f"job {job.job_id} ran on {job.node or 'its node'} and ended {job.detail}, but "
                    f"its marker {run_dir / NODE_FILE} never appeared here. The results directory "
                    f"({self.store.study_dir.parent}) must be on a filesystem shared by this host "
                    "and the nodes (set output.results_dir or --results-dir to one), and llem must "
                    "be importable there by slurm.python; the job's own log is in "
                    f"{self.store.study_dir / '.slurm'} on the node"
                )
            time.sleep(0.5)
        self.fs_checked = True

    def _finish(self, run: Any, job: JobState) -> None:
        entry = self.store.get(run.run_id)
        run_dir = self.store.study_dir / (entry.run_dir or run.run_id)
        self._check_shared_fs(run_dir, job)
        outcome = outcome_for_job(run_dir, job)
        outcome, result = read_back(
            outcome, advice=" (is llenergymeasure on the nodes the controller's version?)"
        )
        node = _read_json(run_dir / NODE_FILE)
        harness_code = node.get("harness_exit_code")
        if entry.status == "queued":  # finished between two polls: it did start
            entry.started_at = job.start or entry.started_at
        self.store.end(
            run.run_id,
            outcome,
            node=job.node or entry.node,
            scheduler_state=job.detail,
            exit_code=harness_code if isinstance(harness_code, int) else job.exit_code,
        )
        self.runs.pop(run.run_id, None)
        self.outcomes.append(outcome)
        self.observer.on_run_end(run, outcome, result)
        if self.fail_fast and outcome.status != "completed" and self.runs:
            self.cancel_all(f"cancelled by --fail-fast after {run.run_id} failed")

    def _finish_unknown(self, run: Any) -> None:
        entry = self.store.get(run.run_id)
        self.store.transition(
            run.run_id,
            "failed",
            message=f"job {entry.job_id} vanished from SLURM accounting (sacct) for "
            f"{UNKNOWN_GRACE_S:g} s; check it with `sacct -j {entry.job_id}`",
            scheduler_state="UNKNOWN",
        )
        self.runs.pop(run.run_id, None)

    def cancel_all(self, why: str) -> None:
        """scancel every live job of this study (by id), and mark those runs interrupted."""
        live = {rid: self.store.get(rid).job_id for rid in self.runs}
        cancel_jobs(j for j in live.values() if j)
        for run_id, job_id in live.items():
            self.store.transition(
                run_id,
                "interrupted",
                message=f"{why}; job {job_id} cancelled (scancel {job_id})",
                scheduler_state="CANCELLED",
            )
        self.runs.clear()

    def _status_view(self) -> None:
        hook = getattr(self.observer, "on_cluster_status", None)
        if hook is not None:
            hook(self.store.manifest.runs)
