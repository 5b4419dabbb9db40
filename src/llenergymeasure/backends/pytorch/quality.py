"""lm-eval's model interface over the PyTorch backend's loaded model and tokenizer (docs/quality.md).

The same module object the measured window ran (same weights, dtype, attention implementation,
device placement) scores lm-eval's requests:

- ``loglikelihood``: lm-eval's own context/continuation split (``TemplateLM``), one forward pass
  over ``(context + continuation)[-(max_length + 1):][:-1]`` per request, right-padded in batches
  of ``quality.batch_size`` with an attention mask; log-softmax in float32, summed over the
  continuation's tokens, and whether every continuation token is the argmax (greedy).
- ``loglikelihood_rolling``: lm-eval's rolling windows of ``max_length`` tokens, scored the same way.
- ``generate_until``: greedy ``model.generate`` on left-padded batches of requests that share their
  generation kwargs, stopped by lm-eval's stop-sequence criteria and cut at the first stop string.

``max_length`` and the prefix token follow lm-eval's ``hf`` model, so both give the same
per-item log-likelihoods on the same weights (tests/quality cross-checks them within 1e-4).
Imported only by the quality phase: it imports lm-eval and torch at module level.
"""

from __future__ import annotations

from itertools import groupby
from typing import TYPE_CHECKING, Any

import torch
from lm_eval.models.utils import resolve_max_length
from lm_eval.models.utils_hf import stop_sequences_criteria

from llenergymeasure.quality.common import cut_at_stop, stop_sequences
from llenergymeasure.quality.rolling import rolling_loglikelihoods
from llenergymeasure.quality.template import LlemTemplateLM

if TYPE_CHECKING:
    from llenergymeasure.backends.pytorch.backend import PyTorchBackend
    from llenergymeasure.config.quality import QualityConfig


class PyTorchLM(LlemTemplateLM):
    """lm-eval ``LM`` over a loaded ``PyTorchBackend``."""

    def __init__(self, backend: PyTorchBackend, quality: QualityConfig) -> None:
        model = backend._model
        if model is None:
            raise RuntimeError(
                "the PyTorch backend is not loaded; the quality phase runs after load"
            )
        super().__init__(backend.tokenizer(), quality.batch_size)
        self.model = model
        self._input_device = backend._input_device
        self.max_length = resolve_max_length(model.config, self.tokenizer, default=2048)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)

    # -- log-likelihoods ------------------------------------------------------------------------

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], **kwargs: Any
    ) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool]] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            inputs = [(ctx + cont)[-(self.max_length + 1) :][:-1] for _, ctx, cont in batch]
            width = max(len(x) for x in inputs)
            ids = torch.full((len(inputs), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(inputs), width), dtype=torch.long)
            for row, tokens in enumerate(inputs):
                ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
                mask[row, : len(tokens)] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=ids.to(self._input_device), attention_mask=mask.to(self._input_device)
                ).logits
                logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
            for row, ((_, _, cont), tokens) in enumerate(zip(batch, inputs, strict=True)):
                n = len(cont)
                scored = logprobs[row, len(tokens) - n : len(tokens)]
                target = torch.tensor(cont, dtype=torch.long)
                greedy = bool((scored.argmax(dim=-1) == target).all())
                value = float(scored.gather(1, target.unsqueeze(1)).sum())
                out.append((value, greedy))
                self.counts.requests += 1
                self.counts.input_tokens += len(tokens)
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        return rolling_loglikelihoods(
            requests,
            self.tok_encode,
            self.prefix_token_id,
            self.max_length,
            self._loglikelihood_tokens,
        )

    # -- generation -----------------------------------------------------------------------------

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        eos = self.eos_text()
        args = [request.args for request in requests]
        out: list[str] = []
        for _, same in groupby(args, key=lambda a: repr(sorted(a[1].items()))):
            group = list(same)
            for start in range(0, len(group), self.batch_size):
                batch = group[start : start + self.batch_size]
                out.extend(self._generate_batch([c for c, _ in batch], batch[0][1], eos))
        return out

    def _generate_batch(
        self, contexts: list[str], gen_kwargs: dict[str, Any], eos: str
    ) -> list[str]:
        until, max_new = stop_sequences(gen_kwargs, eos)
        keep = max(1, self.max_length - max_new)
        encoded = [self.tok_encode(c)[-keep:] for c in contexts]
        width = max(len(x) for x in encoded)
        ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, tokens in enumerate(encoded):  # left padding, as generation needs
            ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            mask[row, width - len(tokens) :] = 1
        criteria = stop_sequences_criteria(self.tokenizer, until, width, len(encoded))
        with torch.inference_mode():
            generated = self.model.generate(
                input_ids=ids.to(self._input_device),
                attention_mask=mask.to(self._input_device),
                max_new_tokens=max_new,
                do_sample=False,
                stopping_criteria=criteria,
                pad_token_id=self.pad_id,
                use_cache=True,
            )
        texts = []
        for row, tokens in enumerate(encoded):
            new = generated[row, width:].tolist()
            if self.eot_token_id in new:  # what follows EOS is padding
                new = new[: new.index(self.eot_token_id) + 1]
            texts.append(cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), until))
            self.counts.requests += 1
            self.counts.input_tokens += len(tokens)
            self.counts.output_tokens += len(new)
        return texts


def make_lm(backend: PyTorchBackend, quality: QualityConfig) -> PyTorchLM:
    """The quality phase's entry (``quality/adapter.py``): an lm-eval model over ``backend``."""
    return PyTorchLM(backend, quality)
