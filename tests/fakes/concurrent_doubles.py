"""A test-double executor for the side-by-side scheduler (study/concurrent.py).

It does what an executor does at its boundary, without an experiment: records when it ran and on
which GPUs, writes a valid ``result.json`` for its run, or fails, raises, or runs until stopped
(``KeyboardInterrupt``, as the real runners get it), and says so in the shared log.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llenergymeasure.energy.types import BaselineRecord
from llenergymeasure.harness.request import HarnessRequest
from llenergymeasure.results.layout import RESULT_FILE
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.runners.base import RunOutcome
from tests.builders import make_unmetered_result

STARTED_FILE = "double.started"


def result_for(request: HarnessRequest, baseline: BaselineRecord | None = None) -> ExperimentResult:
    config = request.config
    return make_unmetered_result(
        config, experiment_id=request.settings.run_id or "?", baseline=baseline
    )


@dataclass
class Interval:
    run_id: str
    gpus: list[int]
    start: float
    end: float | None = None
    how: str = "running"  # completed | failed | raised | stopped


@dataclass
class Log:
    """What every executor did, in one place (thread-safe)."""

    intervals: list[Interval] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: run id -> behaviour: "ok", "fail", "raise", "hang", ("wait", barrier) to meet neighbours,
    #: ("until", predicate) to end once something has happened
    behaviour: dict[str, Any] = field(default_factory=dict)
    hold_s: float = 0.05
    running: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(0))
    baseline_for: dict[str, BaselineRecord] = field(default_factory=dict)

    def make_executor(self, run: Any, gpus: list[int]) -> DoubleExecutor:
        return DoubleExecutor(self, list(gpus))


class DoubleExecutor:
    kind = "double"

    def __init__(self, log: Log, gpus: list[int]) -> None:
        self.log = log
        self.gpus = gpus

    def run(
        self, request: HarnessRequest, run_dir: Path, timeout_s: float | None = None
    ) -> RunOutcome:
        run_id = request.settings.run_id or "?"
        interval = Interval(run_id, self.gpus, time.monotonic())
        with self.log.lock:
            self.log.intervals.append(interval)
        how = self.log.behaviour.get(run_id, "ok")
        try:
            (run_dir / STARTED_FILE).write_text(run_id)  # seen from another process, too
            self.log.running.release()
            if isinstance(how, tuple) and how[0] == "wait":
                how[1].wait(timeout=60)  # BrokenBarrierError when the neighbour never came
            elif isinstance(how, tuple) and how[0] == "until":
                deadline = time.monotonic() + 60
                while not how[1]():
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{run_id}: the awaited condition never came")
                    time.sleep(0.02)
            elif how == "hang":
                while True:
                    time.sleep(0.02)
            elif how == "raise":
                raise RuntimeError(f"executor of {run_id} broke")
            time.sleep(self.log.hold_s)
            if how == "fail":
                (run_dir / "error.json").write_text(json.dumps({"message": "boom"}))
                interval.how = "failed"
                return RunOutcome(status="failed", run_dir=run_dir, message="boom", phase="load")
            path = run_dir / RESULT_FILE
            baseline = self.log.baseline_for.get(run_id)
            if baseline is not None and baseline.measured_at is None:  # measured just now
                stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
                baseline = baseline.model_copy(update={"measured_at": stamp})
            path.write_text(result_for(request, baseline).model_dump_json())
            interval.how = "completed"
            return RunOutcome(status="completed", run_dir=run_dir, result_path=path)
        except KeyboardInterrupt:
            interval.how = "stopped"
            raise
        except BaseException:
            interval.how = "raised"
            raise
        finally:
            interval.end = time.monotonic()


def max_at_once(intervals: list[Interval]) -> int:
    events = sorted(
        [(i.start, 1) for i in intervals] + [(i.end or float("inf"), -1) for i in intervals],
        key=lambda e: (e[0], e[1]),
    )
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def overlapping_pairs(intervals: list[Interval]) -> list[tuple[Interval, Interval]]:
    out = []
    for k, a in enumerate(intervals):
        for b in intervals[k + 1 :]:
            if min(a.end or float("inf"), b.end or float("inf")) > max(a.start, b.start):
                out.append((a, b))
    return out
