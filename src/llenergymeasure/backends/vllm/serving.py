"""vLLM in serving mode: the in-process async engine (``vllm.v1.engine.async_llm.AsyncLLM``).

``AsyncLLM`` runs the engine core in its own process and hands outputs to this process through an
output-handler task on the asyncio loop it was created on. The backend owns one event loop, builds
the engine on it, and the load driver (``harness/serving/driver.py``) runs on the same loop, so a
request is added to the engine the moment the driver calls ``submit``.

Per-request timestamps are the engine's own (``RequestOutput.metrics``, a ``RequestStateStats``;
kept because the engine is built with ``disable_log_stats=False``):

- ``queued_ts`` / ``scheduled_ts``: engine-core monotonic times the request entered the waiting
  queue and was first scheduled (prefill starts); queueing time is their difference;
- ``last_token_ts`` of each ``DELTA`` output: the engine-core time of the step that produced its
  tokens (one output per step per request while the consumer keeps up);
- ``first_token_latency``: the engine's TTFT, from the request's arrival (wall clock) to its first
  token.

Engine-core timestamps are ``time.monotonic()`` of another process; on Linux that and
``time.perf_counter()`` are the same CLOCK_MONOTONIC, and the offset between them is measured at
load and applied anyway.

``generate`` (used for warmup) submits all prompts at once through the same engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from llenergymeasure._proc import descendant_pids
from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt
from llenergymeasure.backends.engine_processes import stop_engine_processes
from llenergymeasure.backends.serving_base import RequestTimeline, generate_through
from llenergymeasure.backends.vllm.args import engine_cuda_devices, engine_kwargs, sampling_kwargs
from llenergymeasure.backends.vllm.cpu_memory import choose_cpu_kv_cache, cpu_memory
from llenergymeasure.backends.vllm.platform import (
    cpu_head_size_problem_of,
    platform_device_type,
    platform_is_cuda,
)
from llenergymeasure.errors import BackendUnavailableError, ExperimentError
from llenergymeasure.models.synthetic import read_marker

if TYPE_CHECKING:
    from llenergymeasure.config.experiment import ExperimentConfig

logger = logging.getLogger(__name__)

TIMING_SOURCE = "vllm-async-engine-metrics"


class VLLMServingBackend:
    """``AsyncLLM`` behind the ``Backend`` protocol plus ``ServingEngine.submit``."""

    name = "vllm"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        self.config = config
        self.model_path = model_path
        self.loop = asyncio.new_event_loop()
        self._engine: Any = None
        self._params: dict[int, Any] = {}
        self._params_cls: Any = None
        self._delta: Any = None
        self._tokens_input: Any = None
        self._mono_minus_perf = 0.0
        self._engine_pids: set[int] = set()
        self._calls = 0
        self._closed = False
        self.load_info: LoadInfo | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def load(self) -> LoadInfo:
        try:
            import vllm
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.inputs.engine import tokens_input
            from vllm.sampling_params import RequestOutputKind
            from vllm.v1.engine.async_llm import AsyncLLM
        except ImportError as exc:
            raise BackendUnavailableError(
                f"workload: serving with the vllm backend needs vLLM's AsyncLLM ({exc}); install "
                "vLLM (scripts/setup-vllm-env.sh on a CPU machine) or use runner: docker"
            ) from exc
        self._params_cls = vllm.SamplingParams
        self._delta = RequestOutputKind.DELTA
        self._tokens_input = tokens_input
        marker = read_marker(self.model_path) if os.path.isdir(self.model_path) else None
        kwargs = engine_kwargs(self.config, self.model_path, marker is not None)
        cuda = platform_is_cuda()
        cpu_kv = None
        if platform_device_type() == "cpu":
            problem = cpu_head_size_problem_of(self.model_path)
            if problem:
                raise ExperimentError(f"{self.model_path}: {problem}", phase="load")
            section = self.config.backend_section()
            cpu_kv = choose_cpu_kv_cache(
                section.gpu_memory_utilization,  # type: ignore[attr-defined]
                cpu_memory(),
                os.environ,
            )
            if cpu_kv.kv_cache_memory_bytes is not None:
                kwargs["kv_cache_memory_bytes"] = cpu_kv.kv_cache_memory_bytes
        before = descendant_pids(os.getpid())

        async def build() -> Any:
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs))

        try:
            self._engine = self.loop.run_until_complete(build())
        except Exception as exc:
            self._engine_pids = descendant_pids(os.getpid()) - before
            self._reap()
            raise ExperimentError(
                f"vLLM's async engine could not start for {self.model_path!r}: "
                f"{type(exc).__name__}: {exc}",
                phase="load",
            ) from exc
        self._engine_pids = descendant_pids(os.getpid()) - before
        self._mono_minus_perf = time.monotonic() - time.perf_counter()
        vllm_config = self._engine.vllm_config
        devices = engine_cuda_devices(self.config, cuda)
        self.load_info = LoadInfo(
            parameters=_count_parameters(self.model_path),
            model_path=self.model_path,
            weights="random" if marker is not None else "pretrained",
            dtype=self.config.precision,
            cuda_devices=devices,
            device=f"cuda:{devices[0]}" if devices else "cpu",
            extra={
                "vllm_version": getattr(vllm, "__version__", None),
                "engine": "AsyncLLM (in-process async engine)",
                "engine_kwargs": {
                    k: v if isinstance(v, (int, float, str, bool)) else str(v)
                    for k, v in kwargs.items()
                },
                "max_model_len": int(vllm_config.model_config.max_model_len),
                "max_num_seqs": vllm_config.scheduler_config.max_num_seqs,
                "max_num_batched_tokens": vllm_config.scheduler_config.max_num_batched_tokens,
                "timing": TIMING_SOURCE,
                "batching": "continuous batching; requests arrive on the load's schedule",
                **(cpu_kv.record() if cpu_kv is not None else {}),
            },
        )
        return self.load_info

    def tokenizer(self) -> Any:
        if self._engine is None:
            raise ExperimentError(
                "the vllm serving backend was asked for its tokenizer before load()"
            )
        return self._engine.get_tokenizer()

    def synchronize(self) -> None:
        """Nothing to wait for: a request finished only after its last token reached this process."""

    def peak_memory_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        engine, self._engine = self._engine, None
        if engine is not None:
            try:
                engine.shutdown()
            except Exception as exc:
                logger.warning("vLLM AsyncLLM shutdown raised %s: %s", type(exc).__name__, exc)
            del engine
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.sleep(0))
        with contextlib.suppress(Exception):
            self.loop.close()
        gc.collect()
        self._reap()

    def _reap(self) -> None:
        pids, self._engine_pids = self._engine_pids, set()
        stop_engine_processes(pids, 10.0, 5.0, engine="vLLM async engine")

    # -- serving ---------------------------------------------------------------------------------

    def clock_note(self) -> str:
        return (
            "vLLM RequestStateStats: queued_ts, scheduled_ts and per-step last_token_ts "
            "(engine-core CLOCK_MONOTONIC), first_token_latency"
        )

    def _to_perf(self, engine_ts: float) -> float | None:
        return engine_ts - self._mono_minus_perf if engine_ts and engine_ts > 0 else None

    def _sampling(self, max_new_tokens: int) -> Any:
        params = self._params.get(max_new_tokens)
        if params is None:
            params = self._params_cls(
                **sampling_kwargs(self.config, max_new_tokens), output_kind=self._delta
            )
            self._params[max_new_tokens] = params
        return params

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        if self._engine is None:
            raise ExperimentError("the vllm serving backend was asked to serve before load()")
        self._calls += 1
        request_id = f"llem-serve-{self._calls}-{index}"
        metrics = None
        async for output in self._engine.generate(
            self._tokens_input(list(prompt.token_ids)),
            self._sampling(prompt.max_new_tokens),
            request_id,
        ):
            metrics = output.metrics
            new = len(output.outputs[0].token_ids) if output.outputs else 0
            if new:
                stamp = self._to_perf(metrics.last_token_ts) if metrics is not None else None
                timeline.token_steps.append((stamp or time.perf_counter(), new))
            if output.prompt_token_ids is not None:
                timeline.input_tokens = len(output.prompt_token_ids)
            if output.finished:
                timeline.finish_reason = output.outputs[0].finish_reason if output.outputs else None
        timeline.finished_s = time.perf_counter()
        if metrics is not None:
            timeline.queued_s = self._to_perf(metrics.queued_ts)
            timeline.started_s = self._to_perf(metrics.scheduled_ts)
            if metrics.first_token_latency > 0:
                timeline.engine_ttft_s = float(metrics.first_token_latency)

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        """All prompts at once through the async engine (warmup); per-request records."""
        return generate_through(self, self.loop, prompts)


def _count_parameters(model_path: str) -> int | None:
    """Parameters of the architecture on transformers' meta device (as the offline backend)."""
    try:
        import torch
        import transformers

        hf_config = transformers.AutoConfig.from_pretrained(model_path)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(hf_config)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception as exc:
        logger.info("counting parameters on the meta device failed: %s", exc)
        return None
