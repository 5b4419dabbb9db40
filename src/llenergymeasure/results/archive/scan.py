"""Finding study directories under results roots and reading what each holds, without its data.

A study's identity and the status of every planned run come from its ``manifest.json`` (plain JSON,
so studies of older versions stay readable), else from ``study_result.json`` / the run folders
(``llenergymeasure.results.loading``). Whether the archive reads its runs from ``results.parquet``
or from their ``result.json`` (no Parquet export, or one older than the runs) is decided here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llenergymeasure.errors import LLEMError
from llenergymeasure.results.layout import (
    MANIFEST_FILE,
    RESULT_FILE,
    RESULTS_PARQUET,
    STUDY_RESULT_FILE,
)
from llenergymeasure.results.loading import load_study_dir, manifest_problem, run_folders


class ArchiveError(LLEMError):
    """A results root cannot be read, or a query over the archive is not valid."""

    exit_code = 2


class ArchiveDependencyError(LLEMError):
    """DuckDB (the ``[results]`` extra) is not installed."""

    exit_code = 1


def require_duckdb() -> Any:
    try:
        import duckdb
    except ImportError as exc:
        raise ArchiveDependencyError(
            f"the results archive needs DuckDB, which is not installed ({exc}); install it with: "
            "pip install 'llenergymeasure[results]'"
        ) from exc
    return duckdb


@dataclass
class RunStatus:
    run_id: str
    run_dir: str | None
    config_hash: str
    cycle: int | None
    backend: str
    status: str
    phase: str | None = None
    message: str | None = None


@dataclass
class StudyInfo:
    """What the archive knows of one study directory without reading its runs' data."""

    path: Path
    name: str
    design_hash: str = ""
    started_at: str = ""
    updated_at: str = ""
    runs: list[RunStatus] = field(default_factory=list)
    gpus: str = ""
    parquet: Path | None = None
    source: str = "parquet"  # parquet | json | none (no result yet) | skipped
    note: str = ""

    def count(self, *states: str) -> int:
        return sum(1 for r in self.runs if r.status in states)

    def row(self) -> dict[str, Any]:
        backends = sorted({r.backend for r in self.runs if r.backend})
        return {
            "study_dir": str(self.path),
            "name": self.name,
            "design_hash": self.design_hash,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "n_planned": len(self.runs),
            "n_completed": self.count("completed"),
            "n_failed": self.count("failed", "timeout"),
            "n_interrupted": self.count("interrupted"),
            "n_pending": self.count("pending", "running"),
            "backends": ",".join(backends),
            "gpus": self.gpus,
            "source": self.source,
            "note": self.note,
        }


def is_study_dir(path: str | Path) -> bool:
    base = str(path)
    return any(
        os.path.exists(os.path.join(base, f))
        for f in (MANIFEST_FILE, STUDY_RESULT_FILE, RESULTS_PARQUET)
    )


def find_study_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Study directories under the roots (a root may be a study directory itself), sorted."""
    found: dict[Path, None] = {}
    for root in roots:
        path = Path(os.path.expanduser(str(root))).absolute()
        if not path.exists():
            raise ArchiveError(
                f"results root {str(path)!r} does not exist; give a folder that holds study "
                "directories (output.results_dir of the user config, e.g. ./results)"
            )
        if not path.is_dir():
            raise ArchiveError(f"results root {str(path)!r} is a file, not a folder")
        if is_study_dir(path):
            found.setdefault(path, None)
            continue
        with os.scandir(path) as entries:
            children = sorted(e.path for e in entries if e.is_dir())
        for child in children:
            if is_study_dir(child):
                found.setdefault(Path(child), None)
    return list(found)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _gpus_of(env: dict[str, Any] | None) -> str:
    if not env:
        return ""
    count, model = env.get("gpu_count"), env.get("gpu_model")
    if not count or not model:
        return ""
    return f"{count}x {model}"


def _first_line(text: Any) -> str | None:
    return str(text).splitlines()[0] if text else None


def _mtime_ns(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def scan_study(path: Path, known_gpus: dict[str, list[Any]] | None = None) -> StudyInfo:
    """A study's identity and run statuses, from its manifest (or study_result.json).

    ``known_gpus`` (study dir -> [manifest mtime, gpus]) spares reading a run's ``result.json``
    for the GPU label when the manifest has not changed since; it is updated in place.
    """
    info = StudyInfo(path=path, name=path.name)
    base = str(path)
    manifest_path = path / MANIFEST_FILE
    parquet_mtime = _mtime_ns(os.path.join(base, RESULTS_PARQUET))
    manifest_mtime = _mtime_ns(os.path.join(base, MANIFEST_FILE))
    info.parquet = path / RESULTS_PARQUET if parquet_mtime is not None else None
    # a damaged manifest is skipped: the study is read from its run folders (loading.py)
    damaged = manifest_problem(manifest_path) if manifest_mtime is not None else None
    try:
        if manifest_mtime is not None and damaged is None:
            manifest = read_json(manifest_path)
            info.name = str(manifest.get("study_name") or path.name)
            info.design_hash = str(manifest.get("study_design_hash") or "")
            info.started_at = str(manifest.get("created_at") or "")
            info.updated_at = str(manifest.get("updated_at") or "")
            for e in manifest.get("runs", []):
                run_dir = e.get("run_dir")
                info.runs.append(
                    RunStatus(
                        run_id=str(e["run_id"]),
                        run_dir=os.path.join(base, str(run_dir)) if run_dir else None,
                        config_hash=str(e.get("config_hash") or ""),
                        cycle=e.get("cycle"),
                        backend=str(e.get("backend") or ""),
                        status=str(e.get("status") or "pending"),
                        phase=e.get("phase"),
                        message=_first_line(e.get("message")),
                    )
                )
        else:
            notes: list[str] = []
            study = load_study_dir(path, notes)
            info.note = "; ".join(notes)
            info.name, info.design_hash = study.name, study.study_design_hash
            info.started_at, info.updated_at = study.started_at, study.ended_at
            folders = run_folders(path)
            for r in study.runs:
                folder = folders.get(r.experiment_id)
                info.runs.append(
                    RunStatus(
                        r.experiment_id,
                        str(folder) if folder else None,
                        r.config_hash,
                        None,
                        r.config.backend,
                        "completed",
                    )
                )
            for f in study.failures:
                folder = folders.get(f.run_id)
                info.runs.append(
                    RunStatus(
                        f.run_id,
                        str(folder) if folder else None,
                        f.config_hash,
                        f.cycle,
                        "",
                        f.status,
                        f.phase,
                        _first_line(f.message),
                    )
                )
    except (OSError, ValueError, KeyError, TypeError, AttributeError, LLEMError) as exc:
        info.source, info.note = "skipped", f"cannot be read: {exc}"
        return info
    completed = [r for r in info.runs if r.status == "completed" and r.run_dir]
    cached = (known_gpus or {}).get(base)
    if cached is not None and cached[0] == manifest_mtime and manifest_mtime is not None:
        info.gpus = str(cached[1])
    else:
        for done in completed[:1]:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                data = read_json(Path(os.path.join(str(done.run_dir), RESULT_FILE)))
                info.gpus = _gpus_of(data.get("environment"))
        if known_gpus is not None and manifest_mtime is not None:
            known_gpus[base] = [manifest_mtime, info.gpus]
    if parquet_mtime is None:
        if completed:
            info.source, info.note = "json", "no results.parquet: read from the runs' result.json"
        else:
            info.source = "none"
    elif manifest_mtime is None or manifest_mtime > parquet_mtime:
        # the study runner writes results.parquet last: a manifest changed since may mean runs
        # completed since (a resume that stopped before its exports); look at the runs themselves
        for done in completed:
            stamp = _mtime_ns(os.path.join(str(done.run_dir), RESULT_FILE))
            if stamp is not None and stamp > parquet_mtime:
                info.source = "json"
                info.note = (
                    "results.parquet is older than its runs (`llem report DIR` rewrites it): "
                    "read from the runs' result.json"
                )
                break
    return info
