"""Job states from SLURM accounting (``sacct``), what they mean for a run, and ``scancel``.

Called directly rather than through submitit: submitit's watcher asks sacct for JobID, State and
NodeList only (no exit code, start or end time, no reason) and caches answers for minutes, while
the manifest must record each run's state, exit code, node and times as they happen, and a
controller that restarted has only job ids (from the manifest) to ask about and to cancel.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from llenergymeasure.errors import RunnerError

#: states after which a job never runs again (``sacct`` base words)
TERMINAL = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
    }
)
#: the cause a run records when SLURM, not the experiment, ended it
CAUSES = {
    "CANCELLED": "the job was cancelled (scancel) on the cluster",
    "TIMEOUT": "SLURM stopped the job at its time limit (slurm.time_limit_min)",
    "NODE_FAIL": "the node running the job failed",
    "OUT_OF_MEMORY": "the job exceeded its memory limit (slurm.mem_gb) and was killed",
    "PREEMPTED": "the job was preempted by a higher-priority job",
    "BOOT_FAIL": "the node failed to boot for the job",
    "DEADLINE": "the job reached its deadline before it could run",
    "REVOKED": "the job was revoked (federated cluster)",
}
FIELDS = ("JobID", "State", "ExitCode", "NodeList", "Start", "End", "Reason")
_ARRAY = re.compile(r"^(\d+)_\[(.+)\]$")


@dataclass(frozen=True)
class JobState:
    """One job (or array element) as accounting sees it."""

    job_id: str
    state: str  # base word: CANCELLED for "CANCELLED by 0"
    exit_code: int | None = None
    signal: int | None = None
    node: str | None = None
    start: str | None = None
    end: str | None = None
    reason: str | None = None
    detail: str = ""  # the raw State text

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def started(self) -> bool:
        return self.start is not None


def _time(value: str) -> str | None:
    return None if value in ("", "Unknown", "None") else value


def _expand(job_id: str) -> list[str]:
    """``123_[4-6,9%2]`` (pending array elements, one sacct line) -> 123_4 123_5 123_6 123_9."""
    m = _ARRAY.match(job_id)
    if not m:
        return [job_id]
    base, spec = m.group(1), m.group(2).split("%", 1)[0]
    out: list[str] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(f"{base}_{i}" for i in range(int(lo), int(hi) + 1))
        elif part:
            out.append(f"{base}_{part}")
    return out


def parse_sacct(text: str) -> dict[str, JobState]:
    """Parse ``sacct -X -n -P -o JobID,State,ExitCode,NodeList,Start,End,Reason`` output."""
    states: dict[str, JobState] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < len(FIELDS):
            continue
        job_id, state, exit_code, nodes, start, end, reason = parts[: len(FIELDS)]
        if not job_id or "." in job_id:
            continue
        code: int | None = None
        sig: int | None = None
        if ":" in exit_code:
            a, b = exit_code.split(":", 1)
            code, sig = (int(a) if a.isdigit() else None), (int(b) if b.isdigit() else None)
        node = nodes if nodes and nodes not in ("None assigned", "(null)") else None
        for jid in _expand(job_id):
            states[jid] = JobState(
                job_id=jid,
                state=state.split()[0] if state else "UNKNOWN",
                exit_code=code,
                signal=sig,
                node=node,
                start=_time(start),
                end=_time(end),
                reason=reason if reason not in ("", "None") else None,
                detail=state,
            )
    return states


def _run(argv: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except FileNotFoundError:
        raise RunnerError(
            f"{argv[0]} not found: the slurm runner must run on a SLURM login/submit node "
            "(with sbatch, sacct and scancel on PATH)"
        ) from None
    except subprocess.TimeoutExpired:
        raise RunnerError(
            f"{' '.join(argv[:3])} ... did not answer in {timeout_s:g} s: is slurmctld/slurmdbd up?"
        ) from None


def query_jobs(job_ids: Iterable[str]) -> dict[str, JobState]:
    """The accounting state of these jobs (array elements ``A_i`` included); unknown ids absent."""
    ids = sorted({j.split("_", 1)[0] for j in job_ids})
    if not ids:
        return {}
    proc = _run(
        ["sacct", "-X", "-n", "-P", "-o", ",".join(FIELDS), "-j", ",".join(ids)],
    )
    if proc.returncode != 0:
        raise RunnerError(
            f"sacct failed ({proc.stderr.strip() or proc.returncode}): the slurm runner reads job "
            "states from SLURM accounting (slurmdbd); ask the cluster's admins whether it is enabled"
        )
    return parse_sacct(proc.stdout)


def cancel_jobs(job_ids: Iterable[str]) -> list[str]:
    """``scancel`` exactly these jobs (array elements by ``A_i``); returns what was cancelled."""
    ids = sorted(set(job_ids))
    if ids:
        proc = _run(["scancel", *ids])
        if proc.returncode != 0 and proc.stderr.strip():
            # scancel reports jobs that already ended; those need no cancelling
            print(f"[llem] scancel: {proc.stderr.strip()}", flush=True)
    return ids


def check_cluster() -> None:
    """The submit host can reach slurmctld (``sinfo``) and accounting (``sacct``)."""
    if shutil.which("sbatch") is None:
        raise RunnerError(
            "runner slurm: sbatch is not on PATH; run llem on a SLURM login/submit node, or choose "
            "another runner (--runner local|docker)"
        )
    proc = _run(["sinfo", "-h", "-o", "%P %a"], timeout_s=30)
    if proc.returncode != 0:
        raise RunnerError(
            f"runner slurm: sinfo failed ({proc.stderr.strip() or proc.returncode}); is slurmctld "
            "reachable from this host?"
        )
    proc = _run(["sacct", "-n", "-X", "-S", "now-1minutes", "-o", "JobID"], timeout_s=30)
    if proc.returncode != 0:
        raise RunnerError(
            f"runner slurm: sacct failed ({proc.stderr.strip() or proc.returncode}). The runner "
            "needs SLURM accounting (slurmdbd) to know how each job ended; without it every state "
            "is unknown"
        )
