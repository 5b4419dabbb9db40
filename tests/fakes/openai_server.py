"""A fake OpenAI-compatible server on the standard library, with scripted timings and failures.

``FakeOpenAIServer`` is a threading HTTP/1.1 server on 127.0.0.1 (ephemeral port) answering
``/v1/completions`` and ``/v1/chat/completions`` as streams of Server-Sent Events in chunked
transfer encoding (as vLLM's uvicorn does), plus ``/health``, ``/v1/models``, ``/version`` and
``/metrics``. ``python -m tests.fakes.openai_server --served-model-name M --port P`` runs it as a
server process (launch-mode tests: it takes vLLM's arguments and ignores the others).

Timings are exact: with the **lock-step clock** (``LockStepClock``) the client is given the clock;
before writing each event the server sets the clock to that event's scripted time, and waits until
the client has read the clock once (the client reads it once per event it receives). The client's
stamps are then exactly the scripted times, however loaded the machine: TTFT and ITL can be
asserted with ``==``. One request at a time. Nothing here sleeps on the real clock: a test never
depends on how loaded or how quiet the machine is.

A ``Script`` also says how a request fails: an HTTP status with an OpenAI-style error body, an
``error`` event mid-stream, a connection closed after k events without ``[DONE]``, or a request
held open after k events until the server stops (``hold_after``: one that never finishes).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@contextmanager
def reserved_port() -> Iterator[int]:
    """A port of 127.0.0.1 held bound, never listening, for the ``with`` block: connections to it
    are refused; no other socket's ``bind(0)`` picks it (the kernel shares an address only with
    an explicit bind); a server told to listen there (binding it with ``SO_REUSEADDR``, as this
    fake and uvicorn do) can. A port found by binding 0 and closing is free again at once, and
    another process on a busy machine may take it before the server, or the refused connection,
    that the test wants."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        yield int(holder.getsockname()[1])
    finally:
        holder.close()


class LockStepClock:
    """A clock the server sets; each ``set`` waits for the client's read of the previous value."""

    def __init__(self, start: float = 1000.0) -> None:
        self._t = start
        self._reads = 0
        self._cond = threading.Condition()

    def __call__(self) -> float:
        with self._cond:
            self._reads += 1
            self._cond.notify_all()
            return self._t

    def set_and_wait(self, t: float, write: Any, timeout_s: float = 30.0) -> None:
        """Set the time to ``t``, call ``write()``, wait until the clock was read after that."""
        with self._cond:
            self._t = t
            before = self._reads
        write()
        with self._cond:
            if not self._cond.wait_for(lambda: self._reads > before, timeout_s):
                raise TimeoutError(f"the client never read the clock after the event at {t}")


@dataclass
class Script:
    """How the server answers one request (the fields that are set apply)."""

    #: output text pieces, one event each
    tokens: list[str] = field(default_factory=lambda: ["a", "b", "c"])
    #: lock-step mode: the clock time of each text event (same length as tokens); the usage and
    #: [DONE] events come at the last time
    times: list[float] | None = None
    #: after this many text events, send nothing more until the server stops (a request that
    #: never finishes: for timeouts, which the test fires on a clock of its own)
    hold_after: int | None = None
    #: usage.completion_tokens reported (default: len(tokens)); None: no usage event
    completion_tokens: int | str | None = "len"
    prompt_tokens: int = 7
    #: answer with this HTTP status and message instead of a stream
    status: int = 200
    error_message: str = ""
    #: after this many text events, send an error event (error_event) or close (truncate)
    stop_after: int | None = None
    error_event: str | None = None
    finish_reason: str = "length"


class FakeOpenAIServer:
    """Serves ``model``; ``scripts`` are used in request order (the last one repeats)."""

    def __init__(
        self,
        model: str = "fake-model",
        scripts: list[Script] | None = None,
        clock: LockStepClock | None = None,
        metrics_pages: list[str] | None = None,
        port: int = 0,
    ) -> None:
        self.model = model
        self.scripts = scripts or [Script()]
        self.clock = clock
        self.metrics_pages = metrics_pages or []
        self.bodies: list[dict[str, Any]] = []
        self.metrics_hits = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # releases the requests held by Script.hold_after
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                server._get(self)

            def do_POST(self) -> None:
                server._post(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- handlers ----------------------------------------------------------------------------

    def _reply(self, h: BaseHTTPRequestHandler, status: int, body: str, ctype: str) -> None:
        data = body.encode()
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(data)
        h.close_connection = True

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        if h.path == "/health":
            self._reply(h, 200, "", "text/plain")
        elif h.path == "/v1/models":
            page = {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            self._reply(h, 200, json.dumps(page), "application/json")
        elif h.path == "/version":
            self._reply(h, 200, json.dumps({"version": "fake-1.0"}), "application/json")
        elif h.path == "/metrics" and self.metrics_pages:
            with self._lock:
                page = self.metrics_pages[min(self.metrics_hits, len(self.metrics_pages) - 1)]
                self.metrics_hits += 1
            self._reply(h, 200, page, "text/plain; version=0.0.4")
        else:
            self._reply(h, 404, json.dumps({"detail": "Not Found"}), "application/json")

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length", "0"))
        body = json.loads(h.rfile.read(length) or b"{}")
        with self._lock:
            self.bodies.append(body)
            script = self.scripts[min(len(self.bodies) - 1, len(self.scripts) - 1)]
        api = {"/v1/completions": "completions", "/v1/chat/completions": "chat"}.get(h.path)
        if api is None:
            self._reply(h, 404, json.dumps({"detail": "Not Found"}), "application/json")
            return
        if body.get("model") != self.model:
            message = f"The model `{body.get('model')}` does not exist."
            err = {"error": {"message": message, "type": "NotFoundError", "code": 404}}
            self._reply(h, 404, json.dumps(err), "application/json")
            return
        if script.status != 200:
            err = {"error": {"message": script.error_message, "code": script.status}}
            self._reply(h, script.status, json.dumps(err), "application/json")
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        self._stream(h, api, script)

    def _stream(self, h: BaseHTTPRequestHandler, api: str, script: Script) -> None:
        def chunk(payload: str) -> None:
            data = f"data: {payload}\n\n".encode()
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        def emit(payload: str, t: float | None) -> None:
            if self.clock is not None and t is not None:
                self.clock.set_and_wait(t, lambda: chunk(payload))
            else:
                chunk(payload)

        n = len(script.tokens)
        for i, token in enumerate(script.tokens):
            if script.stop_after is not None and i == script.stop_after:
                if script.error_event is not None:
                    emit(json.dumps({"error": {"message": script.error_event}}), None)
                h.close_connection = True
                return  # no last chunk, no [DONE]: a truncated stream
            if script.hold_after is not None and i == script.hold_after:
                self._stopping.wait()
                h.close_connection = True
                return
            finish = script.finish_reason if i == n - 1 else None
            if api == "chat":
                choice: dict[str, Any] = {"index": 0, "delta": {"content": token}}
            else:
                choice = {"index": 0, "text": token}
            choice["finish_reason"] = finish
            t = script.times[i] if script.times is not None else None
            emit(json.dumps({"object": "chunk", "choices": [choice]}), t)
        last_t = script.times[-1] if script.times else None
        completion = n if script.completion_tokens == "len" else script.completion_tokens
        if completion is not None:
            usage = {"prompt_tokens": script.prompt_tokens, "completion_tokens": completion}
            emit(json.dumps({"choices": [], "usage": usage}), last_t)
        emit("[DONE]", None)  # the client reads no clock for [DONE]
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
        h.close_connection = True


def main(argv: list[str]) -> None:
    """Serve until killed, on the vLLM-style ``--port`` and ``--served-model-name`` of ``argv``."""

    def value(flag: str, default: str) -> str:
        return argv[argv.index(flag) + 1] if flag in argv else default

    page = "vllm:num_requests_running 1\nvllm:generation_tokens_total 3\n"
    server = FakeOpenAIServer(
        model=value("--served-model-name", "fake-model"),
        port=int(value("--port", "0")),
        metrics_pages=[page],
    )
    with server:
        print(f"fake OpenAI server on port {server.port}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
