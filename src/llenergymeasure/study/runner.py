"""``StudyRunner``: plan, run every experiment in isolation, keep the manifest, aggregate.

The study directory (``<results_dir>/<name>_<YYYYmmdd-HHMMSS>/``) holds ``study.yaml``,
``manifest.json`` (every planned run and its status, rewritten atomically per transition), one
folder per run attempt (``_a2`` etc. for reruns), and at the end ``study_result.json`` and
``summary.csv``; ``results/layout.py`` names every file. Nothing already written is rewritten: a
rerun (resume, or a retry) gets a new attempt folder.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from llenergymeasure._signals import stop_description
from llenergymeasure.config.paths import has_relative_paths, missing_local_inputs
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.user import UserConfig, load_user_config
from llenergymeasure.environment.snapshot import capture_environment, context_from_user_config
from llenergymeasure.errors import (
    ConfigError,
    RunnerError,
    StudyInterrupted,
    filesystem_error,
    is_filesystem_error,
)
from llenergymeasure.results.io import atomic_write_text
from llenergymeasure.results.layout import MANIFEST_FILE, RESULT_FILE, STUDY_FILE
from llenergymeasure.results.models import RunnerRecord
from llenergymeasure.results.study_result import StudyResult
from llenergymeasure.runners.base import RunOutcome
from llenergymeasure.runners.device_lock import DeviceLocker
from llenergymeasure.runners.resolution import ResolvedRunner, resolve_runners, study_docker_images
from llenergymeasure.study.aggregate import collect_study_result
from llenergymeasure.study.concurrent import concurrency_pool, run_concurrently
from llenergymeasure.study.execution import executor_for, run_attempt
from llenergymeasure.study.lost_gpus import refuse_if_gpus_still_missing
from llenergymeasure.study.manifest import Manifest, ManifestRun, ManifestStore, study_lock
from llenergymeasure.study.observer import NullObserver, StudyObserver
from llenergymeasure.study.placement import GpuPool
from llenergymeasure.study.planning import (
    NO_GAPS,
    Gaps,
    PlannedRun,
    plan_study,
    resolve_gaps,
)
from llenergymeasure.study.recovery import (
    adopt_finished_results,
    damaged_result_lines,
    keep_damaged_manifest,
    manifest_for_resume,
    refuse_if_still_running,
    result_problem,
    set_aside_completed,
    unreadable_process_lines,
)
from llenergymeasure.study.requests import RequestBuilder, runner_record
from llenergymeasure.study.slo_search import is_probe_id, is_search, refuse_unsupported, run_search
from llenergymeasure.timestamps import utc_now


class StudyRunner:
    """Runs a study. Internal API (``from llenergymeasure.study import StudyRunner``)."""

    def __init__(
        self,
        study: StudyConfig | None,
        options: StudyOptions | None = None,
        *,
        resume_dir: str | Path | None = None,
        source_path: str | Path | None = None,
        user_config_path: str | Path | None = None,
        user_config: UserConfig | None = None,
        environ: dict[str, str] | None = None,
        observer: StudyObserver | None = None,
    ) -> None:
        options = options or StudyOptions()
        n_cycles, no_gaps = options.n_cycles, options.no_gaps
        self.no_gaps_reason = options.no_gaps_reason
        #: execution.concurrent_runs > 1: the GPUs to place runs on (None: the visible ones)
        self.gpu_pool = options.gpu_pool
        #: slurm runner: return once the runs are submitted (StudyDetached says how to follow)
        self.detach = options.detach
        self.environ = dict(os.environ if environ is None else environ)
        self.user_config = user_config or load_user_config(user_config_path, self.environ)
        self.cli_runner = options.runner
        self.results_dir = (
            Path(options.results_dir)
            if options.results_dir
            else self.user_config.output.resolved_results_dir()
        )
        self.fail_fast = options.fail_fast
        self.no_gaps = no_gaps
        self.observer: StudyObserver = observer or NullObserver()
        self.resume_dir = Path(resume_dir) if resume_dir else None
        self.source_path = Path(source_path) if source_path else None
        #: the manifest of the study resumed (``resume_dir``), else None
        self.resume_manifest: Manifest | None = None
        #: resume: lines saying what was recovered (a damaged manifest rebuilt, results set aside)
        self.recovery_notes: list[str] = []
        #: resume: manifest.json was damaged and rebuilt (the damaged file is kept when it is saved)
        self.manifest_rebuilt = False
        if self.resume_dir is not None:
            study = self._study_for_resume(study)
        if study is None:
            raise ConfigError("no study given; pass a StudyConfig or resume_dir")
        self.study = study
        missing = missing_local_inputs(study.expand())
        if missing:
            what = "the experiment names" if len(study.expand()) == 1 else "the study names"
            raise ConfigError(f"{what} local inputs that do not exist", missing)
        if n_cycles is not None and n_cycles < 1:
            raise ConfigError(f"--cycles must be at least 1, got {n_cycles}")
        if n_cycles is not None and len(study.expand()) * n_cycles > study.execution.max_runs:
            raise ConfigError(
                f"--cycles {n_cycles}: {len(study.expand()):,} experiments x {n_cycles} cycles "
                f"= {len(study.expand()) * n_cycles:,} runs, more than execution.max_runs = "
                f"{study.execution.max_runs:,}; use fewer cycles, or raise execution.max_runs"
            )
        self.n_cycles = n_cycles
        self.gaps: Gaps = resolve_gaps(
            study, self.user_config, no_gaps, n_cycles, options.no_gaps_reason
        )
        self.study_dir: Path | None = None

    # -- preparation ---------------------------------------------------------------------------

    def _study_for_resume(self, study: StudyConfig | None) -> StudyConfig:
        assert self.resume_dir is not None
        manifest_path = self.resume_dir / MANIFEST_FILE
        if not manifest_path.exists():
            raise ConfigError(
                f"--resume {self.resume_dir}: no {MANIFEST_FILE} there; give the directory of a study "
                "that llem started (it holds manifest.json and study.yaml)"
            )
        manifest, study, rebuilt = manifest_for_resume(
            self.resume_dir,
            study,
            lambda s, n: plan_study(s, NO_GAPS, n),  # the manifest keeps no gap
        )
        if rebuilt is not None:  # manifest.json was damaged: rebuilt, saved once locked
            self.recovery_notes.append(rebuilt)
            self.manifest_rebuilt = True
        if study.study_design_hash != manifest.study_design_hash:
            raise ConfigError(
                f"--resume {self.resume_dir}: the study file no longer matches this study (design hash "
                f"{study.study_design_hash[:12]} vs {manifest.study_design_hash[:12]} in the manifest): "
                "its experiments changed. Resume with the original study file, or start a new study"
            )
        self.resume_manifest = manifest
        self.recovery_notes.extend(damaged_result_lines(manifest, self.resume_dir))
        self.recovery_notes.extend(unreadable_process_lines(manifest, self.resume_dir))
        return study

    def resolve(self) -> dict[str, ResolvedRunner]:
        """Resolve every backend's runner (multi-backend rule included) before anything runs."""
        cli_runner = self.cli_runner
        submitted = []
        if self.resume_manifest is not None:
            submitted = [r for r in self.resume_manifest.runs if r.job_id]
        if submitted and cli_runner is None:
            cli_runner = "slurm"  # a study submitted to SLURM resumes there (still lowest rank)
        runners = resolve_runners(self.study.backends, self.user_config, cli_runner, self.environ)
        live = [r for r in submitted if r.status in ("queued", "running")]
        off = [r for r in runners.values() if r.kind != "slurm"]
        if live and off:
            raise RunnerError(
                f"--resume {self.resume_dir}: {len(live)} run(s) of this study are SLURM jobs "
                f"(e.g. {live[0].run_id}: job {live[0].job_id}) but the runner resolves to "
                f"{off[0].describe()} (from {off[0].source}); resume it with the slurm runner "
                "so those jobs are followed, not run a second time here"
            )
        return runners

    def plan(self) -> list[PlannedRun]:
        cycles = self.n_cycles
        if self.resume_manifest is not None:
            cycles = self.resume_manifest.n_cycles
        return plan_study(self.study, self.gaps, cycles)

    def _preflight(self, runners: dict[str, ResolvedRunner], plan: list[PlannedRun]) -> None:
        """Each distinct Docker image of the plan: llem in it, and of this llem's version."""
        configs = list({r.config.config_hash: r.config for r in plan}.values())
        images = study_docker_images(runners, configs)  # refuses an image without llem
        if images:
            from llenergymeasure.runners.docker.daemon import check_docker_available
            from llenergymeasure.runners.docker.images import check_image_versions

            check_docker_available()
            check_image_versions(images)

    def _new_study_dir(self) -> Path:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = self.results_dir / f"{self.study.name}_{stamp}"
        path = base
        k = 2
        while path.exists():
            path = Path(f"{base}-{k}")
            k += 1
        path.mkdir(parents=True)
        return path

    def _study_yaml_text(self) -> str:
        """The study file as given; when it names relative local paths (which mean paths next to
        the original file, not next to this copy), the study with those paths made absolute."""
        header = ""
        if self.source_path is not None and self.source_path.exists():
            text = self.source_path.read_text(encoding="utf-8")
            try:
                relative = has_relative_paths(yaml.safe_load(text), self.source_path.parent)
            except yaml.YAMLError:
                relative = False
            if not relative:
                return text
            header = (
                f"# {self.source_path}, with its relative paths made absolute "
                f"(they are relative to {self.source_path.parent.absolute()})\n"
            )
        data = self.study.model_dump(mode="json", exclude_defaults=False)
        return header + yaml.safe_dump(data, sort_keys=False)

    @property
    def requests(self) -> RequestBuilder:
        """Builds each run's ``HarnessRequest`` (the one place one is built)."""
        return RequestBuilder(self.user_config, self.environ, self.study.execution.vary_prompt_seed)

    def concurrency_pool(
        self, plan: list[PlannedRun], runners: dict[str, ResolvedRunner]
    ) -> GpuPool | None:
        """The GPUs for ``execution.concurrent_runs`` > 1, checked against ``plan`` (None: one
        run at a time); see ``study/concurrent.py``."""
        return concurrency_pool(
            plan,
            runners,
            limit=self.study.execution.concurrent_runs,
            gpu_pool=self.gpu_pool,
            environ=self.environ,
        )

    # -- running -------------------------------------------------------------------------------

    def run(self) -> StudyResult:
        try:
            return self._run()
        except OSError as exc:
            if not is_filesystem_error(exc):
                raise
            then = None
            if self.study_dir is not None and (self.study_dir / MANIFEST_FILE).exists():
                cmd = f"llem run --resume {shlex.quote(str(self.study_dir))}"
                then = f"Completed results are kept; once that is fixed, continue with: {cmd}"
            raise filesystem_error(exc, "write the study's files", then) from exc

    def _run(self) -> StudyResult:
        runners = self.resolve()
        plan = self.plan()
        self._preflight(runners, plan)
        # execution.concurrent_runs > 1: the GPU pool, checked against the plan before anything
        # is written (None: one run at a time)
        pool = self.concurrency_pool(plan, runners)
        refuse_unsupported(plan, pool is not None, any(r.kind == "slurm" for r in runners.values()))
        started_at = utc_now()
        if self.resume_dir is not None and self.resume_manifest is not None:
            # a resumed study started when it was first started, not now
            started_at = self.resume_manifest.created_at
            study_dir = self.resume_dir
            store = ManifestStore(study_dir, self.resume_manifest)
            planned_ids = [r.run_id for r in plan]
            # an SLO search's runs were added as it went (study/slo_search.py)
            manifest_ids = [r.run_id for r in store.manifest.runs if not is_probe_id(r.run_id)]
            if planned_ids != manifest_ids:
                raise ConfigError(
                    f"--resume {study_dir}: the plan no longer matches the manifest (different runs or "
                    "order); resume with the same study file and llem version"
                )
        else:
            study_dir = self._new_study_dir()
            try:
                store = self._start_manifest(study_dir, plan)
            except OSError:
                # nothing of the study could be written: leave no directory without a manifest
                shutil.rmtree(study_dir, ignore_errors=True)
                raise
        self.study_dir = study_dir

        try:
            with study_lock(study_dir):
                if self.resume_dir is not None:
                    if self.manifest_rebuilt:
                        kept = keep_damaged_manifest(study_dir)
                        if kept is not None:
                            self.recovery_notes.append(
                                f"the damaged manifest is kept as {kept.name}"
                            )
                        store.save()
                    refuse_if_still_running(store)
                    refuse_if_gpus_still_missing(store)
                    adopt_finished_results(store)
                    set_aside_completed(store)
                store.claim_controller()
                to_run = [r for r in plan if not self._already_done(store, r)]
                self.observer.on_start(study_dir, plan, to_run)
                env_snapshot = capture_environment(
                    **context_from_user_config(self.user_config, self.environ)
                )
                if any(r.kind == "slurm" for r in runners.values()):
                    self._run_on_slurm(store, to_run, runners)
                    return collect_study_result(
                        store, self.study, self.gaps, started_at, runners, env_snapshot
                    )
                # one measurement per device on this machine: the runs of other studies wait
                locker = DeviceLocker(study_dir, self.environ, env_snapshot)
                if pool is not None:
                    try:
                        run_concurrently(
                            store,
                            to_run,
                            runners,
                            pool,
                            limit=self.study.execution.concurrent_runs,
                            requests=self.requests,
                            model_cache_dir=self.user_config.output.resolved_model_cache_dir(),
                            observer=self.observer,
                            fail_fast=self.fail_fast,
                            locker=locker,
                        )
                    except KeyboardInterrupt as exc:
                        self._interrupted(store, None, exc)  # every run is recorded
                    return collect_study_result(
                        store, self.study, self.gaps, started_at, runners, env_snapshot
                    )
                current: PlannedRun | None = None
                try:
                    for position, run in enumerate(to_run, start=1):
                        if position > 1 and run.gap_before_s > 0:
                            self.observer.on_gap(run.gap_before_s, run.gap_kind)
                            time.sleep(run.gap_before_s)
                        current = run
                        outcome = self._run_planned(
                            store, run, runners[run.config.backend], position, len(to_run), locker
                        )
                        current = None
                        if outcome.status != "completed" and self.fail_fast:
                            break
                except KeyboardInterrupt as exc:
                    # Wherever Ctrl-C or SIGTERM lands (a gap, a spawn, a run, reading a result), the
                    # executor has already stopped its process; record the run and tell how to resume.
                    self._interrupted(store, current, exc)
                result = collect_study_result(
                    store, self.study, self.gaps, started_at, runners, env_snapshot
                )
        except KeyboardInterrupt as exc:
            # Ctrl-C before a run started (the lock, the environment snapshot): the manifest
            # is written and every run still pending, so say how to resume
            self._interrupted(store, None, exc)
        return result

    def _start_manifest(self, study_dir: Path, plan: list[PlannedRun]) -> ManifestStore:
        """``study.yaml`` and the first manifest of a new study directory."""
        atomic_write_text(study_dir / STUDY_FILE, self._study_yaml_text())
        manifest = Manifest(
            study_name=self.study.name,
            study_design_hash=self.study.study_design_hash,
            n_cycles=max((r.cycle for r in plan), default=0),
            runs=[
                ManifestRun(
                    run_id=r.run_id,
                    index=r.index,
                    config_hash=r.config.config_hash,
                    config_index=r.config_index,
                    cycle=r.cycle,
                    backend=r.config.backend,
                )
                for r in plan
            ],
        )
        store = ManifestStore(study_dir, manifest)
        store.save()
        return store

    def _run_on_slurm(
        self, store: ManifestStore, to_run: list[PlannedRun], runners: dict[str, ResolvedRunner]
    ) -> None:
        """Every run as a SLURM job (runners/slurm/driver.py); Ctrl-C cancels this study's jobs."""
        from llenergymeasure.runners.slurm.driver import SlurmStudyDriver

        image = next((r.image for r in runners.values() if r.image), None)
        requests = self.requests
        driver = SlurmStudyDriver(
            self.user_config.slurm,
            store,
            self.observer,
            lambda run: requests.request(
                run,
                RunnerRecord(kind="slurm", image=image, source=runners[run.config.backend].source),
            ),
            image=image,
            fail_fast=self.fail_fast,
        )
        try:
            driver.drive(to_run, detach=self.detach)
        except KeyboardInterrupt as exc:
            self._interrupted(store, None, exc)  # the driver already cancelled and marked the jobs

    def _already_done(self, store: ManifestStore, run: PlannedRun) -> bool:
        """Completed, and its result.json is there and reads back; otherwise resume reruns it
        (in a new attempt folder, so the missing or corrupt file is left as it was)."""
        entry = store.get(run.run_id)
        if entry.status != "completed" or not entry.run_dir:
            return False
        path = store.study_dir / entry.run_dir / RESULT_FILE
        return path.is_file() and result_problem(entry, path) is None

    def _run_one(
        self,
        store: ManifestStore,
        run: PlannedRun,
        resolved: ResolvedRunner,
        position: int,
        total: int,
        locker: DeviceLocker | None = None,
    ) -> RunOutcome:
        cache = self.user_config.output.resolved_model_cache_dir()
        resolved = resolved.for_experiment(run.config)  # its image, where chosen per experiment
        return run_attempt(
            store,
            run,
            lambda: self.requests.request(run, runner_record(resolved)),
            lambda: executor_for(resolved, cache),
            self.observer,
            position,
            total,
            locker,
        )

    def _run_planned(
        self,
        store: ManifestStore,
        run: PlannedRun,
        resolved: ResolvedRunner,
        position: int,
        total: int,
        locker: DeviceLocker | None = None,
    ) -> RunOutcome:
        """One planned run; a config with ``load.search`` is a search of runs (slo_search.py)."""
        if not is_search(run.config):
            return self._run_one(store, run, resolved, position, total, locker)
        return run_search(
            store,
            run,
            lambda probe: self._run_one(store, probe, resolved, position, total, locker),
            gap_s=self.gaps.config_gap_s,
        )

    def _interrupted(
        self, store: ManifestStore, run: PlannedRun | None, exc: BaseException | None = None
    ) -> None:
        how, exit_code = stop_description(exc or KeyboardInterrupt())
        if run is not None and store.get(run.run_id).status == "running":
            store.transition(run.run_id, "interrupted", message=how)
        store.save()
        cmd = f"llem run --resume {shlex.quote(str(store.study_dir))}"
        stopped = StudyInterrupted(
            f"study interrupted ({how}); completed results are kept in {store.study_dir}.\n"
            f"Resume with: {cmd}"
        )
        stopped.exit_code = exit_code  # 130 for Ctrl-C, 143 for SIGTERM
        raise stopped


@dataclass(frozen=True)
class StudyOptions:
    """How to run a study: the options of ``llem run`` and ``run_study`` (all optional)."""

    #: the runner for every backend (``--runner``), above the user config and env vars
    runner: str | None = None
    #: where the study directory goes (None: the user config's ``output.results_dir``)
    results_dir: str | Path | None = None
    #: cycles, overriding the study's ``execution.n_cycles``
    n_cycles: int | None = None
    no_gaps: bool = False
    #: who zeroed the gaps when it was not ``--no-gaps`` (recorded as the gaps' source)
    no_gaps_reason: str | None = None
    fail_fast: bool = False
    #: slurm runner: return once the runs are submitted
    detach: bool = False
    #: execution.concurrent_runs > 1: the GPUs to place runs on (None: the visible ones)
    gpu_pool: Sequence[int] | Mapping[int, str] | None = None
