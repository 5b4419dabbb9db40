"""Issue 14: random weights built in place, and llem's static decode loop against generate.

The loop runs eagerly here (compile=False): the compiled variant goes through the same Python and
is covered by test_pytorch_backend's compile test; its speed is a GPU matter (benchmarks/).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from llenergymeasure.backends.pytorch.decode import DecodeSettings, StaticDecoder  # noqa: E402
from llenergymeasure.models.synthetic import build_random_model, resolve_model  # noqa: E402

PAD, EOS = 3, 2


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return resolve_model("synthetic/tiny-llama", tmp_path_factory.mktemp("models")).path


@pytest.fixture(scope="module")
def model(model_path: str) -> Any:
    m, _ = build_random_model(
        torch, transformers, model_path, dtype=torch.float32, device="cpu", seed=42
    )
    return m.eval()


def test_random_weights_are_built_in_dtype_and_seeded(model_path: str, model: Any) -> None:
    again, _ = build_random_model(
        torch, transformers, model_path, dtype=torch.float32, device="cpu", seed=42
    )
    other, _ = build_random_model(
        torch, transformers, model_path, dtype=torch.float32, device="cpu", seed=43
    )
    pairs = list(zip(model.parameters(), again.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    assert not torch.equal(model.lm_head.weight, other.lm_head.weight)
    assert torch.all(model.model.norm.weight == 1.0)
    # N(0, 0.02): the 4096 x 64 embedding's sample sd is 0.02 within a few per cent
    emb = model.model.embed_tokens.weight
    assert float(emb[emb.abs().sum(-1) > 0].detach().std()) == pytest.approx(0.02, rel=0.05)
    assert torch.all(emb[PAD] == 0)  # the padding row, as transformers' init leaves it
    bf16, _ = build_random_model(
        torch, transformers, model_path, dtype=torch.bfloat16, device="cpu", seed=42
    )
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}


def _batch() -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 4000, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    ids[1, :3], mask[1, :3] = PAD, 0  # the second row is left-padded
    return ids, mask


def _generate(model: Any, ids: Any, mask: Any, n: int, **kw: Any) -> Any:
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=n, pad_token_id=PAD, **kw
        )
    return out[:, ids.shape[1] :]


def test_greedy_matches_generate_with_left_padding(model: Any) -> None:
    ids, mask = _batch()
    ref = _generate(model, ids, mask, 10, min_new_tokens=10, do_sample=False)
    dec = StaticDecoder(torch, model, DecodeSettings(eos_ids=[EOS], pad_id=PAD, compile=False), 64)
    tokens, timing = dec.generate(ids, mask, 10)
    assert torch.equal(tokens, ref)
    assert len(timing.step_offsets_s) == 10  # one step-clock reading per token
    assert timing.step_offsets_s == sorted(timing.step_offsets_s)
    again, _ = dec.generate(ids, mask, 10)  # the cache is reset, not stale, between batches
    assert torch.equal(again, ref)


def test_eos_ends_rows_when_lengths_are_free(model: Any) -> None:
    ids, mask = _batch()
    free = StaticDecoder(torch, model, DecodeSettings(pad_id=PAD, compile=False), 64)
    first, _ = free.generate(ids, mask, 10)
    eos = int(first[0, 2])  # make row 0's third token the end of its sequence
    settings = DecodeSettings(fixed_output_length=False, eos_ids=[eos], pad_id=PAD, compile=False)
    tokens, _ = StaticDecoder(torch, model, settings, 64).generate(ids, mask, 10)
    ref = _generate(model, ids, mask, 10, do_sample=False, eos_token_id=eos)
    assert torch.equal(tokens[:, : ref.shape[1]], ref)
    assert torch.all(tokens[0, 3:] == PAD)  # after its EOS a row only pads


def test_sampling_with_top_k_one_is_greedy(model: Any) -> None:
    ids, mask = _batch()
    greedy, _ = StaticDecoder(
        torch, model, DecodeSettings(eos_ids=[EOS], pad_id=PAD, compile=False), 64
    ).generate(ids, mask, 8)
    sampled_settings = DecodeSettings(
        greedy=False, temperature=0.7, top_k=1, eos_ids=[EOS], pad_id=PAD, compile=False
    )
    sampled, _ = StaticDecoder(torch, model, sampled_settings, 64).generate(ids, mask, 8)
    assert torch.equal(sampled, greedy)


def test_too_long_for_the_cache_is_refused(model: Any, tmp_path: Path) -> None:
    ids, mask = _batch()
    dec = StaticDecoder(torch, model, DecodeSettings(pad_id=PAD, compile=False), 16)
    with pytest.raises(ValueError, match="exceeds the static cache"):
        dec.generate(ids, mask, 10)


def test_sharded_synthetic_model_is_filled_in_parts_from_one_stream(model_path: str) -> None:
    """device_map with a synthetic model: allocated with the initialisers off, then filled part by
    part (as accelerate's map places them) from shared per-device generators, so the parts do not
    repeat each other and the weights equal the one-device build's for the same seed."""
    from llenergymeasure.backends.pytorch.loading import load_model
    from llenergymeasure.backends.pytorch.section import PyTorchConfig
    from llenergymeasure.models.synthetic import fill_random_weights

    extra: dict[str, Any] = {}
    sharded = load_model(
        torch,
        transformers,
        model_path,
        PyTorchConfig(device_map="auto"),
        dtype=torch.float32,
        device="cpu",
        seed=42,
        synthetic=True,
        extra=extra,
    )
    assert extra["synthetic_device_map"] == {"": "cpu"}  # no GPU here: one part, on the host
    assert set(extra["synthetic_build_s"]) == {"construct_s", "fill_s"}
    ref, _ = build_random_model(
        torch, transformers, model_path, dtype=torch.float32, device="cpu", seed=42
    )
    pairs = list(zip(sharded.parameters(), ref.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    # The same model filled in the parts a two-GPU map would make, one stream per device shared
    # across the calls: identical to filling it whole; a fresh stream per part would repeat values.
    parts = ["model.embed_tokens", *(f"model.layers.{i}" for i in range(len(ref.model.layers)))]
    parts += ["model.norm", "model.rotary_emb", "lm_head"]
    shared: dict[Any, Any] = {}
    for name in parts:
        fill_random_weights(torch, ref.get_submodule(name), 7, 0.02, generators=shared)
    whole, _ = build_random_model(
        torch, transformers, model_path, dtype=torch.float32, device="cpu", seed=7
    )
    pairs = list(zip(ref.parameters(), whole.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in pairs)
    q0, q1 = (ref.model.layers[i].self_attn.q_proj.weight for i in (0, 1))
    assert not torch.equal(q0, q1)
    fresh = ref.model.layers[1]
    fill_random_weights(torch, ref.model.layers[0], 7, 0.02)
    fill_random_weights(torch, fresh, 7, 0.02)
    assert torch.equal(ref.model.layers[0].self_attn.q_proj.weight, fresh.self_attn.q_proj.weight)


@pytest.mark.gpu
def test_gpu_cuda_graph_decode_gives_the_eager_loops_greedy_tokens(model_path: str) -> None:
    """Issue 26 item 4: the decode step replayed as a CUDA graph (``reduce-overhead``) decodes the
    same greedy tokens as the eager loop, on the first batch (compile + capture) and on replays."""
    m, _ = build_random_model(
        torch, transformers, model_path, dtype=torch.float32, device="cuda", seed=42
    )
    m.eval()
    ids, mask = (t.cuda() for t in _batch())
    settings = {"eos_ids": [EOS], "pad_id": PAD}
    eager = StaticDecoder(torch, m, DecodeSettings(**settings, compile=False), 64)
    graphs = StaticDecoder(
        torch, m, DecodeSettings(**settings, compile=True, compile_mode="reduce-overhead"), 64
    )
    ref, _ = eager.generate(ids, mask, 16)
    for _ in range(3):  # compile and capture, then replays
        tokens, timing = graphs.generate(ids, mask, 16)
        assert torch.equal(tokens, ref)
        assert len(timing.step_offsets_s) == 16
