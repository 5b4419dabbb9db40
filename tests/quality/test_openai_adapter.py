"""llem's lm-eval adapter over the openai endpoint backend (``backends/openai/quality.py``).

The server is replaced by an injected ``post`` that records each request body and answers as an
OpenAI-compatible completions API does (echoed prompt log-probabilities, top log-probability per
position, ``usage``), so the request bodies, the truncation, the scoring and the batching are
checked exactly. tests/vllm_engine/test_openai_quality_cross_check.py runs the same adapter
against a real ``vllm serve`` and lm-eval's own ``local-completions`` model.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from llenergymeasure import ExperimentConfig
from llenergymeasure.config.quality import QualityConfig
from llenergymeasure.errors import ExperimentError
from tests.quality.conftest import GEN_TASK, MC_TASK, PPL_TASK

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from llenergymeasure.backends.openai.quality import OpenAILM, http_post


def _logprob(position: int, token: int) -> float:
    return -0.25 * (1 + (token + position) % 5)


def _top(position: int, token: int) -> dict[str, float]:
    """Greedy where the token is even (its own logprob is the top one), else a better token."""
    own = _logprob(position, token)
    return {str(token): own} if token % 2 == 0 else {str(token): own, "other": own + 0.5}


class FakeServer:
    """``post(path, body)``: answers completions (echo or generation) and chat requests."""

    def __init__(self, reply_text: str = "four\nfive") -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.reply_text = reply_text

    def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append((path, body))
        if path == "/v1/chat/completions":
            message = {"role": "assistant", "content": self.reply_text}
            return {"choices": [{"index": 0, "message": message}], "usage": {"prompt_tokens": 3}}
        prompts = body["prompt"]
        choices = []
        for i, tokens in reversed(list(enumerate(prompts))):  # any order: sorted by index
            choice: dict[str, Any] = {"index": i, "text": self.reply_text}
            if body.get("echo"):
                lps: list[float | None] = [None] + [
                    _logprob(p, t) for p, t in enumerate(tokens) if p > 0
                ]
                tops: list[dict[str, float] | None] = [None] + [
                    _top(p, t) for p, t in enumerate(tokens) if p > 0
                ]
                choice["logprobs"] = {
                    "token_logprobs": [*lps, -9.0],  # then the one generated token's
                    "top_logprobs": [*tops, {"x": -9.0}],
                }
            choices.append(choice)
        usage = {"prompt_tokens": sum(len(p) for p in prompts), "completion_tokens": len(prompts)}
        return {"choices": choices, "usage": usage}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import AutoTokenizer

    from llenergymeasure.models.synthetic import materialise_synthetic

    path = materialise_synthetic("tiny-llama", tmp_path_factory.mktemp("openai-quality"))
    return AutoTokenizer.from_pretrained(path)


def _lm(tokenizer: Any, server: FakeServer, api: str = "completions", **quality: Any) -> OpenAILM:
    backend = SimpleNamespace(
        client=object(),
        tokenizer=lambda: tokenizer,
        section=SimpleNamespace(api=api, request_timeout_s=5.0),
        served_model="tiny",
        name="openai",
        base_url=None,
    )
    q = QualityConfig(tasks=["x"], **quality)
    return OpenAILM(backend, q, post=server, max_length=8)  # type: ignore[arg-type]


def test_loglikelihood_is_the_echoed_continuation_logprobs_left_truncated(tokenizer: Any) -> None:
    server = FakeServer()
    lm = _lm(tokenizer, server, batch_size=2)
    requests = [
        (None, [1, 10, 11], [12, 14]),  # 5 tokens: whole
        (None, [1, 2, 3, 4, 5, 6, 7, 8], [20, 22]),  # 10 tokens: the last 7 (max_length - 1)
        (None, [1], [13]),  # odd token: not greedy
    ]
    out = lm._loglikelihood_tokens(requests)
    paths = [p for p, _ in server.bodies]
    assert paths == ["/v1/completions", "/v1/completions"]  # batches of 2
    body = server.bodies[0][1]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1
    assert body["temperature"] == 0 and body["model"] == "tiny"
    assert body["prompt"] == [[1, 10, 11, 12, 14], [4, 5, 6, 7, 8, 20, 22]]
    assert out[0] == (pytest.approx(_logprob(3, 12) + _logprob(4, 14)), True)
    assert out[1] == (pytest.approx(_logprob(5, 20) + _logprob(6, 22)), True)
    assert out[2] == (pytest.approx(_logprob(1, 13)), False)
    assert lm.counts.requests == 3 and lm.counts.input_tokens == 5 + 7 + 2
    assert lm.counts.output_tokens == 3


def test_rolling_windows_are_scored_through_the_same_requests(tokenizer: Any) -> None:
    server = FakeServer()
    lm = _lm(tokenizer, server)
    text = "hello world " * 5
    tokens = lm.tok_encode(text)
    (value,) = lm.loglikelihood_rolling([SimpleNamespace(args=(text,))])
    prompts = [b["prompt"][0] for _, b in server.bodies]
    assert all(len(p) <= 7 for p in prompts)  # windows of max_length - 2, plus one of context
    assert prompts[0][0] == lm.prefix_token_id
    assert len(prompts) == -(-len(tokens) // 6)
    assert value < 0


def test_generation_batches_share_stop_strings_and_cut_the_text(tokenizer: Any) -> None:
    server = FakeServer(reply_text="four\nfive")
    lm = _lm(tokenizer, server, batch_size=4)
    kwargs_a = {"until": ["\n"], "max_gen_toks": 3, "do_sample": False}
    kwargs_b = {"until": ["."], "max_gen_toks": 2}
    requests = [SimpleNamespace(args=(c, k)) for c, k in [("a b", kwargs_a), ("c", kwargs_a)]]
    requests.append(SimpleNamespace(args=("d " * 20, kwargs_b)))
    out = lm.generate_until(requests)
    assert out == ["four", "four", "four\nfive"]
    assert len(server.bodies) == 2  # one request per run of identical kwargs
    first, second = (b for _, b in server.bodies)
    assert first["stop"][0] == "\n" and lm.eos_text() in first["stop"]
    assert first["max_tokens"] == 3 and first["temperature"] == 0
    assert first["prompt"] == [lm.tok_encode("a b"), lm.tok_encode("c")]
    assert len(second["prompt"][0]) == 8 - 1 - 2  # left-truncated to leave room for 2 tokens
    assert lm.counts.requests == 3


def test_sampled_generation_is_refused(tokenizer: Any) -> None:
    lm = _lm(tokenizer, FakeServer())
    with pytest.raises(ExperimentError, match="do_sample: false"):
        lm.generate_until([SimpleNamespace(args=("a", {"until": ["\n"], "do_sample": True}))])


def test_chat_api_generates_from_the_context_and_refuses_loglikelihoods(tokenizer: Any) -> None:
    server = FakeServer(reply_text="yes. no")
    lm = _lm(tokenizer, server, api="chat", batch_size=2)
    kwargs = {"until": ["."], "max_gen_toks": 5}
    out = lm.generate_until([SimpleNamespace(args=(c, kwargs)) for c in ("q1", "q2", "q3")])
    assert out == ["yes", "yes", "yes"]
    assert {b["messages"][0]["content"] for _, b in server.bodies} == {"q1", "q2", "q3"}
    assert all(p == "/v1/chat/completions" for p, _ in server.bodies)
    with pytest.raises(ExperimentError, match=r"openai\.api: chat cannot score"):
        lm._loglikelihood_tokens([(None, [1], [2])])


def test_a_server_that_does_not_echo_logprobs_is_a_clear_error(tokenizer: Any) -> None:
    lm = _lm(tokenizer, lambda path, body: {"choices": [{"index": 0, "text": ""}]})
    with pytest.raises(ExperimentError, match="echoed no log-probabilities"):
        lm._loglikelihood_tokens([(None, [1], [2])])


def test_http_post_names_the_url_when_nothing_answers() -> None:
    import socket

    from llenergymeasure.backends.openai.http import BaseURL

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    post = http_post(BaseURL.parse(f"http://127.0.0.1:{port}"), 2.0)
    with pytest.raises(ExperimentError, match=f"127.0.0.1:{port}/v1/completions"):
        post("/v1/completions", {})


def _openai(api: str, tasks: list[Path]) -> ExperimentConfig:
    return ExperimentConfig(
        model="synthetic/tiny-llama",
        backend="openai",
        openai={"base_url": "http://127.0.0.1:9", "api": api},
        quality={"tasks": [str(t) for t in tasks]},
    )


def test_completions_api_takes_every_task_and_chat_only_generation() -> None:
    _openai("completions", [MC_TASK, PPL_TASK, GEN_TASK])
    _openai("chat", [GEN_TASK])
    with pytest.raises(ValidationError) as info:
        _openai("chat", [MC_TASK, GEN_TASK])
    assert f"cannot compute loglikelihood (needed by {MC_TASK})" in str(info.value)


def test_the_quality_phase_finds_the_openai_adapter() -> None:
    from llenergymeasure.backends.openai import quality
    from llenergymeasure.backends.openai.backend import OpenAIBackend
    from llenergymeasure.quality.adapter import adapter_module

    backend = OpenAIBackend(_openai("completions", [GEN_TASK]), "/m", gpu_count=lambda: 0)
    assert adapter_module(backend) is quality
