"""Runs of a study side by side on disjoint GPUs (``execution.concurrent_runs`` > 1).

The controller's main thread does all the bookkeeping (attempt folders, manifest transitions,
``result.json`` amendments, observer calls), so the manifest keeps a single writer; each running
experiment has one worker thread that only drives its executor (``executor.run``). Rules:

- runs start in plan order; the next run waits until enough GPUs are free (or exactly its
  ``gpus``), and at most ``concurrent_runs`` run at once. Two runs never hold one GPU;
- gaps are per GPU: a run starts on a GPU only once its ``gap_before_s`` has passed since that GPU
  was last released (free GPUs that are ready first are chosen first);
- ``fail_fast``: after a failed run nothing new starts; runs already going finish and are kept;
- Ctrl-C / SIGTERM (``KeyboardInterrupt`` in the main thread): every worker gets a
  ``KeyboardInterrupt`` of its own, so each executor stops its process (group or container) the
  way it does when run alone; every run still going is recorded ``interrupted``;
- an error inside one run (its executor raising) fails that run only; its neighbours go on.
"""

from __future__ import annotations

import contextlib
import ctypes
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llenergymeasure.clocks import boot_id
from llenergymeasure.errors import RunnerError
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.device_lock import DeviceLocker
from llenergymeasure.runners.outcome import read_back
from llenergymeasure.runners.resolution import ResolvedRunner
from llenergymeasure.study.execution import (
    device_lock_failure,
    executor_for,
    locked,
    new_attempt_dir,
)
from llenergymeasure.study.manifest import ManifestStore
from llenergymeasure.study.observer import StudyObserver
from llenergymeasure.study.placement import (
    OPTION,
    GpuPool,
    Span,
    amend_result,
    check_plan_fits,
    discover_pool,
    gpus_needed,
    pool_from,
)
from llenergymeasure.study.planning import PlannedRun
from llenergymeasure.study.requests import RequestBuilder, runner_record

#: how long an interrupted run's worker is waited for (its executor stops its process first)
STOP_WAIT_S = 60.0
_POLL_S = 0.5


@dataclass
class _Slot:
    run: PlannedRun
    position: int
    run_dir: Path
    span: Span
    thread: threading.Thread | None = None
    outcome: RunOutcome | None = None
    recorded: bool = False
    #: set by the controller to stop the run; its worker checks it before the executor starts
    stop: threading.Event = field(default_factory=threading.Event)
    #: set by the worker as it begins; from then on only an exception raised in it stops it
    began: threading.Event = field(default_factory=threading.Event)


def _raise_in(thread: threading.Thread) -> None:
    """Raise ``KeyboardInterrupt`` inside ``thread`` (delivered at its next Python bytecode)."""
    if thread.ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt)
        )


class ConcurrentScheduler:
    """Drives ``to_run`` with up to ``limit`` runs at once on disjoint GPUs of ``pool``."""

    def __init__(
        self,
        store: ManifestStore,
        to_run: list[PlannedRun],
        *,
        limit: int,
        pool: GpuPool,
        make_request: Callable[[PlannedRun, list[int]], HarnessRequest],
        make_executor: Callable[[PlannedRun, list[int]], Any],
        observer: StudyObserver,
        fail_fast: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        locker: DeviceLocker | None = None,
        clock_boot_id: str | None = None,
    ) -> None:
        #: machine-wide locks of each run's GPUs while it runs (runners/device_lock.py)
        self.locker = locker
        self.store = store
        self.to_run = list(to_run)
        self.limit = limit
        self.pool = pool
        self.make_request = make_request
        self.make_executor = make_executor
        self.observer = observer
        self.fail_fast = fail_fast
        self.clock = clock
        self.wall = wall
        #: the boot ``clock`` counts from: spans on CLOCK_MONOTONIC are compared with the window
        #: the run's harness read on it (placement.window_of); None for another clock
        self.clock_boot_id = clock_boot_id or (boot_id() if clock is time.monotonic else None)
        self.slots: list[_Slot] = []
        self.busy: dict[int, str] = {}  # GPU -> run id holding it
        self.released: dict[int, float] = {}  # GPU -> clock() when last released
        self.stopped_launching = False
        self._done: queue.Queue[_Slot] = queue.Queue()
        self._stop_how = "stopped by the user (Ctrl-C)"
        #: the run being launched: a stop can land after it is marked running, before its slot
        self._launching: str | None = None

    # -- placement -----------------------------------------------------------------------------

    def _choose(self, run: PlannedRun) -> tuple[list[int], float] | None:
        """The GPUs for ``run`` and when they are ready (its gap after their last run), or None
        while not enough of them are free."""
        need = gpus_needed(run.config, self.limit)
        free = [g for g in self.pool.gpus if g not in self.busy]
        if isinstance(need, list):
            if any(g not in free for g in need):
                return None
            chosen = list(need)
        else:
            if len(free) < need:
                return None

            def ready(g: int) -> float:
                last = self.released.get(g)
                return -1.0 if last is None else last + run.gap_before_s

            chosen = sorted(sorted(free, key=lambda g: (ready(g), g))[:need])
        ready_at = max(
            (self.released[g] + run.gap_before_s for g in chosen if g in self.released),
            default=0.0,
        )
        return chosen, ready_at

    # -- the loop ------------------------------------------------------------------------------

    def drive(self) -> None:
        """Run everything; raises ``KeyboardInterrupt`` (after stopping and recording every run
        still going) when interrupted."""
        pending = list(self.to_run)
        position = 0
        gap_announced: str | None = None
        try:
            while pending or self._running():
                self._collect(timeout=0)
                if pending and not self.stopped_launching and len(self._running()) < self.limit:
                    choice = self._choose(pending[0])
                    if choice is not None:
                        gpus, ready_at = choice
                        wait = ready_at - self.clock()
                        if wait <= 0:
                            position += 1
                            self._launch(pending.pop(0), gpus, position)
                            continue
                        if gap_announced != pending[0].run_id:
                            gap_announced = pending[0].run_id
                            self.observer.on_gap(wait, pending[0].gap_kind)
                        self._collect(timeout=min(wait, _POLL_S))
                        continue
                if self.stopped_launching and not self._running():
                    break
                if not self._running():  # nothing runs and the next run cannot start: a bug
                    raise RuntimeError(
                        f"run {pending[0].run_id} can never start on {self.pool.describe()}"
                    )
                self._collect(timeout=_POLL_S)
        except BaseException as exc:
            self._stop_all(exc)
            raise

    def _running(self) -> list[_Slot]:
        return [s for s in self.slots if not s.recorded]

    def _launch(self, run: PlannedRun, gpus: list[int], position: int) -> None:
        self._launching = run.run_id
        folder, run_dir = new_attempt_dir(self.store, run.run_id)
        self.store.transition(run.run_id, "running", run_dir=folder, gpus=gpus)
        span = Span(run.run_id, gpus, self.clock(), self.wall(), boot_id=self.clock_boot_id)
        slot = _Slot(run, position, run_dir, span)
        for g in gpus:
            self.busy[g] = run.run_id
        self.slots.append(slot)
        self._launching = None
        # built once the run is marked running: an error here leaves it running, rerun on resume
        request = self.make_request(run, gpus)
        self.observer.on_run_start(run, position, len(self.to_run), run_dir)
        executor = self.make_executor(run, gpus)
        slot.thread = threading.Thread(
            target=self._work,
            args=(slot, executor, request),
            name=f"llem-run-{run.run_id}",
            daemon=True,
        )
        slot.thread.start()

    def _work(self, slot: _Slot, executor: Any, request: HarnessRequest) -> None:
        outcome: RunOutcome | None = None
        try:
            try:
                slot.began.set()
                if slot.stop.is_set():  # stopped before this thread began: never run the executor
                    raise KeyboardInterrupt
                labels = [self.pool.labels.get(g, f"gpu{g}") for g in slot.span.gpus]
                with contextlib.ExitStack() as stack:
                    try:
                        request = stack.enter_context(
                            locked(
                                self.locker, slot.run.run_id, slot.span.gpus, request, None, labels
                            )
                        )
                    except RunnerError as exc:  # its GPUs' lock refused (LLEM_DEVICE_LOCK=refuse)
                        outcome = device_lock_failure(slot.run_dir, exc)
                    else:
                        outcome = executor.run(request, slot.run_dir, slot.run.config.timeout_s)
            except KeyboardInterrupt:
                outcome = RunOutcome(
                    status="interrupted", run_dir=slot.run_dir, message=self._stop_how
                )
            except BaseException as exc:  # one run's crash must not take its neighbours down
                outcome = RunOutcome(
                    status="failed",
                    run_dir=slot.run_dir,
                    message=f"the runner failed: {type(exc).__name__}: {exc}",
                    phase="runner",
                    error_type=type(exc).__name__,
                )
        except KeyboardInterrupt:  # a stop delivered while the handler above ran
            pass
        finally:
            if outcome is None:
                outcome = RunOutcome(
                    status="interrupted", run_dir=slot.run_dir, message=self._stop_how
                )
            slot.span.end, slot.span.end_wall = self.clock(), self.wall()
            slot.outcome = outcome
            self._done.put(slot)

    def _collect(self, timeout: float) -> None:
        """Record every run that ended; waits up to ``timeout`` s for the first one."""
        try:
            slot = self._done.get(timeout=timeout) if timeout > 0 else self._done.get_nowait()
        except queue.Empty:
            return
        while True:
            self._record(slot)
            try:
                slot = self._done.get_nowait()
            except queue.Empty:
                return

    def _record(self, slot: _Slot) -> None:
        if slot.recorded:
            return
        outcome = slot.outcome or RunOutcome(
            status="interrupted", run_dir=slot.run_dir, message=self._stop_how
        )
        if slot.span.end is None:
            slot.span.end, slot.span.end_wall = self.clock(), self.wall()
        for g in slot.span.gpus:
            self.busy.pop(g, None)
            self.released[g] = slot.span.end
        outcome, result = read_back(outcome)
        if result is not None and outcome.result_path is not None:
            try:
                result = amend_result(
                    outcome.result_path,
                    result,
                    slot.span,
                    [s.span for s in self.slots],
                    self.pool,
                    self.limit,
                    self.clock(),
                    self.wall(),
                )
            except (OSError, ValueError) as exc:
                outcome = RunOutcome(
                    status="failed",
                    run_dir=slot.run_dir,
                    message=f"result.json could not be amended with the run's placement: {exc}",
                    phase="result",
                    error_type=type(exc).__name__,
                )
                result = None
        slot.recorded = True
        self.store.end(slot.run.run_id, outcome)
        self.observer.on_run_end(slot.run, outcome, result)
        if outcome.status != "completed" and self.fail_fast:
            self.stopped_launching = True

    def _stop_all(self, exc: BaseException) -> None:
        """Stop every run still going and record each (interrupted unless it ended first)."""
        from llenergymeasure._signals import stop_description

        if isinstance(exc, KeyboardInterrupt):
            self._stop_how = stop_description(exc)[0]
        else:
            self._stop_how = f"stopped: the study controller failed ({type(exc).__name__})"
        going = self._running()
        # A worker that has not begun sees ``stop`` before its executor starts (its thread may
        # still be starting: a stop can land inside ``Thread.start``); one that has begun gets a
        # KeyboardInterrupt of its own and is waited for.
        for slot in going:
            slot.stop.set()
            if slot.outcome is None and slot.thread is not None and slot.began.is_set():
                _raise_in(slot.thread)
        deadline = time.monotonic() + STOP_WAIT_S
        try:
            for slot in going:
                if slot.thread is not None and slot.began.is_set():
                    slot.thread.join(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, still record every run
            pass
        for slot in going:
            if slot.outcome is not None and slot.outcome.status == "completed":
                self._record(slot)  # finished before the stop: keep it
                continue
            if slot.outcome is None:  # never started, or its executor did not return in time
                late = slot.began.is_set() and slot.thread is not None and slot.thread.is_alive()
                slot.outcome = RunOutcome(
                    status="interrupted",
                    run_dir=slot.run_dir,
                    message=self._stop_how
                    + (f"; its executor had not returned after {STOP_WAIT_S:g} s" if late else ""),
                )
            self._record(slot)  # interrupted, or failed / timed out on its own as it ended
        self._end_unslotted_launch()

    def _end_unslotted_launch(self) -> None:
        """A stop that landed in ``_launch`` after the run was marked running but before its slot
        was kept: the run never started, and is recorded interrupted (never left running)."""
        run_id, self._launching = self._launching, None
        if run_id is None or any(s.run.run_id == run_id for s in self.slots):
            return
        entry = self.store.get(run_id)
        if entry.status == "running":
            run_dir = self.store.study_dir / (entry.run_dir or run_id)
            self.store.end(
                run_id, RunOutcome(status="interrupted", run_dir=run_dir, message=self._stop_how)
            )


def concurrency_pool(
    plan: list[PlannedRun],
    runners: dict[str, ResolvedRunner],
    *,
    limit: int,
    gpu_pool: Sequence[int] | Mapping[int, str] | None,
    environ: Mapping[str, str],
) -> GpuPool | None:
    """The GPU pool for ``execution.concurrent_runs`` (``limit``) > 1, checked against every
    planned run (``ConfigError`` / ``RunnerError`` before anything runs); None for one run at a
    time. ``gpu_pool``: the GPUs given (None: the visible ones, read from ``environ`` and NVML)."""
    if limit <= 1:
        return None
    slurm = [r for r in runners.values() if r.kind == "slurm"]
    if slurm:
        raise RunnerError(
            f"{OPTION} = {limit} runs experiments side by side on the GPUs of this machine, but "
            f"the runner is slurm (from {slurm[0].source}), which runs each experiment as a job "
            f"of its own; side-by-side placement under SLURM is not supported. Set {OPTION}: 1, "
            "or run on the node with the local or docker runner"
        )
    if gpu_pool is not None:
        pool = pool_from(gpu_pool)
    else:
        from llenergymeasure.environment.snapshot import capture_environment

        pool = discover_pool(environ, capture_environment(environ=environ))
    check_plan_fits(plan, pool, limit)
    return pool


def run_concurrently(
    store: ManifestStore,
    to_run: list[PlannedRun],
    runners: dict[str, ResolvedRunner],
    pool: GpuPool,
    *,
    limit: int,
    requests: RequestBuilder,
    model_cache_dir: Path,
    observer: StudyObserver,
    fail_fast: bool = False,
    locker: DeviceLocker | None = None,
) -> None:
    """The study loop for ``execution.concurrent_runs`` (``limit``) > 1. Raises
    ``KeyboardInterrupt`` once every run still going is stopped and recorded."""

    def make_request(run: PlannedRun, gpus: list[int]) -> HarnessRequest:
        resolved = runners[run.config.backend].for_experiment(run.config)
        return requests.request(run, runner_record(resolved), concurrent=True)

    def make_executor(run: PlannedRun, gpus: list[int]) -> Any:
        resolved = runners[run.config.backend].for_experiment(run.config)
        return executor_for(resolved, model_cache_dir, gpus=gpus)

    ConcurrentScheduler(
        store,
        to_run,
        limit=limit,
        pool=pool,
        make_request=make_request,
        make_executor=make_executor,
        observer=observer,
        fail_fast=fail_fast,
        locker=locker,
    ).drive()
