"""What every llem lm-eval model shares, and the generation-only model over the backend protocol.

lm-eval hands a model three kinds of requests (``lm_eval.api.model.LM``): ``loglikelihood``
(context, continuation) -> (log P(continuation | context), whether greedy decoding would produce
it), ``loglikelihood_rolling`` (a whole text's log-likelihood, in windows of the model's context)
and ``generate_until`` (context, generation kwargs) -> text cut at the first stop sequence.

``adapter_for`` finds a backend's own adapter (``backends/<package>/quality.py``, next to the
backend's factory, exporting ``make_lm(backend, quality) -> LM``); a backend without one gets
``GenerateLM``, which serves ``generate_until`` through ``Backend.generate`` (so every engine,
TensorRT-LLM included, can run generation tasks), and refuses log-likelihood requests. The
PyTorch, vLLM and openai endpoint backends have their own.

Every adapter counts the tokens it sends to the engine and the tokens the engine generates
(``common.TokenCounts``), so a task's energy can be put beside its tokens.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llenergymeasure.backends.base import Backend
    from llenergymeasure.config.quality import QualityConfig


def adapter_module(backend: Backend) -> Any | None:
    """The ``quality`` module beside the backend's own module, or None when its package has none."""
    package = type(backend).__module__.rsplit(".", 1)[0]
    try:
        return importlib.import_module(f"{package}.quality")
    except ModuleNotFoundError as exc:
        if exc.name != f"{package}.quality":
            raise
        return None


def adapter_for(backend: Backend, quality: QualityConfig) -> Any:
    """The lm-eval model (an ``lm_eval.api.model.LM``) over this loaded engine instance."""
    module = adapter_module(backend)
    if module is not None:
        return module.make_lm(backend, quality)
    from llenergymeasure.quality.generate import GenerateLM

    return GenerateLM(backend, quality)
