"""``loglikelihood_rolling`` for every llem adapter that scores log-likelihoods.

lm-eval scores a whole text (perplexity tasks) in disjoint windows: the text's tokens, the first
window preceded by the prefix token (BOS, else EOS), each window at most ``max_seq_len`` tokens
with one token of context (``lm_eval.utils.get_rolling_token_windows``). Each window is one
``(None, context, continuation)`` request of the adapter's own ``_loglikelihood_tokens``; the
text's log-likelihood is their sum. The adapters differ only in ``max_seq_len`` (what their
engine fits, as lm-eval's matching model computes it), so the windowing lives here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

#: ``_loglikelihood_tokens``: (cache key, context ids, continuation ids) -> (log P, greedy)
ScoreTokens = Callable[[list[tuple[Any, list[int], list[int]]]], list[tuple[float, bool]]]


def rolling_windows(
    tokens: list[int], prefix_token: int, max_seq_len: int
) -> list[tuple[None, list[int], list[int]]]:
    """lm-eval's disjoint rolling windows of ``tokens`` as loglikelihood requests."""
    return [
        (None, *make_disjoint_window(window))
        for window in get_rolling_token_windows(
            token_list=tokens,
            prefix_token=prefix_token,
            max_seq_len=max_seq_len,
            context_len=1,
        )
    ]


def rolling_loglikelihoods(
    requests: list[Any],
    encode: Callable[[str], list[int]],
    prefix_token: int,
    max_seq_len: int,
    score: ScoreTokens,
) -> list[float]:
    """Each request's whole-text log-likelihood: the sum over its windows' scores."""
    out = []
    for request in requests:
        (text,) = request.args
        windows = rolling_windows(encode(text), prefix_token, max_seq_len)
        out.append(sum(value for value, _ in score(windows)))
    return out
