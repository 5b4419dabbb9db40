from tensorrt_llm.builder import BuildConfig
from tensorrt_llm.executor.result import CompletionOutput
from tensorrt_llm.llmapi.llm import LLM, RequestOutput
from tensorrt_llm.llmapi.llm_args import KvCacheConfig, TorchLlmArgs, TrtLlmArgs
from tensorrt_llm.models.modeling_utils import QuantConfig
from tensorrt_llm.quantization.mode import QuantAlgo
from tensorrt_llm.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "BuildConfig",
    "CompletionOutput",
    "KvCacheConfig",
    "QuantAlgo",
    "QuantConfig",
    "RequestOutput",
    "SamplingParams",
    "TorchLlmArgs",
    "TrtLlmArgs",
]
