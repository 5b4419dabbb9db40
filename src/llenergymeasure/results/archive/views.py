"""The SQL of the results archive: column types and the ``runs``, ``configs`` and ``studies`` views.

``run_column_types`` gives every column of ``results.parquet`` a DuckDB type derived from the
result models; the archive uses it only for columns that are empty in every study it reads (the
files' own types decide the others). Nothing here touches a file; ``llenergymeasure.results.archive.store``
runs it.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic import BaseModel

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.results.export_columns import RUN_COLUMNS, run_columns
from llenergymeasure.results.quality_stats import ACCURACY, ENERGY_PER_CORRECT
from llenergymeasure.results.stats import METRICS, T975

#: columns the archive adds in front of each run's ``results.parquet`` columns.
STUDY_COLUMNS: dict[str, tuple[str, str]] = {
    "study.dir": ("VARCHAR", "the study directory the run belongs to"),
    "study.name": ("VARCHAR", "the study's name"),
    "study.design_hash": ("VARCHAR", "the study design hash (empty for a single experiment)"),
    "study.started_at": ("VARCHAR", "ISO-8601 creation time of the study"),
    "run_dir": ("VARCHAR", "the run's folder (absolute path)"),
    "source": (
        "VARCHAR",
        "where the row was read: parquet (results.parquet) or json (result.json)",
    ),
}

#: columns of the ``studies`` table, with their types and meaning.
STUDIES_COLUMNS: dict[str, tuple[str, str]] = {
    "study_dir": ("VARCHAR", "the study directory (absolute path)"),
    "name": ("VARCHAR", "the study's name"),
    "design_hash": ("VARCHAR", "the study design hash"),
    "started_at": ("VARCHAR", "ISO-8601 creation time"),
    "updated_at": ("VARCHAR", "ISO-8601 time of the manifest's last change"),
    "n_planned": ("BIGINT", "runs in the manifest"),
    "n_completed": ("BIGINT", "runs that produced a result"),
    "n_failed": ("BIGINT", "runs that failed or timed out"),
    "n_interrupted": ("BIGINT", "runs stopped by an interruption (Ctrl-C, SIGTERM): not failures"),
    "n_pending": ("BIGINT", "runs not run yet (an interrupted study)"),
    "backends": ("VARCHAR", "backends of its runs, comma-separated"),
    "gpus": ("VARCHAR", "GPUs of its environment, e.g. 8x NVIDIA H200 (empty: none seen)"),
    "source": (
        "VARCHAR",
        "parquet, json (no or stale results.parquet), none (no run has a result yet), or skipped",
    ),
    "note": ("VARCHAR", "why the study is read from JSON or skipped"),
}

#: columns of the ``run_status`` table: every run the manifests plan, whatever became of it.
RUN_STATUS_COLUMNS: dict[str, tuple[str, str]] = {
    "study_dir": ("VARCHAR", "the study directory"),
    "run_id": ("VARCHAR", "NNN_c<cycle>_<backend>_<hash8>"),
    "run_dir": ("VARCHAR", "the run's folder (absolute path; empty if never started)"),
    "config_hash": ("VARCHAR", "SHA-256 of the resolved config"),
    "cycle": ("BIGINT", "cycle number"),
    "backend": ("VARCHAR", "inference backend"),
    "status": ("VARCHAR", "completed, failed, timeout, interrupted, pending or running"),
    "phase": ("VARCHAR", "phase a failed run failed in"),
    "message": ("VARCHAR", "first line of a failed run's error"),
}

#: statistics the ``configs`` view gives for each metric (``<metric>_<stat>``).
CONFIG_STATS = ("mean", "std", "ci95_low", "ci95_high", "ci95_half_width", "n")

#: the metrics of the ``configs`` view: the study statistics' metrics (as in ``summary.csv``),
#: and the over-all quality figures (per-task ones vary by study: ``quality.tasks_json``)
CONFIG_METRICS: tuple[str, ...] = (*METRICS, ACCURACY, ENERGY_PER_CORRECT)

#: per-config columns of ``configs`` taken from the runs (first value; all runs of a config agree).
CONFIG_ID_COLUMNS: dict[str, str] = {
    "study.dir": "the study directory",
    "study.name": "the study's name",
    "config_hash": "SHA-256 of the resolved config",
    "config_label": "the config's label",
    "env.gpu_model": "first GPU's model name",
    "env.gpu_count": "GPUs visible to NVML",
    "env.driver_version": "NVIDIA driver version",
    "env.gpu_power_limit_w": "first GPU's power limit",
    "env.hostname": "host name",
}

_BOOLEAN = {
    "energy.available",
    "warmup.converged",
    "baseline.available",
    "baseline.from_cache",
    "env.in_container",
    "valid",
    "baseline.accepted",
    "cold_baseline.from_cache",
    "quality.ok",
}
_BIGINT = {
    "cycle",
    "model.parameters",
    "warmup.runs",
    "n_requests",
    "input_tokens",
    "output_tokens",
    "energy.n_devices",
    "ttft_n",
    "itl_n",
    "request_latency_n",
    "n_warnings",
    "env.cpu_cores_logical",
    "env.gpu_count",
    "quality.n_items",
}
_DOUBLE_SUFFIXES = ("_j", "_w", "_s", "_ms", "_mb", "_gb", "_g", "_kwh", "_cv")
_DOUBLE = {
    "flops_estimate",
    "co2.datacenter_pue",
    "energy_quantisation_bound_rel",
    "energy_split.prefill_share",
    "quality.n_correct",
    "quality_accuracy",
}


def _sql_type(annotation: Any) -> str:
    """The DuckDB type of a pydantic field annotation (``X | None`` reads as ``X``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = {_sql_type(a) for a in typing.get_args(annotation) if a is not type(None)}
        if inner == {"BIGINT", "DOUBLE"}:
            return "DOUBLE"
        return inner.pop() if len(inner) == 1 else "VARCHAR"
    if origin is Literal:
        return _sql_type(type(typing.get_args(annotation)[0]))
    if annotation is bool:
        return "BOOLEAN"
    if annotation is int:
        return "BIGINT"
    if annotation is float:
        return "DOUBLE"
    return "VARCHAR"


def _config_types(model: type[BaseModel], prefix: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        args = [a for a in typing.get_args(ann) if a is not type(None)] or [ann]
        sub = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            out.update(_config_types(sub, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = _sql_type(ann)
    return out


def run_column_types() -> dict[str, str]:
    """Every ``results.parquet`` column -> its DuckDB type, in ``run_columns()`` order."""
    config = _config_types(ExperimentConfig, "config.")
    out: dict[str, str] = {}
    for col in run_columns():
        if col in config:
            out[col] = config[col]
        elif col in _BOOLEAN:
            out[col] = "BOOLEAN"
        elif col in _BIGINT:
            out[col] = "BIGINT"
        elif col in _DOUBLE or col.endswith(_DOUBLE_SUFFIXES):
            out[col] = "DOUBLE"
        else:
            out[col] = "VARCHAR"
    return out


def runs_view_columns() -> dict[str, str]:
    """Columns of the ``runs`` view -> meaning (the study columns, then every Parquet column)."""
    from llenergymeasure.results.export_columns import config_columns

    out = {name: meaning for name, (_, meaning) in STUDY_COLUMNS.items()}
    for col in run_columns():
        out[col] = RUN_COLUMNS.get(col, "the resolved config (see configuration.md)")
    assert set(config_columns()) <= set(out)
    return out


def quote(name: str) -> str:
    """A SQL identifier in double quotes (column names hold dots)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def cast_select(available: set[str], types_: dict[str, str]) -> str:
    """``TRY_CAST`` of each column to its type; a column the source lacks reads as a typed NULL."""
    parts = []
    for col, typ in types_.items():
        src = quote(col) if col in available else "NULL"
        parts.append(f"TRY_CAST({src} AS {typ}) AS {quote(col)}")
    return ",\n  ".join(parts)


def t975_macro() -> str:
    """``t975(df)``: Student's t two-sided 95 % quantile, the same numbers as results.stats."""
    table = ", ".join(repr(v) for v in T975)
    z = 1.959963984540054
    return (
        "CREATE OR REPLACE TEMP MACRO t975(df) AS CASE "
        "WHEN df IS NULL OR df < 1 THEN NULL "
        f"WHEN df <= {len(T975)} THEN ([{table}])[df] "
        f"ELSE {z} + ({z}^3 + {z}) / (4 * df) + (5 * {z}^5 + 16 * {z}^3 + 3 * {z}) / (96 * df^2) "
        f"+ (3 * {z}^7 + 19 * {z}^5 + 17 * {z}^3 - 15 * {z}) / (384 * df^3) END"
    )


#: above-idle metric -> SQL of one run's baseline standard error (as ``results.stats.BASELINE_SE``)
SHARED_BASELINE_SE = {
    "total_energy_above_idle_j": quote("total_energy_above_idle_se_j"),
    "energy_per_output_token_above_idle_j": (
        f"{quote('total_energy_above_idle_se_j')} / nullif(output_tokens, 0)"
    ),
}


def _shared_baseline_sql() -> str:
    """Per (study, config) and above-idle metric: the SE its mean inherits from idle baselines
    shared by two or more of its valid runs, sqrt(sum_g (sum_{i in g} u_i)^2) / n
    (``results.stats.shared_baseline_se``)."""
    ident = quote("baseline.identity")
    per_group, per_config = [], []
    for m, se in SHARED_BASELINE_SE.items():
        used = f"valid IS NOT FALSE AND {quote(m)} IS NOT NULL"
        per_group += [
            f"sum({se}) FILTER (WHERE {used} AND {ident} IS NOT NULL) AS {quote(m + '_u')}",
            f"count({se}) FILTER (WHERE {used} AND {ident} IS NOT NULL) AS {quote(m + '_k')}",
        ]
        per_config.append(
            f"sqrt(sum({quote(m + '_u')} ^ 2) FILTER (WHERE {quote(m + '_k')} >= 2)) / "
            f"max(n.{quote(m + '_n')}) AS {quote(m + '_shared')}"
        )
    counts = ", ".join(
        f"count({quote(m)}) FILTER (WHERE valid IS NOT FALSE) AS {quote(m + '_n')}"
        for m in SHARED_BASELINE_SE
    )
    d = quote("study.dir")
    return (
        f"SELECT grp.s_dir, grp.s_hash, {', '.join(per_config)} FROM ("
        f"SELECT {d} AS s_dir, config_hash AS s_hash, {', '.join(per_group)} FROM runs "
        f"GROUP BY {d}, config_hash, {ident}) grp "
        f"JOIN (SELECT {d} AS n_dir, config_hash AS n_hash, {counts} FROM runs "
        f"GROUP BY {d}, config_hash) n ON n.n_dir = grp.s_dir AND n.n_hash = grp.s_hash "
        "GROUP BY grp.s_dir, grp.s_hash"
    )


def configs_view_sql() -> str:
    """One row per (study, config hash): the config, its runs, and mean/SD/95 % CI per metric."""
    types_ = run_column_types()
    firsts = [c for c in CONFIG_ID_COLUMNS if c not in ("study.dir", "config_hash")]
    config_cols = [c for c in types_ if c.startswith("config.")]
    inner = [
        f"{quote('study.dir')}",
        "config_hash",
        *(f"first({quote(c)} ORDER BY run_id) AS {quote(c)}" for c in firsts + config_cols),
        "count(*) AS n_runs",
        "string_agg(run_id, ';' ORDER BY run_id) AS run_ids",
        "string_agg(run_dir, ';' ORDER BY run_id) AS run_dirs",
        "count(*) FILTER (WHERE valid IS FALSE) AS n_invalid",
        "string_agg(run_id || ' (' || coalesce(failed_gates, '') || ')', ';' ORDER BY run_id) "
        "FILTER (WHERE valid IS FALSE) AS invalid_runs",
    ]
    # statistics over valid runs only, as the study's own summaries (results before schema 1.2
    # have no validity: NULL counts as valid)
    valid = "FILTER (WHERE valid IS NOT FALSE)"
    for m in CONFIG_METRICS:
        q = quote(m)
        inner += [
            f"avg({q}) {valid} AS {quote(m + '_mean')}",
            f"stddev_samp({q}) {valid} AS {quote(m + '_std')}",
            f"count({q}) {valid} AS {quote(m + '_n')}",
        ]
    shared = {m: f"sb.{quote(m + '_shared')}" for m in SHARED_BASELINE_SE}
    outer = [quote(c) for c in CONFIG_ID_COLUMNS]
    outer += [
        "n_runs",
        "coalesce(n_failed, 0) AS n_failed",
        "run_ids",
        "run_dirs",
        "n_invalid",
        "invalid_runs",
    ]
    for m in CONFIG_METRICS:
        mean, std, n = quote(m + "_mean"), quote(m + "_std"), quote(m + "_n")
        half = f"(t975({n} - 1) * {std} / sqrt({n}))"
        if m in shared:  # a shared idle baseline's error, as results.stats adds it
            sh = f"coalesce({shared[m]}, 0)"
            half = f"(t975({n} - 1) * sqrt({std} ^ 2 / {n} + {sh} ^ 2))"
        outer += [
            mean,
            std,
            f"{mean} - {half} AS {quote(m + '_ci95_low')}",
            f"{mean} + {half} AS {quote(m + '_ci95_high')}",
            f"{half} AS {quote(m + '_ci95_half_width')}",
            n,
        ]
    outer += [quote(c) for c in config_cols]
    joined_inner = ",\n    ".join(inner)
    joined_outer = ",\n  ".join(outer)
    return (
        "CREATE OR REPLACE TEMP VIEW configs AS\nSELECT\n  "
        + joined_outer
        + "\nFROM (\n  SELECT\n    "
        + joined_inner
        + f"\n  FROM runs GROUP BY {quote('study.dir')}, config_hash\n) g\n"
        "LEFT JOIN (SELECT study_dir AS f_dir, config_hash AS f_hash, count(*) AS n_failed\n"
        "  FROM run_status WHERE status IN ('failed', 'timeout', 'interrupted')\n"
        "  GROUP BY study_dir, config_hash) f\n"
        f"ON f.f_dir = g.{quote('study.dir')} AND f.f_hash = g.config_hash\n"
        f"LEFT JOIN ({_shared_baseline_sql()}) sb\n"
        f"ON sb.s_dir = g.{quote('study.dir')} AND sb.s_hash = g.config_hash\n"
    )


def configs_view_columns() -> dict[str, str]:
    """Columns of the ``configs`` view -> meaning."""
    out = dict(CONFIG_ID_COLUMNS)
    out["n_runs"] = "completed runs of the config in this study"
    out["n_failed"] = "failed, timed-out or interrupted runs of the config in this study"
    out["run_ids"] = "the completed runs, semicolon-separated"
    out["run_dirs"] = "their folders, semicolon-separated"
    out["n_invalid"] = "completed runs that failed a validity gate (left out of every statistic)"
    out["invalid_runs"] = "those runs with their failed gates, e.g. 003_c3 (short_window)"
    for m in CONFIG_METRICS:
        for stat in CONFIG_STATS:
            out[f"{m}_{stat}"] = f"{stat} of {m} over the valid runs"
    for col in run_column_types():
        if col.startswith("config."):
            out[col] = "the config, as in runs"
    return out
