"""Which runner each backend uses, and where that choice came from.

Precedence, highest first (decision E of the architecture decisions):

1. ``LLEM_RUNNER_<BACKEND>`` environment variable (and a backend's other names for it,
   ``extra_env_vars`` in ``backends/registry.py``)
2. ``runners.<backend>`` in the user config
3. ``llem run --runner`` (the ``cli_runner`` argument)
4. ``local``

Experiment and study files never choose a runner.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from llenergymeasure.backends import registry
from llenergymeasure.config.runner_spec import RunnerSpec, parse_runner_spec
from llenergymeasure.config.user import UserConfig
from llenergymeasure.errors import RunnerError


class ResolvedRunner(BaseModel):
    """A backend's runner with its provenance (``source``), stored with every result."""

    model_config = ConfigDict(frozen=True)

    backend: str
    kind: str
    image: str | None = None
    source: str

    @property
    def spec(self) -> RunnerSpec:
        return RunnerSpec(kind=self.kind, image=self.image)

    def describe(self) -> str:
        if self.kind == "slurm":
            return f"slurm (docker:{self.image})" if self.image else "slurm"
        return f"docker:{self.image}" if self.kind == "docker" else self.kind

    @property
    def containerised(self) -> bool:
        """Each run in its own image: docker, or slurm with ``slurm.container: docker:<image>``."""
        return self.kind == "docker" or (self.kind == "slurm" and self.image is not None)


def resolve_runner(
    backend: str,
    user_config: UserConfig | None = None,
    cli_runner: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedRunner:
    """Resolve one backend's runner with the documented precedence."""
    env = os.environ if environ is None else environ
    spec_of_backend = registry.get(backend)
    candidates: list[tuple[str, str, str]] = []  # (value, source, where)
    for name in spec_of_backend.env_vars:
        if env.get(name, "").strip():
            candidates.append((env[name], f"env:{name}", name))
            break
    if user_config is not None and backend in user_config.runners:
        path = user_config.source_path or "user config"
        candidates.append(
            (user_config.runners[backend], f"user_config:{path}", f"{path}: runners.{backend}")
        )
    if cli_runner:
        candidates.append((cli_runner, "cli:--runner", "--runner"))
    candidates.append(("local", "default", "default"))
    value, source, where = candidates[0]
    spec = parse_runner_spec(value, where=where)
    if spec.kind == "singularity":
        raise RunnerError(
            f"{where}: singularity runners ({value!r}) are not supported yet; use local or docker"
        )
    image = spec.image or (spec_of_backend.image if spec.kind == "docker" else None)
    if spec.kind == "docker" and image is None:
        raise RunnerError(
            f"{where}: backend {backend!r} has no default image; name one, e.g. "
            f"docker:llenergymeasure:{backend}"
        )
    if spec.kind == "slurm":
        # SLURM jobs run the harness on the node, or in the user config's slurm.container image
        image = user_config.slurm.container_image if user_config is not None else None
    return ResolvedRunner(backend=backend, kind=spec.kind, image=image, source=source)


def resolve_runners(
    backends: Iterable[str],
    user_config: UserConfig | None = None,
    cli_runner: str | None = None,
    environ: Mapping[str, str] | None = None,
    check_multi_backend: bool = True,
) -> dict[str, ResolvedRunner]:
    """Resolve every backend of a study; a multi-backend study must run every backend in Docker.

    Different engines (vLLM, TensorRT-LLM, PyTorch builds) cannot share one Python environment,
    so a study mixing backends with any non-Docker runner is refused before anything runs.
    """
    resolved = {
        b: resolve_runner(b, user_config, cli_runner, environ) for b in sorted(set(backends))
    }
    kinds = {r.kind for r in resolved.values()}
    if "slurm" in kinds and len(kinds) > 1:
        detail = ", ".join(
            f"{r.backend}={r.describe()} (from {r.source})" for r in resolved.values()
        )
        raise RunnerError(
            f"one study runs either on the SLURM cluster or on this machine, not both: {detail}. "
            "Give every backend the same runner (e.g. `--runner slurm` and no other setting), or "
            "split the study"
        )
    if check_multi_backend and len(resolved) > 1:
        local = [r for r in resolved.values() if not r.containerised]
        if local:
            detail = ", ".join(f"{r.backend}={r.describe()} (from {r.source})" for r in local)
            raise RunnerError(
                f"this study uses {len(resolved)} backends ({', '.join(resolved)}), which cannot share "
                f"one Python environment, so each must run in Docker; not Docker: {detail}. Run with "
                "`--runner docker`, set `runners: {<backend>: docker}` in the user config, or set "
                "LLEM_RUNNER_<BACKEND>=docker; or split the study by backend"
            )
    return resolved


def cli_runner_overrides(
    resolved: Mapping[str, ResolvedRunner], cli_runner: str | None
) -> list[str]:
    """One line per backend whose ``--runner`` lost to an env var or the user config: which source
    won and how to change it (the precedence is the design; losing silently is the surprise)."""
    if not cli_runner:
        return []
    lines = []
    for backend, r in sorted(resolved.items()):
        if r.source in ("cli:--runner", "default"):
            continue
        try:
            wanted = resolve_runner(backend, None, cli_runner, environ={})
        except RunnerError:
            continue  # the --runner value itself is refused elsewhere, with its own message
        if wanted.describe() == r.describe():
            continue  # same runner either way: nothing lost
        if r.source.startswith("env:"):
            var = r.source.removeprefix("env:")
            how = f"unset {var} to let --runner choose"
            won = f"environment variable {var}"
        else:
            path = r.source.removeprefix("user_config:")
            var = registry.get(backend).env_vars[0]
            how = (
                f"remove `runners.{backend}` from {path} to let --runner choose, or set "
                f"{var}={cli_runner} for this call (env > user config > --runner)"
            )
            won = f"runners.{backend} in the user config {path}"
        lines.append(
            f"--runner {cli_runner} is not used for {backend}: {won} takes precedence and gives "
            f"{r.describe()}; {how}"
        )
    return lines
