"""The vLLM backend: the engine, its arguments, the CPU platform's memory and the serving engine."""
