"""The ``pytorch:`` section of an experiment config: knobs of the transformers backend (data only)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from llenergymeasure.backends.section import BackendSection


class PyTorchConfig(BackendSection):
    """Knobs of the transformers backend."""

    #: lm-eval requests its quality adapter (backends/pytorch/quality.py) computes
    QUALITY_REQUESTS: ClassVar[frozenset[str]] = frozenset(
        {"loglikelihood", "loglikelihood_rolling", "generate_until"}
    )

    attn_implementation: (
        Literal["eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention"] | None
    ) = None
    static_cache: bool = Field(False, description="cache_implementation='static' in generate")
    torch_compile: bool = Field(
        False, description="transformers' compile path (needs static_cache)"
    )
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "reduce-overhead"
    device_map: str | None = Field(
        None, description="e.g. 'auto' to shard over visible GPUs; None = one device"
    )
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _compile_needs_static(self) -> PyTorchConfig:
        if self.torch_compile and not self.static_cache:
            raise ValueError(
                "torch_compile: true needs static_cache: true (transformers compiles the forward "
                "pass only for a static KV cache)"
            )
        return self

    def gpus_problem(self, gpus: list[int], backend: str) -> str | None:
        n = len(gpus)
        if self.device_map is None and n != 1:
            return (
                f"gpus: {gpus} holds {n} GPUs but backend {backend} without {backend}.device_map "
                f"runs on one device; give one GPU (e.g. gpus: [0]) or set {backend}.device_map: "
                "auto to spread the model over them"
            )
        return None

    def planned_devices(self, visible: int) -> list[int]:
        """``device_map`` spreads the model over every visible GPU; otherwise the first."""
        return list(range(visible)) if self.device_map else list(range(min(visible, 1)))

    def spread_setting(self, backend: str) -> str | None:
        return f"{backend}.device_map = {self.device_map!r}" if self.device_map else None
