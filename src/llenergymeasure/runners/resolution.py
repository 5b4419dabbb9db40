"""Which runner each backend uses, and where that choice came from.

Precedence, highest first (decision E of the architecture decisions):

1. ``LLEM_RUNNER_<BACKEND>`` environment variable (and a backend's other names for it,
   ``extra_env_vars`` in ``backends/registry.py``)
2. ``runners.<backend>`` in the user config
3. ``llem run --runner`` (the ``cli_runner`` argument)
4. ``local``

Experiment and study files never choose a runner.

A docker runner's image is the backend's (the runner value's ``docker:<image>``, else the
registry's default image). A backend without an image of its own (openai: the server it launches
is another engine's) gets one image per experiment from its registry ``experiment_image`` hook,
through ``ResolvedRunner.for_experiment``; a runner value that names an image still wins.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from llenergymeasure.backends import registry
from llenergymeasure.config.runner_spec import RunnerSpec, parse_runner_spec
from llenergymeasure.config.user import UserConfig
from llenergymeasure.errors import RunnerError

if TYPE_CHECKING:
    from llenergymeasure.config.experiment import ExperimentConfig

#: the container's variable saying why its image was chosen, where it was chosen per experiment
#: (the harness records it: the openai backend's launch record)
IMAGE_SOURCE_ENV = "LLEM_CONTAINER_IMAGE_SOURCE"


class ResolvedRunner(BaseModel):
    """A backend's runner with its provenance (``source``), stored with every result."""

    model_config = ConfigDict(frozen=True)

    backend: str
    kind: str
    image: str | None = None
    source: str
    #: one experiment's image (``for_experiment``): why it was chosen, and whether llem is in it
    #: (False: an engine's release image, refused before a study; None: not known)
    image_source: str | None = Field(None, exclude=True)
    has_llem: bool | None = Field(None, exclude=True)
    #: what to do when the image has no llem (an image to build, the setting that names it)
    image_remedy: str | None = Field(None, exclude=True)
    #: docker, image per experiment: every backend's docker image as resolved here (backend ->
    #: (image, why)), for the ``experiment_image`` hook (a launched vLLM server runs in the
    #: vLLM backend's image)
    backend_images: tuple[tuple[str, tuple[str, str]], ...] = Field((), exclude=True)

    @property
    def spec(self) -> RunnerSpec:
        return RunnerSpec(kind=self.kind, image=self.image)

    @property
    def image_per_experiment(self) -> bool:
        """Docker with no image for the whole backend: each experiment's config names it."""
        return self.kind == "docker" and self.image is None

    def describe(self) -> str:
        if self.kind == "slurm":
            return f"slurm (docker:{self.image})" if self.image else "slurm"
        if self.image_per_experiment:
            return "docker (image per experiment)"
        return f"docker:{self.image}" if self.kind == "docker" else self.kind

    def for_experiment(self, config: ExperimentConfig) -> ResolvedRunner:
        """This runner for one experiment: its image, where the backend has none of its own."""
        if not self.image_per_experiment:
            return self
        hook = _experiment_image_hook(self.backend)
        chosen = hook(config.backend_section(), dict(self.backend_images).get)
        return self.model_copy(
            update={
                "image": chosen.image,
                "image_source": chosen.source,
                "has_llem": chosen.has_llem,
                "image_remedy": getattr(chosen, "remedy", None),
            }
        )

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
    per_experiment = spec.kind == "docker" and image is None
    if per_experiment and spec_of_backend.experiment_image is None:
        raise RunnerError(
            f"{where}: backend {backend!r} has no default image; name one, e.g. "
            f"docker:llenergymeasure:{backend}"
        )
    if spec.kind == "slurm":
        # SLURM jobs run the harness on the node, or in the user config's slurm.container image
        image = user_config.slurm.container_image if user_config is not None else None
    return ResolvedRunner(
        backend=backend,
        kind=spec.kind,
        image=image,
        source=source,
        backend_images=_backend_images(user_config, cli_runner, env) if per_experiment else (),
    )


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


def _backend_images(
    user_config: UserConfig | None, cli_runner: str | None, env: Mapping[str, str]
) -> tuple[tuple[str, tuple[str, str]], ...]:
    """Each backend with an image: the image its docker runner resolves to here, and why (the
    runner value that names it, else llem's default image)."""
    out: dict[str, tuple[str, str]] = {}
    for spec in registry.specs():
        if spec.image is None:
            continue
        resolved = resolve_runner(spec.name, user_config, cli_runner, env)
        if resolved.kind == "docker" and resolved.image and resolved.image != spec.image:
            where = _setting(resolved.source, spec.name)
            out[spec.name] = (resolved.image, f"the {spec.title} backend's image ({where})")
        else:
            out[spec.name] = (spec.image, f"llem's {spec.title} image")
    return tuple(out.items())  # hashable, as the frozen model is


def _setting(source: str, backend: str) -> str:
    """A runner source as the setting a user would change: ``runners.vllm in <path>``."""
    if source.startswith("env:"):
        return source.removeprefix("env:")
    if source.startswith("user_config:"):
        return f"runners.{backend} in {source.removeprefix('user_config:')}"
    return "--runner" if source == "cli:--runner" else source


def _experiment_image_hook(backend: str) -> Any:
    target = registry.get(backend).experiment_image
    if target is None:
        raise RunnerError(f"backend {backend!r} has no per-experiment image")
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def experiment_runners(
    runners: Mapping[str, ResolvedRunner], configs: Sequence[ExperimentConfig]
) -> list[ResolvedRunner]:
    """Each experiment's runner, its image resolved (``ResolvedRunner.for_experiment``)."""
    return [runners[c.backend].for_experiment(c) for c in configs]


def docker_images(
    runners: Mapping[str, ResolvedRunner], configs: Sequence[ExperimentConfig]
) -> list[str]:
    """The distinct images the docker runs of ``configs`` use, in first-use order."""
    images = [r.image for r in experiment_runners(runners, configs) if r.kind == "docker"]
    return list(dict.fromkeys(i for i in images if i))


def study_docker_images(
    runners: Mapping[str, ResolvedRunner], configs: Sequence[ExperimentConfig]
) -> list[str]:
    """Before a study: the distinct Docker images it runs, sorted, to check once each; a
    ``RunnerError`` first when one has no llem in it (``refuse_images_without_llem``)."""
    refuse_images_without_llem(runners, configs)
    return sorted(docker_images(runners, configs))


def refuse_images_without_llem(
    runners: Mapping[str, ResolvedRunner], configs: Sequence[ExperimentConfig]
) -> None:
    """``RunnerError`` before a study when an experiment's default image carries no llem (an
    engine's release image): its container could not run the harness. Names each image, the
    experiments that chose it and how to build one with llem."""
    lacking: dict[str, tuple[ResolvedRunner, list[str]]] = {}
    for config, r in zip(configs, experiment_runners(runners, configs), strict=True):
        if r.kind == "docker" and r.image and r.has_llem is False:
            lacking.setdefault(r.image, (r, []))[1].append(
                f"{config.label()} ({config.short_hash})"
            )
    if not lacking:
        return
    lines = []
    for image, (r, labels) in lacking.items():
        more = f" and {len(labels) - 3} more" if len(labels) > 3 else ""
        why = r.image_source or "default"
        hint = r.image_remedy or (
            f"Build an image with llem on top of it (docker/build-image.sh with --base {image}) "
            "and name that image"
        )
        lines.append(
            f"  - {image} ({why}), for {', '.join(labels[:3])}{more}: llenergymeasure is not in "
            f"it, so its container cannot run the harness. {hint}"
        )
    raise RunnerError(
        "these Docker images have no llenergymeasure in them; nothing was run:\n" + "\n".join(lines)
    )
