"""The results archive: every study under one or more results roots, queried with DuckDB.

A results root holds study directories (``<results_dir>/<study-name>_<time>/``); a root may also be
a study directory itself. Nothing is copied or imported: the archive reads each study's
``manifest.json`` (what was planned and what became of it) and DuckDB reads each
``results.parquet`` in place. A study without a ``results.parquet``, or with one older than its
runs (written before the Parquet export existed, or resumed and never re-exported), is read from
its JSON files (``llenergymeasure.results.loading``); one that cannot be read either way is listed
in ``skipped`` with the reason, never dropped silently.

Views (documented in docs/results.md): ``runs`` (one row per completed run, every column of
``results.parquet`` plus the study's), ``configs`` (one row per study and config: mean, SD and
Student-t 95 % CI per metric), ``studies`` and ``run_status`` (every planned run and its status).

Reading the Parquet footers is most of the cost over many studies; the column types of each file
are cached (keyed by path, size and mtime) in ``archive-schemas.json`` under the cache directory,
so that files of the same schema are read as one scan without reading their schemas first.
DuckDB (the ``[results]`` extra) is imported when an archive is opened, never by
``import llenergymeasure``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llenergymeasure.results.archive.scan import (
    ArchiveDependencyError,
    ArchiveError,
    StudyInfo,
    find_study_dirs,
    is_study_dir,
    read_json,
    require_duckdb,
    scan_study,
)
from llenergymeasure.results.archive.views import (
    RUN_STATUS_COLUMNS,
    STUDIES_COLUMNS,
    STUDY_COLUMNS,
    cast_select,
    configs_view_sql,
    literal,
    quote,
    run_column_types,
    t975_macro,
)
from llenergymeasure.results.loading import StudyDirError, load_study_dir

SCHEMA_CACHE_FILE = "archive-schemas.json"

__all__ = [
    "Archive",
    "ArchiveDependencyError",
    "ArchiveError",
    "StudyInfo",
    "find_study_dirs",
    "is_study_dir",
    "open_archive",
    "scan_study",
]


class _SchemaCache:
    """Kept between invocations: Parquet path -> (size, mtime) and its column signature, and
    study dir -> (manifest mtime, GPU label). Metadata only; the results stay where they are."""

    def __init__(self, cache_dir: Path | None):
        self.path = cache_dir / SCHEMA_CACHE_FILE if cache_dir is not None else None
        self.files: dict[str, list[Any]] = {}
        self.signatures: dict[str, list[list[str]]] = {}
        self.gpus: dict[str, list[Any]] = {}
        self.dirty = False
        if self.path is not None and self.path.exists():
            # metadata only: a damaged file, or entries of the wrong shape, are ignored (read
            # again from the Parquet files and manifests) and the cache is rewritten
            with contextlib.suppress(OSError, ValueError, AttributeError, TypeError, KeyError):
                data = read_json(self.path)
                self.signatures = {
                    str(k): v for k, v in dict(data["signatures"]).items() if _is_signature(v)
                }
                self.files = {
                    str(k): v
                    for k, v in dict(data["files"]).items()
                    if isinstance(v, list)
                    and len(v) == 3
                    and all(isinstance(x, int) for x in v[:2])
                    and v[2] in self.signatures
                }
                self.gpus = {
                    str(k): v
                    for k, v in dict(data.get("gpus", {})).items()
                    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], int)
                }
                self.dirty = len(self.files) != len(data["files"])

    @staticmethod
    def stamp(path: Path) -> list[int]:
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]

    def lookup(self, path: Path) -> str | None:
        hit = self.files.get(str(path))
        if hit and hit[:2] == self.stamp(path) and hit[2] in self.signatures:
            return str(hit[2])
        return None

    def store(self, path: Path, columns: list[list[str]]) -> str:
        sig = hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]
        self.signatures[sig] = columns
        self.files[str(path)] = [*self.stamp(path), sig]
        self.dirty = True
        return sig

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        from llenergymeasure.results.io import atomic_write_text

        with contextlib.suppress(OSError):
            atomic_write_text(
                self.path,
                json.dumps({"files": self.files, "signatures": self.signatures, "gpus": self.gpus}),
            )


def _is_signature(columns: Any) -> bool:
    """A cached Parquet signature: a list of [name, type, logical type] strings."""
    return isinstance(columns, list) and all(
        isinstance(c, list) and len(c) == 3 and all(isinstance(x, str) for x in c) for c in columns
    )


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "llenergymeasure"


class Archive:
    """Every study under ``roots``, as DuckDB views. ``cache_dir=None`` keeps no schema cache."""

    def __init__(
        self, roots: Sequence[str | Path], cache_dir: Path | None = None, *, cache: bool = True
    ):
        self.roots = [Path(os.path.expanduser(str(r))).absolute() for r in roots]
        self._cache_dir = (cache_dir or default_cache_dir()) if cache else None
        cached = _SchemaCache(self._cache_dir)
        before = dict(cached.gpus)
        self.studies: list[StudyInfo] = [
            scan_study(p, cached.gpus) for p in find_study_dirs(self.roots)
        ]
        if cached.gpus != before:
            cached.dirty = True
            cached.save()
        self._con: Any = None
        self._runs_ready = False
        #: results.parquet files DuckDB could not read -> why (their studies are read from JSON)
        self.unreadable_parquet: dict[str, str] = {}

    @property
    def skipped(self) -> list[StudyInfo]:
        return [s for s in self.studies if s.source == "skipped"]

    # -- connection -------------------------------------------------------------------------------

    def connection(self, runs: bool = True) -> Any:
        """A DuckDB connection with ``studies`` and ``run_status``, plus ``runs`` and ``configs``
        when ``runs`` (they read the Parquet footers, which costs time over many studies)."""
        duckdb = require_duckdb()
        if self._con is None:
            self._con = duckdb.connect(":memory:")
            self._register("studies", STUDIES_COLUMNS, [s.row() for s in self.studies])
            status_rows = [
                {"study_dir": str(s.path), **r.__dict__} for s in self.studies for r in s.runs
            ]
            self._register("run_status", RUN_STATUS_COLUMNS, status_rows)
            self._con.execute(t975_macro())
        if runs and not self._runs_ready:
            self._build_runs()
            self._con.execute(configs_view_sql())
            self._runs_ready = True
        return self._con

    def _register(
        self, name: str, columns: dict[str, tuple[str, str]], rows: list[dict[str, Any]]
    ) -> None:
        """A temp table from Python rows, typed as ``columns`` says (numpy arrays: no pandas)."""
        import numpy as np

        data = {
            col: np.array([r.get(col) for r in rows] or [None], dtype=object) for col in columns
        }
        src = f"_src_{name}"
        self._con.register(src, data)
        select = ", ".join(
            f"TRY_CAST({quote(c)} AS {t}) AS {quote(c)}" for c, (t, _) in columns.items()
        )
        where = "" if rows else " WHERE false"
        self._con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {select} FROM {src}{where}"
        )
        self._con.unregister(src)

    def _signatures(self, files: list[Path]) -> list[tuple[dict[str, str | None], list[Path]]]:
        """Parquet files grouped by identical schema, with their columns' SQL types (None: a
        column empty in every run of the file) (cached; schemas not in the cache are read once)."""
        cache = _SchemaCache(self._cache_dir)
        groups: dict[str, list[Path]] = {}
        missing = []
        for f in files:
            sig = cache.lookup(f)
            if sig is None:
                missing.append(f)
            else:
                groups.setdefault(sig, []).append(f)
        if missing:
            by_file: dict[str, list[list[str]]] = {}
            for file_name, name, typ, logical in self._schemas(missing):
                by_file.setdefault(str(file_name), []).append([str(name), str(typ), str(logical)])
            for f in missing:
                if str(f) in self.unreadable_parquet:
                    continue
                sig = cache.store(f, by_file.get(str(f), []))
                groups.setdefault(sig, []).append(f)
        cache.save()
        return [
            ({c[0]: _parquet_sql_type(c[1], c[2]) for c in cache.signatures[sig]}, fs)
            for sig, fs in groups.items()
        ]

    def _schemas(self, files: list[Path]) -> list[tuple[Any, ...]]:
        """(file, column, type, logical type) of each file's leaf columns; a file that is not a
        readable Parquet file (empty, cut short, not Parquet) goes to ``unreadable_parquet``
        with DuckDB's words, and its study is read from its runs' result.json instead."""
        duckdb = require_duckdb()
        sql = (
            "SELECT file_name, name, type, logical_type FROM parquet_schema($files) "
            "WHERE num_children IS NULL OR num_children = 0"
        )
        try:  # all at once; one by one only when some file is damaged
            return list(self._con.execute(sql, {"files": [str(f) for f in files]}).fetchall())
        except duckdb.Error:
            pass
        rows: list[tuple[Any, ...]] = []
        for f in files:
            try:
                rows.extend(self._con.execute(sql, {"files": [str(f)]}).fetchall())
            except duckdb.Error as exc:
                self.unreadable_parquet[str(f)] = (str(exc).splitlines() or ["unreadable"])[0]
        return rows

    def _json_rows(self) -> list[dict[str, Any]]:
        from llenergymeasure.results.export_rows import run_records

        rows: list[dict[str, Any]] = []
        for s in self.studies:
            if s.source != "json":
                continue
            try:
                study = load_study_dir(s.path)
            except (StudyDirError, OSError, ValueError) as exc:
                s.source, s.note = "skipped", f"{s.note}; cannot be read: {exc}"
                continue
            for rec in run_records(study):
                rows.append({"_study": str(s.path), **rec})
        return rows

    def _build_runs(self) -> None:
        parquet = [s for s in self.studies if s.source == "parquet" and s.parquet is not None]
        groups = self._signatures([Path(str(s.parquet)) for s in parquet]) if parquet else []
        for s in parquet:  # a damaged results.parquet: its runs' result.json say the same
            problem = self.unreadable_parquet.get(str(s.parquet))
            if problem is not None:
                s.source = "json"
                s.note = (
                    f"{Path(str(s.parquet)).name} cannot be read ({problem}): read from the runs' "
                    f"result.json (`llem report {s.path}` writes it again)"
                )
        if self.unreadable_parquet:
            self._register("studies", STUDIES_COLUMNS, [s.row() for s in self.studies])
        parquet = [s for s in parquet if s.source == "parquet"]
        file_to_study = {str(s.parquet): str(s.path) for s in parquet}
        parts: list[str] = []
        json_rows = self._json_rows()
        types_ = _column_types(groups, json_rows)
        for columns, files in groups:
            names = set(columns)
            listed = ", ".join(literal(str(f)) for f in files)
            parts.append(
                f"SELECT filename AS _file, {cast_select(names, types_)} "
                f"FROM read_parquet([{listed}], filename=true)"
            )
        if json_rows:
            cols = ["_study", *types_]
            data_src = {c: [r.get(c) for r in json_rows] for c in cols}
            import numpy as np

            self._con.register(
                "_src_json", {c: np.array(v, dtype=object) for c, v in data_src.items()}
            )
            self._con.execute(
                "CREATE OR REPLACE TEMP TABLE json_runs AS SELECT _study AS _file, "
                f"{cast_select(set(cols), types_)} FROM _src_json"
            )
            self._con.unregister("_src_json")
            parts.append("SELECT * FROM json_runs")
            for s in self.studies:
                if s.source == "json":
                    file_to_study[str(s.path)] = str(s.path)
        files_rows = [{"_file": f, "_study": d} for f, d in file_to_study.items()]
        self._register("_files", {"_file": ("VARCHAR", ""), "_study": ("VARCHAR", "")}, files_rows)
        if not parts:
            parts.append(f"SELECT NULL::VARCHAR AS _file, {cast_select(set(), types_)} WHERE false")
        union = "\nUNION ALL BY NAME\n".join(parts)
        study_cols = [
            f"s.study_dir AS {quote('study.dir')}",
            f"s.name AS {quote('study.name')}",
            f"s.design_hash AS {quote('study.design_hash')}",
            f"s.started_at AS {quote('study.started_at')}",
            f"rs.run_dir AS {quote('run_dir')}",
            f"CASE WHEN s.source = 'json' THEN 'json' ELSE 'parquet' END AS {quote('source')}",
        ]
        assert len(study_cols) == len(STUDY_COLUMNS)
        run_cols = ", ".join(f"r.{quote(c)}" for c in types_)
        self._con.execute(
            "CREATE OR REPLACE TEMP VIEW runs AS SELECT "
            + ", ".join(study_cols)
            + f", {run_cols} FROM ({union}) r "
            "JOIN _files fm ON fm._file = r._file "
            "JOIN studies s ON s.study_dir = fm._study "
            "LEFT JOIN run_status rs ON rs.study_dir = s.study_dir AND rs.run_id = r.run_id"
        )

    # -- queries ----------------------------------------------------------------------------------

    def query(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple]]:
        """Run SQL over the views; returns (column names, rows). Bad SQL is an ``ArchiveError``."""
        duckdb = require_duckdb()
        con = self.connection(runs=_needs_runs(sql))
        try:
            cur = con.execute(sql, params or {})
            rows = cur.fetchall()
        except duckdb.Error as exc:
            raise ArchiveError(
                f"the query failed: {exc}\nviews: runs, configs, studies, run_status "
                "(columns in docs/results.md; names with dots need double quotes, e.g. "
                '"config.model")'
            ) from None
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, rows

    def records(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cols, rows = self.query(sql, params)
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def export(self, sql: str, path: Path, fmt: str) -> Path:
        """Write the query's result to ``path`` as csv, json or parquet (DuckDB's COPY)."""
        self.query(f"SELECT * FROM ({sql.rstrip().rstrip(';')}) LIMIT 0")  # clear error first
        options = {
            "csv": "FORMAT csv, HEADER",
            "json": "FORMAT json, ARRAY true",
            "parquet": "FORMAT parquet",
        }[fmt]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.query(f"COPY ({sql.rstrip().rstrip(';')}) TO {literal(str(path))} ({options})")
        return path

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
            self._runs_ready = False


_PARQUET_TYPES = {
    "INT64": "BIGINT",
    "INT32": "BIGINT",
    "DOUBLE": "DOUBLE",
    "FLOAT": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "BYTE_ARRAY": "VARCHAR",
}


def _parquet_sql_type(physical: str, logical: str) -> str | None:
    """The SQL type of a Parquet leaf column; None for a column empty in every row."""
    if "Null" in logical:
        return None
    return _PARQUET_TYPES.get(physical, "VARCHAR")


def _python_sql_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int):
        return "BIGINT"
    if isinstance(value, float):
        return "DOUBLE"
    return "VARCHAR"


def _column_types(
    groups: list[tuple[dict[str, str | None], list[Path]]], json_rows: list[dict[str, Any]]
) -> dict[str, str]:
    """One SQL type per ``results.parquet`` column, from what the files and rows actually hold:
    integers and floats widen to DOUBLE, anything else mixed to VARCHAR (never a lossy cast); a
    column empty everywhere takes the type the result models give it."""
    seen: dict[str, set[str]] = {}
    for columns, _ in groups:
        for name, typ in columns.items():
            if typ is not None:
                seen.setdefault(name, set()).add(typ)
    for row in json_rows:
        for name, value in row.items():
            typ = _python_sql_type(value)
            if typ is not None:
                seen.setdefault(name, set()).add(typ)
    out: dict[str, str] = {}
    for col, fallback in run_column_types().items():
        kinds = seen.get(col, set())
        if not kinds:
            out[col] = fallback
        elif len(kinds) == 1:
            out[col] = next(iter(kinds))
        elif kinds == {"BIGINT", "DOUBLE"}:
            out[col] = "DOUBLE"
        else:
            out[col] = "VARCHAR"
    return out


def _needs_runs(sql: str) -> bool:
    lowered = sql.lower()
    return "runs" in lowered.replace("run_status", "") or "configs" in lowered


def open_archive(roots: Sequence[str | Path], cache_dir: Path | None = None) -> Archive:
    """The archive of every study under ``roots`` (see ``Archive``)."""
    return Archive(roots, cache_dir=cache_dir)
