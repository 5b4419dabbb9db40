"""The standard-library HTTP layer: body framings and Server-Sent Events, fed byte by byte."""

from __future__ import annotations

import asyncio

import pytest

from llenergymeasure.backends.openai.http import (
    TruncatedStreamError,
    _body_lines,
    _sse_data,
    error_message,
)


def _events(raw: bytes, headers: dict[str, str]) -> list[str]:
    async def run() -> list[str]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return [e async for e in _sse_data(_body_lines(reader, headers, "u"))]

    return asyncio.run(run())


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"


def test_chunks_split_inside_events_and_lines() -> None:
    raw = _chunked(b'data: {"a"', b": 1}\n", b"\ndata: two\r\n\r", b"\n: a comment\n\n")
    assert _events(raw, {"transfer-encoding": "chunked"}) == ['{"a": 1}', "two"]


def test_multi_line_data_and_other_fields() -> None:
    raw = b"event: x\ndata: line one\ndata:line two\nid: 7\n\ndata: last"
    assert _events(raw, {"content-length": str(len(raw))}) == ["line one\nline two", "last"]


def test_body_to_eof_without_framing() -> None:
    assert _events(b"data: a\n\ndata: b\n\n", {}) == ["a", "b"]


def test_a_chunked_body_without_its_last_chunk_is_truncated() -> None:
    raw = _chunked(b"data: a\n\n")[: -len(b"0\r\n\r\n")]
    with pytest.raises(TruncatedStreamError, match="without its last chunk"):
        _events(raw, {"transfer-encoding": "chunked"})


def test_a_short_content_length_body_is_truncated() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        _events(b"data: a\n\n", {"content-length": "50"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"error": {"message": "The model `x` does not exist.", "code": 404}}',
         "The model `x` does not exist."),
        ('{"error": "Input validation error"}', "Input validation error"),  # TGI
        ('{"detail": "Not Found"}', "Not Found"),  # FastAPI
        ('{"message": "bad"}', "bad"),
        ("plain text\n", "plain text"),
        ("", "(empty body)"),
    ],
)  # fmt: skip
def test_error_message_in_each_servers_shape(body: str, message: str) -> None:
    assert error_message(body) == message
