from __future__ import annotations

import re
from pathlib import Path

import pytest

from llenergymeasure.config.runner_spec import parse_runner_spec
from llenergymeasure.config.user import UserConfig, load_user_config, user_config_path
from llenergymeasure.environment.snapshot import capture_environment, context_from_user_config
from llenergymeasure.errors import ConfigError, RunnerError
from llenergymeasure.runners.resolution import resolve_runner, resolve_runners
from tests.helpers import write


def test_user_config_path_precedence(tmp_path: Path) -> None:
    assert user_config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/llenergymeasure/config.yaml")
    assert user_config_path({"LLEM_CONFIG": "/y/c.yaml", "XDG_CONFIG_HOME": "/x"}) == Path(
        "/y/c.yaml"
    )
    assert str(user_config_path({})).endswith(".config/llenergymeasure/config.yaml")


def test_missing_user_config_means_defaults(tmp_path: Path) -> None:
    cfg = load_user_config(environ={"XDG_CONFIG_HOME": str(tmp_path)})
    assert cfg == UserConfig() and cfg.source_path is None
    assert cfg.measurement.energy_backend == "auto" and cfg.execution.config_gap_seconds == 60


def test_llem_config_pointing_nowhere_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LLEM_CONFIG points to"):
        load_user_config(environ={"LLEM_CONFIG": str(tmp_path / "nope.yaml")})


def test_user_config_every_field(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.yaml",
        (Path(__file__).parents[1] / "examples" / "user-config.yaml").read_text(),
    )
    cfg = load_user_config(f)
    assert cfg.runners == {
        "pytorch": "local",
        "vllm": "docker",
        "tensorrt": "docker:llenergymeasure:trtllm",
    }
    assert (
        cfg.measurement.carbon_intensity_gco2_kwh == 350 and cfg.measurement.datacenter_pue == 1.2
    )
    assert cfg.ui.verbosity == "normal" and cfg.execution.cycle_gap_seconds == 300
    assert cfg.output.resolved_model_cache_dir() == Path.home() / ".cache" / "llenergymeasure"


def test_user_config_errors(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.yaml",
        "runners:\n  vllm: podman\nmeasurement:\n  energy_backend: rapl\n  pue: 1.1\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_user_config(f)
    text = str(exc.value)
    assert "unknown runner 'podman'" in text and "docker:<image>" in text
    assert f"{f}:4: measurement.energy_backend" in text
    assert f"{f}:5: measurement.pue: unknown field" in text


@pytest.mark.parametrize(
    ("value", "kind", "image"),
    [
        ("local", "local", None),
        ("docker", "docker", None),
        ("docker:me/img:1", "docker", "me/img:1"),
        ("DOCKER", "docker", None),
    ],
)
def test_parse_runner_spec(value: str, kind: str, image: str | None) -> None:
    spec = parse_runner_spec(value)
    assert spec.kind == kind and spec.image == image


def test_parse_runner_spec_errors() -> None:
    with pytest.raises(RunnerError, match="names no image"):
        parse_runner_spec("docker:")
    with pytest.raises(RunnerError, match="unknown runner 'kubernetes'"):
        parse_runner_spec("kubernetes")
    assert parse_runner_spec("singularity:/x.sif").kind == "singularity"


def _uc(tmp_path: Path, text: str) -> UserConfig:
    return load_user_config(write(tmp_path / "c.yaml", text))


def test_runner_precedence_env_over_user_over_cli_over_default(tmp_path: Path) -> None:
    uc = _uc(tmp_path, "runners:\n  vllm: docker:from-user\n")
    # default
    r = resolve_runner("pytorch", None, None, {})
    assert (r.kind, r.source) == ("local", "default")
    # cli beats default
    r = resolve_runner("pytorch", uc, "docker", {})
    assert (r.kind, r.image, r.source) == ("docker", "llenergymeasure:pytorch", "cli:--runner")
    # user config beats cli
    r = resolve_runner("vllm", uc, "local", {})
    assert (r.kind, r.image) == ("docker", "from-user") and r.source.startswith("user_config:")
    # env beats user config
    r = resolve_runner("vllm", uc, "local", {"LLEM_RUNNER_VLLM": "local"})
    assert (r.kind, r.source) == ("local", "env:LLEM_RUNNER_VLLM")
    # trtllm alias env name and default image
    r = resolve_runner("tensorrt", None, None, {"LLEM_RUNNER_TRTLLM": "docker"})
    assert (r.image, r.source) == ("llenergymeasure:trtllm", "env:LLEM_RUNNER_TRTLLM")


def test_bad_env_runner_names_the_variable() -> None:
    with pytest.raises(RunnerError, match="LLEM_RUNNER_PYTORCH: unknown runner 'gpu'"):
        resolve_runner("pytorch", None, None, {"LLEM_RUNNER_PYTORCH": "gpu"})


def test_singularity_is_refused_as_not_supported() -> None:
    with pytest.raises(RunnerError, match="not supported yet"):
        resolve_runner("pytorch", None, "singularity:/img.sif", {})


def test_multi_backend_requires_docker(tmp_path: Path) -> None:
    with pytest.raises(RunnerError) as exc:
        resolve_runners(["pytorch", "vllm"], None, None, {})
    assert "cannot share one Python environment" in str(exc.value) and "--runner docker" in str(
        exc.value
    )
    ok = resolve_runners(["pytorch", "vllm"], None, "docker", {})
    assert {r.kind for r in ok.values()} == {"docker"}
    with pytest.raises(RunnerError, match="pytorch=local \\(from env:LLEM_RUNNER_PYTORCH\\)"):
        resolve_runners(["pytorch", "vllm"], None, "docker", {"LLEM_RUNNER_PYTORCH": "local"})
    assert len(resolve_runners(["vllm"], None, None, {})) == 1


def test_carbon_and_pue_env_overrides(tmp_path: Path) -> None:
    uc = _uc(tmp_path, "measurement:\n  carbon_intensity_gco2_kwh: 300\n  datacenter_pue: 1.3\n")
    ctx = context_from_user_config(uc, {})
    assert ctx == {
        "carbon_intensity_gco2_kwh": 300,
        "carbon_intensity_source": "user_config",
        "datacenter_pue": 1.3,
        "datacenter_pue_source": "user_config",
    }
    ctx = context_from_user_config(
        uc, {"LLEM_CARBON_INTENSITY": "55.5", "LLEM_DATACENTER_PUE": "1.1"}
    )
    assert (
        ctx["carbon_intensity_gco2_kwh"] == 55.5
        and ctx["carbon_intensity_source"] == "env:LLEM_CARBON_INTENSITY"
    )
    assert (
        ctx["datacenter_pue"] == 1.1 and ctx["datacenter_pue_source"] == "env:LLEM_DATACENTER_PUE"
    )
    with pytest.raises(ConfigError, match="LLEM_CARBON_INTENSITY='lots' is not a number"):
        context_from_user_config(uc, {"LLEM_CARBON_INTENSITY": "lots"})
    with pytest.raises(
        ConfigError, match=re.escape("LLEM_DATACENTER_PUE='0.5' must be at least 1.0")
    ):
        context_from_user_config(uc, {"LLEM_DATACENTER_PUE": "0.5"})


def test_environment_snapshot_records_host_facts_and_reasons() -> None:
    """Failing probes are fed on purpose in test_environment_probes.py."""
    snap = capture_environment(
        carbon_intensity_gco2_kwh=None, datacenter_pue=1.0, datacenter_pue_source="default"
    )
    assert snap.python_version and snap.cpu_cores_logical and snap.ram_total_gb
    assert "pydantic" in snap.packages
    # exactly one of: GPUs listed (GPU host), or the reason there are none (CI: no driver)
    assert bool(snap.gpus) != ("gpus" in snap.probe_errors), snap.probe_errors
    assert "carbon_intensity_gco2_kwh" in snap.probe_errors
    snap2 = capture_environment(
        environ={
            "LLEM_CONTAINER_IMAGE": "llenergymeasure:pytorch",
            "LLEM_CONTAINER_IMAGE_ID": "sha256:abc",
        },
        probe_gpus=False,
    )
    assert snap2.in_container and snap2.container_image == "llenergymeasure:pytorch"
    assert snap2.container_image_id == "sha256:abc"
