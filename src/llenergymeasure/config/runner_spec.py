"""Runner specifications: ``local``, ``docker``, ``docker:<image>``, ``slurm`` (``singularity:<path>`` parses)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from llenergymeasure.backends import registry
from llenergymeasure.errors import RunnerError

RunnerKind = Literal["local", "docker", "singularity", "slurm"]

ACCEPTED = "local, docker, docker:<image>, slurm (singularity:<path> is planned)"


class RunnerSpec(BaseModel):
    """A parsed runner value; ``image`` is set for docker (the backend default when not given)."""

    model_config = ConfigDict(frozen=True)

    kind: RunnerKind
    image: str | None = None
    path: str | None = None

    def describe(self) -> str:
        if self.kind == "docker":
            return f"docker:{self.image}" if self.image else "docker"
        if self.kind == "singularity":
            return f"singularity:{self.path}"
        if self.kind == "slurm":
            return "slurm"
        return "local"


def parse_runner_spec(value: str, where: str = "runner") -> RunnerSpec:
    """Parse a runner value; anything else is a ``RunnerError`` naming ``where``."""
    raw = (value or "").strip()
    low = raw.lower()
    if low == "local":
        return RunnerSpec(kind="local")
    if low == "docker":
        return RunnerSpec(kind="docker")
    if low == "slurm":  # the cluster is described by the user config's slurm: section
        return RunnerSpec(kind="slurm")
    if low.startswith("docker:"):
        image = raw.split(":", 1)[1].strip()
        if not image:
            raise RunnerError(
                f"{where}: {value!r} names no image; write docker:<image>, e.g. "
                f"docker:{registry.EXAMPLE_IMAGE}"
            )
        return RunnerSpec(kind="docker", image=image)
    if low.startswith("singularity:"):
        path = raw.split(":", 1)[1].strip()
        if not path:
            raise RunnerError(
                f"{where}: {value!r} names no image file; write singularity:<path.sif>"
            )
        return RunnerSpec(kind="singularity", path=path)
    raise RunnerError(f"{where}: unknown runner {value!r}; accepted: {ACCEPTED}")
