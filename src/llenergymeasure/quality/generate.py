"""``GenerateLM``: lm-eval's ``generate_until`` over any backend's ``generate`` (and nothing else).

The engine runs exactly as it did in the measured window (its own batching, its own decoding
path); the task's stop sequences are applied to the decoded text afterwards, so an engine that
cannot stop on a string generates up to the task's token budget and the text is cut. Sampled
generation is refused (``common.stop_sequences``). Log-likelihood requests are refused: config
validation already rejects local tasks that need them (``config/quality.py``) and ``tasks.py``
rejects named ones before the evaluation starts, so reaching them here is a bug, said plainly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lm_eval.api.model import LM

from llenergymeasure.backends.base import Prompt
from llenergymeasure.errors import ExperimentError
from llenergymeasure.quality.common import TokenCounts, cut_at_stop, stop_sequences

if TYPE_CHECKING:
    from llenergymeasure.backends.base import Backend
    from llenergymeasure.config.quality import QualityConfig


class GenerateLM(LM):
    """Generation tasks through ``Backend.generate``, in batches of ``quality.batch_size``."""

    def __init__(self, backend: Backend, quality: QualityConfig) -> None:
        super().__init__()
        self.backend = backend
        self.batch_size = quality.batch_size
        self.counts = TokenCounts()
        self._tokenizer = backend.tokenizer()

    def _refuse(self, request: str) -> Any:
        raise ExperimentError(
            f"the {self.backend.name} backend has no lm-eval {request} adapter; only "
            "generation tasks (output_type: generate_until) can run on it",
            phase="quality",
        )

    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        return self._refuse("loglikelihood")

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[Any]:
        return self._refuse("loglikelihood_rolling")

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        tok = self._tokenizer
        eos = tok.decode([tok.eos_token_id]) if tok.eos_token_id is not None else None
        out: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            prompts, stops = [], []
            for request in batch:
                context, gen_kwargs = request.args
                until, max_new = stop_sequences(gen_kwargs, eos)
                ids = list(tok.encode(context))
                prompts.append(Prompt(token_ids=ids, max_new_tokens=max_new, text=context))
                stops.append(until)
            result = self.backend.generate(prompts)
            if result.output_token_ids is None:
                raise ExperimentError(
                    f"the {self.backend.name} backend returned no output tokens, so its "
                    "generations cannot be scored",
                    phase="quality",
                )
            for prompt, ids, until in zip(prompts, result.output_token_ids, stops, strict=True):
                text = tok.decode(list(ids), skip_special_tokens=True)
                out.append(cut_at_stop(text, until))
                self.counts.requests += 1
                self.counts.input_tokens += len(prompt.token_ids)
                self.counts.output_tokens += len(ids)
        return out
