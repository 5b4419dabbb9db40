"""The docker runner against a real daemon and the CI images: single runs, studies, failures.

Every test here also checks (autouse fixture in conftest) that no container was left behind.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure import ExperimentResult, run_experiment, run_study
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from llenergymeasure.runners.docker.runner import DockerRunner
from tests.docker.docker_helpers import managed_containers, tiny_experiment

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _request(cache: Path, **overrides: Any) -> HarnessRequest:
    return HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment(**overrides)),
        settings=HarnessSettings(
            energy_backend="none",
            model_cache_dir=str(cache),
            baseline_cache_dir=str(cache / "baseline"),
        ),
    )


def test_single_experiment_in_docker_gives_a_valid_result(
    pytorch_image: str, docker_user_config: Path, tmp_path: Path
) -> None:
    result = run_experiment(
        tiny_experiment(), runner=f"docker:{pytorch_image}", results_dir=tmp_path / "results"
    )
    assert isinstance(result, ExperimentResult)
    assert result.runner.kind == "docker"
    assert result.runner.image == pytorch_image
    assert result.runner.source == "cli:--runner"
    env = result.environment
    assert env.in_container is True
    assert env.container_image == pytorch_image
    assert env.container_image_id and env.container_image_id.startswith("sha256:")
    assert result.n_requests == 4
    assert result.output_tokens == 4 * 8
    assert result.duration_s > 0 and result.output_tokens_per_s > 0
    assert result.model.weights == "random"

    # What is on disk is the same, schema-valid record, next to the container's log.
    [result_file] = list((tmp_path / "results").rglob("result.json"))
    on_disk = ExperimentResult.model_validate_json(result_file.read_text())
    assert on_disk.experiment_id == result.experiment_id
    log = (result_file.parent / "run.log").read_text()
    assert log.strip(), "the container's output was not streamed into run.log"


def test_two_config_study_through_docker(
    pytorch_image: str, docker_user_config: Path, tmp_path: Path
) -> None:
    study = {
        "name": "docker-two-configs",
        "base": tiny_experiment(),
        "sweep": {"batch_size": [1, 4]},
        "execution": {"n_cycles": 1, "cycle_order": "sequential"},
    }
    result = run_study(study, runner=f"docker:{pytorch_image}", results_dir=tmp_path / "results")
    assert not result.failures, result.failures
    assert sorted(r.config.batch_size for r in result.runs) == [1, 4]
    assert {r.environment.container_image for r in result.runs} == {pytorch_image}
    # Two separate containers: each run records its own container (by the image's id).
    assert all(r.runner.kind == "docker" for r in result.runs)


def test_multi_backend_study_each_backend_in_its_image(
    pytorch_image: str,
    vllm_image: str,
    vllm_cpu_model: Path,
    docker_user_config: Path,
    tmp_path: Path,
) -> None:
    # Runners come from the user config (a multi-backend study must run every backend in Docker).
    with docker_user_config.open("a") as fh:
        fh.write(f"runners:\n  pytorch: docker:{pytorch_image}\n  vllm: docker:{vllm_image}\n")
    study = {
        "name": "docker-multi-backend",
        "experiments": [
            tiny_experiment(),
            tiny_experiment(
                backend="vllm",
                model=str(vllm_cpu_model),
                # vLLM's defaults: on the CPU the backend sizes the KV cache from free memory
                vllm={"enforce_eager": True, "max_model_len": 256},
            ),
        ],
        "execution": {"n_cycles": 1, "cycle_order": "sequential"},
    }
    result = run_study(study, results_dir=tmp_path / "results")
    assert not result.failures, [f.message for f in result.failures]
    by_backend = {r.config.backend: r for r in result.runs}
    assert set(by_backend) == {"pytorch", "vllm"}
    assert by_backend["pytorch"].environment.container_image == pytorch_image
    assert by_backend["vllm"].environment.container_image == vllm_image
    assert by_backend["vllm"].runner.source.startswith("user_config:")
    assert by_backend["vllm"].output_tokens == 4 * 8
    assert by_backend["vllm"].extra["cpu_kv_cache_source"].startswith("auto: 25% of the ")


def _kill_first_container(
    client: Any, under: Path, stop: threading.Event, killed: list[str]
) -> None:
    """Kill the first experiment container seen running (once), as an operator or OOM killer would."""
    while not stop.is_set():
        for c in managed_containers(client, under):
            if c.status == "running" and "--config" in c.attrs.get("Args", []):
                try:
                    c.kill()
                except Exception:  # it ended between the listing and the kill: try the next one
                    continue
                killed.append(c.name)
                return
        time.sleep(0.05)


def test_container_killed_mid_run_is_a_failed_run_and_the_study_goes_on(
    pytorch_image: str, docker_client: Any, docker_user_config: Path, tmp_path: Path
) -> None:
    study = {
        "name": "docker-kill",
        "base": tiny_experiment(),
        "sweep": {"batch_size": [1, 2]},
        "execution": {"n_cycles": 1, "cycle_order": "sequential"},
    }
    stop = threading.Event()
    killed: list[str] = []
    watcher = threading.Thread(
        target=_kill_first_container, args=(docker_client, tmp_path, stop, killed)
    )
    watcher.start()
    try:
        result = run_study(
            study, runner=f"docker:{pytorch_image}", results_dir=tmp_path / "results"
        )
    finally:
        stop.set()
        watcher.join(10)
    assert len(killed) == 1
    assert len(result.failures) == 1 and len(result.runs) == 1
    failure = result.failures[0]
    assert "exited with status 137" in failure.message and "SIGKILL" in failure.message
    assert failure.error_file
    error_files = list((tmp_path / "results").rglob("error.json"))
    assert len(error_files) == 1
    payload = json.loads(error_files[0].read_text())
    assert payload["error_type"] == "ContainerExited" and payload["exit_code"] == 137
    # The other config ran to completion after the failure.
    assert result.runs[0].config.batch_size == 2


def test_timeout_stops_and_removes_the_container(
    pytorch_image: str, shared_model_cache: Path, tmp_path: Path
) -> None:
    runner = DockerRunner(pytorch_image, model_cache_dir=shared_model_cache)
    outcome = runner.run(_request(shared_model_cache, n=64), tmp_path / "run", timeout_s=1.5)
    assert outcome.status == "timeout"
    # No bound on the wall time (the machine's load sets it), and none on result.json either: the
    # harness may still finish and write it during the container's stop grace. The outcome is the
    # timeout either way, and the container is gone (below).
    assert outcome.error_path is not None and outcome.error_path.exists()
    assert json.loads(outcome.error_path.read_text())["error_type"] == "Timeout"
    assert "timed out after 1.5 s" in (outcome.message or "")
    import docker

    assert managed_containers(docker.from_env(), tmp_path) == []


def test_harness_failure_inside_the_container_keeps_the_harness_error(
    pytorch_image: str, shared_model_cache: Path, tmp_path: Path
) -> None:
    # A local model directory that exists (so it is mounted read-only) but holds no model.
    empty_model = tmp_path / "not-a-model"
    empty_model.mkdir()
    runner = DockerRunner(pytorch_image)
    outcome = runner.run(_request(shared_model_cache, model=str(empty_model)), tmp_path / "run")
    assert outcome.status == "failed"
    assert outcome.error_path is not None
    payload = json.loads(outcome.error_path.read_text())
    assert payload["phase"] == outcome.phase
    assert outcome.phase is not None and outcome.phase != "request"
    assert outcome.error_type != "ContainerExited", "the harness's own error.json was overwritten"


def test_result_files_are_owned_by_the_calling_user(pytorch_image: str, tmp_path: Path) -> None:
    # As root, stand in for an ordinary user 1234:1234 who owns the output and cache directories;
    # otherwise the caller is already an ordinary user and the runner's default must use its ids.
    if os.getuid() == 0:
        uid, gid, user = 1234, 1234, "1234:1234"
    else:
        uid, gid, user = os.getuid(), os.getgid(), None
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    for d in (run_dir, cache):
        d.mkdir()
        if os.getuid() == 0:
            os.chown(d, uid, gid)
    runner = DockerRunner(pytorch_image, user=user)
    outcome = runner.run(_request(cache), run_dir)
    assert outcome.status == "completed", outcome.message
    # request.json and run.log are written by the controller itself; everything else by the
    # container, which must never leave root-owned files behind.
    written_by_container = [
        p
        for p in list(run_dir.rglob("*")) + list(cache.rglob("*"))
        if p.name not in ("request.json", "run.log")
    ]
    assert any(p.name == "result.json" for p in written_by_container)
    wrong = [
        (str(p), p.stat().st_uid, p.stat().st_gid)
        for p in written_by_container
        if (p.stat().st_uid, p.stat().st_gid) != (uid, gid)
    ]
    assert not wrong, wrong


def test_secrets_reach_the_container_only_through_its_environment(
    pytorch_image: str, shared_model_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "hf_llem_test_secret_0123456789"
    monkeypatch.setenv("HF_TOKEN", secret)
    runner = DockerRunner(pytorch_image)
    env = runner._environment("sha256:test")
    assert env["HF_TOKEN"] == secret
    outcome = runner.run(_request(shared_model_cache), tmp_path / "run")
    assert outcome.status == "completed", outcome.message
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), f"{path} holds the token"
