"""One streamed request to an OpenAI-compatible server, timed on the client's clock.

``StreamingClient.submit`` is the endpoint backend's ``ServingEngine.submit``: it sends one
request with ``stream: true`` and ``stream_options: {include_usage: true}``, stamps every
Server-Sent Event the moment it is read (one ``clock()`` call per event, nothing else reads the
clock), and fills the request's ``RequestTimeline``:

- TTFT is the first event carrying output text minus the send time, ITL the gaps between events
  carrying text: what a user of the server sees, network and HTTP framing included (the same
  definition as ``vllm bench serve``, AIPerf and GuideLLM);
- the output token count is the server's ``usage.completion_tokens`` when it sends one (else, or
  with ``count_tokens`` given, the tokenizer's count of the text); each text event counts one
  token, and when the server's count is larger (several tokens in one event: speculative decoding,
  a server's stream interval) the surplus goes on the last event, so the total is the server's;
- an HTTP error, an ``error`` event, a connection that breaks or a stream that ends without
  ``[DONE]`` raises ``EndpointError`` with the server's own message: the driver records it on that
  request's timeline (the request failed, the run goes on).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llenergymeasure.backends.base import Prompt
from llenergymeasure.backends.openai.http import BaseURL, EndpointError, post_events
from llenergymeasure.backends.serving_base import RequestTimeline

CLOCK_NOTE = (
    "client-side: send time and the arrival of each streamed event on this process's "
    "perf_counter (OpenAI-compatible HTTP streaming)"
)
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass
class StreamRecord:
    """What came back for one request, before it is turned into a timeline."""

    sent_s: float
    #: (arrival time, text) of every event that carried output text
    chunks: list[tuple[float, str]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None
    last_event_s: float | None = None


def _event_text(api: str, choice: dict[str, Any]) -> str:
    if api == "chat":
        delta = choice.get("delta") or {}
        return str(delta.get("content") or delta.get("reasoning_content") or "")
    return str(choice.get("text") or "")


def token_steps(chunks: list[tuple[float, str]], total: int | None) -> list[tuple[float, int]]:
    """One token per text event, the server's surplus on the last one (the rule above).

    With fewer tokens than events (a server that splits one token's text), the events past the
    count carry none, so the total is still the server's.
    """
    steps = [(t, 1) for t, _ in chunks]
    if total is None or not steps:
        return steps
    if total >= len(steps):
        t_last, n_last = steps[-1]
        steps[-1] = (t_last, n_last + total - len(steps))
        return steps
    return [(t, 1 if i < total else 0) for i, (t, _) in enumerate(steps)]


class StreamingClient:
    """Streams requests to one server and model; a ``ServingEngine`` for the load driver."""

    def __init__(
        self,
        base_url: BaseURL,
        model: str,
        api: str = "completions",
        extra_body: dict[str, Any] | None = None,
        timeout_s: float = 600.0,
        clock: Callable[[], float] = time.perf_counter,
        prompt_text: Callable[[Prompt], str] | None = None,
        count_tokens: Callable[[str], int] | None = None,
    ) -> None:
        if api not in PATHS:
            raise ValueError(f"openai.api {api!r} is not one of {', '.join(PATHS)}")
        self.base_url = base_url
        self.model = model
        self.api = api
        self.extra_body = dict(extra_body or {})
        self.timeout_s = timeout_s
        self.clock = clock
        self.prompt_text = prompt_text
        self.count_tokens = count_tokens

    def clock_note(self) -> str:
        return CLOCK_NOTE

    def request_body(self, prompt: Prompt) -> dict[str, Any]:
        """The JSON body: the completions API gets the exact token ids, chat gets text."""
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": prompt.max_new_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.api == "completions":
            body["prompt"] = list(prompt.token_ids)
        else:
            text = prompt.text
            if text is None and self.prompt_text is not None:
                text = self.prompt_text(prompt)
            if text is None:
                raise EndpointError(
                    "openai.api: chat needs prompt text; this prompt has only token ids and no "
                    "tokenizer to decode them (set openai.tokenizer, or use api: completions)"
                )
            body["messages"] = [{"role": "user", "content": text}]
        body.update(self.extra_body)
        return body

    async def stream(self, prompt: Prompt) -> StreamRecord:
        """Send one request and read its whole stream (bounded by ``timeout_s``)."""
        body = self.request_body(prompt)
        record = StreamRecord(sent_s=self.clock())
        try:
            await asyncio.wait_for(self._read(body, record), self.timeout_s)
        except asyncio.TimeoutError:
            raise EndpointError(
                f"no complete answer within openai.request_timeout_s={self.timeout_s:g} s "
                f"({len(record.chunks)} text events by then); raise it or lower the load"
            ) from None
        return record

    async def _read(self, body: dict[str, Any], record: StreamRecord) -> None:
        async for data in post_events(self.base_url, PATHS[self.api], body):
            now = self.clock()
            record.last_event_s = now
            try:
                event = json.loads(data)
            except ValueError:
                raise EndpointError(f"a streamed event is not JSON: {data[:200]!r}") from None
            if not isinstance(event, dict):
                raise EndpointError(f"a streamed event is not a JSON object: {data[:200]!r}")
            if event.get("error"):
                err = event["error"]
                message = err.get("message", err) if isinstance(err, dict) else err
                raise EndpointError(f"the server reported an error mid-stream: {message}")
            for choice in event.get("choices") or []:
                text = _event_text(self.api, choice)
                if text:
                    record.chunks.append((now, text))
                if choice.get("finish_reason"):
                    record.finish_reason = str(choice["finish_reason"])
            if event.get("usage"):
                record.usage = dict(event["usage"])

    def fill(self, record: StreamRecord, timeline: RequestTimeline) -> None:
        """Turn ``record`` into ``timeline``'s token steps, counts and end."""
        if not record.chunks:
            raise EndpointError(
                f"the stream finished ({record.finish_reason or 'no finish reason'}) without "
                "any output text; check max_tokens and the extra body fields"
            )
        usage = record.usage or {}
        total: int | None = None
        if self.count_tokens is not None:
            total = self.count_tokens("".join(text for _, text in record.chunks))
        elif usage.get("completion_tokens") is not None:
            total = int(usage["completion_tokens"])
        if self.count_tokens is None and usage.get("prompt_tokens") is not None:
            timeline.input_tokens = int(usage["prompt_tokens"])
        timeline.token_steps = token_steps(record.chunks, total)
        timeline.finished_s = record.last_event_s
        timeline.finish_reason = record.finish_reason

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        """``ServingEngine.submit``: stream the request, fill ``timeline``; raise if it failed."""
        record = await self.stream(prompt)
        timeline.injected_s = record.sent_s
        self.fill(record, timeline)
