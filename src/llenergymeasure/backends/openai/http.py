"""HTTP/1.1 for the endpoint backend, on the standard library only.

Streaming requests (``POST /v1/completions`` with ``stream: true``) go through ``asyncio`` streams
so that hundreds of them can be in flight on the one event loop the load driver runs on, and so
that each Server-Sent Event is seen the moment its bytes arrive (no client library buffering in
between). Plain ``GET`` requests (``/health``, ``/v1/models``, ``/metrics``, ``/version``) use
``urllib`` from a thread: they are few and never on the measured path.

Why not httpx or aiohttp: neither is a dependency of the package, and the part of HTTP a streaming
completion needs (one request per connection, a status line, headers, a chunked or delimited body)
is small enough to own and to test against ``tests/fakes/openai_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit


class EndpointError(Exception):
    """A request to the server failed: refused, reset, truncated, or answered with an error."""


class HTTPStatusError(EndpointError):
    """The server answered with a status other than 200; ``message`` is its own explanation."""

    def __init__(self, status: int, message: str, url: str) -> None:
        super().__init__(f"HTTP {status} from {url}: {message}")
        self.status = status
        self.message = message
        self.url = url


class TruncatedStreamError(EndpointError):
    """The connection ended before the response did."""


@dataclass(frozen=True)
class BaseURL:
    """``http[s]://host[:port][/prefix]``, split once (``/v1`` is part of the paths, not of it)."""

    scheme: str
    host: str
    port: int
    prefix: str

    @classmethod
    def parse(cls, url: str) -> BaseURL:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"openai.base_url {url!r} is not an http(s) URL; give one like "
                "http://127.0.0.1:8000 (the server's address, without /v1)"
            )
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/v1"):
            prefix = prefix[: -len("/v1")]
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, prefix)

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.prefix}{path}"


def get(base: BaseURL, path: str, timeout_s: float) -> tuple[int, str]:
    """``GET`` one path; (status, body text). Connection failures raise ``EndpointError``."""
    url = base.url(path)
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EndpointError(f"GET {url} failed: {reason}") from exc


def error_message(body: str) -> str:
    """The server's own words from an OpenAI-style error body, else the body itself (cut)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if data.get("message"):
            return str(data["message"])
        if data.get("detail"):
            return str(data["detail"])
    return body.strip()[:500]


async def post_events(base: BaseURL, path: str, body: dict[str, object]) -> AsyncIterator[str]:
    """``POST`` ``body`` as JSON and yield the ``data:`` field of each Server-Sent Event.

    Ends after ``data: [DONE]`` (not yielded). A stream that ends before ``[DONE]``, a chunked body
    cut short, or a status other than 200 raises (``TruncatedStreamError``, ``HTTPStatusError``).
    One connection per request (``Connection: close``): no pooling state to get wrong.
    """
    url = base.url(path)
    payload = json.dumps(body).encode()
    context = ssl.create_default_context() if base.scheme == "https" else None
    try:
        reader, writer = await asyncio.open_connection(base.host, base.port, ssl=context)
    except OSError as exc:
        raise EndpointError(f"cannot connect to {url}: {exc.strerror or exc}") from exc
    try:
        head = (
            f"POST {base.prefix}{path} HTTP/1.1\r\nHost: {base.host}:{base.port}\r\n"
            "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + payload)
        await writer.drain()
        status, headers = await _read_head(reader, url)
        body_lines = _body_lines(reader, headers, url)
        if status != 200:
            text = b"".join([line async for line in body_lines]).decode("utf-8", "replace")
            raise HTTPStatusError(status, error_message(text), url)
        async for data in _sse_data(body_lines):
            if data.strip() == "[DONE]":
                return
            yield data
        raise TruncatedStreamError(f"the stream from {url} ended without `data: [DONE]`")
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise TruncatedStreamError(f"the connection to {url} broke: {exc}") from exc
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader, url: str) -> tuple[int, dict[str, str]]:
    status_line = await reader.readline()
    if not status_line:
        raise TruncatedStreamError(f"{url} closed the connection without an answer")
    fields = status_line.decode("latin-1").split(None, 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise EndpointError(f"{url} did not answer HTTP: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if not line:
            raise TruncatedStreamError(f"{url} closed the connection inside the headers")
        if line in (b"\r\n", b"\n"):
            return int(fields[1]), headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


async def _body_lines(
    reader: asyncio.StreamReader, headers: dict[str, str], url: str
) -> AsyncIterator[bytes]:
    """The body's lines (ends kept), whatever its framing: chunked, Content-Length, or to EOF."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        pending = b""
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise TruncatedStreamError(
                    f"the chunked body from {url} ended without its last chunk"
                )
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await reader.readline()  # the blank line after the last chunk (trailers unused)
                if pending:
                    yield pending
                return
            pending += await reader.readexactly(size)
            await reader.readexactly(2)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line + b"\n"
    elif "content-length" in headers:
        data = await reader.readexactly(int(headers["content-length"]))
        for line in data.splitlines(keepends=True):
            yield line
    else:
        while line := await reader.readline():
            yield line


async def _sse_data(lines: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Server-Sent Events: the ``data:`` lines of one event joined, yielded at its blank line."""
    data: list[str] = []
    async for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


def connection_refused(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a refused connection: nothing listens any more."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or isinstance(
            getattr(seen, "reason", None), ConnectionRefusedError
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
