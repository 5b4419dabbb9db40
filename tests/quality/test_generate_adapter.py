"""The generation-only adapter (``quality/generate.py``): lm-eval's ``generate_until`` through any
backend's own ``generate``, as TensorRT-LLM and endpoint backends use it. Here over the PyTorch
backend, whose own adapter gives the reference texts: same greedy tokens, same cut at the stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import ExperimentError
from tests.quality.conftest import GEN_TASK

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.timeout(600)


class _Request:
    def __init__(self, *args: Any) -> None:
        self.args = args


def test_generation_through_backend_generate_matches_the_model_adapter(saved_model: Path) -> None:
    from llenergymeasure.backends import create_backend
    from llenergymeasure.quality.adapter import adapter_for
    from llenergymeasure.quality.generate import GenerateLM

    config = ExperimentConfig(
        model=str(saved_model),
        backend="pytorch",
        precision="fp32",
        batch_size=2,
        quality={"tasks": [str(GEN_TASK)], "batch_size": 2},
    )
    assert config.quality is not None
    backend = create_backend(config, str(saved_model))
    backend.load()
    try:
        generic = GenerateLM(backend, config.quality)
        reference = adapter_for(backend, config.quality)
        gen_kwargs = {"until": ["z"], "max_gen_toks": 5, "do_sample": False}
        requests = [_Request(f"a b c {w}", gen_kwargs) for w in ("d", "e f", "g h i")]
        ours = generic.generate_until(requests)
        theirs = reference.generate_until(requests)
        assert ours == theirs and any(ours)
        assert all("z" not in text for text in ours)  # cut at the stop string
        assert generic.counts.requests == 3 and generic.counts.output_tokens == 15  # 3 x 5 tokens
        with pytest.raises(ExperimentError, match="only generation tasks"):
            generic.loglikelihood([])
        with pytest.raises(ExperimentError, match="do_sample: false"):
            generic.generate_until([_Request("a", {"do_sample": True, "temperature": 1.0})])
    finally:
        backend.close()
