"""The registry of backend facts (``backends/registry.py``): registering, its refusals, what it
derives, and a throwaway backend added through it alone, run end to end (issue 24 items 1, 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llenergymeasure.backends import create_backend, registry
from llenergymeasure.backends.registry import BackendSpec
from llenergymeasure.backends.section import BackendSection
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import ConfigError, RunnerError
from llenergymeasure.runners.resolution import resolve_runner
from tests.helpers import user_config_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations in a test stay in that test."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _spec(name: str = "echo", **kw: object) -> BackendSpec:
    return BackendSpec(
        name=name,
        title=name.title(),
        section=kw.pop("section", BackendSection),  # type: ignore[arg-type]
        factory=str(kw.pop("factory", "tests.fakes.echo_backend:create")),
        **kw,  # type: ignore[arg-type]
    )


# -- the spec and registering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "Echo"}, "backend name 'Echo' is not a lower-case identifier"),
        ({"name": "my-engine"}, "backend name 'my-engine' is not a lower-case identifier"),
        (
            {"factory": "tests.fakes.echo_backend.create"},
            "factory 'tests.fakes.echo_backend.create'",
        ),
        ({"serving_factory": "a:b:c"}, "serving_factory 'a:b:c' is not 'module:attribute'"),
        ({"section": dict}, "is not a BackendSection subclass"),
    ],
)
def test_a_spec_refuses_what_the_registry_could_not_use(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _spec(**kw)


@pytest.mark.usefixtures("scratch_registry")
def test_register_refuses_a_taken_name_or_alias_naming_its_owner() -> None:
    with pytest.raises(ValueError, match="'vllm' already names backend 'vllm'"):
        registry.register(_spec("vllm"))
    with pytest.raises(ValueError, match="'trtllm' already names backend 'tensorrt'"):
        registry.register(_spec("echo", aliases=("trtllm",)))
    registry.register(_spec("echo", aliases=("parrot",)))
    assert registry.names()[-1] == "echo"
    assert registry.get("Parrot ").name == "echo"
    assert registry.canonical(" PARROT") == "echo"


@pytest.mark.usefixtures("scratch_registry")
def test_derived_lists_follow_the_registry() -> None:
    registry.register(
        _spec(
            "echo",
            serving_factory="tests.fakes.echo_backend:create",
            image="llenergymeasure:echo",
            ci_image="llenergymeasure:echo-ci",
            extra_env_vars=("LLEM_RUNNER_PARROT",),
            env_prefixes=("ECHO_",),
            colour="#000000",
            section_aliases=("parrot",),
        )
    )
    spec = registry.get("echo")
    assert spec.env_vars == ("LLEM_RUNNER_ECHO", "LLEM_RUNNER_PARROT")
    assert "echo" in registry.serving_names()
    assert {"echo", "parrot"} <= registry.section_keys()
    assert registry.colours()["echo"] == "#000000"
    assert registry.env_prefixes()[-1] == "ECHO_"
    assert registry.build_commands()["llenergymeasure:echo"] == (
        "make images  (or: docker/build-image.sh echo)"
    )
    assert registry.build_commands()["llenergymeasure:echo-ci"].startswith("make images-ci")
    assert registry.engine_modules("echo") == ()
    assert registry.engine_modules("vllm") == ("vllm",)


def test_the_first_backends_hash_an_absent_section_later_ones_do_not() -> None:
    # The three first backends always hashed `<name>: null`; a backend added since (none of
    # the built-in three) must leave every other config's hash as it was.
    cfg = ExperimentConfig(model="synthetic/tiny-llama", backend="tensorrt")
    data = cfg.hashable_dict()
    first = [s.name for s in registry.specs() if s.section_in_every_hash]
    assert first == ["pytorch", "vllm", "tensorrt"]
    assert data["pytorch"] is None and data["vllm"] is None and data["tensorrt"]
    later = [s.name for s in registry.specs() if not s.section_in_every_hash]
    assert not set(later) & set(data)
    # computed before the registry existed (and before any fourth backend)
    assert cfg.config_hash == "061b1e231810de70b55eb56e386bfe8ecf6d8a5636572012faef35e751249b27"


def test_an_unknown_backend_is_refused_naming_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as info:
        ExperimentConfig.from_dict({"model": "synthetic/tiny-llama", "backend": "sglangx"})
    text = str(info.value)
    assert "unknown backend 'sglangx'; use one of pytorch, vllm, tensorrt" in text
    assert "trtllm" in text  # the aliases are listed too


@pytest.mark.usefixtures("scratch_registry")
def test_a_backend_without_an_image_asks_for_one_under_docker() -> None:
    registry.register(_spec("echo"))
    with pytest.raises(RunnerError, match="backend 'echo' has no default image; name one"):
        resolve_runner("echo", cli_runner="docker", environ={})
    assert resolve_runner("echo", cli_runner="docker:me/echo:1", environ={}).image == "me/echo:1"
    assert resolve_runner("echo", environ={"LLEM_RUNNER_ECHO": "local"}).source == (
        "env:LLEM_RUNNER_ECHO"
    )


def test_create_backend_builds_through_the_registrys_factory_without_loading() -> None:
    cfg = ExperimentConfig(model="synthetic/tiny-llama", backend="tensorrt")
    backend = create_backend(cfg, "/m", Path("/cache"))
    assert type(backend).__name__ == "TensorRTBackend"
    assert str(backend.engine_cache_dir) == "/cache/trtllm-engines"  # type: ignore[attr-defined]


# -- LLEM_BACKENDS ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("tests.fakes.echo_backend", ValueError, "is not 'module:attribute' of a BackendSpec"),
        ("tests.fakes.no_such_module:SPEC", ImportError, "cannot load 'tests.fakes.no_such"),
        (
            "tests.fakes.echo_backend:NOPE",
            ImportError,
            "cannot load 'tests.fakes.echo_backend:NOPE'",
        ),
        ("tests.fakes.echo_backend:create", TypeError, "is a function, not a BackendSpec"),
    ],
)
@pytest.mark.usefixtures("scratch_registry")
def test_llem_backends_refuses_what_is_not_a_spec(value: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        registry.register_from_environment({"LLEM_BACKENDS": value})


@pytest.mark.usefixtures("scratch_registry")
def test_llem_backends_registers_each_spec_once() -> None:
    env = {"LLEM_BACKENDS": " tests.fakes.echo_backend:SPEC, ,tests.fakes.echo_backend:SPEC"}
    added = registry.register_from_environment(env)
    assert [s.name for s in added] == ["echo"]
    assert registry.register_from_environment(env) == []


# -- a throwaway backend, end to end ---------------------------------------------------------------


@pytest.mark.slow
def test_a_backend_added_through_the_registry_alone_runs_end_to_end(tmp_path: Path) -> None:
    """``echo`` (tests/fakes/echo_backend.py: a module and one BackendSpec, named nowhere in the
    package) runs through ``run_experiment`` on the local runner, its ``echo:`` section a field of
    the config, its fixed latencies the result's exact figures."""
    (tmp_path / "model").mkdir()
    uc = user_config_file(tmp_path, tmp_path / "cache")
    experiment = {
        "model": str(tmp_path / "model"),
        "backend": "echo",
        "echo": {"ttft_ms": 20, "itl_ms": 5},
        "n": 4,
        "batch_size": 2,
        "max_output_tokens": 4,
        "dataset": {"source": "synthetic", "input_tokens": 8},
        "warmup": {"mode": "fixed", "runs": 1},
        "baseline": {"enabled": False},
    }
    script = (
        "import json, sys\n"
        "from llenergymeasure import run_experiment\n"
        "r = run_experiment(json.loads(sys.argv[1]))\n"
        "print(r.model_dump_json())\n"
    )
    env = {
        **os.environ,
        "LLEM_CONFIG": str(uc),
        "LLEM_BACKENDS": "tests.fakes.echo_backend:SPEC",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(experiment)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["config"]["backend"] == "echo"
    assert result["config"]["echo"] == {"ttft_ms": 20.0, "itl_ms": 5.0}
    assert result["runner"]["kind"] == "local"
    assert result["energy"]["available"] is False
    assert (result["n_requests"], result["input_tokens"], result["output_tokens"]) == (4, 32, 16)
    assert result["ttft_ms"]["min_ms"] == result["ttft_ms"]["max_ms"] == 20.0
    assert result["itl_ms"]["n"] == 12 and result["itl_ms"]["mean_ms"] == 5.0
    assert result["request_latency_ms"]["mean_ms"] == 35.0
    assert result["timing_source"] == "echo-fixed"
    (run_dir,) = [p for p in (tmp_path / "results").glob("*/*_echo_*") if p.is_dir()]
    assert (run_dir / "result.json").is_file()


def test_warm_imports_come_from_the_registry_entry(tmp_path: Path) -> None:
    """The harness imports what the engine would import lazily during the load (the PyTorch
    entry's hook: the architecture's transformers module, torch's compiler) before the load
    timer; a backend without the hook warms nothing beyond its engine modules."""
    from llenergymeasure.backends import registry

    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    hook = registry.load_warm_imports(registry.get("pytorch"))
    assert hook is not None
    assert hook(str(tmp_path), True) == [
        "torch._dynamo",
        "transformers.models.llama.modeling_llama",
    ]
    assert hook(str(tmp_path / "missing"), False) == []
    (tmp_path / "config.json").write_text("not json")
    assert hook(str(tmp_path), False) == []
    assert registry.load_warm_imports(registry.get("vllm")) is None
