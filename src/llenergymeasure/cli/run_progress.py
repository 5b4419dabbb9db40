"""The live progress view of ``llem run`` (the study observer behind it).

At a terminal it is a live table redrawn in place; otherwise (CI, SLURM logs, ``| tee``) it prints
one plain line each time a run starts, changes phase (warm-up step, measured pass) or a gap
begins, read from the run's ``progress.json`` twice a second (a phase shorter than that may be
skipped), so a log shows where a long run is."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from llenergymeasure.cli.run_fields import fmt
from llenergymeasure.config.labels import distinguish
from llenergymeasure.results.layout import PROGRESS_FILE
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study.planning import PlannedRun


class LiveProgress:
    """The study observer behind the CLI's live view (run k of N, phase, elapsed, ETA)."""

    def __init__(self, console: Console, fields: list[str], verbosity: str = "normal"):
        self.console = console
        self.fields = fields
        #: ui.verbosity: quiet = failures and the final table only; verbose = also each run's folder
        self.verbosity = verbosity
        self.live: Live | None = None
        self.total = 0
        self.position = 0
        self.run: PlannedRun | None = None
        self.run_dir: Path | None = None
        self.run_started = 0.0
        self.study_started = time.monotonic()
        self.durations: list[float] = []
        self.gap_until: float | None = None
        #: runs in flight (several with execution.concurrent_runs > 1): id -> (run, k, dir, t0)
        self.active: dict[str, tuple[PlannedRun, int, Path, float]] = {}
        self.finished = 0
        #: without a terminal: the phase last printed per run id (one line per change)
        self.logged: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # observer hooks
    def on_start(self, study_dir: Path, plan: list[PlannedRun], to_run: list[PlannedRun]) -> None:
        self.total = len(to_run)
        skipped = len(plan) - len(to_run)
        self.console.print(f"study directory: [bold]{escape(str(study_dir))}[/]")
        if skipped:
            self.console.print(f"resuming: {skipped} completed run(s) kept, {len(to_run)} to run")
        if self.verbosity == "quiet":
            return
        if self.console.is_terminal:
            self.live = Live(
                self._render(), console=self.console, refresh_per_second=2, transient=True
            )
            self.live.start()
        self._thread = threading.Thread(target=self._refresh, daemon=True)
        self._thread.start()

    def on_gap(self, seconds: float, kind: str) -> None:
        self.gap_until = time.monotonic() + seconds
        self.gap_kind = kind
        if self._logging:
            self.console.print(f"thermal gap ({kind}): {seconds:g} s", highlight=False)

    def on_run_start(self, run: PlannedRun, position: int, total: int, run_dir: Path) -> None:
        self.gap_until = None
        self.run, self.position, self.total, self.run_dir = run, position, total, run_dir
        self.run_started = time.monotonic()
        self.active[run.run_id] = (run, position, run_dir, self.run_started)
        if self.verbosity == "verbose" or self._logging:
            self.console.print(
                f"→ run {position}/{total} cycle {run.cycle}: "
                + escape(f"{distinguish(run.config, self.fields)}  [{run_dir}]"),
                highlight=False,
                soft_wrap=self._logging,  # a log line stays one line, whatever the width
            )

    def on_run_end(
        self, run: PlannedRun, outcome: RunOutcome, result: ExperimentResult | None
    ) -> None:
        started = self.active.pop(run.run_id, (None, 0, None, self.run_started))[3]
        self.durations.append(time.monotonic() - started)
        self.finished += 1
        if outcome.status == "completed" and result is not None:
            if self.verbosity == "quiet":
                return
            self.console.print(
                f"[green]✓[/] {run.run_id}  {escape(distinguish(run.config, self.fields))}  "
                f"{fmt(result.energy_per_output_token_j, unit=' J/tok')}  "
                f"{fmt(result.output_tokens_per_s, unit=' tok/s')}"
            )
        else:
            first = (outcome.message or "").splitlines()[0] if outcome.message else ""
            where = f" in {outcome.phase}" if outcome.phase else ""
            self.console.print(
                "[red]✗[/] " + escape(f"{run.run_id}  {outcome.status}{where}: {first}")
            )
            if self.verbosity == "verbose" and outcome.error_path is not None:
                self.console.print(escape(f"   details: {outcome.error_path}"))

    def stop(self) -> None:
        self._stop.set()
        if self.live is not None:
            self.live.stop()

    def _phase(self, run_dir: Path | None = None) -> str:
        run_dir = run_dir or self.run_dir
        if run_dir is None:
            return "starting"
        try:
            data = json.loads((run_dir / PROGRESS_FILE).read_text(errors="replace"))
            return str(data.get("phase", "?")) + (
                f" {data['detail']}" if data.get("detail") else ""
            )
        except (OSError, ValueError, AttributeError):  # none yet, or a damaged one
            return "starting"

    def _render(self) -> Table:
        t = Table.grid(padding=(0, 2))
        for _ in range(5):  # run, cycle, config, phase, time: wrapped, never cut with "…"
            t.add_column(overflow="fold")
        now = time.monotonic()
        active = list(self.active.values())  # one copy: the hooks change it from another thread
        gap_left = self.gap_until - now if self.gap_until is not None else 0.0
        if gap_left > 0 and not active:
            t.add_row(f"thermal gap ({getattr(self, 'gap_kind', '')}): {gap_left:.0f} s left")
            return t
        if not active:
            t.add_row("preparing…")
            return t
        eta = ""
        if self.durations:  # runs side by side share the remaining work
            mean = sum(self.durations) / len(self.durations)
            elapsed = sum(now - started for *_, started in active)
            eta = f"  ETA ~{(mean * (self.total - self.finished) - elapsed) / len(active):.0f} s"
        for run, position, run_dir, started in active:
            t.add_row(
                f"run {position}/{self.total}",
                f"cycle {run.cycle}",
                escape(distinguish(run.config, self.fields)),
                f"[cyan]{escape(self._phase(run_dir))}[/]",
                f"{now - started:.0f} s{eta}",
            )
            eta = ""  # once, on the first row
        if gap_left > 0:
            t.add_row(f"next run in {gap_left:.0f} s (gap per GPU)")
        return t

    @property
    def _logging(self) -> bool:
        """Plain log lines instead of the live table: no terminal, and not quiet."""
        return not self.console.is_terminal and self.verbosity != "quiet"

    def log_phases(self) -> None:
        """Without a terminal: one line per run whose phase changed since the last call."""
        now = time.monotonic()
        for run, position, run_dir, started in list(self.active.values()):
            phase = self._phase(run_dir)
            if self.logged.get(run.run_id) == phase:
                continue
            self.logged[run.run_id] = phase
            self.console.print(
                escape(
                    f"  run {position}/{self.total} {run.run_id}: {phase} ({now - started:.0f} s)"
                ),
                highlight=False,
                soft_wrap=True,
            )

    def _refresh(self) -> None:
        while not self._stop.wait(0.5):
            if self.live is not None:
                self.live.update(self._render())
            elif self._logging:
                self.log_phases()
