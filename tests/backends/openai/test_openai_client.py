"""The endpoint backend's streaming client against the fake OpenAI server (tests/fakes).

Exact timings come from the lock-step clock: the server sets the client's clock to each event's
scripted time and waits for the client's read, so TTFT and ITL are asserted with ``==`` whatever
the machine's load.
"""

from __future__ import annotations

import asyncio

import pytest

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.openai.client import StreamingClient, token_steps
from llenergymeasure.backends.openai.http import (
    BaseURL,
    EndpointError,
    HTTPStatusError,
    TruncatedStreamError,
)
from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.harness.serving.metrics import ttft_s
from tests.fakes.openai_server import FakeOpenAIServer, LockStepClock, Script, reserved_port

PROMPT = Prompt(token_ids=[5, 6, 7], max_new_tokens=4, text="hello there")


def _client(server: FakeOpenAIServer, **kw: object) -> StreamingClient:
    return StreamingClient(BaseURL.parse(server.base_url), server.model, **kw)  # type: ignore[arg-type]


def _submit(client: StreamingClient, prompt: Prompt = PROMPT) -> RequestTimeline:
    timeline = RequestTimeline(index=0, input_tokens=len(prompt.token_ids))
    asyncio.run(client.submit(0, prompt, timeline))
    return timeline


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_ttft_and_itl_are_the_scripted_event_times(api: str) -> None:
    clock = LockStepClock(start=100.0)
    script = Script(tokens=["a", "b", "c", "d"], times=[100.25, 100.30, 100.42, 100.43])
    with FakeOpenAIServer(scripts=[script], clock=clock) as server:
        t = _submit(_client(server, api=api, clock=clock))
    assert t.injected_s == 100.0
    assert ttft_s(t) == pytest.approx(0.25, abs=1e-12)
    assert t.token_steps == [(100.25, 1), (100.30, 1), (100.42, 1), (100.43, 1)]
    gaps = [b - a for a, b in zip(t.token_times(), t.token_times()[1:], strict=False)]
    assert gaps == pytest.approx([0.05, 0.12, 0.01], abs=1e-12)
    assert t.finished_s == 100.43  # the usage event came at the last time
    assert t.finish_reason == "length"
    assert t.input_tokens == 7  # the server's usage.prompt_tokens
    body = server.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 4
    if api == "completions":
        assert body["prompt"] == [5, 6, 7]  # the exact token ids
    else:
        assert body["messages"] == [{"role": "user", "content": "hello there"}]


def test_extra_body_fields_are_sent_and_override() -> None:
    with FakeOpenAIServer(scripts=[Script()]) as server:
        _submit(_client(server, extra_body={"ignore_eos": True, "min_tokens": 4}))
    assert server.bodies[0]["ignore_eos"] is True
    assert server.bodies[0]["min_tokens"] == 4


def test_server_usage_is_the_token_count_surplus_on_the_last_event() -> None:
    clock = LockStepClock(start=0.0)
    script = Script(tokens=["ab", "cd"], times=[1.0, 2.0], completion_tokens=5)
    with FakeOpenAIServer(scripts=[script], clock=clock) as server:
        t = _submit(_client(server, clock=clock))
    assert t.token_steps == [(1.0, 1), (2.0, 4)]
    assert t.output_tokens == 5


def test_a_tokenizer_count_replaces_the_usage() -> None:
    script = Script(tokens=["a b", " c"], completion_tokens=9)
    with FakeOpenAIServer(scripts=[script]) as server:
        t = _submit(_client(server, count_tokens=lambda text: len(text.split())))
    assert t.output_tokens == 3
    assert t.input_tokens == 3  # the prompt's own ids, not the server's usage


def test_token_steps_rule() -> None:
    chunks = [(1.0, "x"), (2.0, "y"), (3.0, "z")]
    assert token_steps(chunks, None) == [(1.0, 1), (2.0, 1), (3.0, 1)]
    assert token_steps(chunks, 3) == [(1.0, 1), (2.0, 1), (3.0, 1)]
    assert token_steps(chunks, 2) == [(1.0, 1), (2.0, 1), (3.0, 0)]
    assert token_steps([], 4) == []


def test_wrong_model_shows_the_servers_404_message() -> None:
    with FakeOpenAIServer(model="served") as server:
        client = StreamingClient(BaseURL.parse(server.base_url), "nope")
        with pytest.raises(HTTPStatusError) as info:
            _submit(client)
    assert info.value.status == 404
    assert "The model `nope` does not exist." in str(info.value)


def test_http_error_status_is_raised_with_the_message() -> None:
    script = Script(status=400, error_message="max_tokens is too large")
    with (
        FakeOpenAIServer(scripts=[script]) as server,
        pytest.raises(HTTPStatusError, match=r"HTTP 400 .*max_tokens is too large"),
    ):
        _submit(_client(server))


def test_truncated_stream_fails_the_request() -> None:
    script = Script(tokens=["a", "b", "c"], stop_after=2)
    with (
        FakeOpenAIServer(scripts=[script]) as server,
        pytest.raises(TruncatedStreamError, match=r"ended without its last chunk"),
    ):
        _submit(_client(server))


def test_error_event_mid_stream_fails_the_request() -> None:
    script = Script(tokens=["a", "b"], stop_after=1, error_event="engine died")
    with (
        FakeOpenAIServer(scripts=[script]) as server,
        pytest.raises(EndpointError, match=r"mid-stream: engine died"),
    ):
        _submit(_client(server))


def test_a_stream_without_text_fails_the_request() -> None:
    script = Script(tokens=[""], completion_tokens=0)
    with (
        FakeOpenAIServer(scripts=[script]) as server,
        pytest.raises(EndpointError, match=r"without any output text"),
    ):
        _submit(_client(server))


def test_unreachable_url_names_the_address() -> None:
    with (
        reserved_port() as port,  # nothing listens there, and no other process can
        pytest.raises(EndpointError, match=f"cannot connect to http://127.0.0.1:{port}"),
    ):
        _submit(StreamingClient(BaseURL.parse(f"http://127.0.0.1:{port}"), "fake-model"))


class _StillLoop(asyncio.SelectorEventLoop):
    """An event loop whose time stands still (at 0) until a test moves it: a timeout on it fires
    when the test says, never because the machine was slow."""

    now = 0.0

    def time(self) -> float:
        return self.now


def test_request_timeout_names_the_field() -> None:
    # The server sends one text event and holds the request open. The loop's time stands still
    # until the client has read that event (its clock's second read: the first is the send time),
    # then moves past openai.request_timeout_s: the timeout fires after exactly one event however
    # loaded the machine (a real 0.3 s timeout fired before the first event when it was slow).
    loop = _StillLoop()
    reads: list[float] = []

    def clock() -> float:
        reads.append(float(len(reads)))
        if len(reads) == 2:
            loop.now = 1000.0
        return reads[-1]

    script = Script(tokens=["a", "b"], hold_after=1)
    timeline = RequestTimeline(index=0, input_tokens=3)
    try:
        with FakeOpenAIServer(scripts=[script]) as server:
            client = _client(server, timeout_s=0.3, clock=clock)
            with pytest.raises(EndpointError, match=r"request_timeout_s=0.3 s \(1 text events"):
                loop.run_until_complete(client.submit(0, PROMPT, timeline))
    finally:
        loop.close()
    assert len(reads) == 2  # the send and the one event: the request never finished


def test_chat_without_text_or_tokenizer_is_a_clear_error() -> None:
    with FakeOpenAIServer() as server:
        client = _client(server, api="chat")
        with pytest.raises(EndpointError, match=r"set openai.tokenizer"):
            client.request_body(Prompt(token_ids=[1], max_new_tokens=1))
        decoded = _client(server, api="chat", prompt_text=lambda p: "ids " + str(p.token_ids))
        body = decoded.request_body(Prompt(token_ids=[1], max_new_tokens=1))
    assert body["messages"][0]["content"] == "ids [1]"


@pytest.mark.parametrize(
    ("url", "port", "prefix"),
    [
        ("http://127.0.0.1:8000", 8000, ""),
        ("http://127.0.0.1:8000/v1", 8000, ""),
        ("http://host/proxy/v1/", 80, "/proxy"),
        ("https://host", 443, ""),
    ],
)
def test_base_url_forms(url: str, port: int, prefix: str) -> None:
    base = BaseURL.parse(url)
    assert (base.port, base.prefix) == (port, prefix)


def test_base_url_not_http_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"openai.base_url 'localhost:8000' is not an http"):
        BaseURL.parse("localhost:8000")
