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

Engine cache: ``<engine_cache_dir>/<key>/`` holds what ``LLM.save`` writes plus
``llem_engine.json`` (the build spec, the build time). The key is a hash of the build spec:
model identity (path, a fingerprint of its config and weight files), the TensorRT-LLM version,
dtype, tp/pp sizes, the four shape limits, quantization, KV-cache quantization and whether the
weights are dummy. Runtime-only knobs (KV-cache memory fraction, block reuse, decoding) are not in
the key: one engine serves all of them. Entries are written to a temporary directory and renamed
into place, so a crashed build never leaves a half engine that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.config.experiment import ExperimentConfig, TensorRTConfig
from llenergymeasure.errors import BackendUnavailableError, ConfigError, ExperimentError

#: The pyproject extra and the Docker image that provide TensorRT-LLM.
TRTLLM_EXTRA = "tensorrt"
TRTLLM_IMAGE = "llenergymeasure:trtllm"
#: Marker of a synthetic (random-weight, weightless) model directory (see models/synthetic.py).
SYNTHETIC_MARKER = "llem_synthetic.json"
#: Metadata file written into each cached engine directory; its presence means "complete".
ENGINE_META_FILE = "llem_engine.json"
#: Bump when the key composition or the cache layout changes, so old entries are not reused.
ENGINE_CACHE_FORMAT = 1

PRECISION_TO_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Weight files whose names and sizes make up a local model's fingerprint.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
#: Only these files' contents are hashed (small); weight files contribute name, size and mtime.
_HASHED_FILES = ("config.json", SYNTHETIC_MARKER, "quant_cfg.json", "hf_quant_config.json")


@dataclass(frozen=True)
class EngineBuildSpec:
    """Everything that determines the bytes of a TensorRT engine, and nothing else."""

    model: dict[str, Any]
    trtllm_version: str
    dtype: str
    tp_size: int
    pp_size: int
    max_batch_size: int | None
    max_num_tokens: int | None
    max_input_len: int
    max_seq_len: int
    quant_algo: str | None
    kv_cache_quant_algo: str | None
    dummy_weights: bool

    def key(self) -> str:
        """24 hex digits of SHA-256 over the canonical JSON of the spec and the cache format."""
        payload = {"format": ENGINE_CACHE_FORMAT, "spec": asdict(self)}
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def build_config_kwargs(self) -> dict[str, int]:
        """Keyword arguments of ``tensorrt_llm.llmapi.BuildConfig`` (unset limits left out)."""
        kwargs = {"max_input_len": self.max_input_len, "max_seq_len": self.max_seq_len}
        if self.max_batch_size is not None:
            kwargs["max_batch_size"] = self.max_batch_size
        if self.max_num_tokens is not None:
            kwargs["max_num_tokens"] = self.max_num_tokens
        return kwargs


def import_tensorrt_llm() -> Any:
    """Import ``tensorrt_llm`` or explain how to get it.

    Importing it also loads TensorRT and CUDA libraries, so any failure (not only ImportError) is
    reported as "unavailable here" with the original cause.
    """
    try:
        import tensorrt_llm
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'tensorrt' needs TensorRT-LLM, which is not installed here ({exc}). "
            f"Install the '[{TRTLLM_EXTRA}]' extra (pip install 'llenergymeasure[{TRTLLM_EXTRA}]', "
            f"NVIDIA GPU and CUDA required) or run with the Docker image {TRTLLM_IMAGE} "
            f"(--runner docker:{TRTLLM_IMAGE})."
        ) from exc
    except Exception as exc:  # CUDA/TensorRT shared libraries missing, driver too old, ...
        raise BackendUnavailableError(
            f"TensorRT-LLM is installed but failed to import ({type(exc).__name__}: {exc}). "
            f"It needs an NVIDIA GPU with a matching driver and CUDA; the Docker image "
            f"{TRTLLM_IMAGE} carries a working stack."
        ) from exc
    return tensorrt_llm


def quant_algo_names() -> list[str]:
    """The ``QuantAlgo`` member names of the installed TensorRT-LLM (the accepted values)."""
    from tensorrt_llm.llmapi import QuantAlgo

    return list(QuantAlgo.__members__)


def kv_cache_quant_algo_names() -> list[str]:
    """The ``QuantAlgo`` names the installed TensorRT-LLM accepts for the KV cache."""
    try:
        from tensorrt_llm.quantization.mode import KV_CACHE_QUANT_ALGO_LIST
    except ImportError:
        return quant_algo_names()
    return [getattr(a, "name", str(a)) for a in KV_CACHE_QUANT_ALGO_LIST]


def resolve_quant_algo(value: str | None, field: str, accepted: list[str]) -> str | None:
    """Map a config string (any case; ``none``/``auto`` mean no quantization) to a QuantAlgo name."""
    if value is None:
        return None
    name = value.strip().upper().replace("-", "_")
    if name in ("", "NONE", "AUTO", "NO_QUANT"):
        return None
    if name not in accepted:
        raise ConfigError(
            f"tensorrt.{field}: {value!r} is not a TensorRT-LLM QuantAlgo name; accepted: "
            + ", ".join(accepted)
            + " (or omit the field for no quantization)"
        )
    return name


def model_fingerprint(model_path: str) -> dict[str, Any]:
    """A cheap identity of a model: its path, the hash of its small config files and the
    names/sizes/mtimes of its weight files. A hub id (not a local directory) is its own identity."""
    path = Path(model_path)
    if not path.is_dir():
        return {"hub_id": model_path}
    digest = hashlib.sha256()
    for name in _HASHED_FILES:
        f = path / name
        if f.is_file():
            digest.update(name.encode() + b"\0" + f.read_bytes() + b"\0")
    weights = []
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix in _WEIGHT_SUFFIXES:
            st = f.stat()
            weights.append([str(f.relative_to(path)), st.st_size, st.st_mtime_ns])
    digest.update(json.dumps(weights).encode())
    return {"path": str(path.resolve()), "files_sha256": digest.hexdigest()}


def is_synthetic_dir(model_path: str) -> bool:
    return (Path(model_path) / SYNTHETIC_MARKER).is_file()


def dummy_weights_supported(trtllm: Any) -> bool | None:
    """Whether the engine flow's args accept ``load_format='dummy'`` (None: cannot tell).

    Read from the installed ``TrtLlmArgs`` schema rather than assumed from a version number.
    """
    try:
        from tensorrt_llm.llmapi.llm_args import TrtLlmArgs
    except ImportError:
        return None
    field = getattr(TrtLlmArgs, "model_fields", {}).get("load_format")
    if field is None:
        return False
    return "dummy" in str(field.annotation).lower()


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


def default_engine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/llenergymeasure/trtllm-engines`` (``~/.cache`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llenergymeasure" / "trtllm-engines"


def _timedelta_s(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)


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
        section = config.backend_section()
        assert isinstance(section, TensorRTConfig)
        self.section: TensorRTConfig = section
        self._llm: Any = None
        self._tokenizer: Any = None
        self._spec: EngineBuildSpec | None = None
        self._peak_gpu_mem_bytes: int | None = None

    # -- build spec ------------------------------------------------------------------------------

    def build_spec(self, trtllm: Any) -> EngineBuildSpec:
        """The engine's identity from the config; validates names against the installed library."""
        s, c = self.section, self.config
        max_input_len = s.max_input_len if s.max_input_len is not None else c.max_input_tokens
        max_seq_len = (
            s.max_seq_len if s.max_seq_len is not None else max_input_len + c.max_output_tokens
        )
        if max_seq_len <= max_input_len:
            raise ConfigError(
                f"tensorrt.max_seq_len ({max_seq_len}) must exceed tensorrt.max_input_len "
                f"({max_input_len}) to leave room for generated tokens; raise max_seq_len to at "
                f"least {max_input_len + c.max_output_tokens}"
            )
        quant = resolve_quant_algo(s.quantization, "quantization", quant_algo_names())
        kv_quant = resolve_quant_algo(
            s.kv_cache_dtype, "kv_cache_dtype", kv_cache_quant_algo_names()
        )
        return EngineBuildSpec(
            model=model_fingerprint(self.model_path),
            trtllm_version=str(getattr(trtllm, "__version__", "unknown")),
            dtype=PRECISION_TO_DTYPE[c.precision],
            tp_size=s.tp_size,
            pp_size=s.pp_size,
            max_batch_size=s.max_batch_size,
            max_num_tokens=s.max_num_tokens,
            max_input_len=max_input_len,
            max_seq_len=max_seq_len,
            quant_algo=quant,
            kv_cache_quant_algo=kv_quant,
            dummy_weights=is_synthetic_dir(self.model_path),
        )

    def runtime_kwargs(self) -> dict[str, Any]:
        """``LLM`` keyword arguments that do not change the engine (never part of the key)."""
        from tensorrt_llm.llmapi import KvCacheConfig

        kv: dict[str, Any] = {}
        if self.section.kv_cache_free_gpu_memory_fraction is not None:
            kv["free_gpu_memory_fraction"] = self.section.kv_cache_free_gpu_memory_fraction
        if self.section.enable_block_reuse is not None:
            kv["enable_block_reuse"] = self.section.enable_block_reuse
        return {"kv_cache_config": KvCacheConfig(**kv)}

    def build_kwargs(self, spec: EngineBuildSpec) -> dict[str, Any]:
        """``LLM`` keyword arguments that build the engine described by ``spec``."""
        from tensorrt_llm.llmapi import BuildConfig, QuantAlgo, QuantConfig

        kwargs: dict[str, Any] = {
            "dtype": spec.dtype,
            "tensor_parallel_size": spec.tp_size,
            "pipeline_parallel_size": spec.pp_size,
            "build_config": BuildConfig(**spec.build_config_kwargs()),
        }
        if spec.quant_algo or spec.kv_cache_quant_algo:
            kwargs["quant_config"] = QuantConfig(
                quant_algo=QuantAlgo[spec.quant_algo] if spec.quant_algo else None,
                kv_cache_quant_algo=(
                    QuantAlgo[spec.kv_cache_quant_algo] if spec.kv_cache_quant_algo else None
                ),
            )
        if spec.dummy_weights:
            kwargs["load_format"] = "dummy"
        return kwargs

    # -- protocol ------------------------------------------------------------------------------

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
        hit = self._cached_engine_ok(engine_dir, key)
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
                self._store_engine(engine_dir, key, spec, build_time_s)
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
        )

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

    def _cached_engine_ok(self, engine_dir: Path, key: str) -> bool:
        meta = engine_dir / ENGINE_META_FILE
        if not meta.is_file():
            return False
        try:
            data = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return data.get("key") == key and (engine_dir / "config.json").is_file()

    def _store_engine(
        self, engine_dir: Path, key: str, spec: EngineBuildSpec, build_time_s: float
    ) -> None:
        """Save the built engine into the cache atomically (temp dir + rename)."""
        parent = engine_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=parent))
        try:
            self._llm.save(str(tmp))
            meta = {
                "key": key,
                "format": ENGINE_CACHE_FORMAT,
                "spec": asdict(spec),
                "build_time_s": build_time_s,
                "created_unix_s": time.time(),
            }
            (tmp / ENGINE_META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
            try:
                os.rename(tmp, engine_dir)
            except OSError:
                if not self._cached_engine_ok(engine_dir, key):
                    shutil.rmtree(engine_dir, ignore_errors=True)
                    os.rename(tmp, engine_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _sampling_params(self, max_new_tokens: int) -> Any:
        from tensorrt_llm.llmapi import SamplingParams

        d = self.config.decoding
        kwargs: dict[str, Any] = {"max_tokens": max_new_tokens, "return_perf_metrics": True}
        if d.fixed_output_length:
            kwargs["min_tokens"] = max_new_tokens
            kwargs["ignore_eos"] = True
        if d.greedy:
            kwargs["temperature"] = 0.0
        else:
            kwargs["temperature"] = d.temperature
            kwargs["top_p"] = d.top_p
            if d.top_k > 0:
                kwargs["top_k"] = d.top_k
            kwargs["seed"] = self.config.seed
        return SamplingParams(**kwargs)

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
        metrics = getattr(completion, "request_perf_metrics", None)
        timing = getattr(metrics, "timing_metrics", None)
        if timing is None:
            return None, None
        arrival = _timedelta_s(timing.arrival_time)
        first = _timedelta_s(timing.first_token_time)
        last = _timedelta_s(timing.last_token_time)
        if arrival is None or first is None or last is None or first <= 0 or last <= 0:
            return None, None
        return first - arrival, last - arrival

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
