"""``backend: openai``: an OpenAI-compatible server measured through its HTTP API.

One class serves both workloads: ``generate`` (offline: every prompt of the call sent at once,
the server schedules, as vLLM's offline engine does) and ``submit`` (``workload: serving``: the
load driver sends each request on its schedule, on ``self.loop``). ``load`` starts the server in
launch mode (its start is the load; its first requests are the warmup) or checks, in attach mode,
that the server answers and serves the model. ``close`` stops a launched server.

Failed requests (an HTTP error, a broken or truncated stream, a timeout) fail that request only:
they are counted and their errors kept (``extra.endpoint``); the run fails when every request
of a call failed. A server that dies during the window fails its requests, and the run with them.

The harness asks three optional things of this backend besides the ``Backend`` protocol:
``window_started(t0)`` when the measured window starts (the ``/metrics`` scraper starts),
``window_ended()`` when it ends (the scraper stops) and ``finish_result(result, output_dir, t0)`` after the result is built (the result's
``engine_telemetry`` field, the saturation gate, the server's facts).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.backends.openai.client import StreamingClient
from llenergymeasure.backends.openai.http import (
    BaseURL,
    EndpointError,
    HTTPStatusError,
    connection_refused,
    error_message,
    get,
)
from llenergymeasure.backends.openai.launch import (
    LaunchedServer,
    gpus_of_args,
    max_num_seqs_of,
    server_command,
    start_server,
    wait_ready,
)
from llenergymeasure.backends.openai.local_server import is_local_host, listening_pids
from llenergymeasure.backends.openai.section import OpenAIConfig
from llenergymeasure.backends.openai.telemetry import (
    TelemetryScraper,
    TelemetrySeries,
    finish_series,
    saturation_gate,
    saturation_target,
)
from llenergymeasure.backends.serving_base import RequestTimeline
from llenergymeasure.errors import ConfigError, ExperimentError
from llenergymeasure.models.synthetic import MARKER_FILE

if TYPE_CHECKING:
    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.results.models import ExperimentResult

logger = logging.getLogger(__name__)

SERVER_LOG_FILE = "server.log"
ATTACH_NOTE = (
    "attach mode: llem did not start this server; its load, its configuration and any other "
    "client's requests are outside llem's control"
)
MAX_ERRORS_KEPT = 20


def _gpu_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return 0


class OpenAIBackend:
    """An OpenAI-compatible server behind the ``Backend`` protocol and ``ServingEngine.submit``."""

    name = "openai"
    #: the load driver counts a failed request apart instead of failing the run (driver.py)
    tolerates_failed_requests = True

    def __init__(
        self,
        config: ExperimentConfig,
        model_path: str,
        gpu_count: Any = _gpu_count,
    ) -> None:
        section = config.backend_section()
        assert isinstance(section, OpenAIConfig)
        if section.base_url is None and section.launch is None:
            raise ConfigError(
                "backend: openai needs openai.base_url (the address of a server that runs, e.g. "
                "http://127.0.0.1:8000) or openai.launch (llem starts one, e.g. launch: {engine: "
                "vllm})"
            )
        self.config = config
        self.section = section
        self.model_path = model_path
        self.served_model = section.model or config.model
        self.loop = asyncio.new_event_loop()
        self._gpu_count = gpu_count
        self.server: LaunchedServer | None = None
        self._tokenizer: Any = None
        self.client: StreamingClient | None = None
        self.scraper: TelemetryScraper | None = None
        self._series: TelemetrySeries | None = None  # the window's scrapes, once it has ended
        self.failed: list[str] = []
        self.n_failed = 0
        self.n_sent = 0
        self.max_num_seqs = section.max_num_seqs
        self.extra: dict[str, Any] = {}
        self._server_pids: set[int] = set()
        self._output_dir: Path | None = None
        if section.launch is not None:
            self.base_url = BaseURL("http", section.launch.host, section.launch.port, "")
            if self.max_num_seqs is None:
                self.max_num_seqs = max_num_seqs_of(section.launch.engine, section.launch.args)
        else:
            assert section.base_url is not None
            self.base_url = BaseURL.parse(section.base_url)

    # -- lifecycle -------------------------------------------------------------------------------

    def load(self) -> LoadInfo:
        section = self.section
        gpus = self.config.gpus
        if section.launch is None and gpus is None and self._gpu_count() > 0:
            raise ConfigError(
                "backend: openai in attach mode (openai.base_url) on a GPU host needs `gpus:`, "
                "the GPUs the server runs on, so that llem measures their energy (e.g. gpus: [0])"
            )
        if section.launch is not None:
            self._launch()
        self._check_model()
        self.client = StreamingClient(
            self.base_url,
            self.served_model,
            api=section.api,
            extra_body=section.extra_body,
            timeout_s=section.request_timeout_s,
            prompt_text=self._decode,
            count_tokens=self._count if section.tokenizer else None,
        )
        self._server_pids = self._find_server_pids()
        n_visible = self._gpu_count()
        if gpus:
            devices = list(range(len(gpus)))
        elif n_visible and section.launch is not None:
            devices = list(
                range(min(n_visible, gpus_of_args(section.launch.engine, section.launch.args)))
            )
        else:
            devices = [0] if n_visible else []
        self.extra = {"endpoint": self._facts()}
        return LoadInfo(
            model_path=self.model_path,
            weights="server",
            cuda_devices=devices,
            device="cuda" if devices else "server",
            extra=self.extra,
        )

    def _launch(self) -> None:
        launch = self.section.launch
        assert launch is not None
        dummy = (Path(self.model_path) / MARKER_FILE).is_file()
        command = server_command(launch, self.model_path, self.served_model, dummy)
        logger.info("starting the server: %s", " ".join(command))
        fd, log = tempfile.mkstemp(prefix="llem-server-", suffix=".log")
        os.close(fd)
        self.server = start_server(command, self.base_url, Path(log))
        wait_ready(self.server, launch.ready_timeout_s)

    def _check_model(self) -> None:
        """The server answers and serves ``openai.model``: else a clear error now, not 404s later."""
        try:
            status, body = get(self.base_url, "/v1/models", timeout_s=30.0)
        except EndpointError as exc:
            raise ExperimentError(
                f"{exc}; is the server at openai.base_url={self.base_url.url('')} running and "
                "reachable from here?",
                phase="load",
            ) from exc
        if status != 200:
            raise ExperimentError(
                f"GET {self.base_url.url('/v1/models')} answered HTTP {status}: "
                f"{error_message(body)}; openai.base_url must point at an OpenAI-compatible server",
                phase="load",
            )
        try:
            served = [str(m.get("id")) for m in json.loads(body).get("data", [])]
        except (ValueError, AttributeError):
            served = []
        if served and self.served_model not in served:
            raise ExperimentError(
                f"the server does not serve openai.model={self.served_model!r}; it serves "
                f"{', '.join(served)}: set openai.model to one of those",
                phase="load",
            )

    def _find_server_pids(self) -> set[int]:
        if self.server is not None:
            return {self.server.process.pid}
        return listening_pids(self.base_url.port) if is_local_host(self.base_url.host) else set()

    def server_pids(self) -> set[int]:
        """The server's processes (their descendants too count as the experiment's own on the
        measured GPUs: the harness gives them to the meter's foreign_process check)."""
        return set(self._server_pids)

    def _facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "base_url": self.base_url.url(""),
            "api": self.section.api,
            "served_model": self.served_model,
            "mode": "launch" if self.server else "attach",
            "max_num_seqs": self.max_num_seqs,
            "server_pids": sorted(self._server_pids),
        }
        if not self._server_pids:
            facts["server_pids_note"] = (
                "the server's processes are not visible from here (another host or PID "
                "namespace): any process on the measured GPUs counts as foreign"
            )
        if self.server is not None and self.section.launch is not None:
            from llenergymeasure.backends.openai.images import launch_image_record

            facts.update(
                engine=self.section.launch.engine,
                # the image the server ran in (the docker runner's container; None: a local
                # process), and why the docker runner chose it (elsewhere: llem's default for it)
                image=os.environ.get("LLEM_CONTAINER_IMAGE") or None,
                engine_image=launch_image_record(self.section.launch),
                command=self.server.command,
                version=self.server.version,
                ready_after_s=(
                    self.server.ready_s - self.server.started_s
                    if self.server.ready_s is not None
                    else None
                ),
            )
        else:
            from llenergymeasure.backends.openai.launch import server_version

            facts.update(version=server_version(self.base_url), note=ATTACH_NOTE)
        return facts

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    def _load_tokenizer(self) -> Any:
        path = self.model_path
        if self.section.tokenizer:
            from llenergymeasure.config.user import OutputSettings
            from llenergymeasure.models.synthetic import resolve_model

            path = resolve_model(
                self.section.tokenizer, OutputSettings().resolved_model_cache_dir()
            ).path
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ExperimentError(
                f"backend: openai builds its prompts with the model's tokenizer, which needs "
                f"transformers ({exc}); install llenergymeasure[pytorch]",
                phase="load",
            ) from exc
        return AutoTokenizer.from_pretrained(path)

    def _decode(self, prompt: Prompt) -> str:
        return str(self.tokenizer().decode(prompt.token_ids, skip_special_tokens=True))

    def _count(self, text: str) -> int:
        return len(self.tokenizer().encode(text, add_special_tokens=False))

    def synchronize(self) -> None:
        """Nothing to wait for: every request has returned when ``generate`` or the driver does."""

    def peak_memory_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        if self.scraper is not None:
            self.scraper.stop()
            self.scraper = None
        if self.server is not None:
            self.server.stop()
            self._keep_log()
        if not self.loop.is_closed():  # attach mode too: its selector and self-pipe are fds
            self.loop.close()

    def _keep_log(self) -> None:
        """The launched server's whole log beside the result (it was written to a temporary
        file: the run directory is known only once the result is)."""
        assert self.server is not None
        log = self.server.log_path
        try:
            if self._output_dir is not None and log.exists():
                shutil.copyfile(log, self._output_dir / SERVER_LOG_FILE)
            log.unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("could not keep the server log %s: %s", log, exc)

    # -- requests --------------------------------------------------------------------------------

    def clock_note(self) -> str:
        from llenergymeasure.backends.openai.client import CLOCK_NOTE

        return CLOCK_NOTE

    def _require_client(self) -> StreamingClient:
        if self.client is None:
            raise ExperimentError("the openai backend was asked for requests before load()")
        return self.client

    def _server_gone(self, exc: EndpointError) -> str | None:
        """Why the server is lost (it exited, or no longer accepts connections), else None."""
        if self.server is not None and not self.server.alive():
            return (
                f"the launched server exited (code {self.server.process.returncode}) during the "
                f"run; its log ends with:\n{self.server.log_tail(1500)}"
            )
        if isinstance(exc, HTTPStatusError) or not connection_refused(exc):
            return None
        try:
            get(self.base_url, "/v1/models", timeout_s=5.0)
        except EndpointError as probe:
            if connection_refused(probe):
                return (
                    f"the server at openai.base_url={self.base_url.url('')} stopped accepting "
                    f"connections during the run ({exc}); restart it and run the experiment again"
                )
        return None

    def _record_failure(self, error: str) -> None:
        self.n_failed += 1
        if len(self.failed) < MAX_ERRORS_KEPT:
            self.failed.append(error)

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        """``ServingEngine.submit``: one streamed request; a failure is counted, then raised."""
        client = self._require_client()
        self.n_sent += 1
        try:
            await client.submit(index, prompt, timeline)
        except EndpointError as exc:
            gone = self._server_gone(exc)
            self._record_failure(f"request {index}: {exc}")
            if gone:
                raise ExperimentError(gone, phase="measure") from exc
            raise

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        """Every prompt sent at once; TTFT and latency from each request's send time."""
        client = self._require_client()
        timelines = [
            RequestTimeline(index=i, input_tokens=len(p.token_ids)) for i, p in enumerate(prompts)
        ]

        async def one(t: RequestTimeline, p: Prompt) -> BaseException | None:
            try:
                await self.submit(t.index, p, t)
            except EndpointError as exc:
                t.error = str(exc)
                return exc
            return None

        async def run_all() -> list[BaseException | None]:
            return await asyncio.gather(
                *(one(t, p) for t, p in zip(timelines, prompts, strict=True))
            )

        t0 = client.clock()
        errors = self.loop.run_until_complete(run_all())
        duration = client.clock() - t0
        done = [t for t, e in zip(timelines, errors, strict=True) if e is None]
        if prompts and not done:
            raise ExperimentError(
                f"all {len(prompts)} requests to {self.base_url.url('')} failed; the first: "
                f"{errors[0]}",
                phase="measure",
            )
        records = []
        for t in done:
            first, last = t.first_token_s, t.last_token_s
            times = t.token_times()
            records.append(
                RequestRecord(
                    input_tokens=t.input_tokens,
                    output_tokens=t.output_tokens,
                    latency_s=last - t.injected_s if last is not None else None,
                    ttft_s=first - t.injected_s if first is not None else None,
                    itl_s=[b - a for a, b in itertools.pairwise(times)],
                )
            )
        return GenerationOutput(
            requests=records, duration_s=duration, timing_source=self.clock_note()
        )

    # -- the window ------------------------------------------------------------------------------

    def window_started(self, t0: float) -> None:
        """Start scraping ``/metrics`` (when the server has one) as the measured window starts."""
        self.failed, self.n_failed, self.n_sent = [], 0, 0
        if not self.section.metrics:
            return
        base = self.base_url

        def fetch() -> str:
            status, body = get(base, "/metrics", timeout_s=5.0)
            if status != 200:
                raise EndpointError(f"GET /metrics: HTTP {status}")
            return body

        self._series = None
        self.scraper = TelemetryScraper(fetch, period_s=1.0)
        self.scraper.start()

    def window_ended(self) -> None:
        """Stop scraping as the measured window ends (after one last scrape): the engine is idle
        from then on, and scrapes taken while the result is written would pull the mean running
        batch down and could fail the saturation gate."""
        if self.scraper is not None:
            self._series = self.scraper.stop()
            self.scraper = None

    def finish_result(
        self, result: ExperimentResult, output_dir: Path, t0: float, min_share: float
    ) -> ExperimentResult:
        """The result with engine telemetry, the saturation gate and the server's facts."""
        update: dict[str, Any] = {}
        telemetry = None
        series, self._series = self._series, None
        if self.scraper is not None:  # a harness that did not say when the window ended
            series = self.scraper.stop()
            self.scraper = None
        if series is not None:
            load = self.config.load
            if self.config.workload == "serving" and load is not None:
                mode, want = ("closed" if load.closed_loop else "open"), load.concurrency
            else:
                mode, want = "offline", self.config.n
            target = saturation_target(mode, want, self.max_num_seqs)
            telemetry = finish_series(series, output_dir, t0, target)
        gate = saturation_gate(telemetry, min_share)
        if gate is not None and result.energy.available:
            gates = [*result.gates, gate]
            update.update(
                gates=gates,
                valid=all(g.passed for g in gates),
                failed_gates=[g.name for g in gates if not g.passed],
            )
        endpoint = dict(result.extra.get("endpoint") or {})
        endpoint.update(requests_sent=self.n_sent, requests_failed=self.n_failed)
        if self.failed:
            endpoint["request_errors"] = list(self.failed)
        if self.server is not None:
            self._output_dir = output_dir
            endpoint["log_tail"] = self.server.log_tail()
            endpoint["log_file"] = SERVER_LOG_FILE  # beside result.json once the server stopped
        update["extra"] = {**result.extra, "endpoint": endpoint}
        update["engine_telemetry"] = telemetry
        return result.model_copy(update=update)


def create(
    config: ExperimentConfig, model_path: str, cache_dir: Path | None = None
) -> OpenAIBackend:
    """The registry's factory (``backends/registry.py``): build, not load."""
    return OpenAIBackend(config, model_path)


def create_serving(config: ExperimentConfig, model_path: str) -> OpenAIBackend:
    """The registry's serving factory: the same class, its ``submit`` driven by the load driver."""
    return OpenAIBackend(config, model_path)
