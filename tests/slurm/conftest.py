"""Fixtures for the tests against a real SLURM cluster (``scripts/slurm-cluster.sh``).

Without a cluster answering ``sinfo`` and ``sacct`` the ``slurm``-marked tests skip, printing why;
with ``LLEM_REQUIRE_SLURM=1`` (set by CI, which starts the cluster) that is a failure instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import write

REPO_ROOT = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> None:
    if os.environ.get("LLEM_REQUIRE_SLURM") == "1":
        pytest.fail(f"LLEM_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    print(f"[slurm tests] skipped: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The partition of a live cluster (skip or, under LLEM_REQUIRE_SLURM=1, fail without one)."""
    for tool in ("sbatch", "sinfo", "sacct", "scancel"):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed; start a cluster with scripts/slurm-cluster.sh")
    try:
        info = subprocess.run(
            ["sinfo", "-h", "-o", "%P|%T"], capture_output=True, text=True, timeout=20
        )
        acct = subprocess.run(
            ["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        _unavailable("sinfo/sacct did not answer in 20 s (slurmctld/slurmdbd down?)")
    if info.returncode != 0:
        _unavailable(f"sinfo failed: {info.stderr.strip()} (scripts/slurm-cluster.sh starts one)")
    if acct.returncode != 0:
        _unavailable(f"sacct failed: {acct.stderr.strip()} (accounting is needed for job states)")
    lines = [ln.split("|") for ln in info.stdout.split() if "|" in ln]
    usable = [p.rstrip("*") for p, state in lines if state in ("idle", "mixed", "allocated")]
    if not usable:
        _unavailable(f"no partition with a usable node: {info.stdout.strip()!r}")
    return usable[0]


def slurm_user_config(directory: Path, model_cache: Path, partition: str, **slurm: object) -> Path:
    """A user config for a study on the local cluster: CPU jobs, fast polling, no gaps."""
    settings = {
        "partition": partition,
        "gpus_per_job": 0,
        "max_concurrent": 2,
        "poll_interval_s": 0.5,
        "time_limit_min": 10,
    }
    settings.update(slurm)
    lines = "".join(f"  {k}: {v}\n" for k, v in settings.items())
    return write(
        directory / "user-config.yaml",
        f"output:\n  results_dir: {directory / 'results'}\n  model_cache_dir: {model_cache}\n"
        "measurement:\n  energy_backend: none\n"
        "execution:\n  config_gap_seconds: 0\n  cycle_gap_seconds: 0\n"
        "ui:\n  prompt: false\n"
        f"slurm:\n{lines}",
    )
