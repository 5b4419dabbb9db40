from tensorrt_llm.quantization.mode import KV_CACHE_QUANT_ALGO_LIST, QuantAlgo

__all__ = ["KV_CACHE_QUANT_ALGO_LIST", "QuantAlgo"]
