"""``LlemTemplateLM``: lm-eval's ``TemplateLM`` with the tokenisation its ``hf`` and ``vllm`` models use.

Log-likelihood adapters over a loaded engine derive from it: lm-eval's own context/continuation
split (``TemplateLM.loglikelihood``), EOS as the end-of-text token, BOS (else EOS) as the prefix of
an empty context, and the tokenizer's own special tokens unless the text already starts with BOS.
Imported only by the quality phase (it imports lm-eval).
"""

from __future__ import annotations

from typing import Any

from lm_eval.api.model import TemplateLM

from llenergymeasure.quality.common import TokenCounts


class LlemTemplateLM(TemplateLM):
    """Tokenisation shared by llem's log-likelihood adapters; subclasses score and generate."""

    def __init__(self, tokenizer: Any, batch_size: int) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.counts = TokenCounts()

    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return int(bos if bos is not None else self.tokenizer.eos_token_id)

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs: Any
    ) -> list[int]:
        bos_text = self.tokenizer.decode(self.prefix_token_id)
        if add_special_tokens is None and string.startswith(bos_text):
            add_special_tokens = False  # the text already starts with BOS
        extra = {} if add_special_tokens is None else {"add_special_tokens": add_special_tokens}
        return list(self.tokenizer.encode(string, **extra))

    def eos_text(self) -> str:
        return str(self.tokenizer.decode([self.eot_token_id], skip_special_tokens=False))
