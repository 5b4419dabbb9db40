"""Which processes count as ours on a GPU (``checks.own_process_tree``) over the real /proc: this
process, a child and a grandchild whose command name holds ")" and spaces (the case that breaks a
naive parse of /proc/PID/stat), the extra PIDs given; never the parent that started us. And the
pre-Volta warning's exact text."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llenergymeasure.energy.checks import integrated_power_only, own_process_tree

# the child starts the grandchild (a copy of `sleep` under an awkward name) and prints its PID
CHILD = (
    "import subprocess, sys\n"
    "p = subprocess.Popen([sys.argv[1], '30'])\n"
    "print(p.pid, flush=True)\n"
    "p.wait()\n"
)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_children_and_grandchildren_are_ours_the_parent_is_not(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    awkward = tmp_path / "x) 1 2"  # comm "x) 1 2": a ")" and spaces inside the parentheses
    shutil.copy(sleep, awkward)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(awkward)], stdout=subprocess.PIPE, text=True
    )
    grandchild = 0
    try:
        assert child.stdout is not None
        grandchild = int(child.stdout.readline())
        stat = Path(f"/proc/{grandchild}/stat")
        deadline = time.monotonic() + 10
        while "(x) 1 2)" not in stat.read_text() and time.monotonic() < deadline:
            time.sleep(0.01)  # until the grandchild has exec'd the awkward name
        assert "(x) 1 2)" in stat.read_text()

        ours = own_process_tree()
        assert os.getpid() in ours
        assert child.pid in ours and grandchild in ours
        assert os.getppid() not in ours  # whoever started us is not ours
        assert None not in ours  # type: ignore[comparison-overlap]

        with_extra = own_process_tree([os.getppid(), 999_999_999])
        assert {os.getppid(), 999_999_999, os.getpid(), child.pid, grandchild} <= with_extra
    finally:
        if grandchild:
            with contextlib.suppress(ProcessLookupError):  # already exited
                os.kill(grandchild, signal.SIGKILL)
        child.kill()
        child.wait(timeout=10)
        if child.stdout is not None:
            child.stdout.close()


def _proc(root: Path, parents: dict[int, int | None]) -> Path:
    """A /proc-like tree: one directory per PID with a ``stat`` line naming its parent (None: the
    directory has no stat file, as when the process exits during the scan)."""
    for pid, ppid in parents.items():
        d = root / str(pid)
        d.mkdir(parents=True)
        if ppid is not None:
            (d / "stat").write_text(f"{pid} (worker {pid}) S {ppid} {pid} {pid} 0 -1 4194560 0\n")
    (root / "self").mkdir(exist_ok=True)  # non-PID entries are skipped
    (root / "meminfo").write_text("MemTotal: 1 kB\n")
    return root


def test_descendants_are_found_whatever_the_pid_order(tmp_path: Path) -> None:
    # engine 900 (ours, given as extra) -> 15 -> 14 -> 13 -> 12 -> 11 (PIDs wrapped: each worker has
    # a lower PID than its parent: one pass finds them all only if the directory happens to list
    # parents first); 60-64 vanished during the scan (no stat) and the entries after them are
    # still read; 30 is unrelated
    chain = {15: 900, 14: 15, 13: 14, 12: 13, 11: 12}
    vanished: dict[int, int | None] = dict.fromkeys(range(60, 65))
    proc = _proc(tmp_path, {30: 1, **chain, **vanished, 70: 900, 900: 1})
    assert own_process_tree([900], proc=str(proc)) == {os.getpid(), 900, 15, 14, 13, 12, 11, 70}
    assert own_process_tree([13], proc=str(proc)) == {os.getpid(), 13, 12, 11}
    assert own_process_tree([30], proc=str(proc)) == {os.getpid(), 30}
    # no /proc at all: just us and the extras
    assert own_process_tree([5], proc=str(tmp_path / "absent")) == {os.getpid(), 5}


def test_a_fresh_process_tree_is_just_us_and_the_extras() -> None:
    ours = own_process_tree([4_000_000_001])
    assert os.getpid() in ours and 4_000_000_001 in ours
    assert os.getppid() not in ours


def test_integrated_power_only_says_what_the_energy_is() -> None:
    w = integrated_power_only(3)
    assert w.code == "integrated_power_only" and w.device == 3
    assert w.message == (
        "GPU 3 has no total-energy counter; its energy is the trapezoidal integral of sampled "
        "power, which misses changes faster than the sampling period"
    )
