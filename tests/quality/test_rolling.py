"""The rolling windows every log-likelihood adapter shares (``quality/rolling.py``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("lm_eval")

from llenergymeasure.quality.rolling import rolling_loglikelihoods, rolling_windows

PREFIX = 99


@pytest.mark.parametrize(("n", "max_seq_len"), [(1, 4), (4, 4), (5, 4), (23, 4), (23, 7)])
def test_windows_score_every_token_once_first_after_the_prefix(n: int, max_seq_len: int) -> None:
    tokens = list(range(n))
    windows = rolling_windows(tokens, PREFIX, max_seq_len)
    assert [t for _, _, cont in windows for t in cont] == tokens
    assert windows[0][1] == [PREFIX]
    # a window's model input is context + continuation minus its last token: max_seq_len at most
    assert all(key is None and len(ctx + cont) - 1 <= max_seq_len for key, ctx, cont in windows)
    assert len(windows) == -(-n // max_seq_len)


def test_a_texts_loglikelihood_is_the_sum_over_its_windows() -> None:
    seen: list[list[tuple[Any, list[int], list[int]]]] = []

    def score(windows: list[tuple[Any, list[int], list[int]]]) -> list[tuple[float, bool]]:
        seen.append(windows)
        return [(-0.5 * len(cont), True) for _, _, cont in windows]

    requests = [SimpleNamespace(args=("abcdefghij",)), SimpleNamespace(args=("xyz",))]
    encode = lambda text: [ord(c) for c in text]  # noqa: E731
    assert rolling_loglikelihoods(requests, encode, PREFIX, 4, score) == [-5.0, -1.5]
    assert [len(w) for w in seen] == [3, 1]  # one scoring call per text, all its windows
