"""The PyTorch backend: transformers causal language models on CUDA or the CPU.

Batches are static: the prompts are cut into chunks of ``config.batch_size``, each chunk is padded
on the left (with an attention mask) and run through one ``model.generate`` call. Token counts are
exact: the input count of a request is the length of its token-id list (padding never counted)
and its output count is the number of tokens it generated, up to and including its EOS and never
the padding after it.

Per-request timing comes from a logits processor (``_StepClock``) that transformers calls once per
decoding step, right after the step's forward pass. On CUDA it records a CUDA event there, so it
adds no host-device synchronisation and costs a few microseconds a step; the GPU timestamps are
read once ``generate`` has returned. A streamer, the other route, makes transformers copy every
step's tokens to the host, one more synchronisation a step. See ``docs/backends/pytorch.md``.

torch and transformers are imported inside the methods, never at module import.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.errors import BackendUnavailableError, ConfigError, ExperimentError
from llenergymeasure.models.synthetic import read_marker

if TYPE_CHECKING:
    from llenergymeasure.config.experiment import ExperimentConfig, PyTorchConfig

logger = logging.getLogger(__name__)

#: ``GenerationOutput.timing_source`` of this backend: the per-step logits-processor clock.
TIMING_SOURCE = "step-clock"
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
#: Generation defaults of a pretrained checkpoint that would change decoding if inherited.
_DECODING_KEYS = (
    "do_sample",
    "temperature",
    "top_k",
    "top_p",
    "typical_p",
    "min_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "length_penalty",
    "num_beams",
    "max_length",
    "max_new_tokens",
    "min_length",
    "min_new_tokens",
    "cache_implementation",
)


class _StepClock:
    """A logits processor that timestamps every decoding step without synchronising.

    transformers calls logits processors once per step, right after the forward pass that
    produced the step's logits (the prefill for the first token). On CUDA the clock records a
    CUDA event there, on the logits' stream: no host-device synchronisation is added, and the
    event's time is when the GPU actually finished the step. The times are read after
    ``generate`` returns (which has synchronised). On the CPU, where operations run
    synchronously, the host clock is read instead. The scores pass through unchanged.
    """

    def __init__(self, torch: Any, device: Any) -> None:
        self._torch = torch
        self._cuda = device.type == "cuda"
        self._device = device
        self._start: Any = None
        self._t0 = 0.0
        self._events: list[Any] = []
        self._host_times: list[float] = []

    def begin(self) -> None:
        """Mark time zero of the batch, just before ``generate`` is called."""
        self._t0 = time.perf_counter()
        if self._cuda:
            self._start = self._torch.cuda.Event(enable_timing=True)
            self._start.record(self._torch.cuda.current_stream(self._device))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self._cuda:
            event = self._torch.cuda.Event(enable_timing=True)
            event.record(self._torch.cuda.current_stream(scores.device))
            self._events.append(event)
        else:
            self._host_times.append(time.perf_counter())
        return scores

    @property
    def steps(self) -> int:
        return len(self._events) if self._cuda else len(self._host_times)

    def offsets_s(self) -> list[float]:
        """Seconds from ``begin`` to the end of each step (call after ``generate`` returned)."""
        if not self._cuda:
            return [t - self._t0 for t in self._host_times]
        if not self._events:
            return []
        self._events[-1].synchronize()
        return [self._start.elapsed_time(e) / 1e3 for e in self._events]


class PyTorchBackend:
    """transformers ``AutoModelForCausalLM`` behind the ``Backend`` protocol."""

    name = "pytorch"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        self.config = config
        self.model_path = model_path
        self.section: PyTorchConfig = config.backend_section()  # type: ignore[assignment]
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: str = "cpu"
        self._input_device: Any = None
        self._logits_device: Any = None
        self._cuda_devices: list[int] = []
        self._eos_ids: set[int] = set()
        self._pad_id: int | None = None
        self._vocab_rows: int | None = None
        self._max_positions: int | None = None
        self._compile_checked = False
        self.load_info: LoadInfo | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def load(self) -> LoadInfo:
        """Load tokenizer and model; synthetic directories get seeded random weights.

        A directory with the synthetic marker has no weight files: the model is built with
        ``from_config`` right on its device after ``torch.manual_seed(config.seed)``, so the same
        seed on the same device type gives the same weights.
        """
        try:
            import torch
            import transformers
        except ImportError as exc:
            raise BackendUnavailableError(
                "the pytorch backend needs torch and transformers: pip install "
                f"'llenergymeasure[pytorch]' ({exc})"
            ) from exc

        section = self.section
        dtype = getattr(torch, _DTYPES[self.config.precision])
        cuda = torch.cuda.is_available()
        self._device = "cuda" if cuda else "cpu"
        if cuda:
            torch.cuda.init()  # the allocator's statistics exist only once CUDA is initialised
            for index in range(torch.cuda.device_count()):
                try:
                    torch.cuda.reset_peak_memory_stats(index)
                except RuntimeError as exc:  # pragma: no cover - depends on the driver stack
                    logger.warning(
                        "could not reset peak-memory statistics of cuda:%d: %s", index, exc
                    )

        marker = read_marker(self.model_path) if _is_dir(self.model_path) else None
        synthetic = marker is not None
        extra: dict[str, Any] = {"transformers_version": transformers.__version__}

        self._tokenizer = self._load_tokenizer(transformers, extra)
        try:
            model = self._load_model(torch, transformers, dtype, synthetic, extra)
        except (OSError, ValueError) as exc:
            raise ExperimentError(
                f"could not load model {self.model_path!r} with transformers: "
                f"{exc.__class__.__name__}: {exc}. On a machine without the model hub use a "
                "local model directory or synthetic/<preset>",
                phase="load",
            ) from exc
        model.eval()
        self._model = model
        self._prepare_generation_defaults(extra)

        embeddings = model.get_input_embeddings()
        self._input_device = embeddings.weight.device
        output = model.get_output_embeddings()
        self._logits_device = (
            output.weight.device if output is not None else embeddings.weight.device
        )
        self._vocab_rows = int(embeddings.num_embeddings)
        self._max_positions = getattr(model.config, "max_position_embeddings", None)
        self._cuda_devices = _cuda_devices_of(torch, model)
        parameters = sum(p.numel() for p in model.parameters())
        extra.update(
            {
                "attn_implementation": getattr(model.config, "_attn_implementation", None),
                "device_map": getattr(model, "hf_device_map", None),
                "static_cache": section.static_cache,
                "torch_compile": section.torch_compile,
                "compile_mode": section.compile_mode if section.torch_compile else None,
                "timing": TIMING_SOURCE,
            }
        )
        if synthetic:
            extra["synthetic_preset"] = marker.get("preset") if marker else None
            extra["weights_seed"] = self.config.seed
        self.load_info = LoadInfo(
            parameters=int(parameters),
            model_path=self.model_path,
            weights="random" if synthetic else "pretrained",
            dtype=self.config.precision,
            cuda_devices=list(self._cuda_devices),
            device=(f"cuda:{self._cuda_devices[0]}" if self._cuda_devices else "cpu"),
            extra=extra,
        )
        return self.load_info

    def _load_tokenizer(self, transformers: Any, extra: dict[str, Any]) -> Any:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                self.model_path, trust_remote_code=self.section.trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise ExperimentError(
                f"could not load the tokenizer of {self.model_path!r}: "
                f"{exc.__class__.__name__}: {exc}. On a machine without the model hub use a "
                "local model directory or synthetic/<preset>",
                phase="load",
            ) from exc
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ExperimentError(
                    f"the tokenizer of {self.model_path!r} has neither a pad nor an EOS token; "
                    "batched generation needs one to pad with",
                    phase="load",
                )
            tokenizer.pad_token = tokenizer.eos_token
            extra["pad_token"] = "eos (the tokenizer has no pad token)"
        return tokenizer

    def _load_model(
        self, torch: Any, transformers: Any, dtype: Any, synthetic: bool, extra: dict[str, Any]
    ) -> Any:
        section = self.section
        kwargs: dict[str, Any] = {"dtype": dtype}
        if section.attn_implementation is not None:
            kwargs["attn_implementation"] = section.attn_implementation
        if synthetic:
            config = transformers.AutoConfig.from_pretrained(self.model_path)
            torch.manual_seed(self.config.seed)
            if section.device_map is None:
                # Initialise straight on the target device: no host copy of the weights.
                with torch.device(self._device):
                    return transformers.AutoModelForCausalLM.from_config(config, **kwargs)
            return self._synthetic_sharded(torch, transformers, config, kwargs, extra)
        device_map = section.device_map if section.device_map is not None else self._device
        return transformers.AutoModelForCausalLM.from_pretrained(
            self.model_path,
            device_map=device_map,
            trust_remote_code=section.trust_remote_code,
            **kwargs,
        )

    def _synthetic_sharded(
        self, torch: Any, transformers: Any, config: Any, kwargs: dict[str, Any], extra: dict
    ) -> Any:
        """Random weights built on the host, then dispatched over GPUs by accelerate.

        ``from_config`` takes no ``device_map``; accelerate computes one from free memory (for
        ``auto``/``balanced``/``balanced_low_0``/``sequential``) and moves each layer there.
        """
        try:
            from accelerate import dispatch_model, infer_auto_device_map
            from accelerate.utils import get_balanced_memory
        except ImportError as exc:
            raise BackendUnavailableError(
                "device_map with a synthetic model needs accelerate: pip install accelerate"
            ) from exc
        model = transformers.AutoModelForCausalLM.from_config(config, **kwargs)
        requested = self.section.device_map
        no_split = getattr(model, "_no_split_modules", None) or []
        if requested in ("auto", "balanced", "balanced_low_0"):
            max_memory = get_balanced_memory(
                model,
                dtype=kwargs["dtype"],
                low_zero=requested == "balanced_low_0",
                no_split_module_classes=no_split,
            )
        elif requested == "sequential":
            max_memory = None
        else:
            raise ConfigError(
                f"pytorch.device_map: {requested!r} is not supported for synthetic models; use "
                "auto, balanced, balanced_low_0 or sequential (or leave it unset for one device)"
            )
        device_map = infer_auto_device_map(
            model, max_memory=max_memory, no_split_module_classes=no_split, dtype=kwargs["dtype"]
        )
        extra["synthetic_device_map"] = {k: str(v) for k, v in device_map.items()}
        if set(device_map.values()) <= {"cpu"}:
            return model
        model = dispatch_model(model, device_map=device_map)
        model.hf_device_map = device_map
        return model

    def _prepare_generation_defaults(self, extra: dict[str, Any]) -> None:
        """Make the config the only source of decoding settings.

        A checkpoint's ``generation_config.json`` can carry a temperature, top-p or repetition
        penalty; inherited silently, they would make two models with the same experiment config
        decode differently. Only the special-token ids are kept; what was dropped is recorded.
        """
        from transformers import GenerationConfig

        model = self._model
        original = getattr(model, "generation_config", None)
        default = GenerationConfig()
        dropped: dict[str, Any] = {}
        if original is not None:
            for key in _DECODING_KEYS:
                value = getattr(original, key, None)
                if value is not None and value != getattr(default, key, None):
                    dropped[key] = value
        eos = getattr(original, "eos_token_id", None) if original is not None else None
        if eos is None:
            eos = self._tokenizer.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
        bos = getattr(original, "bos_token_id", None) if original is not None else None
        if bos is None:
            bos = self._tokenizer.bos_token_id
        self._eos_ids = {int(e) for e in eos_ids}
        self._pad_id = int(self._tokenizer.pad_token_id)
        model.generation_config = GenerationConfig(
            bos_token_id=bos,
            eos_token_id=eos_ids or None,
            pad_token_id=self._pad_id,
        )
        if dropped:
            extra["ignored_generation_defaults"] = {k: _jsonable(v) for k, v in dropped.items()}

    def tokenizer(self) -> Any:
        """The model's tokenizer (left padding, pad token set); valid after ``load``."""
        if self._tokenizer is None:
            raise RuntimeError("PyTorchBackend.tokenizer() called before load()")
        return self._tokenizer

    # -- generation ------------------------------------------------------------------------------

    def _generation_config(self, max_new_tokens: int) -> Any:
        from transformers import CompileConfig, GenerationConfig

        decoding = self.config.decoding
        section = self.section
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": not decoding.greedy,
            "num_beams": 1,
            "bos_token_id": self._model.generation_config.bos_token_id,
            "eos_token_id": self._model.generation_config.eos_token_id,
            "pad_token_id": self._pad_id,
            # transformers compiles the forward pass on its own whenever the cache is static on
            # a GPU; the config, not that default, decides whether compilation happens.
            "disable_compile": not section.torch_compile,
        }
        if decoding.fixed_output_length:
            kwargs["min_new_tokens"] = max_new_tokens
        if not decoding.greedy:
            kwargs["temperature"] = decoding.temperature
            kwargs["top_p"] = decoding.top_p
            kwargs["top_k"] = decoding.top_k  # 0 disables top-k
        if section.static_cache:
            kwargs["cache_implementation"] = "static"
        if section.torch_compile:
            compile_config: Any = CompileConfig(mode=section.compile_mode)
            if self._device != "cuda":
                # transformers compiles only on accelerators unless told otherwise; the config
                # asked for compilation, so honour it on the CPU too.
                compile_config._compile_all_devices = True
            kwargs["compile_config"] = compile_config
        return GenerationConfig(**kwargs)

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        """Run ``prompts`` in chunks of ``batch_size``; exact token counts and per-request timing.

        Sampling is seeded with ``config.seed`` at the start of every call, so a call's output
        depends only on its prompts and the config, not on how many calls came before.
        """
        import torch

        if self._model is None:
            raise RuntimeError("PyTorchBackend.generate() called before load()")
        if not prompts:
            return GenerationOutput(requests=[], duration_s=0.0, timing_source=TIMING_SOURCE)
        self._check_prompts(prompts)
        torch.manual_seed(self.config.seed)

        records: list[RequestRecord] = []
        outputs: list[list[int]] = []
        timing_problem: str | None = None
        start = time.perf_counter()
        with torch.inference_mode():
            for chunk in _chunks(prompts, self.config.batch_size):
                chunk_records, chunk_outputs, problem = self._generate_chunk(torch, chunk)
                records.extend(chunk_records)
                outputs.extend(chunk_outputs)
                timing_problem = timing_problem or problem
        duration = time.perf_counter() - start
        self._check_compiled()
        return GenerationOutput(
            requests=records,
            duration_s=duration,
            timing_source=None if timing_problem else TIMING_SOURCE,
            timing_unavailable_reason=timing_problem,
            output_token_ids=outputs,
        )

    def _check_prompts(self, prompts: list[Prompt]) -> None:
        for i, prompt in enumerate(prompts):
            if not prompt.token_ids:
                raise ValueError(f"prompt {i} has no tokens")
            if prompt.max_new_tokens < 1:
                raise ValueError(f"prompt {i}: max_new_tokens must be >= 1")
            if self._vocab_rows is not None:
                bad = [t for t in prompt.token_ids if t < 0 or t >= self._vocab_rows]
                if bad:
                    raise ValueError(
                        f"prompt {i}: token id {bad[0]} is outside the model's vocabulary "
                        f"(0..{self._vocab_rows - 1}); prompts must be tokenised with this model"
                    )

    def _generate_chunk(
        self, torch: Any, chunk: list[Prompt]
    ) -> tuple[list[RequestRecord], list[list[int]], str | None]:
        budgets = {p.max_new_tokens for p in chunk}
        if len(budgets) != 1:
            raise ValueError(
                "prompts of one batch must share max_new_tokens (static batches generate the same "
                f"number of steps for every row); got {sorted(budgets)}"
            )
        max_new = budgets.pop()
        width = max(len(p.token_ids) for p in chunk)
        pad = self._pad_id if self._pad_id is not None else 0
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, prompt in enumerate(chunk):
            n = len(prompt.token_ids)
            ids[row, width - n :] = torch.tensor(prompt.token_ids, dtype=torch.long)
            mask[row, width - n :] = 1
        ids = ids.to(self._input_device)
        mask = mask.to(self._input_device)
        clock = _StepClock(torch, self._logits_device)
        generation_config = self._generation_config(max_new)
        from transformers import LogitsProcessorList

        clock.begin()
        t0 = time.perf_counter()
        out = self._model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=generation_config,
            logits_processor=LogitsProcessorList([clock]),
        )
        new_tokens = out[:, width:].tolist()  # .tolist() waits for the device
        t_end = time.perf_counter()

        steps = len(new_tokens[0]) if new_tokens else 0
        fixed = self.config.decoding.fixed_output_length
        if fixed and steps != max_new:
            raise ExperimentError(
                f"fixed_output_length: generate returned {steps} new tokens instead of {max_new}",
                phase="measure",
            )
        problem = None
        times = clock.offsets_s()
        if len(times) != steps:
            problem = (
                f"the step clock saw {len(times)} decoding steps but {steps} tokens were "
                f"generated (transformers {_transformers_version()}); TTFT/ITL omitted"
            )

        records: list[RequestRecord] = []
        generated: list[list[int]] = []
        for row, prompt in enumerate(chunk):
            tokens = new_tokens[row]
            count = steps if fixed else self._count_until_eos(tokens)
            generated.append(tokens[:count])
            record = RequestRecord(input_tokens=len(prompt.token_ids), output_tokens=count)
            if problem is None and count > 0:
                mine = times[:count]
                record.ttft_s = mine[0]
                record.itl_s = [b - a for a, b in itertools.pairwise(mine)]
                record.latency_s = mine[-1]
            else:
                record.latency_s = t_end - t0
            records.append(record)
        return records, generated, problem

    def _count_until_eos(self, tokens: list[int]) -> int:
        """Tokens generated by one row: up to and including its first EOS, never the padding."""
        for i, token in enumerate(tokens):
            if token in self._eos_ids:
                return i + 1
        return len(tokens)

    def _check_compiled(self) -> None:
        """Fail loudly when compilation was asked for but transformers skipped it.

        transformers silently falls back to eager when its criteria are not met (e.g. CPU
        offload); a result labelled ``torch_compile`` must have been compiled.
        """
        if self._compile_checked or not self.section.torch_compile:
            return
        self._compile_checked = True
        if getattr(self._model, "_compiled_call", None) is None:
            raise ExperimentError(
                "torch_compile: true, but transformers did not compile the forward pass (its "
                "criteria: a static cache, no CPU/disk offload, a compilable quantisation); "
                "results would be mislabelled, so the run stops",
                phase="warmup",
            )
        if self.load_info is not None:
            self.load_info.extra["compiled"] = True

    # -- device state ----------------------------------------------------------------------------

    def synchronize(self) -> None:
        """Wait for queued work on every CUDA device the model uses; nothing to do on the CPU."""
        if not self._cuda_devices:
            return
        import torch

        for index in self._cuda_devices:
            torch.cuda.synchronize(index)

    def peak_memory_bytes(self) -> int | None:
        """``torch.cuda.max_memory_allocated`` summed over the model's devices since ``load``."""
        if not self._cuda_devices:
            return None
        import torch

        return int(sum(torch.cuda.max_memory_allocated(i) for i in self._cuda_devices))

    def close(self) -> None:
        """Drop the model and return cached CUDA memory; safe twice and after a failed load."""
        self._model = None
        self._tokenizer = None
        self._input_device = None
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _chunks(prompts: list[Prompt], size: int) -> Iterator[list[Prompt]]:
    for start in range(0, len(prompts), size):
        yield prompts[start : start + size]


def _is_dir(path: str) -> bool:
    from pathlib import Path

    try:
        return Path(path).is_dir()
    except OSError:
        return False


def _cuda_devices_of(torch: Any, model: Any) -> list[int]:
    """CUDA indices holding the model's parameters (several when ``device_map`` shards it)."""
    devices: set[int] = set()
    for param in model.parameters():
        if param.device.type == "cuda":
            index = param.device.index
            devices.add(torch.cuda.current_device() if index is None else int(index))
    return sorted(devices)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _transformers_version() -> str:
    try:
        import transformers

        return str(transformers.__version__)
    except ImportError:  # pragma: no cover - load() already required it
        return "unknown"
