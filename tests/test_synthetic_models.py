"""Synthetic models: materialisation, caching under concurrency, tokenizer, parameter counts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llenergymeasure.errors import ConfigError
from llenergymeasure.models.presets import SYNTHETIC_PRESETS
from llenergymeasure.models.synthetic import (
    MARKER_FILE,
    count_parameters_from_shape,
    materialise_synthetic,
    preset_shape,
    resolve_model,
    shape_hash,
    synthetic_dir,
    synthetic_word,
)


def test_synthetic_directory_has_config_tokenizer_marker_and_no_weights(tmp_path: Path) -> None:
    resolved = resolve_model("synthetic/tiny-llama", tmp_path)
    path = Path(resolved.path)
    assert resolved.weights == "random" and resolved.synthetic and resolved.preset == "tiny-llama"
    assert path == tmp_path / "synthetic" / f"tiny-llama-{shape_hash('tiny-llama')}"
    names = {p.name for p in path.iterdir()}
    assert {"config.json", "tokenizer.json", "tokenizer_config.json", MARKER_FILE} <= names
    assert not [n for n in names if n.endswith((".safetensors", ".bin", ".pt"))]
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    for key, value in SYNTHETIC_PRESETS["tiny-llama"].items():
        assert config[key] == value
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["preset"] == "tiny-llama" and marker["weights"] == "random"
    assert "seed" not in marker  # the seed belongs to the experiment, not the directory
    # nothing half-built is left beside it
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_cache_hit_reuses_the_directory(tmp_path: Path) -> None:
    first = materialise_synthetic("tiny-llama", tmp_path)
    stamp = (first / MARKER_FILE).stat().st_mtime_ns
    second = materialise_synthetic("tiny-llama", tmp_path)
    assert first == second
    assert (second / MARKER_FILE).stat().st_mtime_ns == stamp


def test_a_half_built_directory_without_marker_is_rebuilt(tmp_path: Path) -> None:
    target = synthetic_dir("tiny-llama", tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{broken")
    path = materialise_synthetic("tiny-llama", tmp_path)
    assert (path / MARKER_FILE).is_file()
    json.loads((path / "config.json").read_text())


def test_concurrent_processes_build_one_complete_directory(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys, time
        from pathlib import Path
        from llenergymeasure.models.synthetic import materialise_synthetic
        start = float(sys.argv[1])
        while time.time() < start:
            pass
        path = materialise_synthetic("tiny-llama", Path({str(tmp_path)!r}))
        json.loads((path / "config.json").read_text())
        assert (path / "tokenizer.json").stat().st_size > 0
        print(path)
        """
    )
    import time

    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    assert len({out.strip() for out, _ in results}) == 1
    children = list((tmp_path / "synthetic").iterdir())
    assert len(children) == 1, children  # no temporary directories left behind


def test_tokenizer_round_trips_every_regular_id(shared_model_cache: Path) -> None:
    from transformers import AutoTokenizer

    path = resolve_model("synthetic/tiny-llama", shared_model_cache).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab_size = SYNTHETIC_PRESETS["tiny-llama"]["vocab_size"]
    assert len(tokenizer) == vocab_size
    special = set(tokenizer.all_special_ids)
    assert special == {0, 1, 2, 3}
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (1, 2, 3)
    regular = [i for i in range(vocab_size) if i not in special]
    text = tokenizer.decode(regular)
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == regular
    # encoding adds BOS in front, as Llama tokenizers do
    assert tokenizer("a b")["input_ids"] == [1, 4, 5]
    assert tokenizer.padding_side == "left"


def test_synthetic_words_are_distinct_and_plain() -> None:
    words = [synthetic_word(i) for i in range(30_000)]
    assert len(set(words)) == len(words)
    assert words[:3] == ["a", "b", "c"] and words[26] == "aa"
    assert all(w.isalpha() and w.islower() for w in words)


def test_resolve_local_directories_and_hub_ids(tmp_path: Path) -> None:
    plain = tmp_path / "my-model"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    resolved = resolve_model(str(plain), tmp_path / "cache")
    assert resolved.weights == "pretrained" and not resolved.synthetic
    assert resolved.path == str(plain.resolve())

    synthetic = materialise_synthetic("tiny-llama", tmp_path / "cache")
    again = resolve_model(str(synthetic), tmp_path / "other")
    assert again.weights == "random" and again.preset == "tiny-llama"

    hub = resolve_model("meta-llama/Llama-3.1-8B", tmp_path / "cache")
    assert hub.path == "meta-llama/Llama-3.1-8B" and hub.weights == "pretrained"

    afile = tmp_path / "weights.bin"
    afile.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        resolve_model(str(afile), tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"unknown synthetic preset 'synthetic/nope'.*tiny-llama"):
        resolve_model("synthetic/nope", tmp_path / "cache")


def test_resolve_model_imports_no_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "from llenergymeasure.models.synthetic import resolve_model\n"
        f"resolve_model('synthetic/tiny-llama', Path({str(tmp_path)!r}))\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_shape_hash_changes_with_the_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    before = shape_hash("tiny-llama")
    patched = dict(SYNTHETIC_PRESETS["tiny-llama"], num_hidden_layers=3)
    monkeypatch.setitem(SYNTHETIC_PRESETS, "tiny-llama", patched)
    assert shape_hash("tiny-llama") != before


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        # TinyLlama-1.1B and Llama-3-8B as published
        ("llama-1b", 1_100_048_384),
        ("llama-8b", 8_030_261_248),
    ],
)
def test_preset_parameter_counts_match_the_real_models(preset: str, expected: int) -> None:
    assert count_parameters_from_shape(preset) == expected


@pytest.mark.parametrize("preset", sorted(SYNTHETIC_PRESETS))
def test_parameter_arithmetic_matches_the_transformers_module(preset: str) -> None:
    """Build each preset on torch's meta device (no memory) and count its real parameters."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(**preset_shape(preset))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == count_parameters_from_shape(preset)
    if preset == "tiny-llama":
        assert count_parameters_from_shape(preset) < 2_000_000
