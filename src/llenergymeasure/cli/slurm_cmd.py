"""The CLI's view of studies run on SLURM: live progress while attached, and ``llem status DIR``."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from llenergymeasure.results.layout import STUDY_RESULT_FILE
from llenergymeasure.results.models import ExperimentResult
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.study.planning import PlannedRun

ORDER = ("pending", "queued", "running", "completed", "failed", "timeout", "interrupted")


def runs_table(runs: list[Any], title: str, limit: int = 60) -> Table:
    """One row per run: state, SLURM job, node, accounting state, exit code, times.

    The SLURM columns (job, node, SLURM state) are left out when no run has a value in them (a
    local study); cells wrap instead of being cut at the terminal's width.
    """
    table = Table(title=title)
    shown = sorted(runs, key=lambda r: (r.status not in ("running", "queued"), r.index))[:limit]
    slurm = {
        "job": any(r.job_id for r in runs),
        "node": any(r.node for r in runs),
        "SLURM state": any(r.scheduler_state for r in runs),
    }
    cols = ("run", "cycle", "status", "job", "node", "SLURM state", "exit", "started", "ended")
    keep = [c for c in cols if slurm.get(c, True)]
    for col in keep:
        table.add_column(col, overflow="fold")
    for r in shown:
        colour = {"completed": "green", "running": "cyan", "queued": "yellow"}.get(r.status, "red")
        if r.status == "pending":
            colour = "white"
        cells = {
            "run": r.run_id,
            "cycle": str(r.cycle),
            "status": f"[{colour}]{r.status}[/]",
            "job": r.job_id or "—",
            "node": r.node or "—",
            "SLURM state": r.scheduler_state or "—",
            "exit": "—" if r.exit_code is None else str(r.exit_code),
            "started": (r.started_at or "—")[11:19],
            "ended": (r.ended_at or "—")[11:19],
        }
        table.add_row(*(cells[c] for c in keep))
    if len(runs) > limit:
        table.caption = f"{len(runs) - limit} more run(s) not shown"
    return table


def counts_line(runs: list[Any]) -> str:
    counts = Counter(r.status for r in runs)
    nodes = sorted({r.node for r in runs if r.status == "running" and r.node})
    text = "  ".join(f"{s} {counts[s]}" for s in ORDER if counts.get(s))
    return text + (f"  (running on {', '.join(nodes)})" if nodes else "")


class SlurmProgress:
    """Study observer for the slurm runner: queued / running / done per run, with node names."""

    def __init__(self, console: Console, verbosity: str = "normal") -> None:
        self.console = console
        self.verbosity = verbosity
        self.live: Live | None = None
        self.runs: list[Any] = []
        self._lock = threading.Lock()

    def on_start(self, study_dir: Path, plan: list[PlannedRun], to_run: list[PlannedRun]) -> None:
        self.console.print(f"study directory: [bold]{study_dir}[/]")
        skipped = len(plan) - len(to_run)
        if skipped:
            self.console.print(f"resuming: {skipped} completed run(s) kept, {len(to_run)} to do")
        if self.verbosity != "quiet" and self.console.is_terminal:
            self.live = Live("submitting…", console=self.console, refresh_per_second=2)
            self.live.start()

    def on_gap(self, seconds: float, kind: str) -> None:
        pass

    def on_cluster_status(self, runs: list[Any]) -> None:
        self.runs = list(runs)
        if self.live is not None:
            live = [r for r in self.runs if r.status in ("queued", "running")]
            grid = Table.grid()
            grid.add_row(counts_line(self.runs))
            if live:
                grid.add_row(runs_table(live, "on the cluster", limit=12))
            self.live.update(grid)

    def on_run_start(self, run: PlannedRun, position: int, total: int, run_dir: Path) -> None:
        if self.verbosity == "verbose":
            entry = next((r for r in self.runs if r.run_id == run.run_id), None)
            where = f" on {entry.node} (job {entry.job_id})" if entry is not None else ""
            self.console.print(escape(f"→ {run.run_id} started{where}  [{run_dir}]"))

    def on_run_end(
        self, run: PlannedRun, outcome: RunOutcome, result: ExperimentResult | None
    ) -> None:
        node = outcome.extra.get("node") or "?"
        job = outcome.extra.get("job_id") or "?"
        if outcome.status == "completed" and result is not None:
            if self.verbosity != "quiet":
                self.console.print(
                    escape(f"✓ {run.run_id} (job {job} on {node})  ")
                    + f"{result.output_tokens_per_s or 0:.3g} tok/s"
                )
            return
        first = (outcome.message or "").splitlines()[0] if outcome.message else ""
        self.console.print(
            "[red]✗[/] " + escape(f"{run.run_id} (job {job} on {node}) {outcome.status}: {first}")
        )

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def status_command(study_dir: Path, console: Console, as_json: bool = False) -> int:
    """Show a study's runs with their SLURM jobs; record jobs that ended since the last look.

    When no controller is attached (the study lock is free) the ends of finished jobs are written
    to the manifest, exactly as an attached controller would; ``llem run --resume DIR`` then
    reattaches to live jobs and collects the study.
    """
    from llenergymeasure.errors import ConfigError, RunnerError
    from llenergymeasure.results.layout import MANIFEST_FILE
    from llenergymeasure.runners.slurm.driver import LIVE, SlurmStudyDriver
    from llenergymeasure.study.manifest import ManifestStore, study_lock
    from llenergymeasure.study.observer import NullObserver
    from llenergymeasure.study.runner import StudyRunner

    if not (Path(study_dir) / MANIFEST_FILE).is_file():
        raise ConfigError(
            f"{study_dir}: not a study directory (no {MANIFEST_FILE} there); give a directory "
            "that `llem run` wrote, e.g. results/<study>_<date> (`llem results list` shows them)"
        )
    sr = StudyRunner(None, resume_dir=study_dir)
    plan = {r.run_id: r for r in sr.plan()}
    assert sr.resume_manifest is not None  # read from study_dir, or StudyRunner raised
    store = ManifestStore(Path(study_dir), sr.resume_manifest)
    attached = False
    read_only = False  # the study folder cannot be written: show the manifest, record nothing
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(study_lock(Path(study_dir)))
        except RunnerError:
            attached = True  # a controller is following the study: only read
        except OSError:  # a folder this user cannot write (read-only): reading needs no lock
            read_only = True
        live = [plan[r.run_id] for r in store.manifest.runs if r.status in LIVE and r.job_id]
        if live and not attached and not read_only:
            driver = SlurmStudyDriver(
                sr.user_config.slurm, store, NullObserver(), None, check=False
            )
            driver._reattach(live)
    runs = store.manifest.runs
    notes = list(sr.recovery_notes)  # damaged files: what resume will do about them
    if sr.manifest_rebuilt:
        notes.append(f"shown as rebuilt; `llem run --resume {study_dir}` writes it")
    for line in notes:
        Console(stderr=True).print("[yellow]note:[/] " + escape(line), soft_wrap=True)
    if as_json:
        print_status_json(store.manifest, study_dir, attached)
        return 0
    console.print(runs_table(runs, f"study {store.manifest.study_name!r}: {study_dir}"))
    console.print(counts_line(runs))
    if read_only and any(r.status in LIVE for r in runs):
        console.print(f"{study_dir} is not writable here: shown as last recorded, not updated")
    controller = store.manifest.controller
    if attached:
        console.print(
            f"a controller is attached (pid {controller.get('pid')} on {controller.get('host')})"
        )
    elif any(r.status in LIVE for r in runs):
        console.print(f"reattach and collect when done: llem run --resume {study_dir}")
    elif any(r.status != "completed" for r in runs):
        console.print(f"rerun the unfinished runs: llem run --resume {study_dir}")
    elif not (Path(study_dir) / STUDY_RESULT_FILE).exists():
        console.print(f"all runs done; collect the study: llem run --resume {study_dir}")
    return 0


def print_status_json(manifest: Any, study_dir: Path, attached: bool) -> None:
    """``llem status DIR --json``: the manifest's runs and their counts on stdout."""
    import json
    import sys

    runs = [r.model_dump(mode="json") for r in manifest.runs]
    counts = Counter(r.status for r in manifest.runs)
    out = {
        "study_name": manifest.study_name,
        "study_dir": str(study_dir),
        "controller_attached": attached,
        "counts": {s: counts[s] for s in ORDER if counts.get(s)},
        "runs": runs,
    }
    sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
