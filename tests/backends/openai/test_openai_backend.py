"""``backend: openai`` against the fake server: attach checks, offline sends, failures, the result.

The model is a synthetic preset, so prompts and the optional token count use its local tokenizer.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.openai.backend import ATTACH_NOTE, OpenAIBackend
from llenergymeasure.backends.openai.http import BaseURL
from llenergymeasure.backends.openai.launch import (
    LaunchedServer,
    max_num_seqs_of,
    server_command,
    start_server,
    wait_ready,
)
from llenergymeasure.backends.openai.section import LaunchConfig
from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy.types import EnergyMeasurement
from llenergymeasure.errors import ConfigError, ExperimentError
from llenergymeasure.results.models import (
    ExperimentResult,
    GateResult,
)
from tests.builders import make_result
from tests.fakes.clock import ManualClock
from tests.fakes.openai_server import FakeOpenAIServer, Script, reserved_port

FIXTURES = Path(__file__).parent / "fixtures"


def _config(section: dict[str, Any], **top: Any) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {"model": "synthetic/tiny-llama", "backend": "openai", "openai": section, **top}
    )


def _backend(server: FakeOpenAIServer, gpus: int = 0, **section: Any) -> OpenAIBackend:
    config = _config({"base_url": server.base_url, "model": server.model, **section})
    return OpenAIBackend(config, "/nonexistent/model", gpu_count=lambda: gpus)


def _prompts(n: int) -> list[Prompt]:
    return [Prompt(token_ids=[1, 2, 3], max_new_tokens=3) for _ in range(n)]


def test_no_base_url_and_no_launch_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"needs openai.base_url .* or openai.launch"):
        OpenAIBackend(_config({}), "/m")


def test_attach_on_a_gpu_host_needs_gpus() -> None:
    with FakeOpenAIServer() as server:
        backend = _backend(server, gpus=2)
        with pytest.raises(ConfigError, match=r"on a GPU host needs `gpus:`"):
            backend.load()
        backend.close()


def test_attach_load_records_the_server_and_the_note() -> None:
    with FakeOpenAIServer() as server:
        backend = _backend(server)
        info = backend.load()
        backend.close()
    facts = info.extra["endpoint"]
    assert backend.loop.is_closed()  # no event loop left open (its fds) after an attach run
    assert facts["mode"] == "attach" and facts["note"] == ATTACH_NOTE
    assert facts["version"] == "fake-1.0" and facts["served_model"] == "fake-model"
    assert info.cuda_devices == []


def test_wrong_model_name_is_refused_at_load_naming_what_is_served() -> None:
    with FakeOpenAIServer(model="served-one") as server:
        config = _config({"base_url": server.base_url, "model": "wrong"})
        backend = OpenAIBackend(config, "/m", gpu_count=lambda: 0)
        with pytest.raises(ExperimentError, match=r"openai.model='wrong'.*serves served-one"):
            backend.load()
        backend.close()


def test_unreachable_url_is_refused_at_load() -> None:
    with reserved_port() as port:  # nothing listens there, and no other process can
        url = f"http://127.0.0.1:{port}"
        backend = OpenAIBackend(_config({"base_url": url}), "/m", gpu_count=lambda: 0)
        with pytest.raises(ExperimentError, match=r"cannot|failed.*openai.base_url=.*running"):
            backend.load()
    backend.close()


def test_offline_generate_counts_failed_requests_and_keeps_their_errors() -> None:
    scripts = [Script(tokens=["a", "b"]), Script(tokens=["a", "b", "c"], stop_after=1), Script()]
    with FakeOpenAIServer(scripts=scripts) as server:
        backend = _backend(server)
        backend.load()
        out = backend.generate(_prompts(3))
        backend.close()
    assert len(out.requests) == 2  # the truncated one is not a record
    assert backend.n_sent == 3 and backend.n_failed == 1
    assert "ended without its last chunk" in backend.failed[0]
    assert sorted(r.output_tokens for r in out.requests) == [2, 3]


def test_offline_generate_fails_when_every_request_failed() -> None:
    with FakeOpenAIServer(scripts=[Script(status=500, error_message="boom")]) as server:
        backend = _backend(server)
        backend.load()
        with pytest.raises(ExperimentError, match=r"all 2 requests .* failed.*boom"):
            backend.generate(_prompts(2))
        backend.close()


def _result(config: ExperimentConfig, energy: bool) -> ExperimentResult:
    return make_result(
        config,
        energy=EnergyMeasurement(meter="nvml", available=energy),
        gates=[GateResult(name="short_window", passed=True)],
        extra={"endpoint": {"mode": "attach"}},
    )


def test_a_result_written_with_telemetry_in_extra_still_loads_it_as_the_field() -> None:
    # results written before engine_telemetry was a field of the result kept it in extra
    tel = {"dialect": "sglang", "period_s": 1.0, "n_scrapes": 4, "running_requests_mean": 2.5}
    data = _result(_config({"base_url": "http://127.0.0.1:9"}), True).model_dump(mode="json")
    data["extra"]["engine_telemetry"] = tel
    old = ExperimentResult.model_validate_json(json.dumps(data))
    assert old.engine_telemetry is not None and old.engine_telemetry.dialect == "sglang"
    assert old.engine_telemetry.running_requests_mean == 2.5
    assert old.extra == {"endpoint": {"mode": "attach"}}
    # a result with the field keeps it and round-trips through JSON
    again = ExperimentResult.model_validate_json(old.model_dump_json())
    assert again.engine_telemetry == old.engine_telemetry and "engine_telemetry" not in again.extra


def _page(running: int) -> str:
    return f"vllm:num_requests_running {running}\nvllm:generation_tokens_total {running * 10}\n"


@pytest.mark.parametrize(("energy", "gated"), [(True, True), (False, False)])
def test_finish_result_adds_telemetry_series_and_the_saturation_gate(
    tmp_path: Path, energy: bool, gated: bool
) -> None:
    # closed loop at concurrency 8 capped by max_num_seqs 5: target 5; the engine ran 3 then 3
    with FakeOpenAIServer(metrics_pages=[_page(3)]) as server:
        config = _config(
            {"base_url": server.base_url, "model": server.model, "max_num_seqs": 5},
            workload="serving",
            load={"concurrency": 8, "n_requests": 16},
        )
        backend = OpenAIBackend(config, "/m", gpu_count=lambda: 0)
        backend.load()
        backend.window_started(0.0)
        assert backend.scraper is not None
        backend.scraper.clock = ManualClock(start=10.0)
        result = backend.finish_result(_result(config, energy), tmp_path, 10.0, 0.8)
        backend.close()
    assert "engine_telemetry" not in result.extra  # a field of the result (issue 27 item 4)
    tel = result.engine_telemetry.model_dump()
    assert tel["running_requests_mean"] == 3.0 and tel["saturation_target"] == 5.0
    assert tel["saturation_ratio"] == pytest.approx(0.6)
    assert (tmp_path / "engine_telemetry.csv").read_text().splitlines()[0].startswith("time_s,")
    assert result.extra["endpoint"]["requests_sent"] == 0
    if gated:
        assert not result.valid and result.failed_gates == ["saturation"]
        assert [g.name for g in result.gates] == ["short_window", "saturation"]
    else:
        assert result.valid and [g.name for g in result.gates] == ["short_window"]


def test_open_loop_has_no_saturation_target(tmp_path: Path) -> None:
    with FakeOpenAIServer(metrics_pages=[_page(1)]) as server:
        config = _config(
            {"base_url": server.base_url, "model": server.model},
            workload="serving",
            load={"rate_rps": 4, "n_requests": 8},
        )
        backend = OpenAIBackend(config, "/m", gpu_count=lambda: 0)
        backend.load()
        backend.window_started(0.0)
        result = backend.finish_result(_result(config, True), tmp_path, 0.0, 0.8)
        backend.close()
    assert result.engine_telemetry.model_dump()["saturation_ratio"] is None
    assert result.valid


def test_serving_submit_raises_for_the_driver_and_counts(tmp_path: Path) -> None:
    import asyncio

    with FakeOpenAIServer(scripts=[Script(status=400, error_message="bad")]) as server:
        backend = _backend(server)
        backend.load()
        t = RequestTimeline(index=3, input_tokens=3)
        with pytest.raises(Exception, match="HTTP 400"):
            asyncio.run(backend.submit(3, _prompts(1)[0], t))
        backend.close()
    assert backend.n_failed == 1 and backend.failed[0].startswith("request 3: HTTP 400")


# -- launch mode -----------------------------------------------------------------------------------


def test_server_commands_per_engine() -> None:
    vllm = LaunchConfig(engine="vllm", args=["--max-num-seqs", "4"], port=9001)
    cmd = server_command(vllm, "/models/x", "x", dummy=True)
    assert cmd[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[3:] == [
        "--model", "/models/x", "--served-model-name", "x", "--host", "127.0.0.1",
        "--port", "9001", "--load-format", "dummy", "--max-num-seqs", "4",
    ]  # fmt: skip
    sglang = server_command(LaunchConfig(engine="sglang"), "/m", "m", dummy=False)
    assert sglang[1:3] == ["-m", "sglang.launch_server"] and "--enable-metrics" in sglang
    tgi = server_command(LaunchConfig(engine="tgi", command=["/opt/tgi"]), "/m", "m", False)
    assert tgi[:3] == ["/opt/tgi", "--model-id", "/m"]
    assert server_command(LaunchConfig(engine="trtllm"), "/m", "m", False)[:2] == [
        "trtllm-serve",
        "/m",
    ]
    assert max_num_seqs_of("vllm", ["--max-num-seqs", "4"]) == 4
    assert max_num_seqs_of("sglang", ["--max-running-requests=32"]) == 32
    assert max_num_seqs_of("vllm", []) is None


def test_a_launch_that_exits_shows_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('bad flag --foo'); sys.exit(3)"]
    server = start_server(command, BaseURL.parse("http://127.0.0.1:9"), tmp_path / "server.log")
    with pytest.raises(ExperimentError, match=r"(?s)exited with code 3 .*bad flag --foo"):
        wait_ready(server, timeout_s=60, poll_s=0.01)


def test_a_launch_that_never_becomes_ready_is_stopped(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import time; print('loading'); time.sleep(600)"]
    server = start_server(command, BaseURL.parse("http://127.0.0.1:9"), tmp_path / "server.log")
    clock = ManualClock()
    with pytest.raises(ExperimentError, match=r"(?s)ready_timeout_s=5 s .*loading"):
        # each poll moves the injected clock by 1 s: the deadline passes after 5 polls, however
        # slow the machine; the log line is waited for so that the tail shows it
        wait_ready(server, timeout_s=5, poll_s=0.0, clock=clock, sleep=_tick(clock, server))
    assert not server.alive()


def _tick(clock: ManualClock, server: LaunchedServer) -> Any:
    def sleep(_: float) -> None:
        import time

        while "loading" not in server.log_tail():
            time.sleep(0.01)
        clock.advance(1.0)

    return sleep


def test_a_launched_fake_server_is_ready_then_stopped(tmp_path: Path) -> None:
    script = (
        f"import sys, time; sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})\n"
        "from tests.fakes.openai_server import FakeOpenAIServer\n"
        "s = FakeOpenAIServer(model='m'); s.__enter__(); print(s.port, flush=True)\n"
        "time.sleep(600)\n"
    )
    log = tmp_path / "server.log"
    server = start_server([sys.executable, "-c", script], BaseURL.parse("http://127.0.0.1:9"), log)
    import time

    while not log.read_text().strip():
        assert server.alive(), server.log_tail()
        time.sleep(0.05)
    server.base_url = BaseURL.parse(f"http://127.0.0.1:{int(log.read_text().split()[0])}")
    wait_ready(server, timeout_s=60, poll_s=0.05)
    assert server.version == "fake-1.0" and server.ready_s is not None
    server.stop()
    assert not server.alive() and server.returncode is not None


def test_launch_mode_starts_measures_and_stops_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # as the docker runner sets it in the container the harness (and so the server) runs in
    monkeypatch.setenv("LLEM_CONTAINER_IMAGE", "llenergymeasure:vllm-ci")

    root = str(Path(__file__).resolve().parents[3])
    with reserved_port() as port:  # held until the server listens there: no one else takes it
        launch = {
            "engine": "vllm",
            "port": port,
            "ready_timeout_s": 120,
            "args": ["--max-num-seqs", "2"],
            "command": [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); "
                        "from tests.fakes.openai_server import main; main(sys.argv[1:])"],
        }  # fmt: skip
        config = _config({"launch": launch, "model": "served"})
        backend = OpenAIBackend(config, str(tmp_path), gpu_count=lambda: 0)
        info = backend.load()
    assert backend.server is not None and backend.server.alive()
    assert info.extra["endpoint"]["mode"] == "launch"
    assert info.extra["endpoint"]["image"] == "llenergymeasure:vllm-ci"
    assert info.extra["endpoint"]["engine_image"] == {
        "image": "llenergymeasure:vllm",
        "source": "default for engine vllm: llem's vLLM image",
        "has_llem": True,
    }
    assert info.extra["endpoint"]["version"] == "fake-1.0"
    assert info.extra["endpoint"]["max_num_seqs"] == 2
    assert backend.server_pids() == {backend.server.process.pid}
    out = backend.generate(_prompts(2))
    assert len(out.requests) == 2
    backend.window_started(0.0)
    result = backend.finish_result(_result(config, True), tmp_path, 0.0, 0.8)
    backend.close()
    assert not backend.server.alive()
    assert result.extra["endpoint"]["log_file"] == "server.log"
    assert "fake OpenAI server on port" in result.extra["endpoint"]["log_tail"]
    assert "fake OpenAI server on port" in (tmp_path / "server.log").read_text()
    assert not backend.server.log_path.exists()  # the temporary log was moved beside the result
    tel = result.engine_telemetry.model_dump()
    assert tel["saturation_target"] == 2.0  # offline n=100 capped by --max-num-seqs 2
    assert tel["saturation_ratio"] == 0.5 and not result.valid


def test_scraping_stops_when_the_window_ends_not_when_the_result_is_written(
    tmp_path: Path,
) -> None:
    """The engine is idle once the window has ended: a scrape taken while the result is built
    would pull the mean running batch down (and could fail the saturation gate)."""
    with FakeOpenAIServer(metrics_pages=[_page(5)]) as server:
        config = _config(
            {"base_url": server.base_url, "model": server.model, "max_num_seqs": 5},
            workload="serving",
            load={"concurrency": 5, "n_requests": 10},
        )
        backend = OpenAIBackend(config, "/m", gpu_count=lambda: 0)
        backend.load()
        backend.window_started(0.0)
        assert backend.scraper is not None
        backend.window_ended()  # joins the thread after one last scrape
        assert backend.scraper is None
        server.metrics_pages = [_page(0)]  # the engine idles while the result is written
        hits_at_the_end = server.metrics_hits
        result = backend.finish_result(_result(config, True), tmp_path, 0.0, 0.8)
        backend.close()
    assert server.metrics_hits == hits_at_the_end  # nothing scraped after the window
    tel = result.engine_telemetry.model_dump()
    assert tel["running_requests_mean"] == 5.0 and tel["saturation_ratio"] == pytest.approx(1.0)
    assert result.valid
