"""Which GPUs a study run holds when runs go side by side (``execution.concurrent_runs`` > 1).

- the **pool**: the GPUs the controller sees, as CUDA indices of the controller (entries of its
  ``CUDA_VISIBLE_DEVICES``, or every NVML GPU when that is unset), each with a label (its UUID
  where known);
- what a run **needs**: its ``gpus`` when the config names them (it then waits for exactly those),
  else what its backend's section says (``gpus_needed``: one GPU, or ``tensor x pipeline``
  parallel size);
- its **placement** once it ended: the GPUs it held and every other run that overlapped it in
  time (and for how long it overlapped the measured window), written into its ``result.json``
  with a ``neighbour_load`` warning when one ran during that window (an atomic rewrite by the
  controller, the only writer once the run's process has exited).

The overlap with the measured window compares times of two processes (the controller's spans and
the harness's window). Both are read on CLOCK_MONOTONIC, which NTP never steps, when the result
records its window there and both processes counted from the same boot; otherwise (older results,
another boot) on the wall clock, with a note saying so (``clocks.py``).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.devices import parse_cuda_visible_devices
from llenergymeasure.energy.types import BaselineRecord, MonotonicWindow, ValidityWarning
from llenergymeasure.errors import ConfigError
from llenergymeasure.results.io import atomic_write_text
from llenergymeasure.results.models import ExperimentResult, NeighbourRecord, PlacementRecord
from llenergymeasure.study.planning import PlannedRun

OPTION = "execution.concurrent_runs"
#: seconds of slack when comparing a baseline's ``measured_at`` (whole seconds) with neighbours
_BASELINE_SLACK_S = 1.0


@dataclass(frozen=True)
class GpuPool:
    """The GPUs runs may be placed on: controller CUDA index -> label (UUID, or the entry)."""

    labels: dict[int, str]
    source: str

    @property
    def gpus(self) -> list[int]:
        return sorted(self.labels)

    def describe(self) -> str:
        if not self.labels:
            return f"no GPU ({self.source})"
        shown = ", ".join(f"{i} ({self.labels[i]})" for i in self.gpus)
        return f"{len(self.labels)} GPU(s): {shown} ({self.source})"


def pool_from(given: Sequence[int] | Mapping[int, str]) -> GpuPool:
    """A pool given by the caller (tests, a scheduler that knows better): indices or labels."""
    if isinstance(given, Mapping):
        labels = {int(i): str(label) for i, label in given.items()}
    else:
        labels = {int(i): f"gpu{int(i)}" for i in given}
    return GpuPool(labels, "given to the study runner")


def discover_pool(environ: Mapping[str, str], snapshot: Any) -> GpuPool:
    """The GPUs the controller sees: its ``CUDA_VISIBLE_DEVICES`` entries, else NVML's GPUs
    (from the environment snapshot, which also gives their UUIDs)."""
    gpus = list(getattr(snapshot, "gpus", None) or [])
    uuid_of = {
        getattr(g, "nvml_index", None): getattr(g, "uuid", None) for g in gpus if g is not None
    }
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    entries = parse_cuda_visible_devices(raw)
    if entries is not None:
        labels: dict[int, str] = {}
        for i, entry in enumerate(entries):
            uuid = uuid_of.get(int(entry)) if entry.isdigit() else None
            labels[i] = uuid or entry
        return GpuPool(labels, f"CUDA_VISIBLE_DEVICES={raw!r}")
    count = getattr(snapshot, "gpu_count", None) or 0
    labels = {i: uuid_of.get(i) or f"nvml{i}" for i in range(count)}
    problem = (getattr(snapshot, "probe_errors", None) or {}).get("gpus")
    return GpuPool(labels, f"NVML: {problem}" if problem else "NVML, CUDA_VISIBLE_DEVICES unset")


def gpus_needed(config: ExperimentConfig, limit: int) -> int | list[int]:
    """The exact GPUs (a list: the config's ``gpus``) or the number of GPUs a run needs."""
    fixed = getattr(config, "gpus", None)
    if fixed:
        return [int(g) for g in fixed]
    section = config.backend_section()
    spread = section.spread_setting(config.backend)
    if spread:
        raise ConfigError(
            f"{spread} without `gpus`: with {OPTION} = {limit} each run must say which GPUs it "
            "spreads over, or it would take every GPU its neighbours use; add e.g. "
            f"`gpus: [0, 1]` to that experiment, or set {OPTION}: 1"
        )
    return section.gpus_needed()


def check_plan_fits(runs: Sequence[PlannedRun], pool: GpuPool, limit: int) -> None:
    """``ConfigError`` before anything runs when a run needs GPUs the pool does not have."""
    problems: list[str] = []
    for run in runs:
        need = gpus_needed(run.config, limit)
        if isinstance(need, list):
            missing = [g for g in need if g not in pool.labels]
            if missing:
                problems.append(f"{run.run_id} needs gpus {need}; {missing} not among them")
        elif need > len(pool.labels):
            problems.append(f"{run.run_id} ({run.config.backend}) needs {need} GPU(s)")
    if problems:
        shown = "\n  ".join(dict.fromkeys(problems))
        raise ConfigError(
            f"{OPTION} = {limit}: the controller sees {pool.describe()}, fewer than these runs "
            f"need:\n  {shown}\nRun on a node with more GPUs, expose them (CUDA_VISIBLE_DEVICES), "
            f"give the runs fewer GPUs, or set {OPTION}: 1"
        )


@dataclass
class Span:
    """One run's process as the controller saw it: ``start``/``end`` on the controller's
    monotonic clock (durations, overlaps), ``start_wall``/``end_wall`` wall time (timestamps)."""

    run_id: str
    gpus: list[int]
    start: float
    start_wall: float
    end: float | None = None
    end_wall: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the boot ``start``/``end`` count from when they are CLOCK_MONOTONIC readings
    #: (``time.monotonic``); None when the controller's clock is another (an injected one)
    boot_id: str | None = None


@dataclass(frozen=True)
class Window:
    """A run's measured window on the clock both sides of an overlap share, and, when that is
    the wall clock, why (a step of the wall clock between the two readings would shift it)."""

    start: float
    end: float
    clock: Literal["monotonic", "wall"]
    note: str | None = None

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def overlap_s(a: Span, b: Span, now: float) -> float:
    end_a = a.end if a.end is not None else now
    end_b = b.end if b.end is not None else now
    return max(0.0, min(end_a, end_b) - max(a.start, b.start))


def measured_window(result: ExperimentResult) -> tuple[float, float] | None:
    """Wall-clock (start, end) of the run's measured window, from its energy record (the meter
    stamps the window's opening in UTC), or None when the result does not say."""
    energy = result.energy
    if not energy.started_at or not energy.duration_s or energy.duration_s <= 0:
        return None
    try:
        start = _dt.datetime.fromisoformat(energy.started_at).timestamp()
    except ValueError:
        return None
    return start, start + energy.duration_s


def window_of(result: ExperimentResult, span: Span) -> Window | None:
    """The run's measured window on CLOCK_MONOTONIC when its result recorded it there and the
    controller's ``span`` counts from the same boot, else on the wall clock with the reason."""
    return _shared_clock_window(
        result.energy.window_monotonic, span, measured_window(result), "the result"
    )


def _shared_clock_window(
    mono: MonotonicWindow | None, span: Span, wall: tuple[float, float] | None, subject: str
) -> Window | None:
    """``mono`` when the controller's ``span`` counts CLOCK_MONOTONIC from the same boot, else
    ``wall`` (None: not known) with the reason; ``subject`` names whose window it is."""
    if (
        mono is not None
        and span.boot_id is not None
        and mono.boot_id == span.boot_id
        and mono.end_s > mono.start_s
    ):
        return Window(mono.start_s, mono.end_s, "monotonic")
    if wall is None:
        return None
    if mono is None:
        why = f"{subject} records its window on the wall clock only (a result from an older llenergymeasure)"
    elif span.boot_id is None:
        why = "the controller's clock is not CLOCK_MONOTONIC"
    elif mono.boot_id != span.boot_id:
        why = (
            f"the run's process counted CLOCK_MONOTONIC from boot {mono.boot_id}, the "
            f"controller from boot {span.boot_id}"
        )
    else:
        why = f"{subject}'s monotonic window is empty ({mono.start_s} .. {mono.end_s})"
    note = f"overlaps with the window on the wall clock, which a clock step would shift: {why}"
    return Window(wall[0], wall[1], "wall", note)


def window_overlap_s(
    other: Span, window: Window, now: float | None, now_wall: float | None
) -> float:
    """Seconds ``other``'s process ran inside ``window``, on the window's clock; a span still
    running runs until now (``now`` monotonic, ``now_wall`` wall; the window's end if not
    given)."""
    if window.clock == "monotonic":
        start, end = other.start, other.end if other.end is not None else now
    else:
        start, end = other.start_wall, other.end_wall if other.end_wall is not None else now_wall
    end = window.end if end is None else end
    return max(0.0, min(end, window.end) - max(start, window.start))


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat()


def placement_for(
    span: Span,
    spans: Sequence[Span],
    pool: GpuPool,
    limit: int,
    now: float,
    window: Window | None = None,
    now_wall: float | None = None,
) -> PlacementRecord:
    """This run's placement: its GPUs and every other span that overlapped its process in time
    (monotonic), each with the seconds it overlapped the measured ``window`` when known."""
    neighbours = []
    for other in spans:
        if other is span or other.run_id == span.run_id:
            continue
        seconds = overlap_s(span, other, now)
        if seconds > 0:
            neighbours.append(
                NeighbourRecord(
                    run_id=other.run_id,
                    gpus=list(other.gpus),
                    overlap_s=seconds,
                    window_overlap_s=(
                        window_overlap_s(other, window, now, now_wall)
                        if window is not None
                        else None
                    ),
                )
            )
    return PlacementRecord(
        gpus=list(span.gpus),
        devices=[pool.labels.get(g, f"gpu{g}") for g in span.gpus],
        concurrent=limit > 1,
        concurrent_runs=limit,
        started_at=_iso(span.start_wall),
        ended_at=_iso(span.end_wall),
        neighbours=neighbours,
    )


def neighbour_warning(
    placement: PlacementRecord,
    run_s: float | None,
    window_s: float | None = None,
    window_clock: str | None = None,
) -> ValidityWarning | None:
    """``neighbour_load`` when another run ran during this run's measured window (not a gate:
    information). A neighbour counts only for the seconds it overlapped the window: one that ran
    only during this run's load or warmup did not share the host with what was measured (a
    baseline it overlapped is marked apart). Without a known window (``window_overlap_s`` None)
    the overlap of the two processes counts, as before issue 25. ``window_clock`` says which
    clock the window overlaps were read on ("monotonic", or the wall clock's note)."""
    counted = [
        n for n in placement.neighbours if n.window_overlap_s is None or n.window_overlap_s > 0
    ]
    if not counted:
        return None
    by_window = all(n.window_overlap_s is not None for n in counted)

    def seconds(n: NeighbourRecord) -> float:
        return n.window_overlap_s if n.window_overlap_s is not None else n.overlap_s

    longest = max(seconds(n) for n in counted)
    listed = ", ".join(f"{n.run_id} on GPU(s) {n.gpus} for {seconds(n):.1f} s" for n in counted)
    if by_window:
        of = f" of its {window_s:.1f} s window" if window_s else ""
        head = (
            f"{len(counted)} other run(s) ran during this run's measured window (up to "
            f"{longest:.1f} s{of})"
        )
    else:
        of = f" of this run's {run_s:.1f} s" if run_s else ""
        head = f"{len(counted)} other run(s) ran beside this one (up to {longest:.1f} s{of})"
    return ValidityWarning(
        code="neighbour_load",
        message=(
            f"{head}: {listed}. They share the host CPU, PCIe and cooling with this run's GPUs, "
            "which can move its energy and throughput"
        ),
        details={
            "neighbours": [n.model_dump() for n in counted],
            "max_overlap_s": longest,
            "counted_over": "window" if by_window else "process",
            "run_s": run_s,
            "window_s": window_s,
            "window_clock": window_clock if by_window else None,
        },
    )


def _baseline_window(record: BaselineRecord) -> tuple[float, float] | None:
    """Wall-clock (start, end) of a measured (not cached) idle window, settle time included."""
    if record.from_cache or not record.measured_at or not record.duration_s:
        return None
    try:
        end = _dt.datetime.fromisoformat(record.measured_at).timestamp()
    except ValueError:
        return None
    return end - record.duration_s - (record.settle_s or 0.0), end


def _mark_baseline(
    record: BaselineRecord | None, span: Span, spans: Sequence[Span], now: float, now_wall: float
) -> BaselineRecord | None:
    """The baseline with a ``neighbour_load`` warning when a neighbour ran during its window: on
    CLOCK_MONOTONIC when the baseline recorded its window there and the controller counts from
    the same boot, else on the wall clock (``measured_at`` in whole seconds, so with a second's
    slack each side), the reason in the warning's ``details.window_clock``."""
    if record is None or record.from_cache:  # a cached baseline was measured before this run
        return record
    window = _shared_clock_window(
        record.window_monotonic, span, _baseline_window(record), "the idle baseline"
    )
    if window is None:
        return record
    slack = 0.0 if window.clock == "monotonic" else _BASELINE_SLACK_S
    widened = Window(window.start - slack, window.end + slack, window.clock)
    beside = [
        o
        for o in spans
        if o.run_id != span.run_id and window_overlap_s(o, widened, now, now_wall) > 0
    ]
    if not beside:
        return record
    kind = f"{record.kind} " if record.kind else ""
    warning = ValidityWarning(
        code="neighbour_load",
        message=(
            f"this {kind}idle baseline was measured while "
            + ", ".join(f"{o.run_id} (GPU(s) {o.gpus})" for o in beside)
            + " ran on other GPUs of this node; it was not cached"
        ),
        details={
            "neighbours": [o.run_id for o in beside],
            "window_clock": window.note or window.clock,
        },
    )
    return record.model_copy(update={"warnings": [*record.warnings, warning]})


def amend_result(
    path: Path,
    result: ExperimentResult,
    span: Span,
    spans: Sequence[Span],
    pool: GpuPool,
    limit: int,
    now: float,
    now_wall: float,
) -> ExperimentResult:
    """Write ``placement`` (and ``neighbour_load`` where a neighbour overlapped) into the run's
    ``result.json``, atomically; returns the amended result."""
    window = window_of(result, span)
    placement = placement_for(span, spans, pool, limit, now, window, now_wall)
    update: dict[str, Any] = {"placement": placement}
    run_s = (span.end - span.start) if span.end is not None else None
    window_s = window.duration_s if window is not None else None
    clock = None if window is None else (window.note or window.clock)
    warning = neighbour_warning(placement, run_s, window_s, clock)
    if warning is not None:
        update["warnings"] = [
            *[w for w in result.warnings if w.code != "neighbour_load"],
            warning,
        ]
    if placement.neighbours:  # a baseline has its own window: judged apart from the run's
        update["baseline"] = _mark_baseline(result.baseline, span, spans, now, now_wall)
        update["cold_baseline"] = _mark_baseline(result.cold_baseline, span, spans, now, now_wall)
    amended = result.model_copy(update=update)
    # validate before writing: the file must stay a valid result whatever happens here
    amended = ExperimentResult.model_validate(amended.model_dump())
    atomic_write_text(path, amended.model_dump_json(indent=2))
    return amended
