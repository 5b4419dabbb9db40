"""The per-GPU window checks by hand, word for word where the text is what a reader acts on:
sampler gaps (each boundary on its exact value) and other processes on the GPU (a
real neighbour process with a known name, and a PID this namespace cannot see)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from llenergymeasure.energy.checks import foreign_process, sampler_gap


def test_sampler_gap_counts_gaps_longer_than_three_periods() -> None:
    # period 0.25 s -> limit 0.75 s; gaps 0.75 (exactly the limit: fine), 1.0, 0.5, 2.0 s
    times = np.array([0.0, 0.75, 1.75, 2.25, 4.25])
    w = sampler_gap(2, times, 0.25)
    assert w is not None and w.code == "sampler_gap" and w.device == 2
    assert w.message == (
        "GPU 2: 2 gap(s) between power samples longer than 3 periods (0.75 s); the longest was "
        "2.000 s"
    )
    assert w.details == {"n_gaps": 2, "max_gap_s": 2.0, "limit_s": 0.75}
    # two samples are enough to see a gap; one is not
    two = sampler_gap(0, np.array([0.0, 1.0]), 0.25)
    assert two is not None and two.details["n_gaps"] == 1
    assert sampler_gap(0, np.array([5.0]), 0.25) is None
    assert sampler_gap(0, np.array([0.0, 0.75, 1.5]), 0.25) is None  # every gap at the limit


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs Linux /proc")
def test_a_neighbour_process_is_named_and_an_unseen_pid_is_said_apart(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    named = tmp_path / "llem-neighbour"
    shutil.copy(sleep, named)
    neighbour = subprocess.Popen([str(named), "30"])
    try:
        comm = Path(f"/proc/{neighbour.pid}/comm")
        deadline = time.monotonic() + 10
        while comm.read_text().strip() != "llem-neighbour" and time.monotonic() < deadline:
            time.sleep(0.01)  # until the child has exec'd its name
        unseen = 4_000_000_000  # beyond any pid_max: not in this PID namespace
        w = foreign_process(2, {neighbour.pid, unseen, 11}, ours={11})
        assert w is not None and w.code == "foreign_process" and w.device == 2
        assert w.severity == "warning"
        assert w.message == (
            f"other process(es) ran on GPU 2 during the window: {neighbour.pid} (llem-neighbour); "
            f"plus PID(s) [{unseen}] not visible from this PID namespace"
        )
        assert w.details == {
            "pids": [neighbour.pid, unseen],
            "visible": {str(neighbour.pid): "llem-neighbour"},
            "invisible": [unseen],
        }
    finally:
        neighbour.kill()
        neighbour.wait(timeout=10)


def test_only_unseen_pids_are_info_with_the_container_caveat() -> None:
    assert foreign_process(0, {5, 6}, ours={5, 6, 7}) is None
    w = foreign_process(1, {4_000_000_001, 4_000_000_000}, ours=set())
    assert w is not None and w.severity == "info"
    assert w.message == (
        "GPU 1 lists PID(s) [4000000000, 4000000001] that are not visible from this PID namespace "
        "(inside a container?): they may be this experiment's own processes seen from the host, "
        "or other work; run with the host PID namespace to tell"
    )
