"""The PyTorch backend: transformers causal language models on CUDA or the CPU.

Batches are static: the prompts are cut into chunks of ``config.batch_size``, each chunk is padded
on the left (with an attention mask) and run through one ``model.generate`` call. Token counts are
exact: the input count of a request is the length of its token-id list (padding never counted)
and its output count is the number of tokens it generated, up to and including its EOS and never
the padding after it.

Per-request timing comes from a logits processor (``step_clock.StepClock``) that transformers
calls once per decoding step, right after the step's forward pass. On CUDA it records a CUDA event
there, so it adds no host-device synchronisation and costs a few microseconds a step; the GPU
timestamps are read once ``generate`` has returned. A streamer, the other route, makes
transformers copy every step's tokens to the host, one more synchronisation a step. See
``docs/backends/pytorch.md``.

Beside this file: loading the model and tokenizer (``pytorch_loading.py``), the config as
generation settings (``pytorch_args.py``), static batches (``batching.py``), the step clock
(``step_clock.py``) and the per-request timing record (``request_timing.py``).

torch and transformers are imported inside the methods, never at module import.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.backends.batching import chunks, count_until_eos, left_padded, shared_budget
from llenergymeasure.backends.dtypes import DTYPE_NAMES
from llenergymeasure.backends.pytorch.args import (
    generation_config,
    ignored_decoding_defaults,
    special_token_ids,
)
from llenergymeasure.backends.pytorch.loading import (
    cuda_devices_of,
    is_dir,
    load_model,
    load_tokenizer,
)
from llenergymeasure.backends.request_timing import record_from_step_offsets
from llenergymeasure.backends.step_clock import StepClock
from llenergymeasure.errors import BackendUnavailableError, ExperimentError
from llenergymeasure.models.synthetic import read_marker

if TYPE_CHECKING:
    from pathlib import Path

    from llenergymeasure.backends.pytorch.section import PyTorchConfig
    from llenergymeasure.config.experiment import ExperimentConfig

logger = logging.getLogger(__name__)

#: ``GenerationOutput.timing_source`` of this backend: the per-step logits-processor clock.
TIMING_SOURCE = "step-clock"


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
        self._decoder: Any = None  # pytorch_decode.StaticDecoder on the static + compile path
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
        dtype = getattr(torch, DTYPE_NAMES[self.config.precision])
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

        marker = read_marker(self.model_path) if is_dir(self.model_path) else None
        synthetic = marker is not None
        extra: dict[str, Any] = {"transformers_version": transformers.__version__}

        self._tokenizer = load_tokenizer(transformers, self.model_path, section, extra)
        try:
            model = load_model(
                torch,
                transformers,
                self.model_path,
                section,
                dtype=dtype,
                device=self._device,
                seed=self.config.seed,
                synthetic=synthetic,
                extra=extra,
            )
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
        self._cuda_devices = cuda_devices_of(torch, model)
        self._decoder = self._static_decoder(torch, model)
        parameters = sum(p.numel() for p in model.parameters())
        extra.update(
            {
                "attn_implementation": getattr(model.config, "_attn_implementation", None),
                "device_map": getattr(model, "hf_device_map", None),
                "static_cache": section.static_cache,
                "torch_compile": section.torch_compile,
                "compile_mode": section.compile_mode if section.torch_compile else None,
                "timing": TIMING_SOURCE,
                "decode_loop": "llem-static" if self._decoder else "transformers-generate",
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

    def _static_decoder(self, torch: Any, model: Any) -> Any:
        """llem's lean decode loop when the config asks for a static cache and compilation on
        one device (``pytorch_decode``); None means ``model.generate`` runs every batch."""
        section = self.section
        if not (section.static_cache and section.torch_compile) or section.device_map:
            return None
        from llenergymeasure.backends.pytorch.decode import DecodeSettings, StaticDecoder

        decoding = self.config.decoding
        settings = DecodeSettings(
            greedy=decoding.greedy,
            temperature=decoding.temperature,
            top_k=decoding.top_k,
            top_p=decoding.top_p,
            fixed_output_length=decoding.fixed_output_length,
            eos_ids=sorted(self._eos_ids),
            pad_id=self._pad_id if self._pad_id is not None else 0,
            compile_mode=section.compile_mode,
            compile=True,
        )
        max_len = self.config.max_input_tokens + self.config.max_output_tokens
        if self._max_positions:
            max_len = min(max_len, int(self._max_positions))
        return StaticDecoder(torch, model, settings, max_cache_len=max_len)

    def _prepare_generation_defaults(self, extra: dict[str, Any]) -> None:
        """Make the config the only source of decoding settings (see ``pytorch_args``)."""
        from transformers import GenerationConfig

        model = self._model
        original = getattr(model, "generation_config", None)
        dropped = ignored_decoding_defaults(original)
        eos_ids, bos = special_token_ids(original, self._tokenizer)
        self._eos_ids = {int(e) for e in eos_ids}
        self._pad_id = int(self._tokenizer.pad_token_id)
        model.generation_config = GenerationConfig(
            bos_token_id=bos,
            eos_token_id=eos_ids or None,
            pad_token_id=self._pad_id,
        )
        if dropped:
            extra["ignored_generation_defaults"] = dropped

    def tokenizer(self) -> Any:
        """The model's tokenizer (left padding, pad token set); valid after ``load``."""
        if self._tokenizer is None:
            raise RuntimeError("PyTorchBackend.tokenizer() called before load()")
        return self._tokenizer

    # -- generation ------------------------------------------------------------------------------

    def _generation_config(self, max_new_tokens: int) -> Any:
        special = self._model.generation_config
        config = generation_config(
            self.config,
            max_new_tokens,
            bos_token_id=special.bos_token_id,
            eos_token_id=special.eos_token_id,
            pad_token_id=self._pad_id,
            device=self._device,
        )
        if self.load_info is not None and "generation_config" not in self.load_info.extra:
            # What transformers actually ran with (its settings that differ from its defaults),
            # so a reproduction does not depend on reading our translation code.
            self.load_info.extra["generation_config"] = json.loads(
                json.dumps(config.to_diff_dict(), default=str)
            )
        return config

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
        spans: list[tuple[float, float]] | None = []
        start = time.perf_counter()
        with torch.inference_mode():
            for chunk in chunks(prompts, self.config.batch_size):
                at = time.perf_counter() - start
                chunk_records, chunk_outputs, problem = self._generate_chunk(torch, chunk)
                ttfts = [r.ttft_s for r in chunk_records]
                if spans is not None and ttfts and None not in ttfts:
                    spans.append((at, at + max(t for t in ttfts if t is not None)))
                else:  # a batch without first-token times: no span for the call
                    spans = None
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
            prefill_spans_s=spans,
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
        max_new = shared_budget(chunk)
        pad = self._pad_id if self._pad_id is not None else 0
        ids, mask, width = left_padded(torch, chunk, pad)
        ids = ids.to(self._input_device)
        mask = mask.to(self._input_device)
        if self._decoder is not None:
            return self._generate_chunk_static(chunk, ids, mask, max_new)
        clock = StepClock(torch, self._logits_device)
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
            count = steps if fixed else count_until_eos(tokens, self._eos_ids)
            generated.append(tokens[:count])
            if problem is None and count > 0:
                records.append(record_from_step_offsets(len(prompt.token_ids), count, times))
            else:
                records.append(
                    RequestRecord(
                        input_tokens=len(prompt.token_ids),
                        output_tokens=count,
                        latency_s=t_end - t0,
                    )
                )
        return records, generated, problem

    def _generate_chunk_static(
        self, chunk: list[Prompt], ids: Any, mask: Any, max_new: int
    ) -> tuple[list[RequestRecord], list[list[int]], str | None]:
        """One batch through ``pytorch_decode.StaticDecoder``: same records, same counting."""
        tokens, timing = self._decoder.generate(ids, mask, max_new)
        new_tokens = tokens.tolist()
        fixed = self.config.decoding.fixed_output_length
        times = timing.step_offsets_s
        records: list[RequestRecord] = []
        generated: list[list[int]] = []
        for row, prompt in enumerate(chunk):
            row_tokens = new_tokens[row][: len(times)]
            count = len(row_tokens) if fixed else count_until_eos(row_tokens, self._eos_ids)
            generated.append(row_tokens[:count])
            records.append(record_from_step_offsets(len(prompt.token_ids), count, times))
        if self.load_info is not None:
            self.load_info.extra["prefill"] = self._decoder.prefill_mode
            self.load_info.extra["decode"] = self._decoder.decode_mode
        return records, generated, None

    def compile(self, batch: list[Prompt]) -> dict[str, Any] | None:
        """Run the batches that compile (or load from torch's persistent caches) the decode
        step and prefill, with ``reduce-overhead``'s CUDA-graph capture; the harness times them
        apart from warmup (``harness/compile_cache.py``). None when nothing compiles."""
        if not self.section.torch_compile:
            return None
        from llenergymeasure.backends.pytorch.decode import cache_counters, compile_batches

        before = cache_counters()
        runs = compile_batches(self._decoder)
        for _ in range(runs):
            self.generate(batch)
        after = cache_counters()
        delta = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
        return {"batches": runs, "counters": delta}

    def _check_compiled(self) -> None:
        """Fail loudly when compilation was asked for but transformers skipped it.

        transformers silently falls back to eager when its criteria are not met (e.g. CPU
        offload); a result labelled ``torch_compile`` must have been compiled.
        """
        if self._compile_checked or not self.section.torch_compile:
            return
        self._compile_checked = True
        if self._decoder is not None:  # llem's loop compiled its step itself
            if self.load_info is not None:
                self.load_info.extra["compiled"] = True
            return
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


def _transformers_version() -> str:
    try:
        import transformers

        return str(transformers.__version__)
    except ImportError:  # pragma: no cover - load() already required it
        return "unknown"


def create(
    config: ExperimentConfig, model_path: str, cache_dir: Path | None = None
) -> PyTorchBackend:
    """The registry's factory (``backends/registry.py``): build, not load. No cache is used."""
    return PyTorchBackend(config, model_path)
