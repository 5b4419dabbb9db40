"""The TensorRT-LLM backend: the engine, its arguments and the built-engine cache."""
