"""The docker runner's image per experiment for ``backend: openai`` (issue 27 item 2).

Pure resolution, no Docker daemon: each launch engine's image, a user's runner image and
``openai.launch.image``, attach mode, a study sweeping the engine (one image per run), the
vLLM backend's runner setting followed by a launched vLLM server (the CI image), and the refusal
of a release image without llem before a study starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.backends import registry
from llenergymeasure.backends.openai import images as openai_images
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.config.study import StudyConfig
from llenergymeasure.config.user import UserConfig
from llenergymeasure.errors import RunnerError
from llenergymeasure.runners import resolution
from llenergymeasure.runners.resolution import (
    docker_images,
    refuse_images_without_llem,
    resolve_runner,
    resolve_runners,
)
from llenergymeasure.study.execution import executor_for

SGLANG = "lmsysorg/sglang:v0.5.20-cu130"
TGI = "ghcr.io/huggingface/text-generation-inference:3.3.5"


def _launch(engine: str, **launch: Any) -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "model": "synthetic/tiny-llama",
            "backend": "openai",
            "openai": {"launch": {"engine": engine, **launch}},
        }
    )


def _attach() -> ExperimentConfig:
    return ExperimentConfig.from_dict(
        {
            "model": "synthetic/tiny-llama",
            "backend": "openai",
            "openai": {"base_url": "http://127.0.0.1:8000"},
        }
    )


def _docker(environ: dict[str, str] | None = None, **kw: Any) -> resolution.ResolvedRunner:
    return resolve_runner(
        "openai", environ={"LLEM_RUNNER_OPENAI": "docker", **(environ or {})}, **kw
    )


@pytest.mark.parametrize(
    ("engine", "image", "has_llem"),
    [
        ("vllm", "llenergymeasure:vllm", True),
        ("trtllm", "llenergymeasure:trtllm", True),
        ("sglang", SGLANG, False),
        ("tgi", TGI, False),
    ],
)
def test_each_engine_runs_in_its_own_image(engine: str, image: str, has_llem: bool) -> None:
    runner = _docker()
    assert runner.image is None and runner.describe() == "docker (image per experiment)"
    assert hash(runner) == hash(_docker())  # still a frozen, hashable record
    chosen = runner.for_experiment(_launch(engine))
    assert (chosen.kind, chosen.image, chosen.has_llem) == ("docker", image, has_llem)
    assert chosen.image_source is not None
    assert chosen.image_source.startswith(f"default for engine {engine}: ")
    assert chosen.source == "env:LLEM_RUNNER_OPENAI"  # where the runner came from, unchanged


def test_docker_for_openai_is_no_longer_refused_for_want_of_an_image(tmp_path: Path) -> None:
    # all three ways of asking for docker without an image resolve (before: "has no default image")
    user = UserConfig(runners={"openai": "docker"})
    for runner in (
        _docker(),
        resolve_runner("openai", user_config=user, environ={}),
        resolve_runner("openai", cli_runner="docker", environ={}),
    ):
        assert runner.kind == "docker" and runner.image_per_experiment
        assert runner.for_experiment(_launch("vllm")).image == "llenergymeasure:vllm"


def test_a_runner_image_the_user_names_wins_over_every_per_experiment_choice() -> None:
    runner = resolve_runner("openai", environ={"LLEM_RUNNER_OPENAI": "docker:my/serving:1"})
    assert runner.describe() == "docker:my/serving:1"
    for config in (_launch("sglang"), _launch("vllm", image="other:2"), _attach()):
        assert runner.for_experiment(config).image == "my/serving:1"
    assert docker_images({"openai": runner}, [_launch("sglang"), _attach()]) == ["my/serving:1"]
    refuse_images_without_llem({"openai": runner}, [_launch("sglang")])  # the user's choice


def test_launch_image_wins_over_the_engine_default() -> None:
    chosen = _docker().for_experiment(_launch("sglang", image="llenergymeasure:sglang"))
    assert chosen.image == "llenergymeasure:sglang"
    assert chosen.image_source == "openai.launch.image" and chosen.has_llem is None


def test_attach_mode_runs_in_the_default_backends_image() -> None:
    chosen = _docker().for_experiment(_attach())
    assert chosen.image == registry.get(registry.DEFAULT_BACKEND).image == "llenergymeasure:pytorch"
    assert chosen.has_llem is True
    assert (
        chosen.image_source == "attach mode (llem's client only, no engine): llem's PyTorch image"
    )


def test_the_vllm_backends_runner_image_is_the_launched_vllm_servers_too() -> None:
    # how CI runs it: runners.vllm names the CI image; openai is plain docker
    user = UserConfig(
        runners={"openai": "docker", "vllm": "docker:llenergymeasure:vllm-ci"},
        source_path="/etc/llem.yaml",
    )
    runner = resolve_runner("openai", user_config=user, environ={})
    chosen = runner.for_experiment(_launch("vllm"))
    assert chosen.image == "llenergymeasure:vllm-ci" == registry.get("vllm").ci_image
    assert chosen.image_source == (
        "default for engine vllm: the vLLM backend's image (runners.vllm in /etc/llem.yaml)"
    )
    # an environment variable for the vLLM backend, likewise; other engines keep their default
    runner = _docker({"LLEM_RUNNER_VLLM": "docker:pinned/vllm:0.11"})
    assert runner.for_experiment(_launch("vllm")).image == "pinned/vllm:0.11"
    assert runner.for_experiment(_launch("trtllm")).image == "llenergymeasure:trtllm"
    # a pytorch runner image is the attach-mode client's
    runner = _docker({"LLEM_RUNNER_PYTORCH": "docker:mine/pt:1"})
    assert runner.for_experiment(_attach()).image == "mine/pt:1"
    # the vLLM backend run locally: the launched server still gets llem's vLLM image
    runner = _docker({"LLEM_RUNNER_VLLM": "local"})
    assert runner.for_experiment(_launch("vllm")).image == "llenergymeasure:vllm"


def test_a_study_sweeping_the_engine_gets_one_image_per_run() -> None:
    study = StudyConfig.from_dict(
        {
            "name": "engines",
            "experiments": [
                {
                    "model": "synthetic/tiny-llama",
                    "backend": "openai",
                    "openai": {"launch": {"engine": "vllm"}},
                }
            ],
            "sweep": {"openai.launch.engine": ["vllm", "trtllm", "sglang", "tgi"]},
        }
    )
    configs = study.expand()
    runners = resolve_runners(study.backends, environ={"LLEM_RUNNER_OPENAI": "docker"})
    per_run = [runners["openai"].for_experiment(c).image for c in configs]
    assert per_run == ["llenergymeasure:vllm", "llenergymeasure:trtllm", SGLANG, TGI]
    assert docker_images(runners, configs) == per_run  # each checked once


def test_a_release_image_without_llem_is_refused_naming_it_and_how_to_build_one() -> None:
    runners = {"openai": _docker()}
    configs = [_launch("vllm"), _launch("sglang"), _launch("tgi", args=["--x"])]
    with pytest.raises(RunnerError) as info:
        refuse_images_without_llem(runners, configs)
    text = str(info.value)
    assert "vllm" not in text.split("\n", 1)[1].split(SGLANG)[0]  # llem's vLLM image is fine
    for engine, image in (("sglang", SGLANG), ("tgi", TGI)):
        assert f"{image} (default for engine {engine}: its own release image)" in text
        assert f"docker/build-image.sh {engine}" in text
        assert f"openai.launch.image: llenergymeasure:{engine}" in text
    assert "make images` does not build it" in text
    refuse_images_without_llem(runners, [_launch("vllm"), _attach()])  # nothing to refuse


def test_a_study_with_a_release_image_stops_before_anything_is_written(tmp_path: Path) -> None:
    from llenergymeasure.study.runner import StudyOptions, StudyRunner

    study = StudyConfig.from_dict(
        {"name": "sglang", "experiments": [_launch("sglang").model_dump(exclude_defaults=True)]}
    )
    runner = StudyRunner(
        study,
        StudyOptions(results_dir=tmp_path / "results"),
        user_config=UserConfig(),
        environ={"LLEM_RUNNER_OPENAI": "docker"},
    )
    # refused before the daemon is asked (none runs here) and before a study folder exists
    with pytest.raises(RunnerError, match=rf"{SGLANG} \(default for engine sglang"):
        runner.run()
    assert not (tmp_path / "results").exists()


def test_the_docker_executor_gets_the_experiments_image_and_why() -> None:
    chosen = _docker().for_experiment(_launch("vllm"))
    executor = executor_for(chosen, Path("/tmp/models"))
    assert executor.image == "llenergymeasure:vllm"
    assert executor.settings.extra_env == {
        "LLEM_CONTAINER_IMAGE_SOURCE": "default for engine vllm: llem's vLLM image"
    }
    # a backend-wide image: nothing chosen per experiment, nothing passed
    pytorch = resolve_runner("pytorch", environ={"LLEM_RUNNER_PYTORCH": "docker"})
    assert executor_for(pytorch, Path("/tmp/models")).settings.extra_env == {}


def test_the_launch_record_names_the_image_the_runner_chose() -> None:
    assert resolution.IMAGE_SOURCE_ENV == openai_images.IMAGE_SOURCE_ENV
    launch = _launch("vllm").backend_section().launch  # type: ignore[attr-defined]
    inside = {
        "LLEM_CONTAINER_IMAGE": "llenergymeasure:vllm-ci",
        "LLEM_CONTAINER_IMAGE_SOURCE": "default for engine vllm: the vLLM backend's image (x)",
    }
    assert openai_images.launch_image_record(launch, inside) == {
        "image": "llenergymeasure:vllm-ci",
        "source": "default for engine vllm: the vLLM backend's image (x)",
        "has_llem": True,
    }
    # a local process (no container): llem's default for the engine
    assert openai_images.launch_image_record(launch, {}) == {
        "image": "llenergymeasure:vllm",
        "source": "default for engine vllm: llem's vLLM image",
        "has_llem": True,
    }


def test_other_backends_keep_one_image_and_no_hook() -> None:
    for name in ("pytorch", "vllm", "tensorrt"):
        runner = resolve_runner(name, cli_runner="docker", environ={})
        assert runner.image == registry.get(name).image and not runner.image_per_experiment
        assert (
            runner.for_experiment(ExperimentConfig.from_dict({"model": "m", "backend": name}))
            is runner
        )


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("engine", sorted(openai_images.ENGINE_RELEASE_IMAGES))
def test_the_release_images_hint_builds_llem_on_exactly_that_image(engine: str) -> None:
    import re
    import subprocess

    text = (ROOT / "docker" / f"{engine}.Dockerfile").read_text()
    pinned = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert pinned and pinned.group(1) == openai_images.ENGINE_RELEASE_IMAGES[engine]
    done = subprocess.run(
        ["bash", str(ROOT / "docker" / "build-image.sh"), engine, "--dry-run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert f"tag: llenergymeasure:{engine}\n" in done.stdout
    assert f"base: {openai_images.ENGINE_RELEASE_IMAGES[engine]}\n" in done.stdout
    # `make images` leaves them out (CI time): its default BACKENDS list
    make = (ROOT / "Makefile").read_text()
    default = re.search(r"^BACKENDS \?= (.+)$", make, re.MULTILINE)
    assert default and engine not in default.group(1).split()


def test_the_dry_run_shows_each_experiments_image_and_the_refusal(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from llenergymeasure.cli import app

    study = {
        "name": "engines",
        "experiments": [_launch("vllm").model_dump(exclude_defaults=True, mode="json")],
        "sweep": {"openai.launch.engine": ["vllm", "sglang"]},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    user = tmp_path / "user.yaml"
    user.write_text(f"output:\n  results_dir: {tmp_path / 'results'}\n")
    env = {"LLEM_RUNNER_OPENAI": "docker", "LLEM_CONFIG": str(user), "COLUMNS": "250"}
    res = CliRunner().invoke(app, ["run", str(path), "--dry-run"], env=env)
    assert "docker:llenergymeasure:vllm (env:LLEM_RUNNER_OPENAI)" in res.output
    assert f"docker:{SGLANG} (env:LLEM_RUNNER_OPENAI)" in res.output
    assert res.exit_code != 0 and "the run would be refused" in res.output
    assert f"{SGLANG} (default for engine sglang: its own release image)" in res.output
    assert not (tmp_path / "results").exists()
