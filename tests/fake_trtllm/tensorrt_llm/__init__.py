"""A fake ``tensorrt_llm`` package for contract tests of ``llenergymeasure.backends.tensorrt.backend``.

TensorRT-LLM runs on no machine this project is tested on, so the backend is tested against this
stand-in. It mirrors the *signatures and validation behaviour* of the real LLM API, not its
numerics. Where the real code rejects something, this fake rejects it the same way (same exception
type); where the real code accepts a keyword, so does this fake; anything the real API does not
know is refused. It never imports torch or CUDA.

Source it was read from: NVIDIA/TensorRT-LLM, the 1.x LLM API as of the 1.2 release line (late
2025; ``tensorrt_llm/version.py`` said ``1.2.0rc2`` at the commit read,
b35ac1b64368513d215c57d2ed01d62d910df8da), files:

- ``tensorrt_llm/_tensorrt_engine/__init__.py``: ``from tensorrt_llm.llmapi.llm import _TrtLLM as LLM``
  (the TensorRT-engine flow; the top-level ``tensorrt_llm.LLM`` is the PyTorch flow in 1.x)
- ``tensorrt_llm/llmapi/llm.py``: ``BaseLLM.__init__`` (unknown keyword -> ``ValueError("... got
  invalid argument: ...")``), ``generate``, ``_check_arguments`` (prompt + max_tokens must fit
  ``max_seq_len``), ``_prepare_sampling_params`` (``end_id`` from the tokenizer), ``shutdown``,
  ``get_stats``, ``_TrtLLM.save`` (copies the engine directory)
- ``tensorrt_llm/llmapi/llm_args.py``: ``BaseLlmArgs`` / ``TrtLlmArgs`` (pydantic, ``extra="forbid"``;
  ``load_format: Literal['auto', 'dummy']``; runtime limits synced to ``build_config``;
  ``KvCacheConfig.dtype`` must stay ``"auto"`` on the TensorRT backend), ``KvCacheConfig``
- ``tensorrt_llm/llmapi/llm_utils.py``: ``ModelLoader._load_model_from_hf`` (``load_format ==
  'dummy'`` builds the model from the HF config with no weights)
- ``tensorrt_llm/builder.py``: ``BuildConfig`` (a dataclass: unknown keyword -> ``TypeError``),
  engine ``config.json`` with ``pretrained_config`` + ``build_config``, ``rank{N}.engine`` files
- ``tensorrt_llm/models/modeling_utils.py``: ``QuantConfig`` (dataclass)
- ``tensorrt_llm/quantization/mode.py``: ``QuantAlgo``, ``KV_CACHE_QUANT_ALGO_LIST``
- ``tensorrt_llm/sampling_params.py``: ``SamplingParams`` (dataclass, keyword-only)
- ``tensorrt_llm/executor/result.py``: ``CompletionOutput`` (``token_ids``,
  ``request_perf_metrics`` whose ``timing_metrics`` hold ``datetime.timedelta`` steady-clock times)

Test hooks (not part of the real API): ``tensorrt_llm.fake_state`` records every constructor call,
build, engine load, ``generate`` and ``shutdown``, and holds the fake GPU count.
"""

from tensorrt_llm import fake_state
from tensorrt_llm.builder import BuildConfig
from tensorrt_llm.llmapi import LLM, KvCacheConfig, QuantAlgo, QuantConfig, SamplingParams

__version__ = "1.2.1+llemfake"

__all__ = [
    "LLM",
    "BuildConfig",
    "KvCacheConfig",
    "QuantAlgo",
    "QuantConfig",
    "SamplingParams",
    "__version__",
    "fake_state",
]
