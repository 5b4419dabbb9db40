"""The local runner: a fresh spawned process; every way a child can die becomes a failed outcome."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

from llenergymeasure import ExperimentConfig
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.runners.local import LocalRunner
from tests.fakes import child_targets
from tests.helpers import tiny_experiment, within


def _request(cache: Path, **overrides: object) -> HarnessRequest:
    return HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment(**overrides)),
        settings=HarnessSettings(energy_backend="none", model_cache_dir=str(cache)),
    )


def test_completed_run_in_a_fresh_process(tmp_path: Path, shared_model_cache: Path) -> None:
    out = LocalRunner().run(_request(shared_model_cache), tmp_path / "r")
    assert out.status == "completed", out.message
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["output_tokens"] == 16
    assert (tmp_path / "r" / "request.json").exists() and "phase=measure" in (
        tmp_path / "r" / "run.log"
    ).read_text()
    assert json.loads((tmp_path / "r" / "progress.json").read_text())["pid"] != os.getpid()


def test_child_exception_is_a_failed_outcome(tmp_path: Path, shared_model_cache: Path) -> None:
    out = LocalRunner().run(
        _request(shared_model_cache, dataset={"source": "/nonexistent/p.jsonl"}), tmp_path / "r"
    )
    assert out.status == "failed" and out.phase == "prompts" and out.exit_code == 1
    assert "p.jsonl" in (out.message or "")
    assert json.loads((tmp_path / "r" / "error.json").read_text())["phase"] == "prompts"


def test_child_os_exit_is_a_failed_outcome(tmp_path: Path, shared_model_cache: Path) -> None:
    out = LocalRunner(target=child_targets.exit_one).run(
        _request(shared_model_cache), tmp_path / "r"
    )
    assert out.status == "failed" and out.exit_code == 1
    assert "exited with status 1 without writing a result" in (out.message or "")
    err = json.loads((tmp_path / "r" / "error.json").read_text())
    assert err["error_type"] == "ProcessDied"


def test_child_segfault_is_named(tmp_path: Path, shared_model_cache: Path) -> None:
    out = LocalRunner(target=child_targets.segfault_like).run(
        _request(shared_model_cache), tmp_path / "r"
    )
    assert out.status == "failed" and out.exit_code == -signal.SIGSEGV
    assert "SIGSEGV" in (out.message or "") and "segmentation fault" in (out.message or "")


def test_child_sigkilled_mid_run_is_a_failed_outcome(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    run_dir = tmp_path / "r"

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                progress = json.loads((run_dir / "progress.json").read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if progress["phase"] in ("load", "prompts", "warmup", "measure"):
                os.kill(progress["pid"], signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    out = LocalRunner().run(_request(shared_model_cache, n=64, max_output_tokens=64), run_dir)
    t.join()
    assert out.status == "failed" and out.exit_code == -signal.SIGKILL
    assert "SIGKILL" in (out.message or "") and "out-of-memory" in (out.message or "")
    assert out.phase in ("load", "prompts", "warmup", "measure")
    assert not (run_dir / "result.json").exists()


def test_timeout_stops_the_whole_process_group(tmp_path: Path, shared_model_cache: Path) -> None:
    out = within(
        60,
        "LocalRunner.run with timeout_s=2 on a child that sleeps forever",
        LocalRunner(target=child_targets.sleep_forever).run,
        _request(shared_model_cache),
        tmp_path / "r",
        timeout_s=2,
    )
    assert out.status == "timeout" and "timed out after 2 s" in (out.message or "")
