"""The experiment config as vLLM arguments: ``vllm.LLM`` and ``vllm.SamplingParams`` keywords.

Pure translation, no vLLM import: tested without vLLM (``tests/backends/test_vllm_backend.py``)
and against the real classes (``tests/vllm_engine/test_vllm_contract.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llenergymeasure.backends.dtypes import DTYPE_NAMES

if TYPE_CHECKING:
    from llenergymeasure.backends.vllm.section import VLLMConfig
    from llenergymeasure.config.experiment import ExperimentConfig


def engine_kwargs(config: ExperimentConfig, model_path: str, synthetic: bool) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for this experiment.

    Every field of the ``vllm:`` section is passed through; optional ones only when set, so vLLM's
    own defaults (which depend on the hardware) apply otherwise and are recorded after load.
    A synthetic model directory has no weight files: ``load_format="dummy"`` makes vLLM build
    random weights of the configured shapes. ``disable_log_stats=False`` is what makes vLLM keep
    the per-request timings the backend reports (see ``backends/vllm/backend.py``).
    """
    section: VLLMConfig = config.backend_section()  # type: ignore[assignment]
    kwargs: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": DTYPE_NAMES[config.precision],
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


def cache_env(environ: Any) -> dict[str, str]:
    """vLLM's compile-cache variables for this run (``harness/compile_cache.py``).

    With a persistent compile cache (``LLEM_COMPILE_CACHE_DIR`` set by the harness before the
    engine's import) vLLM's cache root, which holds its torch.compile artefacts and CUDA-graph
    capture plans, goes into the key's directory instead of ``~/.cache/vllm`` (``HOME=/tmp`` in a
    container: lost with it). With ``compile_cache: off`` vLLM's compile cache is disabled.
    """
    if environ.get("TORCHINDUCTOR_FORCE_DISABLE_CACHES") == "1":
        return {"VLLM_DISABLE_COMPILE_CACHE": "1"}
    directory = environ.get("LLEM_COMPILE_CACHE_DIR")
    if not directory:
        return {}
    return {"VLLM_CACHE_ROOT": f"{directory.rstrip('/')}/vllm"}
