"""``backend: openai`` through the whole harness, on the fake server: the result, the telemetry file
and the endpoint facts (the harness's window_started / finish_result hooks)."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure import ExperimentConfig, ExperimentResult
from llenergymeasure.errors import ExperimentError
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from tests.fakes.openai_server import FakeOpenAIServer, Script
from tests.helpers import within

PAGE = "vllm:num_requests_running 2\nvllm:generation_tokens_total 40\n"


def _request(cache: Path, server: FakeOpenAIServer, **top: Any) -> HarnessRequest:
    data = {
        "model": "synthetic/tiny-llama",
        "backend": "openai",
        "precision": "fp32",
        "n": 4,
        "max_output_tokens": 3,
        "dataset": {"source": "synthetic", "input_tokens": 8},
        "warmup": {"mode": "fixed", "runs": 1},
        "baseline": {"enabled": False},
        "openai": {"base_url": server.base_url, "model": server.model},
        **top,
    }
    return HarnessRequest(
        config=ExperimentConfig.from_dict(data),
        settings=HarnessSettings(energy_backend="auto", model_cache_dir=str(cache), run_id="o1"),
    )


@pytest.mark.parametrize(
    "top",
    [{}, {"workload": "serving", "load": {"concurrency": 2, "n_requests": 6}}],
    ids=["offline", "closed-loop"],
)
def test_harness_runs_the_endpoint_and_records_telemetry(
    tmp_path: Path, shared_model_cache: Path, top: dict[str, Any]
) -> None:
    out = tmp_path / "run"
    with FakeOpenAIServer(scripts=[Script(tokens=["x", "y", "z"])], metrics_pages=[PAGE]) as s:
        result = run_harness(_request(shared_model_cache, s, **top), out)
        n_posts = len(s.bodies)
    assert ExperimentResult.model_validate_json((out / "result.json").read_text()) == result
    n = 6 if top else 4
    assert result.n_requests == n and result.output_tokens == 3 * n
    assert result.input_tokens == 7 * n  # the fake server's usage.prompt_tokens
    assert n_posts > n  # warmup requests first
    endpoint = result.extra["endpoint"]
    assert endpoint["mode"] == "attach" and endpoint["requests_failed"] == 0
    assert endpoint["requests_sent"] == n  # counted from the window's start
    tel = result.engine_telemetry.model_dump()
    assert tel["dialect"] == "vllm" and tel["n_scrapes"] >= 1 and tel["running_requests_mean"] == 2
    assert tel["saturation_target"] == (2.0 if top else 4.0)
    with (out / "engine_telemetry.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == tel["n_scrapes"] and rows[0]["running"] == "2.0"


def test_every_request_failing_fails_the_run_with_the_servers_words(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    script = Script(status=400, error_message="This model's maximum context length is 8")
    with FakeOpenAIServer(scripts=[script]) as s, pytest.raises(ExperimentError) as info:
        run_harness(_request(shared_model_cache, s), tmp_path / "run")
    assert "maximum context length is 8" in str(info.value)


def test_the_attached_servers_processes_are_not_foreign_to_the_meter(
    tmp_path: Path, shared_model_cache: Path
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from llenergymeasure.energy import select_meter

    root = Path(__file__).resolve().parents[3]
    port_file = tmp_path / "port"
    server = (
        f"import os, pathlib, sys, time; sys.path.insert(0, {str(root)!r})\n"
        "from tests.fakes.openai_server import FakeOpenAIServer\n"
        "s = FakeOpenAIServer(); s.__enter__()\n"  # listening from here
        f"pathlib.Path({str(port_file)!r} + '.tmp').write_text(str(s.port))\n"
        f"os.replace({str(port_file)!r} + '.tmp', {str(port_file)!r}); time.sleep(600)\n"
    )
    # started by a process that exits at once: the server is no descendant of this test, as an
    # attached server is not of llem
    launcher = (
        "import subprocess, sys\n"
        f"p = subprocess.Popen([sys.executable, '-c', {server!r}], start_new_session=True,\n"
        "                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(p.pid)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(out.stdout)
    meters: list[Any] = []

    def factory(backend: str, devices: list[int]) -> Any:
        meters.append(select_meter(backend, devices))
        return meters[-1]

    def port_written() -> None:
        # the file appears whole (renamed into place) once the server listens
        while not port_file.exists():
            assert _alive(pid), "the fake server exited before it listened"
            time.sleep(0.05)

    try:
        within(120, "the fake server's start", port_written)  # a bound on a hang, not on speed

        class Remote:  # the server as the request sees it
            base_url = f"http://127.0.0.1:{port_file.read_text()}"
            model = "fake-model"

        run_harness(_request(shared_model_cache, Remote), tmp_path / "run", meter_factory=factory)  # type: ignore[arg-type]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert pid in meters[-1].ignore_pids


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: an orphan may wait long for its reaping)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
