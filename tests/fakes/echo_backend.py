"""A throwaway backend added through the registry alone (issue 24 item 8): ``echo``.

It proves that a backend is a package-like module plus one ``BackendSpec``: nothing else in the
package names it. It loads nothing, answers every prompt with the prompt's own tokens (cycled to
the budget) and reports fixed latencies from its ``echo:`` section, so a run's latency figures are
exact. Registered in a fresh process by ``LLEM_BACKENDS=tests.fakes.echo_backend:SPEC`` (the
registry imports this module when the package is imported; the local runner's child inherits the
variable).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt, RequestRecord
from llenergymeasure.backends.registry import BackendSpec
from llenergymeasure.backends.section import BackendSection

if TYPE_CHECKING:
    from llenergymeasure.config.experiment import ExperimentConfig

#: the echo tokenizer's vocabulary size; id 0 is its one special token
VOCAB = 64


class EchoConfig(BackendSection):
    """The ``echo:`` section: the fixed latencies every request reports."""

    ttft_ms: float = Field(20.0, gt=0.0, description="time to the first token")
    itl_ms: float = Field(5.0, gt=0.0, description="time between later tokens")


class EchoTokenizer:
    """Just what the prompt loaders use of a transformers tokenizer: ids ``t<i>`` words."""

    def __init__(self) -> None:
        self.all_special_ids = [0]

    def __len__(self) -> int:
        return VOCAB

    def get_added_vocab(self) -> dict[str, int]:
        return {}

    def batch_decode(self, rows: list[list[int]], skip_special_tokens: bool = False) -> list[str]:
        return [" ".join(f"t{i}" for i in row) for row in rows]

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        start = [0] if add_special_tokens else []
        return {"input_ids": [start + [len(w) % VOCAB for w in t.split()] for t in texts]}


class EchoBackend:
    name = "echo"

    def __init__(self, config: ExperimentConfig, model_path: str) -> None:
        section = config.backend_section()
        assert isinstance(section, EchoConfig)
        self.section = section
        self.model_path = model_path
        self.calls = 0

    def load(self) -> LoadInfo:
        return LoadInfo(parameters=0, model_path=self.model_path, weights="random", device="cpu")

    def tokenizer(self) -> EchoTokenizer:
        return EchoTokenizer()

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        self.calls += 1
        ttft_s, itl_s = self.section.ttft_ms / 1000.0, self.section.itl_ms / 1000.0
        records, outputs = [], []
        for p in prompts:
            n = p.max_new_tokens
            outputs.append([p.token_ids[i % len(p.token_ids)] for i in range(n)])
            records.append(
                RequestRecord(
                    input_tokens=len(p.token_ids),
                    output_tokens=n,
                    latency_s=ttft_s + itl_s * (n - 1),
                    ttft_s=ttft_s,
                    itl_s=[itl_s] * (n - 1),
                )
            )
        duration_s = max((r.latency_s or 0.0) for r in records) if records else 0.0
        return GenerationOutput(
            requests=records,
            duration_s=duration_s,
            timing_source="echo-fixed",
            output_token_ids=outputs,
        )

    def synchronize(self) -> None:
        return None

    def peak_memory_bytes(self) -> int | None:
        return None

    def close(self) -> None:
        return None


def create(config: ExperimentConfig, model_path: str, cache_dir: Path | None = None) -> EchoBackend:
    """The registry's factory."""
    return EchoBackend(config, model_path)


SPEC = BackendSpec(
    name="echo",
    title="Echo (a test double)",
    section=EchoConfig,
    factory="tests.fakes.echo_backend:create",
)
