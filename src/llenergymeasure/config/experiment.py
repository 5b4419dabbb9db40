"""``ExperimentConfig``: what one experiment measures (portable, infrastructure-agnostic).

One experiment is one model x one backend x one configuration. Nothing here says how or where it
runs (that is the user config and the runner) and nothing here is a fact about the machine (that
is the environment snapshot).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from llenergymeasure.backends import registry
from llenergymeasure.backends.section import BackendSection
from llenergymeasure.config.gpus import check_gpu_list, hashable_gpus
from llenergymeasure.config.loading import LoadedYaml, read_yaml_file
from llenergymeasure.config.parsing import STUDY_KEYS, is_study_data, parse_model
from llenergymeasure.config.paths import resolve_experiment_paths
from llenergymeasure.config.quality import QualityConfig, requests_problem
from llenergymeasure.config.workload import LoadConfig, SLOConfig, WorkloadKind
from llenergymeasure.errors import ConfigError
from llenergymeasure.models.presets import (
    SYNTHETIC_PREFIX,
    SYNTHETIC_PRESETS,
    is_synthetic,
    preset_name,
)

#: a backend's canonical name: one registered in ``backends/registry.py``
BackendName = str


Precision = Literal["fp32", "fp16", "bf16"]
PRECISION_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


def normalise_backend(value: Any) -> Any:
    """A backend name with its alias replaced (``trtllm`` -> the TensorRT-LLM backend's name)."""
    if isinstance(value, str):
        return registry.canonical(value)
    return value


def _known_backend(value: str) -> str:
    if value not in registry.names():
        alias_list = ", ".join(registry.aliases())
        raise ValueError(
            f"unknown backend {value!r}; use one of {', '.join(registry.names())}"
            + (f" (or an alias: {alias_list})" if alias_list else "")
        )
    return value


#: ``backend``: any registered name (checked when a config is validated, so a backend registered
#: at run time is accepted); the JSON schema lists the backends registered at import
BackendField = Annotated[
    str,
    AfterValidator(_known_backend),
    WithJsonSchema({"enum": list(registry.names()), "type": "string"}),
]


class _Strict(BaseModel):
    # Frozen: a config is a value; its hash is computed once and can never go stale.
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetConfig(_Strict):
    """Where prompts come from.

    ``source`` is ``synthetic`` (random token ids with exactly ``input_tokens`` tokens each,
    deterministic by seed), a path to a ``.jsonl`` file (one ``{"prompt": ...}`` object a line), or
    a Hugging Face dataset name (needs the ``datasets`` package and a reachable hub).
    """

    source: str = "synthetic"
    input_tokens: int = Field(
        128, ge=1, le=1_000_000, description="synthetic prompt length in tokens"
    )
    field: str = Field(
        "prompt", description="JSONL key or HF dataset column holding the prompt text"
    )
    split: str = Field("train", description="HF dataset split")
    subset: str | None = Field(None, description="HF dataset configuration name")

    @property
    def kind(self) -> Literal["synthetic", "jsonl", "hf"]:
        if self.source == "synthetic":
            return "synthetic"
        if self.source.endswith((".jsonl", ".json")) or Path(self.source).exists():
            return "jsonl"
        return "hf"


class DecodingConfig(_Strict):
    """Decoding. ``temperature: 0`` (the default) is greedy decoding."""

    temperature: float = Field(0.0, ge=0.0, le=10.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0 disables top-k")
    fixed_output_length: bool = Field(
        True,
        description="generate exactly max_output_tokens per prompt (EOS ignored) so runs are comparable",
    )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class WarmupConfig(_Strict):
    """Warmup before measuring; never inside the measured window.

    ``mode: cv`` (the default) runs at least ``runs`` batches and stops once the coefficient of
    variation of the per-token latency of the last ``window`` batches is under ``cv_threshold``,
    or after ``max_runs`` batches or ``max_s`` seconds (recorded as not converged). ``mode:
    fixed`` runs exactly ``runs`` batches. ``runs`` given without ``mode`` means ``fixed``.
    """

    mode: Literal["fixed", "cv"] = "cv"
    runs: int = Field(2, ge=0, le=10_000)
    max_runs: int = Field(20, ge=1, le=10_000)
    cv_threshold: float = Field(0.02, gt=0.0, lt=1.0)
    window: int = Field(3, ge=2, le=1000)
    max_s: float = Field(
        120.0, gt=0.0, le=86_400.0, description="cv mode: start no warmup batch after this long"
    )

    @model_validator(mode="before")
    @classmethod
    def _runs_alone_means_fixed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "runs" in data and "mode" not in data:
            return {**data, "mode": "fixed"}
        return data

    @model_validator(mode="after")
    def _bounds(self) -> WarmupConfig:
        if self.mode == "cv" and self.max_runs < max(self.runs, self.window):
            raise ValueError(
                f"max_runs ({self.max_runs}) must be at least runs ({self.runs}) and window "
                f"({self.window}) when mode is cv"
            )
        return self


#: the measured window's default minimum length on a GPU (ML.ENERGY's steady-state rule: >= 30 s)
GPU_MIN_WINDOW_S = 30.0


class MeasurementConfig(_Strict):
    """How long the measured window lasts: whole passes over the prompts, repeated by time.

    The harness runs all ``n`` prompts once, then again, until the window has lasted at least
    ``min_window_s``; it never starts a pass that would end after ``max_window_s`` (judged by the
    passes so far). Tokens and energy count over every pass; the result records how many.
    """

    min_window_s: float | None = Field(
        None,
        ge=0.0,
        le=86_400.0,
        description="repeat passes until the window lasts this long; none: 30 s on a GPU, 0 on the CPU",
    )
    max_window_s: float | None = Field(
        None, gt=0.0, le=86_400.0, description="start no pass that would end after this"
    )
    compile_cache: Literal["on", "off", "refresh"] = Field(
        "on",
        description="persistent compile cache: on reuses it, refresh empties it first, off "
        "compiles cold; changes how long a run takes, not what it measures (not in config_hash)",
    )

    @model_validator(mode="after")
    def _order(self) -> MeasurementConfig:
        if (
            self.min_window_s is not None
            and self.max_window_s is not None
            and self.max_window_s < self.min_window_s
        ):
            raise ValueError(
                f"max_window_s ({self.max_window_s}) is below min_window_s ({self.min_window_s}); "
                "raise max_window_s or lower min_window_s"
            )
        return self

    def resolved_min_window_s(self, on_gpu: bool) -> float:
        """``min_window_s``, or its default for where the experiment runs."""
        if self.min_window_s is not None:
            return self.min_window_s
        return GPU_MIN_WINDOW_S if on_gpu else 0.0


class BaselineConfig(_Strict):
    """Idle-power baseline, measured before the measured window and cached on disk."""

    enabled: bool = True
    duration_s: float = Field(15.0, gt=0.0, le=3600.0)
    cache_ttl_s: float = Field(3600.0, ge=0.0, description="0 disables the cache")


class _ExperimentHead(_Strict):
    """The fields before the backend sections (their order is the order of a dumped config)."""

    name: str | None = Field(None, description="a label for tables; not part of config_hash")
    model: str = Field(..., description="HF hub id, local directory, or synthetic/<preset>")
    backend: BackendField = registry.DEFAULT_BACKEND
    precision: Precision = "bf16"
    batch_size: int = Field(1, ge=1, le=65_536)
    n: int = Field(100, ge=1, le=10_000_000, description="number of prompts in the measured window")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    max_input_tokens: int = Field(512, ge=1, description="prompts longer than this are truncated")
    max_output_tokens: int = Field(128, ge=1, description="new tokens per prompt")
    decoding: DecodingConfig = Field(default_factory=DecodingConfig)
    warmup: WarmupConfig = Field(default_factory=WarmupConfig)
    measurement: MeasurementConfig = Field(default_factory=MeasurementConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    seed: int = Field(42, ge=0)
    timeout_s: float | None = Field(
        None, gt=0, description="kill the experiment after this long (default: none)"
    )


def _section_fields() -> dict[str, Any]:
    """One optional field per registered backend, named after it, holding its section."""
    taken = set(_ExperimentHead.model_fields) | {"workload", "load", "slo", "gpus"}
    fields: dict[str, Any] = {}
    for spec in registry.specs():
        if spec.name in taken:
            raise ValueError(
                f"backend name {spec.name!r} is already a field of ExperimentConfig; rename the backend"
            )
        fields[spec.name] = (spec.section | None, None)
    return fields


if TYPE_CHECKING:
    _ExperimentSections = _ExperimentHead
else:
    # The sections sit between the head and the rest so a dumped config keeps its key order.
    _ExperimentSections = create_model(
        "_ExperimentSections", __base__=_ExperimentHead, **_section_fields()
    )


class ExperimentConfig(_ExperimentSections):
    """One model x backend x configuration. Load with ``ExperimentConfig.from_yaml(path)``."""

    # Besides the fields below and those of ``_ExperimentHead``, every backend registered when this
    # module is imported has an optional section field named after it (``backends/registry.py``).

    workload: WorkloadKind = Field(
        "offline", description="offline: all prompts at once; serving: requests under a load"
    )
    load: LoadConfig | None = Field(None, description="workload: serving: request arrivals")
    slo: SLOConfig | None = Field(None, description="latency target for goodput (serving)")
    gpus: list[int] | None = Field(
        None,
        description="GPUs the experiment holds: CUDA indices as llem sees them (config/gpus.py); "
        "none: the runner's default",
    )
    quality: QualityConfig | None = Field(
        None, description="lm-eval tasks run after the measured window (docs/quality.md)"
    )

    # -- validators --------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "backend" in data:
            data["backend"] = normalise_backend(data["backend"])
        for spec in registry.specs():
            for alias in spec.section_aliases:
                if alias in data:
                    if spec.name in data:
                        raise ValueError(
                            f"give the {spec.title} section once, as `{spec.name}:` (not also "
                            f"`{alias}:`)"
                        )
                    data[spec.name] = data.pop(alias)
        if isinstance(data.get("precision"), str):
            p = data["precision"].strip().lower()
            data["precision"] = PRECISION_ALIASES.get(p, p)
        if isinstance(data.get("dataset"), str):
            data["dataset"] = {"source": data["dataset"]}
        return data

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError(
                "model must not be empty; give a HF hub id, a local path or synthetic/<preset>"
            )
        if is_synthetic(v) and preset_name(v) not in SYNTHETIC_PRESETS:
            known = ", ".join(SYNTHETIC_PREFIX + k for k in SYNTHETIC_PRESETS)
            raise ValueError(f"unknown synthetic preset {v!r}; available: {known}")
        return v

    @field_validator("gpus")
    @classmethod
    def _gpus(cls, v: list[int] | None) -> list[int] | None:
        return check_gpu_list(v)

    @model_validator(mode="after")
    def _sections(self) -> ExperimentConfig:
        for section in self._section_names():
            if getattr(self, section) is not None and section != self.backend:
                raise ValueError(
                    f"a `{section}:` section is given but backend is {self.backend!r}; remove the "
                    f"section or set `backend: {section}`"
                )
        self._check_workload()
        if self.gpus is not None:
            problem = self.backend_section().gpus_problem(self.gpus, self.backend)
            if problem:
                raise ValueError(problem)
        if self.quality is not None and self.workload != "offline":
            raise ValueError(
                "quality: runs after an offline measured window; remove it from a "
                "`workload: serving` experiment (measure quality in an offline experiment of the "
                "same engine settings)"
            )
        if self.quality is not None:  # tasks a backend cannot score (docs/quality.md)
            problem = requests_problem(
                self.quality.output_types(),
                self.backend_section().quality_requests(),
                registry.get(self.backend).title,
            )
            if problem:
                raise ValueError(problem)
        if self.dataset.kind == "synthetic" and self.dataset.input_tokens > self.max_input_tokens:
            raise ValueError(
                f"dataset.input_tokens ({self.dataset.input_tokens}) exceeds max_input_tokens "
                f"({self.max_input_tokens}); raise max_input_tokens or shorten the prompts"
            )
        return self

    def _check_workload(self) -> None:
        if self.workload == "offline":
            for key in ("load", "slo"):
                if getattr(self, key) is not None:
                    raise ValueError(
                        f"a `{key}:` section is given but workload is 'offline'; set "
                        "`workload: serving` or remove the section"
                    )
            return
        if self.load is None:
            raise ValueError(
                "workload: serving needs a `load:` section, e.g. load: {rate_rps: 4, "
                "n_requests: 200} (open loop) or load: {concurrency: 8, duration_s: 60}"
            )
        if not registry.get(self.backend).has_serving:
            raise ValueError(
                f"workload: serving is not available for backend {self.backend!r}; use one of "
                f"{', '.join(registry.serving_names())}"
            )
        if self.load.search is not None and self.slo is None:
            raise ValueError(
                "load.search finds the highest rate meeting the SLO, but no `slo:` is given; add "
                "e.g. slo: {ttft_ms: 500}"
            )
        if self.load.lengths == "dataset" and self.dataset.kind == "synthetic":
            raise ValueError(
                "load.lengths: dataset needs a JSONL or Hugging Face dataset.source (synthetic "
                "prompts have no reference outputs); use lengths: fixed"
            )

    # -- derived -----------------------------------------------------------------------------

    @classmethod
    def _section_names(cls) -> list[str]:
        """The backends that have a section field (those registered when this module loaded)."""
        return [name for name in registry.names() if name in cls.model_fields]

    def backend_section(self) -> BackendSection:
        """The chosen backend's section, with defaults when the YAML gave none."""
        spec = registry.get(self.backend)
        section = getattr(self, spec.name) if spec.name in self._section_names() else None
        if isinstance(section, BackendSection):
            return section
        return spec.section()

    def hashable_dict(self) -> dict[str, Any]:
        """The resolved config as canonical data: defaults filled in, the label removed."""
        data = self.model_dump(mode="json", exclude={"name"})
        if self.workload == "offline":  # keeps every offline hash what it was before serving
            for key in ("workload", "load", "slo"):
                data.pop(key, None)
        for spec in registry.specs():  # a backend added later changes no other config's hash
            if not spec.section_in_every_hash and data.get(spec.name, 0) is None:
                data.pop(spec.name)
        if isinstance(data.get("load"), dict) and data["load"].get("search", 0) is None:
            data["load"].pop("search")  # absent when None: every earlier hash unchanged
        data[self.backend] = self.backend_section().model_dump(mode="json")
        hashable_gpus(data, self.gpus)  # absent when None: every earlier hash unchanged
        if self.quality is None:  # absent when None: every earlier hash unchanged
            data.pop("quality", None)
        # how long a run takes, not what it measures (docs/performance.md): never hashed
        data.get("measurement", {}).pop("compile_cache", None)
        return data

    @cached_property
    def config_hash(self) -> str:
        """SHA-256 of the canonical JSON of the resolved config (64 hex digits)."""
        return canonical_hash(self.hashable_dict())

    @property
    def short_hash(self) -> str:
        return self.config_hash[:8]

    def label(self) -> str:
        """A short human label: the name, else model/backend/batch size."""
        if self.name:
            return self.name
        return f"{self.model.split('/')[-1]}/{self.backend}/bs{self.batch_size}"

    # -- loading -----------------------------------------------------------------------------

    # Both build on the model-agnostic reader and guards (config/loading.py, config/parsing.py),
    # which know no model, so no loader sits above this class and below it at once.

    @classmethod
    def from_yaml(cls, path: str | Path) -> ExperimentConfig:
        """Load and validate an experiment YAML file; errors carry file, line and field path."""
        loaded = read_yaml_file(path)
        if is_study_data(loaded.data):
            raise ConfigError(
                f"{path}: this is a study file (it has "
                f"{', '.join(sorted(STUDY_KEYS & set(loaded.data)))}); "
                "load it with StudyConfig.from_yaml or run it with `llem run`"
            )
        return cls.from_dict(
            loaded.data, source=str(path), loaded=loaded, base_dir=Path(path).parent
        )

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        source: str = "<dict>",
        loaded: LoadedYaml | None = None,
        base_dir: Path | None = None,
    ) -> ExperimentConfig:
        """Validate a mapping with the same guards and messages as ``from_yaml``.

        ``base_dir``: the directory relative local paths (``model``, ``dataset.source``) are
        resolved against, that of the file they came from (``config/paths.py``); without it they
        stay relative to the current directory.
        """
        if base_dir is not None:
            data = resolve_experiment_paths(data, base_dir)
        return parse_model(cls, data, what="experiment config", source=source, loaded=loaded)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_hash(data: Any) -> str:
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()
