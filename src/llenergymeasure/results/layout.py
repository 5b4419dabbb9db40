"""The files of a study folder and of its run folders, named once.

A study folder (``<results_dir>/<name>_<YYYYmmdd-HHMMSS>/``)::

    study.yaml            STUDY_FILE: the study file as given
    manifest.json         MANIFEST_FILE: every planned run and its status
    .llem.lock            LOCK_FILE: held by the controller that follows the study
    NNN_c<cycle>_<backend>_<hash8>/    one run folder per attempt (``_a2`` etc. for reruns)
    study_result.json     STUDY_RESULT_FILE: the StudyResult (at the end)
    summary.csv           SUMMARY_FILE: one row per config
    results.parquet       RESULTS_PARQUET: one row per run
    report.html, figures/ REPORT_FILE, FIGURES_DIR: the report

A run folder::

    request.json          REQUEST_FILE: what the runner hands the harness
    result.json           RESULT_FILE: the ExperimentResult (a completed run)
    error.json            ERROR_FILE: the phase that failed and why (a failed run)
    timeseries.csv        TIMESERIES_FILE: power, energy and clocks over the run
    run.log               LOG_FILE: the harness process's stdout and stderr
    progress.json         PROGRESS_FILE: the phase the harness is in
    process.json          PROCESS_FILE: the harness process (pid, start time, host)
    node.json             NODE_FILE: the SLURM node and job that ran it (slurm runner)

Pure constants: imports nothing, so the data models and the harness can use it.
"""

from __future__ import annotations

# -- a study folder ------------------------------------------------------------------------------
STUDY_FILE = "study.yaml"
MANIFEST_FILE = "manifest.json"
LOCK_FILE = ".llem.lock"
STUDY_RESULT_FILE = "study_result.json"
SUMMARY_FILE = "summary.csv"
RESULTS_PARQUET = "results.parquet"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"

# -- a run folder --------------------------------------------------------------------------------
REQUEST_FILE = "request.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.json"
TIMESERIES_FILE = "timeseries.csv"
LOG_FILE = "run.log"
PROGRESS_FILE = "progress.json"
PROCESS_FILE = "process.json"
NODE_FILE = "node.json"
