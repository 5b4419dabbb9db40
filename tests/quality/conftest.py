"""Fixtures of the quality tests: a saved random-weight model and the local task YAMLs.

lm-eval's own ``hf`` model loads weights from a directory (``from_pretrained``), while a synthetic
model directory has none (llem builds its weights from a seed). So the tests build the
``tiny-llama`` synthetic model once with llem's own builder, save it (weights, config, tokenizer)
to a directory, and point both llem's backend and lm-eval's ``hf`` model at that same directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
MC_TASK = DATA / "llem_mc.yaml"
GEN_TASK = DATA / "llem_gen.yaml"
PPL_TASK = DATA / "llem_ppl.yaml"


def save_tiny_model(directory: Path, cache: Path, seed: int = 3) -> Path:
    """``synthetic/tiny-llama`` with seeded random weights, saved as a float32 model directory."""
    import torch
    import transformers

    from llenergymeasure.models.synthetic import build_random_model, materialise_synthetic

    source = materialise_synthetic("tiny-llama", cache)
    model, _ = build_random_model(
        torch, transformers, str(source), dtype=torch.float32, device="cpu", seed=seed
    )
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, directory / name)
    return directory


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory: pytest.TempPathFactory, shared_model_cache: Path) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("quality-model") / "tiny", shared_model_cache)
