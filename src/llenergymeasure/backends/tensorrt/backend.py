"""TensorRT-LLM through its LLM API, TensorRT-engine flow (``tensorrt_llm._tensorrt_engine.LLM``).

Why the engine flow and not the default ``tensorrt_llm.LLM``: since 1.0 the top-level ``LLM`` is
the PyTorch flow, which compiles no TensorRT engine and ignores ``build_config``; measuring it would
measure a second PyTorch runtime under TensorRT-LLM's name. The engine flow builds a real TensorRT
engine whose shape limits (``max_batch_size``, ``max_num_tokens``, ``max_input_len``,
``max_seq_len``), precision, quantization and parallel layout are fixed at build time, so those
fields are the engine's identity and key the engine cache here.

Coded against the TensorRT-LLM 1.x LLM API as read in its source (the 1.2 release line; see
``docs/backends/tensorrt.md`` for files and commit). TensorRT-LLM runs on no machine this project
is tested on: every call here was checked only against ``tests/fake_trtllm``, a stand-in that
mirrors the real signatures and checks.

Beside this file: the engine's identity and the engine cache (``tensorrt_engine_cache.py``), the
import of TensorRT-LLM and the config as its arguments (``tensorrt_args.py``), the per-request
timing (``request_timing.span_timings``).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.backends.request_timing import span_timings
from llenergymeasure.backends.tensorrt.args import (
    TRTLLM_IMAGE,
    build_kwargs,
    dummy_weights_supported,
    engine_build_spec,
    import_tensorrt_llm,
    runtime_kwargs,
    sampling_kwargs,
    tensorrt_section,
)
from llenergymeasure.backends.tensorrt.engine_cache import (
    EngineBuildSpec,
    default_engine_cache_dir,
    inspect_engine,
    set_aside,
    store_engine,
)
from llenergymeasure.backends.tensorrt.section import TensorRTConfig
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import BackendUnavailableError, ConfigError, ExperimentError


def count_llama_parameters(config: dict[str, Any]) -> int | None:
    """Parameter count of a Llama/Mistral-shaped ``config.json`` (None for other families).

    The engine does not report a count; the harness needs one for its FLOPs estimate.
    """
    if config.get("model_type") not in ("llama", "mistral"):
        return None
    try:
        h = int(config["hidden_size"])
        inter = int(config["intermediate_size"])
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        vocab = int(config["vocab_size"])
        head_dim = int(config.get("head_dim") or h // heads)
    except (KeyError, TypeError, ValueError):
        return None
    bias = bool(config.get("attention_bias", False))
    attn = h * heads * head_dim + 2 * h * kv_heads * head_dim + heads * head_dim * h
    if bias:
        attn += heads * head_dim + 2 * kv_heads * head_dim + h
    mlp = 3 * h * inter + (2 * inter + h if config.get("mlp_bias") else 0)
    per_layer = attn + mlp + 2 * h
    embed = vocab * h
    head = 0 if config.get("tie_word_embeddings") else vocab * h
    return embed + layers * per_layer + h + head


class TensorRTBackend:
    """TensorRT-LLM engine flow behind the ``Backend`` protocol.

    ``engine_cache_dir``: where built engines are kept across runs (default
    ``default_engine_cache_dir()``); put it on a persistent volume in containers.
    """

    name = "tensorrt"

    def __init__(
        self, config: ExperimentConfig, model_path: str, engine_cache_dir: Path | None = None
    ) -> None:
        if config.backend != "tensorrt":
            raise ValueError(f"TensorRTBackend got a config for backend {config.backend!r}")
        self.config = config
        self.model_path = model_path
        self.engine_cache_dir = Path(engine_cache_dir or default_engine_cache_dir())
        self.section: TensorRTConfig = tensorrt_section(config)
        self._llm: Any = None
        self._tokenizer: Any = None
        self._spec: EngineBuildSpec | None = None
        self._peak_gpu_mem_bytes: int | None = None

    # -- build spec ------------------------------------------------------------------------------

    def build_spec(self, trtllm: Any) -> EngineBuildSpec:
        """The engine's identity from the config; validates names against the installed library."""
        return engine_build_spec(self.config, self.model_path, trtllm)

    def runtime_kwargs(self) -> dict[str, Any]:
        """``LLM`` keyword arguments that do not change the engine (never part of the key)."""
        return runtime_kwargs(self.section)

    def build_kwargs(self, spec: EngineBuildSpec) -> dict[str, Any]:
        """``LLM`` keyword arguments that build the engine described by ``spec``."""
        return build_kwargs(spec)

    def load(self) -> LoadInfo:
        """Build the engine (or reuse a cached one), start the runtime, load the tokenizer.

        The harness measures energy around this call; ``extra["build_time_s"]`` isolates the part
        spent building (None on a cache hit) so build cost can be reported apart from inference.
        """
        trtllm = import_tensorrt_llm()
        spec = self.build_spec(trtllm)
        if spec.dummy_weights and dummy_weights_supported(trtllm) is False:
            raise BackendUnavailableError(
                f"model {self.model_path} is a synthetic model without weights, and TensorRT-LLM "
                f"{spec.trtllm_version} cannot build an engine with dummy weights (its TrtLlmArgs "
                "does not accept load_format='dummy'). Use a model directory with weights, or a "
                "TensorRT-LLM release whose LLM API accepts load_format='dummy' (1.x does)."
            )
        from tensorrt_llm._tensorrt_engine import LLM

        self._tokenizer = self._load_tokenizer()
        key = spec.key()
        engine_dir = self.engine_cache_dir / key
        cached = inspect_engine(engine_dir, key)
        hit = cached.state == "hit"
        cache_note = self._set_damaged_aside(engine_dir, cached.problem)
        build_time_s: float | None = None
        t0 = time.perf_counter()
        try:
            if hit:
                self._llm = LLM(
                    model=str(engine_dir),
                    tokenizer=self._tokenizer,
                    tensor_parallel_size=spec.tp_size,
                    pipeline_parallel_size=spec.pp_size,
                    **self.runtime_kwargs(),
                )
            else:
                self._llm = LLM(
                    model=self.model_path,
                    tokenizer=self._tokenizer,
                    **self.build_kwargs(spec),
                    **self.runtime_kwargs(),
                )
                build_time_s = time.perf_counter() - t0
                store_engine(self._llm, engine_dir, key, spec, build_time_s)
        except (BackendUnavailableError, ConfigError):
            self.close()
            raise
        except Exception as exc:
            self.close()
            what = f"load the cached engine {engine_dir}" if hit else "build the engine"
            raise ExperimentError(
                f"TensorRT-LLM failed to {what} for {self.model_path}: {type(exc).__name__}: {exc}",
                phase="load",
            ) from exc
        load_s = time.perf_counter() - t0
        self._spec = spec
        world = spec.tp_size * spec.pp_size
        return LoadInfo(
            parameters=self._parameter_count(),
            model_path=self.model_path,
            weights="random" if spec.dummy_weights else "pretrained",
            dtype=spec.dtype,
            cuda_devices=list(range(world)),
            device="cuda",
            extra={
                "engine_cache_hit": hit,
                "engine_cache_note": cache_note,
                "build_time_s": build_time_s,
                "engine_dir": str(engine_dir),
                "engine_cache_key": key,
                "engine_load_s": load_s,
                "build_spec": asdict(spec),
                "trtllm_version": spec.trtllm_version,
                "trtllm_flow": "tensorrt_llm._tensorrt_engine.LLM (TensorRT engine)",
                "kv_cache_config": self._kv_cache_config_record(),
            },
        )

    @staticmethod
    def _set_damaged_aside(engine_dir: Path, problem: str | None) -> str | None:
        """A damaged cache entry moved out of the way for a new build, and the result's note
        saying what was wrong (None: the entry was usable or absent)."""
        if problem is None:
            return None
        try:
            where = f"moved to {set_aside(engine_dir)}"
        except OSError as exc:
            shutil.rmtree(engine_dir, ignore_errors=True)
            where = f"could not be moved aside ({exc}), so it was deleted"
        return f"the cached engine {engine_dir} was damaged ({problem}): {where}; built again"

    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer handed to the engine (one object for engine and prompts)."""
        if self._tokenizer is None:
            raise RuntimeError("TensorRTBackend.tokenizer() called before load()")
        return self._tokenizer

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        """Submit every prompt to the engine in one ``generate`` call as token-id lists.

        The in-flight batcher decides the batching (up to ``tensorrt.max_batch_size``). Token
        counts come from the engine's own ``prompt_token_ids`` and ``token_ids``; TTFT and latency
        from its per-request perf metrics (steady-clock timestamps of arrival, first and last
        token).
        """
        if self._llm is None or self._spec is None:
            raise RuntimeError("TensorRTBackend.generate() called before load() or after close()")
        if not prompts:
            return GenerationOutput(requests=[], duration_s=0.0, output_token_ids=[])
        self._check_fits(prompts)
        params = [self._sampling_params(p.max_new_tokens) for p in prompts]
        inputs = [list(p.token_ids) for p in prompts]
        t0 = time.perf_counter()
        outputs = self._llm.generate(inputs, sampling_params=params, use_tqdm=False)
        duration_s = time.perf_counter() - t0
        if len(outputs) != len(prompts):
            raise ExperimentError(
                f"TensorRT-LLM returned {len(outputs)} outputs for {len(prompts)} prompts",
                phase="measure",
            )
        records: list[RequestRecord] = []
        token_ids: list[list[int]] = []
        missing_metrics = 0
        for i, (prompt, out) in enumerate(zip(prompts, outputs, strict=True)):
            completion = out.outputs[0]
            ids = list(completion.token_ids or [])
            prompt_ids = getattr(out, "prompt_token_ids", None)
            n_in = len(prompt_ids) if prompt_ids is not None else len(prompt.token_ids)
            if self.config.decoding.fixed_output_length and len(ids) != prompt.max_new_tokens:
                raise ExperimentError(
                    f"request {i}: TensorRT-LLM generated {len(ids)} tokens but a fixed length of "
                    f"{prompt.max_new_tokens} was asked (min_tokens=max_tokens, ignore_eos=True); "
                    "the measured work would not match the configuration",
                    phase="measure",
                )
            ttft, latency = self._timings(completion)
            if latency is None:
                missing_metrics += 1
            records.append(
                RequestRecord(
                    input_tokens=n_in, output_tokens=len(ids), latency_s=latency, ttft_s=ttft
                )
            )
            token_ids.append(ids)
        reason = None
        source: str | None = "engine-perf-metrics"
        if missing_metrics == len(records):
            source = None
            reason = "TensorRT-LLM returned no request_perf_metrics (return_perf_metrics ignored)"
        elif missing_metrics:
            reason = f"{missing_metrics} of {len(records)} requests had no request_perf_metrics"
        if source is not None:
            reason = (reason + "; " if reason else "") + (
                "inter-token latencies: the engine reports first/last token times only, not "
                "per-token times"
            )
        return GenerationOutput(
            requests=records,
            duration_s=duration_s,
            timing_source=source,
            timing_unavailable_reason=reason,
            output_token_ids=token_ids,
            prefill_overlap_reason=self._prefill_overlap(prompts),
        )

    def _prefill_overlap(self, prompts: list[Prompt]) -> str | None:
        """Why the in-flight batcher ran some prefills beside other requests' decodes, or None
        when the engine's limits (where set) take every prompt in one round."""
        spec = self._spec
        seqs = getattr(spec, "max_batch_size", None)
        budget = getattr(spec, "max_num_tokens", None)
        if isinstance(seqs, int) and len(prompts) > seqs:
            return (
                f"TensorRT-LLM ran {len(prompts)} prompts with max_batch_size {seqs}: later "
                "prompts' prefills ran beside earlier ones' decodes"
            )
        tokens = sum(len(p.token_ids) for p in prompts)
        if isinstance(budget, int) and tokens > budget:
            return (
                f"the prompts' {tokens} tokens exceed max_num_tokens {budget}: TensorRT-LLM "
                "prefilled them over several steps beside the first requests' decodes"
            )
        return None

    def synchronize(self) -> None:
        """The runtime's GPU work lives in its executor process(es), which this process cannot
        synchronize; ``generate`` returns only after every request's tokens reached the host,
        i.e. after its device work finished. Here: synchronize this process's CUDA devices when
        torch sees any (cheap, and it covers anything the tokenizer or callers queued)."""
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            for device in range(torch.cuda.device_count()):
                torch.cuda.synchronize(device)

    def peak_memory_bytes(self) -> int | None:
        """The highest ``gpuMemUsage`` in the runtime's iteration stats seen so far (single GPU).

        Multi-GPU engines report rank 0 only, which is not the total: None then.
        """
        if self._llm is None or self._spec is None:
            return self._peak_gpu_mem_bytes
        if self._spec.tp_size * self._spec.pp_size != 1:
            return None
        try:
            stats = self._llm.get_stats(timeout=1)
        except Exception:
            return self._peak_gpu_mem_bytes
        for stat in stats or []:
            if isinstance(stat, str):
                try:
                    stat = json.loads(stat)
                except json.JSONDecodeError:
                    continue
            value = stat.get("gpuMemUsage") if isinstance(stat, dict) else None
            if isinstance(value, (int, float)):
                self._peak_gpu_mem_bytes = max(self._peak_gpu_mem_bytes or 0, int(value))
        return self._peak_gpu_mem_bytes

    def close(self) -> None:
        """Shut the runtime down (its executor and MPI workers); safe to call twice."""
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()

    # -- helpers -------------------------------------------------------------------------------

    def _load_tokenizer(self) -> Any:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the tensorrt backend needs transformers for the tokenizer ({exc}); it ships with "
                f"TensorRT-LLM and in the {TRTLLM_IMAGE} image"
            ) from exc
        try:
            return AutoTokenizer.from_pretrained(self.model_path)
        except Exception as exc:
            raise ExperimentError(
                f"could not load the tokenizer of {self.model_path}: {type(exc).__name__}: {exc}",
                phase="load",
            ) from exc

    def _sampling_params(self, max_new_tokens: int) -> Any:
        from tensorrt_llm.llmapi import SamplingParams

        return SamplingParams(**sampling_kwargs(self.config, max_new_tokens))

    def _check_fits(self, prompts: list[Prompt]) -> None:
        assert self._spec is not None
        for i, p in enumerate(prompts):
            n = len(p.token_ids)
            if n > self._spec.max_input_len:
                raise ConfigError(
                    f"prompt {i} has {n} tokens but the engine was built with "
                    f"tensorrt.max_input_len={self._spec.max_input_len}; raise "
                    "tensorrt.max_input_len or lower max_input_tokens"
                )
            if n + p.max_new_tokens > self._spec.max_seq_len:
                raise ConfigError(
                    f"prompt {i}: {n} input + {p.max_new_tokens} new tokens exceed the engine's "
                    f"tensorrt.max_seq_len={self._spec.max_seq_len}; raise tensorrt.max_seq_len "
                    f"to at least {n + p.max_new_tokens}"
                )

    @staticmethod
    def _timings(completion: Any) -> tuple[float | None, float | None]:
        """(TTFT, latency) from the request's perf metrics; (None, None) without them."""
        metrics = getattr(completion, "request_perf_metrics", None)
        timing = getattr(metrics, "timing_metrics", None)
        if timing is None:
            return None, None
        return span_timings(timing.arrival_time, timing.first_token_time, timing.last_token_time)

    def _parameter_count(self) -> int | None:
        config_file = Path(self.model_path) / "config.json"
        if not config_file.is_file():
            return None
        try:
            return count_llama_parameters(json.loads(config_file.read_text()))
        except (OSError, json.JSONDecodeError):
            return None

    def _kv_cache_config_record(self) -> dict[str, Any]:
        """The effective KV-cache settings (library defaults filled in), for the result."""
        kv = self.runtime_kwargs()["kv_cache_config"]
        fields = ("free_gpu_memory_fraction", "enable_block_reuse")
        return {f: getattr(kv, f, None) for f in fields}


def create(
    config: ExperimentConfig, model_path: str, cache_dir: Path | None = None
) -> TensorRTBackend:
    """The registry's factory (``backends/registry.py``): build, not load. Built engines are kept
    under the machine's model cache (``<cache_dir>/trtllm-engines``)."""
    engines = cache_dir / "trtllm-engines" if cache_dir is not None else None
    return TensorRTBackend(config, model_path, engine_cache_dir=engines)
