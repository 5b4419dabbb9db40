"""Mirror of ``QuantConfig`` in ``tensorrt_llm/models/modeling_utils.py`` (a plain dataclass)."""

from __future__ import annotations

import dataclasses

from tensorrt_llm.quantization.mode import QuantAlgo


@dataclasses.dataclass
class QuantConfig:
    quant_algo: QuantAlgo | None = None
    kv_cache_quant_algo: QuantAlgo | None = None
    group_size: int = 128
    smoothquant_val: float = 0.5
    clamp_val: list[float] | None = None
    use_meta_recipe: bool = False
    has_zero_point: bool = False
    pre_quant_scale: bool = False
    exclude_modules: list[str] | None = None
    mamba_ssm_cache_dtype: str | None = None

    def __post_init__(self) -> None:
        # The real pydantic-free dataclass does not coerce strings; the LLM args validator does.
        for name in ("quant_algo", "kv_cache_quant_algo"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, QuantAlgo):
                setattr(self, name, QuantAlgo(value))

    def to_dict(self) -> dict[str, object]:
        return {
            "quant_algo": None if self.quant_algo is None else self.quant_algo.value,
            "kv_cache_quant_algo": (
                None if self.kv_cache_quant_algo is None else self.kv_cache_quant_algo.value
            ),
        }
