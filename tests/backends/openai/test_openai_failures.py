"""Failed requests of an engine over a network: counted apart, the run goes on, unless every
request failed or the server is gone (the load driver with ``tolerates_failed_requests``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.openai.backend import OpenAIBackend
from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import ExperimentError
from llenergymeasure.harness.serving.driver import drive_closed_loop, drive_open_loop
from tests.fakes.openai_server import FakeOpenAIServer, Script, reserved_port


class Flaky:
    """Fails the requests whose index is in ``bad`` (ValueError, or ``fatal`` for the lost run)."""

    def __init__(self, bad: set[int], tolerant: bool, fatal: bool = False) -> None:
        self.bad, self.fatal = bad, fatal
        self.tolerates_failed_requests = tolerant
        self.seen: list[int] = []

    def clock_note(self) -> str:
        return "stub"

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        self.seen.append(index)
        await asyncio.sleep(0)
        if index in self.bad:
            if self.fatal:
                raise ExperimentError("the server died", phase="measure")
            raise ValueError(f"request {index} broke")
        timeline.token_steps = [(timeline.injected_s, 1)]


PROMPTS = [Prompt(token_ids=[1], max_new_tokens=1) for _ in range(6)]


def test_closed_loop_goes_on_after_a_failed_request_and_counts_it_apart() -> None:
    engine = Flaky({1, 4}, tolerant=True)
    drive = asyncio.run(drive_closed_loop(engine, PROMPTS, concurrency=1, duration_s=None))
    assert engine.seen == [0, 1, 2, 3, 4, 5]  # the client did not stop at request 1
    assert [t.index for t in drive.timelines] == [0, 2, 3, 5]
    assert [t.index for t in drive.failed] == [1, 4]
    assert drive.failed[0].error == "ValueError: request 1 broke"


def test_open_loop_counts_failed_requests_apart() -> None:
    engine = Flaky({0}, tolerant=True)
    drive = asyncio.run(drive_open_loop(engine, PROMPTS[:3], [0.0, 0.0, 0.0]))
    assert [t.index for t in drive.timelines] == [1, 2]
    assert [t.index for t in drive.failed] == [0]


def test_every_request_failing_fails_the_run_even_when_tolerated() -> None:
    engine = Flaky(set(range(6)), tolerant=True)
    with pytest.raises(ExperimentError, match=r"6 of 6 serving requests failed.*request 0 broke"):
        asyncio.run(drive_closed_loop(engine, PROMPTS, concurrency=2, duration_s=None))


def test_an_engine_that_does_not_tolerate_failures_still_fails_the_run() -> None:
    engine = Flaky({2}, tolerant=False)
    with pytest.raises(ExperimentError, match=r"1 of 3 serving requests failed"):
        asyncio.run(drive_closed_loop(engine, PROMPTS, concurrency=1, duration_s=None))


def test_a_lost_server_fails_the_run_at_once() -> None:
    engine = Flaky({1}, tolerant=True, fatal=True)
    with pytest.raises(ExperimentError, match="the server died"):
        asyncio.run(drive_closed_loop(engine, PROMPTS, concurrency=1, duration_s=None))
    assert engine.seen == [0, 1]


def _backend(server: FakeOpenAIServer, **top: Any) -> OpenAIBackend:
    config = ExperimentConfig.from_dict(
        {
            "model": "synthetic/tiny-llama",
            "backend": "openai",
            "openai": {"base_url": server.base_url, "model": server.model},
            **top,
        }
    )
    return OpenAIBackend(config, "/m", gpu_count=lambda: 0)


def test_attached_server_that_stops_during_the_run_is_a_clear_error() -> None:
    server = FakeOpenAIServer(scripts=[Script()])
    with server:
        backend = _backend(server)
        backend.load()
        assert len(backend.generate(PROMPTS[:2]).requests) == 2
    # the server is gone now
    with pytest.raises(ExperimentError, match=r"stopped accepting connections during the run"):
        backend.generate(PROMPTS[:2])
    t = RequestTimeline(index=0, input_tokens=1)
    with pytest.raises(ExperimentError, match=r"openai.base_url=http://127.0.0.1:\d+ stopped"):
        asyncio.run(backend.submit(0, PROMPTS[0], t))
    backend.close()


def test_an_http_error_is_one_failed_request_not_a_lost_server() -> None:
    scripts = [Script(), Script(status=503, error_message="overloaded"), Script()]
    with FakeOpenAIServer(scripts=scripts) as server:
        backend = _backend(server)
        backend.load()
        out = backend.generate(PROMPTS[:3])
        backend.close()
    assert len(out.requests) == 2 and backend.n_failed == 1
    assert "HTTP 503" in backend.failed[0] and "overloaded" in backend.failed[0]


def test_a_launched_server_that_dies_in_the_window_fails_the_run_with_its_log(
    tmp_path: Path,
) -> None:
    import signal
    import sys

    root = str(Path(__file__).resolve().parents[3])
    with reserved_port() as port:  # held until the server listens there: no one else takes it
        launch = {
            "engine": "vllm",
            "port": port,
            "ready_timeout_s": 120,
            "command": [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); "
                        "from tests.fakes.openai_server import main; main(sys.argv[1:])"],
        }  # fmt: skip
        config = ExperimentConfig.from_dict(
            {"model": "synthetic/tiny-llama", "backend": "openai", "openai": {"launch": launch}}
        )
        backend = OpenAIBackend(config, str(tmp_path), gpu_count=lambda: 0)
        backend.load()
    assert backend.server is not None
    backend.server.process.send_signal(signal.SIGKILL)
    backend.server.process.wait()
    with pytest.raises(
        ExperimentError, match=r"(?s)exited \(code -9\) during the run.*fake OpenAI"
    ):
        backend.generate(PROMPTS[:2])
    backend.close()
