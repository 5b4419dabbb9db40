"""What every llem lm-eval model shares: token counts, stop sequences, greedy-only generation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llenergymeasure.errors import ExperimentError

#: lm-eval's own default of new tokens when a task's gen_kwargs set none
DEFAULT_MAX_GEN_TOKS = 256


@dataclass
class TokenCounts:
    """Tokens one adapter sent to the engine (scored or prompted) and received (generated)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    def reset(self) -> None:
        self.requests = self.input_tokens = self.output_tokens = 0


def stop_sequences(gen_kwargs: dict[str, Any], eos_text: str | None) -> tuple[list[str], int]:
    """lm-eval's normalised stop sequences (EOS added) and new-token budget of one request."""
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

    kwargs = normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_MAX_GEN_TOKS)
    if kwargs.get("do_sample"):
        raise ExperimentError(
            f"a task asks for sampled generation ({gen_kwargs}); llem's quality adapters decode "
            "greedily so that scores are reproducible; set do_sample: false in the task's "
            "generation_kwargs",
            phase="quality",
        )
    return handle_stop_sequences(kwargs.get("until"), eos=eos_text), int(kwargs["max_gen_toks"])


def cut_at_stop(text: str, until: list[str]) -> str:
    """The generated text up to its first stop sequence (lm-eval's post-processing)."""
    from lm_eval.models.utils import postprocess_generated_text

    return str(postprocess_generated_text(generation=text, stop=until, think_end_token=None))
