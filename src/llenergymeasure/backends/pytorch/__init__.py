"""The PyTorch (transformers) backend: the engine, its arguments, loading, the compiled decode loop and serving."""
