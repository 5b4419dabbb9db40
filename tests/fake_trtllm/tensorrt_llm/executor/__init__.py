from tensorrt_llm.executor.result import CompletionOutput, RequestPerfMetrics, TimingMetrics

__all__ = ["CompletionOutput", "RequestPerfMetrics", "TimingMetrics"]
