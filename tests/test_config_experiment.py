from __future__ import annotations

from pathlib import Path

import pytest

from llenergymeasure import ExperimentConfig, StudyConfig
from llenergymeasure.config.experiment import canonical_hash, canonical_json
from llenergymeasure.config.validate import load_config_file
from llenergymeasure.errors import ConfigError
from llenergymeasure.results.models import SCHEMA_VERSION
from tests.helpers import write


def test_defaults_and_aliases() -> None:
    cfg = ExperimentConfig(model="synthetic/tiny-llama", backend="trtllm", precision="bfloat16")
    assert cfg.backend == "tensorrt"
    assert cfg.precision == "bf16"
    assert cfg.decoding.greedy and cfg.decoding.fixed_output_length
    assert cfg.backend_section().tp_size == 1  # type: ignore[union-attr]
    d = ExperimentConfig.from_dict({"model": "m", "dataset": "prompts.jsonl"})
    assert d.dataset.source == "prompts.jsonl" and d.dataset.kind == "jsonl"
    assert ExperimentConfig(model="org/name").dataset.kind == "synthetic"
    assert (
        ExperimentConfig(
            model="m", dataset={"source": "AIEnergyScore/text_generation"}
        ).dataset.kind
        == "hf"
    )


def test_unknown_field_did_you_mean(tmp_path: Path) -> None:
    f = write(tmp_path / "e.yaml", "model: synthetic/tiny-llama\nbatch_sise: 4\n")
    with pytest.raises(ConfigError) as exc:
        ExperimentConfig.from_yaml(f)
    text = str(exc.value)
    assert f"{f}:2: batch_sise: unknown field (did you mean `batch_size`?)" in text


def test_nested_unknown_field_names_path_and_line(tmp_path: Path) -> None:
    f = write(
        tmp_path / "e.yaml",
        "model: synthetic/tiny-llama\nbackend: vllm\nvllm:\n  max_num_seq: 8\n",
    )
    with pytest.raises(ConfigError) as exc:
        ExperimentConfig.from_yaml(f)
    assert f"{f}:4: vllm.max_num_seq: unknown field (did you mean `max_num_seqs`?)" in str(
        exc.value
    )


def test_bad_value_names_field_value_and_accepted(tmp_path: Path) -> None:
    f = write(tmp_path / "e.yaml", "model: synthetic/tiny-llama\nprecision: int3\nbatch_size: 0\n")
    with pytest.raises(ConfigError) as exc:
        ExperimentConfig.from_yaml(f)
    text = str(exc.value)
    assert f"{f}:2: precision:" in text and "'fp32', 'fp16' or 'bf16'" in text and "int3" in text
    assert f"{f}:3: batch_size:" in text and "greater than or equal to 1" in text


def test_section_for_other_backend_is_an_error() -> None:
    with pytest.raises(ConfigError) as exc:
        ExperimentConfig.from_dict(
            {"model": "m", "backend": "pytorch", "vllm": {"max_num_seqs": 4}}
        )
    assert "a `vllm:` section is given but backend is 'pytorch'" in str(exc.value)


def test_unknown_synthetic_preset_lists_presets() -> None:
    with pytest.raises(ConfigError) as exc:
        ExperimentConfig.from_dict({"model": "synthetic/llama-70b"})
    assert "synthetic/tiny-llama" in str(exc.value) and "synthetic/llama-8b" in str(exc.value)


def test_compile_needs_static_cache() -> None:
    with pytest.raises(ConfigError, match="static_cache: true"):
        ExperimentConfig.from_dict({"model": "m", "pytorch": {"torch_compile": True}})


def test_input_tokens_vs_max_input_tokens() -> None:
    with pytest.raises(ConfigError, match="exceeds max_input_tokens"):
        ExperimentConfig.from_dict(
            {"model": "m", "dataset": {"input_tokens": 600}, "max_input_tokens": 512}
        )


def test_warmup_cv_bounds() -> None:
    with pytest.raises(ConfigError, match="max_runs"):
        ExperimentConfig.from_dict(
            {"model": "m", "warmup": {"mode": "cv", "runs": 5, "max_runs": 3}}
        )


def test_runner_field_is_refused_with_guidance(tmp_path: Path) -> None:
    f = write(tmp_path / "e.yaml", "model: m\nrunner: docker\n")
    with pytest.raises(ConfigError) as exc:
        load_config_file(f)
    text = str(exc.value)
    assert f"{f}:2: runner:" in text and "user config" in text and "LLEM_RUNNER_" in text


@pytest.mark.parametrize(
    ("yaml_text", "line", "path"),
    [
        ("model: m\nhf_token: zq8secretvalue\n", 2, "hf_token"),
        ("model: m\nvllm_api_key: zq8secretvalue\nbackend: vllm\n", 2, "vllm_api_key"),
        ("model: m\ndataset:\n  password: zq8secretvalue\n", 3, "dataset.password"),
    ],
)
def test_credential_keys_refused_without_echo(
    tmp_path: Path, yaml_text: str, line: int, path: str
) -> None:
    f = write(tmp_path / "e.yaml", yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_config_file(f)
    text = str(exc.value)
    assert f"{f}:{line}: {path}: looks like a credential" in text
    assert "zq8secretvalue" not in text


def test_credential_values_refused_without_echo(tmp_path: Path) -> None:
    secret = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmNoP"
    f = write(tmp_path / "e.yaml", f"model: m\nname: {secret}\n")
    with pytest.raises(ConfigError) as exc:
        load_config_file(f)
    assert "Hugging Face token" in str(exc.value)
    assert secret not in str(exc.value)
    key = "sk-" + "x" * 30
    with pytest.raises(ConfigError) as exc2:
        ExperimentConfig.from_dict({"model": "m", "dataset": {"source": key}})
    assert key not in str(exc2.value) and "OpenAI-style" in str(exc2.value)


def test_token_count_fields_are_not_credentials() -> None:
    cfg = ExperimentConfig.from_dict(
        {
            "model": "m",
            "backend": "vllm",
            "max_output_tokens": 8,
            "vllm": {"max_num_batched_tokens": 64},
        }
    )
    assert cfg.vllm is not None and cfg.vllm.max_num_batched_tokens == 64


def test_duplicate_keys_and_syntax_errors(tmp_path: Path) -> None:
    f = write(tmp_path / "e.yaml", "model: a\nbatch_size: 1\nbatch_size: 2\n")
    with pytest.raises(
        ConfigError, match=r"e.yaml:3: batch_size: duplicate key \(first given on line 2\)"
    ):
        load_config_file(f)
    g = write(tmp_path / "g.yaml", "model: [a\n")
    with pytest.raises(ConfigError, match=r"g.yaml:\d+:\d+: invalid YAML"):
        load_config_file(g)
    with pytest.raises(ConfigError, match="no such file"):
        load_config_file(tmp_path / "missing.yaml")
    h = write(tmp_path / "h.yaml", "- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config_file(h)


def test_config_hash_is_stable_and_canonical() -> None:
    a = ExperimentConfig.from_dict({"model": "m", "batch_size": 4, "name": "x"})
    b = ExperimentConfig.from_dict({"batch_size": 4, "model": "m", "name": "y", "pytorch": {}})
    c = ExperimentConfig.from_dict({"model": "m", "batch_size": 8})
    assert a.config_hash == b.config_hash  # key order, label and an empty section do not matter
    assert a.config_hash != c.config_hash
    assert len(a.config_hash) == 64


# Config hashes name run folders, key the manifest and make up the study design hash that
# `llem run --resume` checks: if they change, every study written before can no longer be resumed
# ("the study file no longer matches this study"). So they are pinned as literals, per results
# schema version (results/models.py SCHEMA_VERSION, also stored in every manifest).
#
# How to change them deliberately (a new canonical form, or a new ExperimentConfig field: defaults
# are hashed, so a new field with a default changes every hash too):
#   1. bump SCHEMA_VERSION in src/llenergymeasure/results/models.py (the study format version);
#   2. add the new version's hashes below, keeping the old versions' lines as the record;
#   3. say in the changelog/docs that studies of the old version resume only with the old llem.
CANONICAL_SAMPLE = {"b": 1, "a": [1.5, "x", None, True], "\u00e9": {"z": 0}}
PINNED_CANONICAL_JSON = '{"a":[1.5,"x",null,true],"b":1,"\\u00e9":{"z":0}}'
PINNED_CANONICAL_HASH = "f858455bbaa676b9809c0d49b31c0ef52c3577d8efce6cbf1fb89f8207e0959a"
PINNED_TINY_LLAMA_CONFIG_HASH = {
    "1.0": "d6bff8ed4bcbe8479459ec0d100324c1547f00eaa1f1af3c37f4752188916d39",
    "1.1": "868a1454c6d0926f883337776f5588f123eaf0517d8d2a28192cff2f5a0f3761",
    "1.2": "868a1454c6d0926f883337776f5588f123eaf0517d8d2a28192cff2f5a0f3761",  # results only
    # 1.3: results only (placement, neighbour_load); config hashes unchanged
    "1.3": "868a1454c6d0926f883337776f5588f123eaf0517d8d2a28192cff2f5a0f3761",
}
PINNED_STUDY_DESIGN_HASH = {
    "1.0": "ec54a8d55c42ca5be29abbf3f708ce67cd976b8095f3f0d0f36a140ac655b68c",
    "1.1": "18743a54ba2e904a41f1b83edaec5f58b83b9015efe624e7c6ebe9fe7ab014a1",
    "1.2": "18743a54ba2e904a41f1b83edaec5f58b83b9015efe624e7c6ebe9fe7ab014a1",
    # 1.3: results only (execution.concurrent_runs is not part of the design hash)
    "1.3": "18743a54ba2e904a41f1b83edaec5f58b83b9015efe624e7c6ebe9fe7ab014a1",
}


def test_canonical_json_is_pinned_byte_for_byte() -> None:
    """Sorted keys, no spaces (separators "," and ":"), ASCII escapes: the hashed bytes."""
    assert canonical_json(CANONICAL_SAMPLE) == PINNED_CANONICAL_JSON
    assert canonical_hash(CANONICAL_SAMPLE) == PINNED_CANONICAL_HASH


def test_config_hash_is_pinned_for_this_study_format_version() -> None:
    assert SCHEMA_VERSION in PINNED_TINY_LLAMA_CONFIG_HASH, (
        f"SCHEMA_VERSION is now {SCHEMA_VERSION}: add this version's pinned hashes (see above)"
    )
    got = ExperimentConfig(model="synthetic/tiny-llama").config_hash
    assert got == PINNED_TINY_LLAMA_CONFIG_HASH[SCHEMA_VERSION], (
        "the config hash of ExperimentConfig(model='synthetic/tiny-llama') changed: studies "
        "written before can no longer be resumed. If deliberate, bump SCHEMA_VERSION and pin "
        f"{got} for the new version (see the comment above this test)"
    )
    study = StudyConfig(
        name="s", base={"model": "synthetic/tiny-llama"}, sweep={"batch_size": [1, 2]}
    )
    assert study.study_design_hash == PINNED_STUDY_DESIGN_HASH[SCHEMA_VERSION], (
        "the study design hash changed (resume compares it with the manifest's)"
    )


def test_examples_load() -> None:
    root = Path(__file__).resolve().parents[1] / "examples"
    exp = load_config_file(root / "experiment.yaml")
    assert isinstance(exp, ExperimentConfig) and exp.model == "synthetic/tiny-llama"
    study = load_config_file(root / "study.yaml")
    assert len(study.expand()) == 6  # type: ignore[union-attr]


def test_each_backend_hashes_its_section_with_defaults_filled_in() -> None:
    """The chosen backend's section enters the hash with every default, given or not."""
    for backend in ("pytorch", "vllm", "tensorrt"):
        bare = ExperimentConfig(model="m", backend=backend)
        explicit = ExperimentConfig.from_dict({"model": "m", "backend": backend, backend: {}})
        assert bare.config_hash == explicit.config_hash, backend
        data = bare.hashable_dict()
        assert data[backend] == type(bare.backend_section())().model_dump(mode="json")
        assert "name" not in data
    assert (
        len({ExperimentConfig(model="m", backend=b).config_hash for b in ("pytorch", "vllm")}) == 2
    )
