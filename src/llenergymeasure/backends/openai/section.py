"""The ``openai:`` section: which OpenAI-compatible server to measure, and how to reach it (data).

Either ``base_url`` (attach: llem measures a server that already runs and that it did not start)
or ``launch`` (llem starts the server as a local process, waits until it answers, measures, stops
it). Exactly one of the two; the backend says so when neither is given (``backend.create``).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llenergymeasure.backends.section import BackendSection

LaunchEngine = Literal["vllm", "sglang", "tgi", "trtllm"]


class LaunchConfig(BaseModel):
    """How llem starts the server (``openai.launch``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: LaunchEngine = Field(..., description="whose server: vllm, sglang, tgi or trtllm")
    args: list[str] = Field(
        default_factory=list, description="extra command-line arguments for the server"
    )
    port: int = Field(8000, ge=1, le=65535, description="the port it listens on (loopback)")
    host: str = Field("127.0.0.1", description="the address it binds and llem connects to")
    ready_timeout_s: float = Field(
        600.0, gt=0, description="how long to wait for /health or /v1/models to answer"
    )
    command: list[str] | None = Field(
        None,
        description="the program to start instead of the engine's usual one (its model, host "
        "and port arguments are still added), e.g. another environment's python -m ...",
    )
    image: str | None = Field(
        None,
        description="under the docker runner, the image the server runs in; default: the "
        "engine's own (backends/openai/images.py, docs/backends/openai.md)",
    )

    @field_validator("image")
    @classmethod
    def _image_named(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError(
                "openai.launch.image is empty; name an image (e.g. lmsysorg/sglang:v0.5.20-cu130) "
                "or leave it out for the engine's default"
            )
        return value.strip() if value is not None else None


class OpenAIConfig(BackendSection):
    """An OpenAI-compatible server reached over HTTP (``backend: openai``)."""

    base_url: str | None = Field(
        None, description="attach: the running server's address, e.g. http://127.0.0.1:8000"
    )
    launch: LaunchConfig | None = Field(None, description="llem starts the server (see below)")
    api: Literal["completions", "chat"] = Field(
        "completions", description="/v1/completions (token ids sent) or /v1/chat/completions"
    )
    model: str | None = Field(
        None, description="the served model name; default: the experiment's model"
    )
    tokenizer: str | None = Field(
        None,
        description="a model id llem accepts (synthetic/... included) whose tokenizer counts "
        "tokens; default: the server's usage counts",
    )
    request_timeout_s: float = Field(600.0, gt=0, description="one request's limit")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="more fields for every request body, e.g. {ignore_eos: true, min_tokens: 128}",
    )
    max_num_seqs: int | None = Field(
        None,
        ge=1,
        description="the server's largest running batch (the saturation gate's cap); in launch "
        "mode read from --max-num-seqs when not given",
    )
    metrics: bool = Field(True, description="scrape the server's /metrics every second")

    def quality_requests(self) -> frozenset[str]:
        """lm-eval requests its quality adapter (quality.py) computes: the completions API scores
        log-likelihoods too (echoed prompt logprobs); the chat API only generates."""
        if self.api == "completions":
            return frozenset({"loglikelihood", "loglikelihood_rolling", "generate_until"})
        return self.QUALITY_REQUESTS

    @model_validator(mode="after")
    def _one_way_in(self) -> OpenAIConfig:
        if self.base_url is not None and self.launch is not None:
            raise ValueError(
                "openai.base_url and openai.launch are both given: give base_url to measure a "
                "server that already runs, or launch to have llem start one, not both"
            )
        if self.base_url is not None:
            parts = urlsplit(self.base_url.strip())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"openai.base_url {self.base_url!r} is not an http(s) URL; give one like "
                    "http://127.0.0.1:8000 (the server's address, without /v1)"
                )
        return self
