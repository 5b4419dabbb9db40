"""Load a study directory back into a ``StudyResult``.

``study_result.json`` is the study runner's own aggregate and is used as it is, unless the run
folders hold completed runs it does not know (a resume that was stopped before writing a new
aggregate): then, like a study that never reached its end, the result is rebuilt from the manifest
and the run folders' ``result.json``/``error.json``, with summaries recomputed by
``llenergymeasure.results.stats.summarise`` (the function the study runner uses).

This module reads ``manifest.json`` as plain JSON rather than through the study package, so that
results stay readable without the code that produced them, and tolerates manifests of older
versions (unknown keys are ignored).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llenergymeasure._version import __version__
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.errors import LLEMError, filesystem_error
from llenergymeasure.results.io import damage_of
from llenergymeasure.results.layout import (
    ERROR_FILE,
    MANIFEST_FILE,
    REQUEST_FILE,
    RESULT_FILE,
    STUDY_FILE,
    STUDY_RESULT_FILE,
)
from llenergymeasure.results.models import SCHEMA_VERSION, ExperimentResult, RunFailure, StudyResult
from llenergymeasure.results.serving_capacity import with_slo_capacity
from llenergymeasure.results.stats import summarise

_RUN_FOLDER = re.compile(
    r"^(?P<run_id>\d+_c(?P<cycle>\d+)_[A-Za-z0-9]+_[0-9a-f]{8})(?:_a(?P<attempt>\d+))?$"
)
_FAILED_STATES = ("failed", "timeout", "interrupted")


class StudyDirError(LLEMError):
    """A path is not a readable study directory, or a file in it cannot be read."""

    exit_code = 2


def _check_schema(version: str, source: Path) -> None:
    major = version.split(".", 1)[0]
    if major != SCHEMA_VERSION.split(".", 1)[0]:
        raise StudyDirError(
            f"{source}: schema_version {version!r} is not readable by llenergymeasure "
            f"{__version__} (reads {SCHEMA_VERSION.split('.')[0]}.x); use the version that wrote it"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudyDirError(f"{path}: cannot be read as JSON: {exc}") from exc


def _text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def run_folders(study_dir: Path) -> dict[str, Path]:
    """Run id -> folder of its latest attempt (``<run_id>`` or ``<run_id>_a<k>``, highest k)."""
    best: dict[str, tuple[int, Path]] = {}
    for child in sorted(Path(study_dir).iterdir()):
        m = _RUN_FOLDER.match(child.name)
        if not m or not child.is_dir():
            continue
        attempt = int(m.group("attempt") or 1)
        run_id = m.group("run_id")
        if run_id not in best or attempt > best[run_id][0]:
            best[run_id] = (attempt, child)
    return {run_id: folder for run_id, (_, folder) in sorted(best.items())}


def manifest_run_dirs(study_dir: Path) -> dict[str, Path]:
    """Run id -> folder, from ``manifest.json`` where it names one, else from the folder names."""
    study_dir = Path(study_dir)
    out = run_folders(study_dir) if study_dir.is_dir() else {}
    manifest = study_dir / MANIFEST_FILE
    if manifest.exists():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            for entry in data.get("runs", []):
                if entry.get("run_dir"):
                    out[str(entry["run_id"])] = study_dir / str(entry["run_dir"])
        except (OSError, ValueError, AttributeError):
            pass
    return out


def _read_result(folder: Path) -> ExperimentResult:
    path = folder / RESULT_FILE
    data = _read_json(path)
    if isinstance(data, dict):
        _check_schema(str(data.get("schema_version", SCHEMA_VERSION)), path)
    return ExperimentResult.model_validate(data)


def _config_hash_of(folder: Path) -> str | None:
    """The full config hash from the run's ``request.json`` (what the harness was asked to run).

    Read as plain JSON, like the manifest: only its ``config`` block matters here, and the harness
    (which writes the file) sits above the results it produces.
    """
    try:
        request = json.loads((folder / REQUEST_FILE).read_text(encoding="utf-8"))
        return ExperimentConfig.model_validate(request["config"]).config_hash
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _failure(
    run_id: str,
    folder: Path | None,
    config_hash: str | None,
    cycle: int,
    status: str,
    fallback_message: str | None,
    fallback_phase: str | None,
) -> RunFailure:
    error: dict[str, Any] = {}
    error_path = folder / ERROR_FILE if folder is not None else None
    if error_path is not None and error_path.exists():
        text = _text_of(error_path)
        try:
            loaded = json.loads(text if text is not None else "")
            error = (
                loaded
                if isinstance(loaded, dict)
                else {"message": f"{ERROR_FILE} damaged: a JSON {type(loaded).__name__}"}
            )
        except ValueError as exc:
            error = {"message": f"{ERROR_FILE} unreadable: {damage_of(exc, text)}"}
        # a field of the wrong type is left out, never a reason to fail the whole study
        error = {k: v for k, v in error.items() if isinstance(v, str)}
    if not config_hash and folder is not None:
        config_hash = _config_hash_of(folder)
    return RunFailure(
        run_id=run_id,
        config_hash=config_hash or "",
        cycle=cycle,
        status="interrupted"
        if status == "interrupted"
        else "timeout"
        if status == "timeout"
        else "failed",
        phase=error.get("phase") or (fallback_phase if isinstance(fallback_phase, str) else None),
        error_type=error.get("error_type"),
        message=str(error.get("message") or fallback_message or status),
        error_file=str(error_path) if error_path is not None and error_path.exists() else None,
    )


def _collect_runs(
    study_dir: Path, manifest: dict[str, Any] | None, notes: list[str]
) -> tuple[list[ExperimentResult], list[RunFailure], bool]:
    """(results, failures, incomplete) from the manifest's entries, else from the run folders."""
    results: list[ExperimentResult] = []
    failures: list[RunFailure] = []
    incomplete = False
    folders = run_folders(study_dir)
    entries: list[tuple[str, Path | None, str, str, int, Any, Any]]
    if manifest is not None:
        entries = [
            (
                str(e["run_id"]),
                study_dir / str(e["run_dir"])
                if e.get("run_dir")
                else folders.get(str(e["run_id"])),
                str(e.get("status", "pending")),
                str(e.get("config_hash") or ""),
                e["cycle"] if isinstance(e.get("cycle"), int) else 0,
                e.get("message"),
                e.get("phase"),
            )
            for e in manifest.get("runs", [])
        ]
    else:
        entries = []
        for run_id, run_dir in folders.items():
            m = _RUN_FOLDER.match(run_dir.name)
            cycle = int(m.group("cycle")) if m else 0
            if (run_dir / RESULT_FILE).exists():
                status = "completed"
            elif (run_dir / ERROR_FILE).exists():
                status = "failed"
            else:
                status = "running"
            entries.append((run_id, run_dir, status, "", cycle, None, None))
    for run_id, folder, status, config_hash, cycle, message, phase in entries:
        has_result = folder is not None and (folder / RESULT_FILE).exists()
        if status == "completed" or (status in ("running", "pending") and has_result):
            if folder is None or not has_result:
                failures.append(
                    _failure(
                        run_id,
                        folder,
                        config_hash,
                        cycle,
                        "failed",
                        "result.json is missing",
                        "result",
                    )
                )
                continue
            try:
                results.append(_read_result(folder))
            except (StudyDirError, ValidationError) as exc:
                problem = damage_of(exc) if isinstance(exc, ValidationError) else str(exc)
                if isinstance(exc.__cause__, ValueError):  # not JSON: say where
                    problem = damage_of(exc.__cause__, _text_of(folder / RESULT_FILE))
                notes.append(
                    f"{folder.name}/{RESULT_FILE} skipped: {problem}; the run is counted as "
                    f"failed (`llem run --resume {study_dir}` measures it again)"
                )
                failures.append(
                    _failure(
                        run_id,
                        None,
                        config_hash or _config_hash_of(folder),
                        cycle,
                        "failed",
                        f"result.json unreadable: {problem}",
                        "result",
                    )
                )
        elif status in _FAILED_STATES:
            failures.append(_failure(run_id, folder, config_hash, cycle, status, message, phase))
        else:  # pending, or running under a controller that is gone: the study did not finish
            incomplete = True
    return results, failures, incomplete


def _manifest_damage(manifest: Any) -> str | None:
    """What makes a parsed manifest unusable here (None: its runs can be read)."""
    if not isinstance(manifest, dict):
        return f"it holds a JSON {type(manifest).__name__}, not an object"
    runs = manifest.get("runs", [])
    if not isinstance(runs, list) or not all(
        isinstance(e, dict) and isinstance(e.get("run_id"), str) for e in runs
    ):
        return "a field has the wrong type: runs is not a list of runs with a run_id"
    return None


def manifest_problem(path: Path) -> str | None:
    """Why ``manifest.json`` at ``path`` cannot be read as one (None: it can, or it cannot be
    read at all, which the reader reports)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        return _manifest_damage(json.loads(text))
    except ValueError as exc:
        return damage_of(exc, text)


def _readable_manifest(path: Path, notes: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """(``manifest.json`` as JSON, None), or (None, what is wrong) with a note when it is damaged
    (the run folders then say what ran), or (None, None) when there is none. Another schema major
    version raises ``StudyDirError``."""
    if not path.exists():
        return None, None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        manifest = json.loads(text)
        problem = _manifest_damage(manifest)
    except ValueError as exc:
        problem = damage_of(exc, text)
    except OSError as exc:
        raise filesystem_error(exc, "read the study's manifest") from exc
    if problem is None:
        _check_schema(str(manifest.get("schema_version", SCHEMA_VERSION)), path)
        return dict(manifest), None
    notes.append(
        f"{path.name} skipped: {problem}; the runs are read from the run folders "
        f"(`llem run --resume {path.parent}` rebuilds it)"
    )
    return None, problem


def rebuild_study_result(study_dir: Path, notes: list[str] | None = None) -> StudyResult:
    """A ``StudyResult`` from ``study.yaml``, ``manifest.json`` and the run folders alone.

    A damaged ``manifest.json`` is skipped (the run folders say what ran) with a line in
    ``notes``, when given."""
    study_dir = Path(study_dir)
    notes = notes if notes is not None else []
    manifest, damaged = _readable_manifest(study_dir / MANIFEST_FILE, notes)
    results, failures, incomplete = _collect_runs(study_dir, manifest, notes)
    if damaged is not None and not results and not failures:
        raise StudyDirError(
            f"{study_dir / MANIFEST_FILE} is damaged ({damaged}) and no run folder holds "
            "a result or an error to read instead. Restore it from a backup, or start the study "
            "again with `llem run STUDY.yaml`"
        )
    if manifest is None and not results and not failures:
        raise StudyDirError(
            f"{study_dir} is not a study directory: it holds no {STUDY_RESULT_FILE}, no "
            f"{MANIFEST_FILE} and no run folders (NNN_c<cycle>_<backend>_<hash8>/); give the folder "
            "`llem run` created, <results_dir>/<study-name>_<YYYYmmdd-HHMMSS>/"
        )

    name = str((manifest or {}).get("study_name") or "")
    design_hash = str((manifest or {}).get("study_design_hash") or "")
    protocol: dict[str, Any] = {}
    invalid: list[str] = []
    study_file = study_dir / STUDY_FILE
    if study_file.exists():
        try:
            study = StudyConfig.from_yaml(study_file)
        except (LLEMError, ValueError, OSError) as exc:
            protocol["study_yaml_error"] = str(exc)
        else:
            name = name or study.name
            design_hash = design_hash or study.study_design_hash
            expansion = study.expand_report()
            invalid = [p.describe() for p in expansion.invalid] + list(expansion.duplicates)
            protocol.update(study.execution.model_dump(mode="json"))
            protocol["source"] = (
                "rebuilt from study.yaml: gaps left empty there came from the user config or defaults"
            )
    if manifest is not None and "n_cycles" in manifest:
        protocol["n_cycles"] = manifest["n_cycles"]

    starts = sorted(r.started_at for r in results)
    ends = sorted(r.ended_at for r in results)
    runners: dict[str, dict[str, Any]] = {}
    for r in results:
        runners.setdefault(r.config.backend, r.runner.model_dump(mode="json"))
    return StudyResult(
        llenergymeasure_version=str((manifest or {}).get("llenergymeasure_version") or __version__),
        name=name or study_dir.name,
        study_design_hash=design_hash,
        study_dir=str(study_dir),
        started_at=str((manifest or {}).get("created_at") or (starts[0] if starts else "")),
        ended_at=str((manifest or {}).get("updated_at") or (ends[-1] if ends else "")),
        measurement_protocol=protocol,
        environment=results[0].environment if results else None,
        runners=runners,
        runs=results,
        summaries=with_slo_capacity(summarise(results, failures), results),
        failures=failures,
        invalid_points=invalid,
        interrupted=incomplete,
    )


def _stale(study: StudyResult, study_dir: Path) -> bool:
    """True when the manifest lists a completed run that ``study_result.json`` lacks."""
    manifest_path = study_dir / MANIFEST_FILE
    if not manifest_path.exists():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        completed = {
            str(e["run_id"]) for e in manifest.get("runs", []) if e.get("status") == "completed"
        }
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return False
    return not completed <= {r.experiment_id for r in study.runs}


def load_study_dir(path: str | Path, notes: list[str] | None = None) -> StudyResult:
    """Load the study in ``path`` (``study_result.json``, else rebuilt from the run folders).

    A damaged ``study_result.json`` or ``manifest.json`` is skipped, with a line in ``notes``
    when given, and the study rebuilt from what is left; a run whose ``result.json`` is damaged
    is listed among the failures with the reason.

    ``study_dir`` of the returned result is the directory it was loaded from, which may differ from
    the one recorded when the study was copied or moved.
    """
    study_dir = Path(path)
    if not study_dir.exists():
        raise StudyDirError(f"study directory {str(study_dir)!r} does not exist")
    if not study_dir.is_dir():
        raise StudyDirError(
            f"{str(study_dir)!r} is a file, not a study directory; give the folder that holds "
            f"{STUDY_RESULT_FILE} and manifest.json"
        )
    aggregate = study_dir / STUDY_RESULT_FILE
    if aggregate.exists():
        text = None
        try:
            text = aggregate.read_text(encoding="utf-8", errors="replace")
            data = json.loads(text)
            if isinstance(data, dict):
                _check_schema(str(data.get("schema_version", SCHEMA_VERSION)), aggregate)
            study = StudyResult.model_validate(data)
        except OSError as exc:
            raise filesystem_error(exc, "read the study's results") from exc
        except ValueError as exc:  # damaged: the manifest and the run folders still say it all
            if notes is not None:
                notes.append(
                    f"{aggregate.name} skipped: {damage_of(exc, text)}; the study is rebuilt "
                    "from manifest.json and the run folders"
                )
            return rebuild_study_result(study_dir, notes)
        if not _stale(study, study_dir):
            return study.model_copy(update={"study_dir": str(study_dir)})
        # Runs finished after this aggregate was written: rebuild them, and keep what only the
        # aggregate knows (the protocol actually used, the controller's environment snapshot).
        rebuilt = rebuild_study_result(study_dir, notes)
        return rebuilt.model_copy(
            update={
                "measurement_protocol": study.measurement_protocol or rebuilt.measurement_protocol,
                "environment": study.environment or rebuilt.environment,
                "runners": study.runners or rebuilt.runners,
                "started_at": study.started_at,
            }
        )
    return rebuild_study_result(study_dir, notes)
