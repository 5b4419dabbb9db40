"""The experiment's ``precision`` as the dtype name every engine takes (torch, vLLM, TensorRT-LLM)."""

from __future__ import annotations

#: ``precision`` -> dtype name (``torch.<name>``, vLLM's ``dtype=``, TensorRT-LLM's ``dtype=``)
DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
