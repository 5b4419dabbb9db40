"""One run of a study: its attempt folder, its executor, its outcome read back and recorded.

The study loop (``study/runner.py``) decides what runs when; this module runs one planned run in
a new attempt folder (never reusing one), reads its ``result.json`` back and records the outcome
in the manifest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from llenergymeasure.errors import RunnerError
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.device_lock import DeviceLocker
from llenergymeasure.runners.outcome import read_back
from llenergymeasure.runners.resolution import IMAGE_SOURCE_ENV, ResolvedRunner
from llenergymeasure.study.manifest import ManifestStore
from llenergymeasure.study.observer import StudyObserver
from llenergymeasure.study.planning import PlannedRun


def executor_for(
    resolved: ResolvedRunner, model_cache_dir: Path, gpus: list[int] | None = None
) -> Any:
    """The runner object that executes a request: Docker or the local subprocess runner.

    ``gpus``: the CUDA indices (as this process sees them) the experiment gets; None: the
    experiment's own ``gpus`` field, else the runner's default (``runners/placement.py``).
    ``resolved``: the experiment's runner (``ResolvedRunner.for_experiment``); where its image was
    chosen per experiment, why is passed into the container (``IMAGE_SOURCE_ENV``), for the result.
    """
    if resolved.kind == "docker":
        from llenergymeasure.runners.docker.runner import DockerRunner

        extra_env = {IMAGE_SOURCE_ENV: resolved.image_source} if resolved.image_source else {}
        return DockerRunner(
            resolved.image or "",
            model_cache_dir=model_cache_dir,
            gpus="auto" if gpus is None else list(gpus),
            extra_env=extra_env,
        )
    from llenergymeasure.runners.local import LocalRunner

    return LocalRunner(gpus=gpus)


@contextlib.contextmanager
def locked(
    locker: DeviceLocker | None,
    run_id: str,
    gpus: Sequence[int] | None,
    request: HarnessRequest,
    should_stop: Callable[[], bool] | None = None,
    devices: Sequence[str] | None = None,
) -> Iterator[HarnessRequest]:
    """Hold the run's device locks (none without a locker); yields the request with the lock
    and any wait recorded in its runner record, so the run's ``result.json`` carries them.

    ``devices``: the lock names when the caller knows them (a GPU pool's labels); else they are
    derived from ``gpus`` (``DeviceLocker.devices``)."""
    if locker is None:
        yield request
        return
    with locker.hold(run_id, gpus, should_stop, devices=devices) as record:
        runner = request.runner.model_copy(update={"device_lock": record})
        yield request.model_copy(update={"runner": runner})


def device_lock_failure(run_dir: Path, exc: RunnerError) -> RunOutcome:
    """The outcome of a run that did not start because its devices could not be locked."""
    return RunOutcome(
        status="failed",
        run_dir=run_dir,
        message=str(exc),
        phase="device_lock",
        error_type=type(exc).__name__,
    )


def new_attempt_dir(store: ManifestStore, run_id: str) -> tuple[str, Path]:
    """A fresh folder for the next attempt of a run (``_a2`` etc. for reruns), created."""
    entry = store.get(run_id)
    attempt = entry.attempts + 1
    folder = run_id if attempt == 1 else f"{run_id}_a{attempt}"
    run_dir = store.study_dir / folder
    k = attempt
    while run_dir.exists():  # a folder from a controller that died mid-write: never reuse it
        k += 1
        folder = f"{run_id}_a{k}"
        run_dir = store.study_dir / folder
    run_dir.mkdir(parents=True)
    return folder, run_dir


def run_attempt(
    store: ManifestStore,
    run: PlannedRun,
    make_request: Callable[[], HarnessRequest],
    make_executor: Callable[[], Any],
    observer: StudyObserver,
    position: int,
    total: int,
    locker: DeviceLocker | None = None,
) -> RunOutcome:
    """Run one planned run in a new attempt folder and record its outcome in the manifest.

    The request and the executor are built once the run is marked running (as callables, so an
    error building them leaves the run marked running, to be rerun on resume). ``locker``: hold
    the machine-wide lock of the run's devices while it runs (``runners/device_lock.py``)."""
    folder, run_dir = new_attempt_dir(store, run.run_id)
    store.transition(run.run_id, "running", run_dir=folder)
    request = make_request()
    observer.on_run_start(run, position, total, run_dir)
    outcome: RunOutcome
    with contextlib.ExitStack() as stack:
        try:
            request = stack.enter_context(
                locked(locker, run.run_id, getattr(run.config, "gpus", None), request)
            )
        except RunnerError as exc:  # LLEM_DEVICE_LOCK=refuse, or a lock directory not writable
            outcome = device_lock_failure(run_dir, exc)
        else:
            outcome = make_executor().run(request, run_dir, run.config.timeout_s)
    outcome, result = read_back(outcome)
    store.end(run.run_id, outcome)
    observer.on_run_end(run, outcome, result)
    return outcome
