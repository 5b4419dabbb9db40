"""``StudyConfig``: a sweep of experiments repeated over cycles.

Grammar (all optional except that at least one experiment must come out):

``base``
    fields shared by every experiment.
``experiments``
    a list of experiments, each merged over ``base``.
``sweep``
    axes whose list values are crossed (Cartesian product). A dotted key reaches into a section,
    e.g. ``vllm.max_num_seqs: [64, 256]``. When ``experiments`` is also given, the grid is crossed
    with each experiment; an axis of a backend section (``vllm.*``) applies only to experiments of
    that backend.
``execution``
    how the study is run (cycles, order, gaps). Excluded from ``study_design_hash``.

Sweep points that fail validation are kept in ``expand_report().invalid`` with their reason and
shown by ``llem run --dry-run`` and in the study result; they are never silently dropped.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from llenergymeasure.backends import registry
from llenergymeasure.config.experiment import (
    ExperimentConfig,
    canonical_hash,
    normalise_backend,
)
from llenergymeasure.config.loading import (
    LoadedYaml,
    did_you_mean,
    format_path,
    read_yaml_file,
    validation_problems,
)
from llenergymeasure.config.parsing import is_study_data, parse_model
from llenergymeasure.config.paths import resolve_study_paths


class ExecutionConfig(BaseModel):
    """How a study is run. Gaps left ``None`` come from the user config, else the defaults."""

    model_config = ConfigDict(extra="forbid")

    n_cycles: int = Field(3, ge=1, le=10_000)
    cycle_order: Literal["sequential", "interleaved", "shuffled"] = "interleaved"
    shuffle_seed: int | None = Field(
        None, ge=0, description="seed of the shuffled order (default 0)"
    )
    config_gap_seconds: float | None = Field(None, ge=0, le=86_400)
    cycle_gap_seconds: float | None = Field(None, ge=0, le=86_400)
    vary_prompt_seed: bool = Field(
        True,
        description="cycle k draws its synthetic prompts with seed + k - 1 (recorded in each "
        "result's prompt_seed); false: every cycle sends the same prompts",
    )
    max_runs: int = Field(
        10_000,
        ge=1,
        description="refuse a study of more runs (sweep points x cycles) than this, before "
        "expanding it",
    )
    concurrent_runs: int = Field(
        1,
        ge=1,
        le=64,
        description="run up to this many experiments at once, each on its own GPUs of this node "
        "(study/concurrent.py); 1 (default): one at a time. Neighbours share the host, PCIe and "
        "cooling, so every result records them and warns neighbour_load",
    )


@dataclass
class InvalidPoint:
    """A sweep point that failed validation, and why."""

    index: int
    overrides: dict[str, Any]
    problems: list[str]

    def describe(self) -> str:
        parts = ", ".join(f"{k}={v!r}" for k, v in self.overrides.items()) or "(base)"
        return f"point {self.index} [{parts}]: " + "; ".join(self.problems)


def describe_invalid(points: list[InvalidPoint]) -> list[str]:
    """One line per distinct problem: points that fail the same way are named together
    (``points 0-2 [batch_size=1, 2, 4]: ...``), not repeated once per point."""
    groups: dict[tuple[str, ...], list[InvalidPoint]] = {}
    for p in points:
        groups.setdefault(tuple(p.problems), []).append(p)
    lines = []
    for problems, group in groups.items():
        if len(group) == 1:
            lines.append(group[0].describe())
            continue
        keys = list(dict.fromkeys(k for p in group for k in p.overrides))
        values = {
            k: ", ".join(dict.fromkeys(repr(p.overrides[k]) for p in group if k in p.overrides))
            for k in keys
        }
        where = "; ".join(f"{k}={v}" for k, v in values.items())
        idx = [p.index for p in group]
        span = (
            f"{idx[0]}-{idx[-1]}"
            if idx == list(range(idx[0], idx[-1] + 1))
            else ", ".join(map(str, idx))
        )
        lines.append(f"points {span} [{where}]: " + "; ".join(problems))
    return lines


def _sweep_heads() -> set[str]:
    """What a sweep axis may start with: an experiment field (or its alias) or a backend's
    section (``vllm.max_num_seqs``)."""
    fields = ExperimentConfig.model_fields
    heads = set(fields) | {f.alias for f in fields.values() if f.alias}
    return heads | set(registry.names()) | set(registry.aliases())


@dataclass
class SweepExpansion:
    experiments: list[ExperimentConfig] = field(default_factory=list)
    invalid: list[InvalidPoint] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    #: explicit ``experiments:`` items none of whose points is valid: index -> problems
    invalid_items: dict[int, list[str]] = field(default_factory=dict)
    #: sweep axes of a backend section that applied to no experiment
    unused_axes: list[str] = field(default_factory=list)
    #: the backends of the experiments (before any ``backend`` sweep axis)
    entry_backends: list[str] = field(default_factory=list)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = {}
            cur[p] = nxt
        elif not isinstance(nxt, dict):
            raise ValueError(f"cannot set {dotted!r}: {p!r} is not a mapping")
        cur = nxt
    cur[parts[-1]] = copy.deepcopy(value)


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``; nested mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _expand_dotted(data: dict[str, Any]) -> dict[str, Any]:
    """Turn ``{"vllm.max_num_seqs": 8}`` into ``{"vllm": {"max_num_seqs": 8}}`` (in base/experiments)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(key, str) and "." in key:
            _set_dotted(out, key, value)
        else:
            out = deep_merge(out, {key: value})
    return out


class StudyConfig(BaseModel):
    """A study: experiments and/or a sweep over a shared base, run over ``execution.n_cycles``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("study", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    base: dict[str, Any] = Field(default_factory=dict)
    experiments: list[dict[str, Any]] = Field(default_factory=list)
    sweep: dict[str, list[Any]] = Field(default_factory=dict)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)

    _expansion: SweepExpansion | None = PrivateAttr(default=None)

    @field_validator("experiments", mode="before")
    @classmethod
    def _experiments_are_mappings(cls, v: Any) -> Any:
        if isinstance(v, list):
            out = []
            for i, item in enumerate(v):
                if isinstance(item, ExperimentConfig):
                    item = item.model_dump(mode="json", exclude_none=True)
                if not isinstance(item, dict):
                    raise ValueError(f"experiments[{i}] must be a mapping of experiment fields")
                out.append(item)
            return out
        return v

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep_lists(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        for key, values in v.items():
            if not isinstance(values, list):
                raise ValueError(
                    f"sweep.{key} must be a list of values to sweep over, got {values!r}; write "
                    f"`{key}: [{values}]` for a single value, or move it to `base:`"
                )
            if not values:
                raise ValueError(f"sweep.{key} is an empty list; give at least one value")
        unknown = [k for k in v if str(k).split(".")[0] not in _sweep_heads()]
        if unknown:
            # said once here, not once per sweep point with every accepted field
            raise ValueError(
                "; ".join(
                    f"sweep.{k}: {str(k).split('.')[0]!r} is not an experiment field"
                    + did_you_mean(str(k).split(".")[0], _sweep_heads())
                    for k in unknown
                )
            )
        return v

    @model_validator(mode="after")
    def _non_empty(self) -> StudyConfig:
        if not self.experiments and not self.sweep and not self.base:
            raise ValueError("a study needs `experiments:`, `sweep:` or `base:`")
        self._check_size()  # before expanding: a million-point sweep is refused at once
        expansion = self.expand_report()
        problems = [
            f"experiments[{i}]: " + "; ".join(p) for i, p in expansion.invalid_items.items()
        ]
        for axis in expansion.unused_axes:
            present = ", ".join(expansion.entry_backends)
            hint = (
                "; a `backend` sweep axis does not carry backend-section axes: list one "
                "experiment per backend under `experiments:` instead"
                if "backend" in self.sweep
                else ""
            )
            problems.append(
                f"sweep.{axis}: applies to no experiment: it sets the "
                f"{normalise_backend(axis.split('.')[0])} section, and the experiments' backends "
                f"are {present}{hint}"
            )
        if problems:
            raise ValueError(
                "the study cannot run as written (an experiment you list runs as given or not "
                "at all):\n" + "\n".join("    " + p for p in problems)
            )
        if not expansion.experiments:
            raise ValueError(
                "no valid experiment results from this study:\n"
                + "\n".join("    " + line for line in describe_invalid(expansion.invalid))
            )
        return self

    @classmethod
    def misplaced_field_hint(cls, loc: tuple[Any, ...]) -> str | None:
        """For an unknown top-level key that is an experiment field: where it belongs."""
        if len(loc) == 1 and isinstance(loc[0], str):
            head = loc[0].split(".")[0]
            if head in ExperimentConfig.model_fields:
                return (
                    f" (`{loc[0]}` is an experiment field: a study takes it under `base:`, "
                    "shared by every experiment, or in each item of `experiments:`)"
                )
        return None

    # -- expansion ---------------------------------------------------------------------------

    def _entries(self) -> list[tuple[dict[str, Any], list[tuple[str, list[Any]]]]]:
        """Each experiment (``base`` merged with an ``experiments`` item) with its sweep axes."""
        base = _expand_dotted(self.base)
        out = []
        for entry in [_expand_dotted(e) for e in self.experiments] or [{}]:
            merged = deep_merge(base, entry)
            backend = normalise_backend(merged.get("backend", registry.DEFAULT_BACKEND))
            axes = []
            for key, values in self.sweep.items():
                head = key.split(".")[0]
                if (
                    "." in key
                    and head in registry.section_keys()
                    and normalise_backend(head) != backend
                ):
                    continue
                axes.append((key, values))
            out.append((entry, axes))
        return out

    def _check_size(self) -> None:
        """Refuse more than ``execution.max_runs`` runs, counted without expanding anything."""
        points = 0
        shapes = []
        for _, axes in self._entries():
            n = 1
            for _, values in axes:
                n *= len(values)
            points += n
            shapes.append(" x ".join(f"{k} ({len(v)})" for k, v in axes) or "(no sweep)")
        runs = points * self.execution.n_cycles
        if runs > self.execution.max_runs:
            axes_text = "; ".join(dict.fromkeys(shapes))
            raise ValueError(
                f"this study would make {runs:,} runs ({points:,} sweep points x "
                f"{self.execution.n_cycles} cycles; axes: {axes_text}), more than "
                f"execution.max_runs = {self.execution.max_runs:,}. Sweep fewer values, or raise "
                "execution.max_runs if you mean it"
            )

    def expand_report(self) -> SweepExpansion:
        """Every concrete experiment, plus the sweep points that failed and why."""
        if self._expansion is not None:
            return self._expansion
        base = _expand_dotted(self.base)
        out = SweepExpansion()
        seen: dict[str, int] = {}
        index = 0
        used_axes: set[str] = set()
        backends: dict[str, None] = {}
        for item, (entry, axes) in enumerate(self._entries()):
            merged = deep_merge(base, entry)
            backends[str(normalise_backend(merged.get("backend", registry.DEFAULT_BACKEND)))] = None
            used_axes.update(k for k, _ in axes)
            n_valid_before = len(out.experiments) + len(out.duplicates)
            n_invalid_before = len(out.invalid)
            keys = [k for k, _ in axes]
            for combo in itertools.product(*[vals for _, vals in axes]):
                overrides = dict(zip(keys, combo, strict=True))
                point = copy.deepcopy(merged)
                try:
                    for k, value in overrides.items():
                        if k == "backend":
                            value = normalise_backend(value)
                        _set_dotted(point, k, value)
                    cfg = ExperimentConfig.model_validate(point)
                except ValidationError as exc:
                    shown = {
                        **{k: v for k, v in entry.items() if not isinstance(v, dict)},
                        **overrides,
                    }
                    out.invalid.append(
                        InvalidPoint(index, shown, validation_problems(exc, ExperimentConfig))
                    )
                    index += 1
                    continue
                except ValueError as exc:
                    out.invalid.append(InvalidPoint(index, overrides, [str(exc)]))
                    index += 1
                    continue
                h = cfg.config_hash
                if h in seen:
                    out.duplicates.append(
                        f"point {index} is identical to point {seen[h]} (config {h[:8]}); run once"
                    )
                else:
                    seen[h] = index
                    out.experiments.append(cfg)
                index += 1
            if self.experiments and len(out.experiments) + len(out.duplicates) == n_valid_before:
                # an explicit item none of whose points is valid: the user's intent, not a
                # sweep combination that happens not to work
                problems = [p for point in out.invalid[n_invalid_before:] for p in point.problems]
                out.invalid_items[item] = list(dict.fromkeys(problems))[:10]
        out.unused_axes = [k for k in self.sweep if k not in used_axes]
        out.entry_backends = list(backends)
        self._expansion = out
        return out

    def expand(self) -> list[ExperimentConfig]:
        """The concrete, valid, distinct experiments of this study, in declaration order."""
        return list(self.expand_report().experiments)

    @property
    def study_design_hash(self) -> str:
        """SHA-256 over the set of experiment config hashes; ``execution`` does not enter it."""
        return canonical_hash(sorted(cfg.config_hash for cfg in self.expand()))

    @property
    def backends(self) -> list[str]:
        return sorted({cfg.backend for cfg in self.expand()})

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_experiment(cls, config: ExperimentConfig, n_cycles: int = 1) -> StudyConfig:
        """Wrap one experiment as a one-cycle study (what ``run_experiment`` does)."""
        data = config.model_dump(mode="json", exclude_none=True)
        study = cls(
            name=_safe_name(config.name or "experiment"),
            experiments=[data],
            execution=ExecutionConfig(n_cycles=n_cycles, cycle_order="sequential"),
        )
        return study

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudyConfig:
        """Load and validate a study YAML file; errors carry file, line and field path.

        An experiment file is a one-experiment study.
        """
        loaded = read_yaml_file(path)
        if not is_study_data(loaded.data):
            cfg = ExperimentConfig.from_dict(
                loaded.data, source=str(path), loaded=loaded, base_dir=Path(path).parent
            )
            return cls.from_experiment(cfg)
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
    ) -> StudyConfig:
        """Validate a study mapping with the same guards and messages as ``from_yaml``.

        ``base_dir`` as in ``ExperimentConfig.from_dict``: relative local paths in ``base``,
        ``experiments`` and the ``model``/``dataset`` sweep axes resolve against it.
        """
        if base_dir is not None:
            data = resolve_study_paths(data, base_dir)
        return parse_model(cls, data, what="study config", source=source, loaded=loaded)


def _safe_name(text: str) -> str:
    import re

    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._") or "experiment"
    return cleaned[:100]


__all__ = [
    "ExecutionConfig",
    "InvalidPoint",
    "StudyConfig",
    "SweepExpansion",
    "deep_merge",
    "format_path",
]
