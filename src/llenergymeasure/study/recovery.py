"""On ``--resume``: runs a dead controller left ``running`` (or ``interrupted``).

Two things can be true of such a run, and both are checked before anything starts:

- its experiment process still runs (the controller was killed, the experiment was not: another
  machine's controller, or an engine that ignored its parent's death). Its ``process.json`` names
  its pid and start time; a second attempt beside it would share its GPUs, so resume refuses;
- it finished: the harness wrote a complete ``result.json`` but the controller died before the
  manifest said so. A result that validates, belongs to this run (its id) and to this config (its
  hash) is adopted as completed, not measured again. A partial or invalid one is left where it is,
  named in the run's ``set_aside`` list, and the run is rerun in a new attempt folder.

A damaged ``manifest.json`` (empty, cut short, not JSON, a field of the wrong type) is rebuilt
from ``study.yaml`` (the plan) and the run folders (each run's state from its files); the damaged
file is kept beside it as ``manifest.json.damaged-<time>``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llenergymeasure._proc import recorded_process_alive
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.errors import ConfigError, RunnerError
from llenergymeasure.results.io import damage_of
from llenergymeasure.results.layout import (
    ERROR_FILE,
    MANIFEST_FILE,
    PROCESS_FILE,
    RESULT_FILE,
    STUDY_FILE,
)
from llenergymeasure.results.loading import StudyDirError, run_folders
from llenergymeasure.results.models import SCHEMA_VERSION, ExperimentResult
from llenergymeasure.study.manifest import (
    DamagedManifest,
    Manifest,
    ManifestRun,
    ManifestStore,
    read_manifest,
)
from llenergymeasure.timestamps import utc_now

if TYPE_CHECKING:
    from llenergymeasure.study.planning import PlannedRun

UNFINISHED = ("running", "interrupted")


def _unfinished(store: ManifestStore) -> list[tuple[ManifestRun, Path]]:
    return [
        (entry, store.study_dir / entry.run_dir)
        for entry in store.manifest.runs
        if entry.status in UNFINISHED and entry.run_dir
    ]


def unreadable_process_lines(manifest: Manifest, study_dir: Path) -> list[str]:
    """One line per unfinished run whose ``process.json`` is damaged: whether its experiment
    still runs cannot be told, so resume cannot refuse for it."""
    lines = []
    for entry in manifest.runs:
        if entry.status not in UNFINISHED or not entry.run_dir:
            continue
        path = study_dir / entry.run_dir / PROCESS_FILE
        text = None
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            record = json.loads(text)
            problem = None if isinstance(record, dict) else "it holds no JSON object"
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as exc:
            problem = damage_of(exc, text)
        if problem is not None:
            lines.append(
                f"{entry.run_id}: {entry.run_dir}/{PROCESS_FILE} skipped ({problem}): whether "
                "its experiment still runs is unknown; if it does, stop it before this resume "
                "measures beside it"
            )
    return lines


def refuse_if_still_running(store: ManifestStore) -> None:
    """Raise ``RunnerError`` naming every unfinished run whose experiment process is alive."""
    alive: list[str] = []
    for entry, run_dir in _unfinished(store):
        try:
            record = json.loads((run_dir / PROCESS_FILE).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and recorded_process_alive(record):
            alive.append(f"{entry.run_id}: process {record['pid']} writing to {run_dir}")
    if alive:
        raise RunnerError(
            f"--resume {store.study_dir}: an experiment of this study is still running, so a "
            "new attempt would measure beside it on the same GPUs:\n  "
            + "\n  ".join(alive)
            + "\nWait for it to end, or stop it (kill PID), then resume again"
        )


def result_problem(entry: ManifestRun, path: Path) -> str | None:
    """Why ``path`` is not this run's complete result (None when it is), as words that follow
    the file's name."""
    text = None
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        result = ExperimentResult.model_validate_json(text)
    except (OSError, ValueError) as exc:
        return f"is not a valid result ({damage_of(exc, text)})"
    major = SCHEMA_VERSION.split(".", 1)[0]
    if result.schema_version.split(".", 1)[0] != major:
        return (
            f"is of schema_version {result.schema_version!r}, which this llenergymeasure does "
            f"not read (it reads {major}.x)"
        )
    if result.experiment_id != entry.run_id:
        return f"is the result of run {result.experiment_id}, not {entry.run_id}"
    if result.config_hash != entry.config_hash:
        return f"has config hash {result.config_hash[:12]}, not this run's {entry.config_hash[:12]}"
    return None


def adopt_finished_results(store: ManifestStore) -> list[str]:
    """Mark unfinished runs whose latest attempt holds their complete result as completed.

    Returns the adopted run ids. Invalid results are named in ``set_aside`` (the run stays
    unfinished and is rerun in a new attempt folder).
    """
    adopted: list[str] = []
    for entry, run_dir in _unfinished(store):
        path = run_dir / RESULT_FILE
        if not path.exists():
            continue
        problem = result_problem(entry, path)
        relative = f"{entry.run_dir}/{RESULT_FILE}"
        if problem is None:
            store.transition(
                entry.run_id,
                "completed",
                note="adopted on resume: the harness had written result.json, the manifest "
                "had not recorded it",
                message=None,
                phase=None,
            )
            adopted.append(entry.run_id)
        elif relative not in entry.set_aside:
            entry.set_aside.append(relative)
            entry.history.append(
                {
                    "status": entry.status,
                    "time": utc_now(),
                    "attempt": entry.attempts,
                    "note": f"set aside {relative}: {problem}",
                }
            )
            store.save()
    return adopted


def _error_record(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / ERROR_FILE).read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError) as exc:
        return {"message": f"{ERROR_FILE} unreadable ({damage_of(exc)})"}
    return data if isinstance(data, dict) else {"message": f"{ERROR_FILE} holds no JSON object"}


def _rebuilt_entry(study_dir: Path, run: PlannedRun, folder: Path | None) -> ManifestRun:
    """One run's manifest entry from its latest attempt folder: completed with a valid result of
    this run, failed with an error.json, otherwise unfinished (resume then checks it like a run
    a dead controller left: a live process refuses, a damaged result is set aside)."""
    entry = ManifestRun(
        run_id=run.run_id,
        index=run.index,
        config_hash=run.config.config_hash,
        config_index=run.config_index,
        cycle=run.cycle,
        backend=run.config.backend,
    )
    if folder is None:
        return entry
    suffix = folder.name[len(run.run_id) :]
    entry.attempts = int(suffix[2:]) if suffix.startswith("_a") and suffix[2:].isdigit() else 1
    entry.run_dir = folder.name
    if (folder / RESULT_FILE).exists() and result_problem(entry, folder / RESULT_FILE) is None:
        entry.status = "completed"
    elif (folder / ERROR_FILE).exists() and not (folder / RESULT_FILE).exists():
        error = _error_record(folder)
        entry.status = "failed"
        entry.message = str(error.get("message") or "the experiment failed")[:4000]
        entry.phase = str(error["phase"]) if error.get("phase") else None
    else:
        entry.status = "interrupted"
    entry.history.append(
        {
            "status": entry.status,
            "time": utc_now(),
            "attempt": entry.attempts,
            "note": f"rebuilt on resume from {folder.name}/: {MANIFEST_FILE} was damaged",
        }
    )
    return entry


def rebuild_manifest(
    study_dir: Path, study: StudyConfig, plan_for: Callable[[int], list[PlannedRun]], problem: str
) -> tuple[Manifest, str]:
    """A manifest rebuilt from ``study.yaml``'s plan and the run folders, and the line that says
    so. Raises ``StudyDirError`` when run folders belong to no plan of that study file."""
    folders = run_folders(study_dir)
    cycles_seen = {int(run_id.split("_c", 1)[1].split("_", 1)[0]) for run_id in folders}
    candidates = sorted({study.execution.n_cycles, max(cycles_seen, default=1)})
    for n_cycles in candidates:
        plan = plan_for(n_cycles)
        if set(folders) <= {r.run_id for r in plan}:
            break
    else:
        strangers = sorted(set(folders) - {r.run_id for r in plan})
        raise StudyDirError(
            f"{study_dir / MANIFEST_FILE} is damaged ({problem}) and cannot be rebuilt: run "
            f"folders {', '.join(strangers[:3])} belong to no plan of {study_dir / STUDY_FILE}. "
            "Restore manifest.json from a backup, or start the study again with `llem run "
            "STUDY.yaml` (its completed results stay where they are)"
        )
    created = _dt.datetime.fromtimestamp(
        os.stat(study_dir / STUDY_FILE).st_mtime, _dt.timezone.utc
    ).isoformat()
    manifest = Manifest(
        study_name=study.name,
        study_design_hash=study.study_design_hash,
        n_cycles=n_cycles,
        created_at=created,
        runs=[_rebuilt_entry(study_dir, r, folders.get(r.run_id)) for r in plan],
    )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(manifest.counts().items()))
    line = (
        f"{MANIFEST_FILE} was damaged ({problem}); rebuilt from {STUDY_FILE} ({len(plan)} runs, "
        f"{n_cycles} cycle(s)) and {len(folders)} run folder(s): {counts}"
    )
    return manifest, line


def keep_damaged_manifest(study_dir: Path) -> Path | None:
    """Move a damaged ``manifest.json`` aside (never deleted) before the rebuilt one is saved."""
    path = study_dir / MANIFEST_FILE
    if not path.exists():
        return None
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{MANIFEST_FILE}.damaged-{stamp}")
    k = 2
    while target.exists():
        target = path.with_name(f"{MANIFEST_FILE}.damaged-{stamp}-{k}")
        k += 1
    os.replace(path, target)
    return target


def _damaged_results(manifest: Manifest, study_dir: Path) -> list[tuple[ManifestRun, str, str]]:
    """(entry, result path relative to the study dir, problem) of each completed run whose
    ``result.json`` is missing or damaged."""
    out = []
    for entry in manifest.runs:
        if entry.status != "completed" or not entry.run_dir:
            continue
        path = study_dir / entry.run_dir / RESULT_FILE
        problem = result_problem(entry, path) if path.exists() else "is missing"
        if problem is not None:
            out.append((entry, f"{entry.run_dir}/{RESULT_FILE}", problem))
    return out


def damaged_result_lines(manifest: Manifest, study_dir: Path) -> list[str]:
    """One line per completed run whose ``result.json`` is missing or damaged (resume measures
    it again in a new attempt folder; the file stays as it is)."""
    return [
        f"{entry.run_id}: {relative} {problem}; kept as it is, the run is measured again in a "
        "new attempt folder"
        for entry, relative, problem in _damaged_results(manifest, study_dir)
    ]


def set_aside_completed(store: ManifestStore) -> None:
    """Name each completed run's damaged ``result.json`` in its ``set_aside`` list (the file
    stays as it is); ``_already_done`` then leaves the run to be measured again."""
    for entry, relative, problem in _damaged_results(store.manifest, store.study_dir):
        if relative in entry.set_aside or not (store.study_dir / relative).exists():
            continue
        entry.set_aside.append(relative)
        entry.history.append(
            {
                "status": entry.status,
                "time": utc_now(),
                "attempt": entry.attempts,
                "note": f"set aside {relative}: {problem}",
            }
        )
        store.save()


def manifest_for_resume(
    study_dir: Path,
    study: StudyConfig | None,
    plan_for: Callable[[StudyConfig, int], list[PlannedRun]],
) -> tuple[Manifest, StudyConfig, str | None]:
    """The manifest and the study of ``study_dir`` (``study`` when given, else its study.yaml),
    and, when ``manifest.json`` was damaged and rebuilt from the run folders, the line that says
    so (None otherwise). ``plan_for(study, n_cycles)`` plans the study."""
    damage: DamagedManifest | None = None
    try:
        manifest: Manifest | None = read_manifest(study_dir)
    except DamagedManifest as exc:
        manifest, damage = None, exc
    if study is None:
        try:
            study = StudyConfig.from_yaml(study_dir / STUDY_FILE)
        except ConfigError as exc:
            if damage is None:  # the manifest holds no config: the study file must say them
                raise ConfigError(
                    f"--resume {study_dir}: its {STUDY_FILE} cannot be read, so the study's "
                    "experiments are unknown. Restore it from a backup, or resume with the "
                    f"original study file: `llem run ORIGINAL.yaml --resume {study_dir}`",
                    [str(exc)],
                ) from None
            raise ConfigError(  # neither file can say what the study was
                f"--resume {study_dir}: both {MANIFEST_FILE} ({damage.problem}) and "
                f"{STUDY_FILE} are damaged, so the plan cannot be rebuilt. Restore either from a "
                "backup, or start the study again with `llem run STUDY.yaml` (its completed "
                "results stay where they are)",
                [str(exc)],
            ) from None
    if manifest is not None:
        return manifest, study, None
    assert damage is not None
    chosen = study
    manifest, line = rebuild_manifest(
        study_dir, chosen, lambda n: plan_for(chosen, n), damage.problem
    )
    return manifest, study, line
