"""``BackendSection``: the base of every backend's config section (``pytorch:``, ``vllm:``, ...).

A section is pure data (a frozen pydantic model that refuses unknown keys) living in its backend's
package (``backends/<name>/section.py``) and named in the registry (``backends/registry.py``),
which makes it a field of ``ExperimentConfig``. Besides its fields, a section answers the two
questions about GPUs that the config and the study scheduler ask of every backend, so that neither
has to know which backend it is looking at.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class BackendSection(BaseModel):
    """A backend's knobs; with no field of its own it is the section of a backend that has none."""

    # Frozen: a config is a value; its hash is computed once and can never go stale.
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: lm-eval request types the backend's quality adapter computes (docs/quality.md): every
    #: backend generates; a backend whose package has a log-likelihood adapter adds those
    QUALITY_REQUESTS: ClassVar[frozenset[str]] = frozenset({"generate_until"})

    def quality_requests(self) -> frozenset[str]:
        """``QUALITY_REQUESTS``, or fewer where a setting limits them (openai ``api: chat``)."""
        return self.QUALITY_REQUESTS

    def gpus_problem(self, gpus: list[int], backend: str) -> str | None:
        """Why an experiment's ``gpus`` list does not fit these settings, or None when it does.

        The default accepts any list: a backend whose GPU count follows from its settings
        (parallel sizes) overrides this.
        """
        return None

    def gpus_needed(self) -> int:
        """How many GPUs one run holds when the experiment lists none (the scheduler's count)."""
        return 1

    def planned_devices(self, visible: int) -> list[int]:
        """The CUDA devices (of the ``visible`` ones) the engine will use when the experiment
        lists no ``gpus``, known before the load (the load window's meter): the first
        ``gpus_needed()``."""
        return list(range(min(visible, self.gpus_needed())))

    def spread_setting(self, backend: str) -> str | None:
        """The setting that spreads the model over however many GPUs it is given, as
        ``section.field = value``, when set: such a run must list its ``gpus`` when runs share a
        machine (``execution.concurrent_runs``), else None."""
        return None


class ParallelSection(BackendSection):
    """A section whose GPU count is ``tensor x pipeline`` parallel size (``PARALLEL_FIELDS``)."""

    #: the names of the tensor and pipeline parallel size fields, in that order
    PARALLEL_FIELDS: ClassVar[tuple[str, str]] = ("tensor_parallel_size", "pipeline_parallel_size")

    def gpus_needed(self) -> int:
        tp, pp = (int(getattr(self, k)) for k in self.PARALLEL_FIELDS)
        return tp * pp

    def gpus_problem(self, gpus: list[int], backend: str) -> str | None:
        names = self.PARALLEL_FIELDS
        tp, pp = (int(getattr(self, k)) for k in names)
        n = len(gpus)
        if n != tp * pp:
            return (
                f"gpus: {gpus} holds {n} GPU(s) but {backend}.{names[0]} ({tp}) x "
                f"{backend}.{names[1]} ({pp}) uses {tp * pp}; list {tp * pp} GPU(s) or change the "
                "parallel sizes"
            )
        return None
