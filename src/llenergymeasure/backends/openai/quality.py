"""lm-eval's model interface over the OpenAI-compatible server the measured window drove.

The same server, served model and API (``openai.api``) answer lm-eval's requests, one plain
(non-streamed) JSON request at a time per batch, on the protocol lm-eval's own
``local-completions`` model speaks:

- ``loglikelihood`` (``api: completions`` only): up to ``quality.batch_size`` token prompts per
  request, each ``(context + continuation)`` left-truncated to ``max_length - 1`` tokens, with
  ``echo: true, logprobs: 1, max_tokens: 1, temperature: 0``: the server returns every prompt
  token's log-probability and the top one at each position; the continuation's log-likelihood is
  the sum of its tokens' log-probabilities, greedy when each equals the top one.
- ``loglikelihood_rolling`` (completions only): lm-eval's rolling windows of ``max_length - 2``
  tokens (``quality/rolling.py``), scored alike.
- ``generate_until``: completions: batches of token prompts that share their stop strings and
  token budget, left-truncated to leave room for the new tokens; chat: one request per context,
  ``quality.batch_size`` in flight, the context as the user message (no chat template, as for the
  other backends). Greedy (``temperature: 0``) with the task's stop strings; the text is cut at
  the first stop (lm-eval's post-processing).

``max_length`` is the server's ``max_model_len`` from ``/v1/models`` (vLLM reports it), else
lm-eval's default of 2048. Tokenisation is lm-eval's context/continuation split with the
tokenizer's own special tokens, as lm-eval's ``hf`` and ``vllm`` models (and llem's other
adapters) do; ``local-completions`` adds none unless given ``add_bos_token=True``, which its
cross-check against this adapter sets (tests/vllm_engine/test_openai_quality_cross_check.py).
``openai.extra_body`` is not sent: its usual fields (``ignore_eos``, ``min_tokens``) force
lengths for the energy measurement and would change the answers being scored. Imported only by
the quality phase (it imports lm-eval).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from typing import TYPE_CHECKING, Any

from llenergymeasure.backends.openai.http import EndpointError, error_message, get
from llenergymeasure.errors import ExperimentError
from llenergymeasure.quality.common import cut_at_stop, stop_sequences
from llenergymeasure.quality.rolling import rolling_loglikelihoods
from llenergymeasure.quality.template import LlemTemplateLM

if TYPE_CHECKING:
    from llenergymeasure.backends.openai.backend import OpenAIBackend
    from llenergymeasure.backends.openai.http import BaseURL
    from llenergymeasure.config.quality import QualityConfig

#: lm-eval's ``max_length`` for API models when the server does not report its own
DEFAULT_MAX_LENGTH = 2048
#: the request seed lm-eval's API models send (greedy decoding does not use it)
SEED = 1234

#: ``post(path, body) -> the JSON answer``; injected by tests, an HTTP POST otherwise
Post = Callable[[str, dict[str, Any]], dict[str, Any]]


def http_post(base_url: BaseURL, timeout_s: float) -> Post:
    """A plain JSON ``POST`` to the server (urllib; the quality phase is not timed per request)."""

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = base_url.url(path)
        request = urllib.request.Request(
            url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                answer = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            raise ExperimentError(
                f"POST {url} for lm-eval answered HTTP {exc.code}: {error_message(text)}",
                phase="quality",
            ) from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ExperimentError(f"POST {url} for lm-eval failed: {exc}", phase="quality") from exc
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise ExperimentError(
                f"POST {url} for lm-eval answered without `choices`: {str(answer)[:300]}",
                phase="quality",
            )
        return answer

    return post


def server_max_length(base_url: BaseURL, model: str) -> int | None:
    """The served model's ``max_model_len`` as ``/v1/models`` reports it (vLLM does), else None."""
    try:
        status, body = get(base_url, "/v1/models", timeout_s=30.0)
        models = json.loads(body).get("data", []) if status == 200 else []
    except (EndpointError, ValueError, AttributeError):
        return None
    for entry in models:
        if isinstance(entry, dict) and entry.get("id") == model:
            value = entry.get("max_model_len")
            return int(value) if isinstance(value, int) and value > 1 else None
    return None


class OpenAILM(LlemTemplateLM):
    """lm-eval ``LM`` over a loaded ``OpenAIBackend``'s server."""

    def __init__(
        self,
        backend: OpenAIBackend,
        quality: QualityConfig,
        post: Post | None = None,
        max_length: int | None = None,
    ) -> None:
        if backend.client is None:
            raise RuntimeError(
                "the openai backend is not loaded; the quality phase runs after load"
            )
        super().__init__(backend.tokenizer(), quality.batch_size)
        self.api = backend.section.api
        self.model = backend.served_model
        self.backend_name = backend.name
        self._post = post or http_post(backend.base_url, backend.section.request_timeout_s)
        if max_length is None:
            max_length = server_max_length(backend.base_url, self.model) or DEFAULT_MAX_LENGTH
        self.max_length = max_length

    def _count(self, answer: dict[str, Any], prompt_tokens: int) -> None:
        usage = answer.get("usage") or {}
        self.counts.input_tokens += int(usage.get("prompt_tokens") or prompt_tokens)
        self.counts.output_tokens += int(usage.get("completion_tokens") or 0)

    def _completions_only(self, request: str) -> None:
        if self.api != "completions":
            raise ExperimentError(
                f"openai.api: {self.api} cannot score lm-eval {request} requests (only the "
                "completions API returns prompt log-probabilities); use api: completions or "
                "generation tasks",
                phase="quality",
            )

    # -- log-likelihoods ------------------------------------------------------------------------

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], **kwargs: Any
    ) -> list[tuple[float, bool]]:
        self._completions_only("loglikelihood")
        keep = self.max_length - 1  # the server generates one token
        out: list[tuple[float, bool]] = []
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            inputs = [(ctx + cont)[-keep:] for _, ctx, cont in batch]
            answer = self._post(
                "/v1/completions",
                {
                    "model": self.model,
                    "prompt": inputs,
                    "temperature": 0,
                    "max_tokens": 1,
                    "logprobs": 1,
                    "echo": True,
                    "seed": SEED,
                },
            )
            choices = _by_index(answer, len(inputs))
            for (_, _, cont), tokens, choice in zip(batch, inputs, choices, strict=True):
                out.append(_score(choice, len(tokens) - len(cont), len(tokens)))
                self.counts.requests += 1
            self._count(answer, sum(len(t) for t in inputs))
        return out

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        self._completions_only("loglikelihood_rolling")
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
        planned = []
        for request in requests:
            context, gen_kwargs = request.args
            until, max_new = stop_sequences(gen_kwargs, eos)
            planned.append((context, until, max_new))
        if self.api == "chat":
            with ThreadPoolExecutor(max_workers=self.batch_size) as pool:
                return list(pool.map(lambda p: self._chat(*p), planned))
        out: list[str] = []
        for _, same in groupby(planned, key=lambda p: repr(p[1:])):
            group = list(same)
            for start in range(0, len(group), self.batch_size):
                out.extend(self._complete(group[start : start + self.batch_size]))
        return out

    def _complete(self, batch: list[tuple[str, list[str], int]]) -> list[str]:
        _, until, max_new = batch[0]
        keep = max(1, self.max_length - 1 - max_new)
        inputs = [self.tok_encode(context)[-keep:] for context, _, _ in batch]
        answer = self._post(
            "/v1/completions",
            {
                "model": self.model,
                "prompt": inputs,
                "max_tokens": max_new,
                "temperature": 0,
                "stop": until,
                "seed": SEED,
            },
        )
        self.counts.requests += len(batch)
        self._count(answer, sum(len(t) for t in inputs))
        return [cut_at_stop(str(c.get("text") or ""), until) for c in _by_index(answer, len(batch))]

    def _chat(self, context: str, until: list[str], max_new: int) -> str:
        answer = self._post(
            "/v1/chat/completions",
            {
                "model": self.model,
                "messages": [{"role": "user", "content": context}],
                "max_tokens": max_new,
                "temperature": 0,
                "stop": until,
                "seed": SEED,
            },
        )
        self.counts.requests += 1
        self._count(answer, len(self.tok_encode(context)))
        (choice,) = _by_index(answer, 1)
        message = choice.get("message") or {}
        return cut_at_stop(str(message.get("content") or ""), until)


def _by_index(answer: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """The answer's ``choices`` in prompt order, one per prompt (else a clear error)."""
    choices = sorted(answer["choices"], key=lambda c: int(c.get("index", 0)))
    if len(choices) != n:
        raise ExperimentError(
            f"the server answered {len(choices)} choices for {n} prompts", phase="quality"
        )
    return choices


def _score(choice: dict[str, Any], first: int, n_prompt: int) -> tuple[float, bool]:
    """Sum and greedy flag of the echoed prompt log-probabilities at positions ``first..n_prompt``.

    The echoed ``token_logprobs`` has one entry per prompt token (the first is null: nothing
    precedes it) and then the generated token's; ``top_logprobs`` the most likely token's at each.
    """
    logprobs = choice.get("logprobs") or {}
    token_lps = (logprobs.get("token_logprobs") or [])[first:n_prompt]
    top_lps = (logprobs.get("top_logprobs") or [])[first:n_prompt]
    if len(token_lps) != n_prompt - first or len(top_lps) != n_prompt - first:
        raise ExperimentError(
            "the server echoed no log-probabilities for the prompt (needs echo with logprobs, as "
            "vLLM's completions API gives); use generation tasks with this server",
            phase="quality",
        )
    value, greedy = 0.0, True
    for token_lp, top in zip(token_lps, top_lps, strict=True):
        value += float(token_lp)
        greedy = greedy and float(token_lp) == max(float(v) for v in top.values())
    return value, greedy


def make_lm(backend: OpenAIBackend, quality: QualityConfig) -> OpenAILM:
    """The quality phase's entry (``quality/adapter.py``): an lm-eval model over ``backend``."""
    return OpenAILM(backend, quality)
