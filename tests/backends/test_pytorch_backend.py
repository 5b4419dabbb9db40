"""The PyTorch backend on a real (tiny, random-weight) Llama on the CPU: no mocks of transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.backends.base import Backend, Prompt
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.datasets import load_prompts
from llenergymeasure.errors import ExperimentError
from llenergymeasure.models.synthetic import count_parameters_from_shape, resolve_model

pytest.importorskip("torch")
pytest.importorskip("transformers")

MAX_NEW = 6


def cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def make_config(**overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "model": "synthetic/tiny-llama",
        "precision": "fp32",
        "batch_size": 3,
        "n": 5,
        "max_output_tokens": MAX_NEW,
        "dataset": {"input_tokens": 12},
        "seed": 11,
    }
    data.update(overrides)
    return ExperimentConfig(**data)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return resolve_model("synthetic/tiny-llama", tmp_path_factory.mktemp("models")).path


def loaded(model_dir: str, **overrides: Any) -> Any:
    from llenergymeasure.backends.pytorch.backend import PyTorchBackend

    backend = PyTorchBackend(make_config(**overrides), model_dir)
    backend.load()
    return backend


@pytest.fixture(scope="module")
def backend(model_dir: str) -> Any:
    b = loaded(model_dir)
    yield b
    b.close()


@pytest.fixture(scope="module")
def ragged_prompts(tmp_path_factory: pytest.TempPathFactory, backend: Any) -> list[Prompt]:
    """JSONL prompts of 2, 9, 5, 3 and 14 tokens (BOS included): padding in every batch."""
    path = tmp_path_factory.mktemp("jsonl") / "ragged.jsonl"
    words = ["a", "b c d e f g h i", "j k l m", "n o", "p q r s t u v w x y z aa ab"]
    path.write_text("\n".join(json.dumps({"prompt": w}) for w in words) + "\n")
    config = make_config(dataset={"source": str(path)})
    prompts = load_prompts(config, backend.tokenizer())
    assert [len(p.token_ids) for p in prompts] == [2, 9, 5, 3, 14]
    return prompts


def test_load_reports_the_model(backend: Any, model_dir: str) -> None:
    info = backend.load_info
    assert isinstance(backend, Backend)
    assert info.weights == "random"
    assert info.parameters == count_parameters_from_shape("tiny-llama")
    assert info.model_path == model_dir
    assert info.dtype == "fp32"
    if cuda():
        assert info.device == "cuda:0" and info.cuda_devices == [0]
    else:
        assert info.device == "cpu" and info.cuda_devices == []
    assert info.extra["synthetic_preset"] == "tiny-llama" and info.extra["weights_seed"] == 11
    tokenizer = backend.tokenizer()
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id == 3


def test_token_counts_are_exact_under_padding(backend: Any, ragged_prompts: list[Prompt]) -> None:
    out = backend.generate(ragged_prompts)
    assert [r.input_tokens for r in out.requests] == [2, 9, 5, 3, 14]
    assert [r.output_tokens for r in out.requests] == [MAX_NEW] * 5
    assert out.input_tokens == 33 and out.output_tokens == 5 * MAX_NEW
    assert [len(t) for t in out.output_token_ids] == [MAX_NEW] * 5
    assert out.duration_s > 0


def test_left_padding_does_not_change_what_a_prompt_generates(
    backend: Any, ragged_prompts: list[Prompt]
) -> None:
    """Each row of a padded batch must generate what the same prompt generates alone."""
    batched = backend.generate(ragged_prompts).output_token_ids
    alone = [backend.generate([p]).output_token_ids[0] for p in ragged_prompts]
    assert batched == alone


def test_greedy_is_deterministic(backend: Any) -> None:
    prompts = load_prompts(backend.config, backend.tokenizer())
    first = backend.generate(prompts).output_token_ids
    second = backend.generate(prompts).output_token_ids
    assert first == second


def test_sampling_is_seeded(model_dir: str) -> None:
    sampled = loaded(model_dir, decoding={"temperature": 1.5, "top_k": 0})
    try:
        prompts = load_prompts(sampled.config, sampled.tokenizer())
        a = sampled.generate(prompts).output_token_ids
        b = sampled.generate(prompts).output_token_ids
        assert a == b  # every call starts from the config's seed
    finally:
        sampled.close()
    greedy = loaded(model_dir)
    try:
        g = greedy.generate(prompts).output_token_ids
    finally:
        greedy.close()
    assert a != g  # it really sampled


def test_weights_are_deterministic_by_seed(model_dir: str) -> None:
    import torch

    a, b, c = loaded(model_dir), loaded(model_dir), loaded(model_dir, seed=99)
    try:
        wa = a._model.model.embed_tokens.weight
        assert torch.equal(wa, b._model.model.embed_tokens.weight)
        assert not torch.equal(wa, c._model.model.embed_tokens.weight)
    finally:
        for x in (a, b, c):
            x.close()


def test_timing_per_request(backend: Any, ragged_prompts: list[Prompt]) -> None:
    out = backend.generate(ragged_prompts)
    assert out.timing_source == "step-clock" and out.timing_unavailable_reason is None
    for r in out.requests:
        assert r.ttft_s is not None and r.latency_s is not None
        assert 0 < r.ttft_s <= r.latency_s <= out.duration_s
        assert len(r.itl_s) == r.output_tokens - 1
        assert all(x >= 0 for x in r.itl_s)
        assert r.latency_s == pytest.approx(r.ttft_s + sum(r.itl_s), rel=1e-6, abs=1e-9)
    # the three requests of the first batch share one prefill, so one first-token time
    first_batch = out.requests[:3]
    assert len({round(r.ttft_s, 9) for r in first_batch}) == 1


def test_each_static_batch_records_its_prefill_span(
    backend: Any, ragged_prompts: list[Prompt]
) -> None:
    # 5 prompts at batch_size 3: two batches, each (its start in the call, + its first token)
    out = backend.generate(ragged_prompts)
    spans = out.prefill_spans_s
    assert spans is not None and len(spans) == 2 and out.prefill_overlap_reason is None
    for (a, b), batch in zip(spans, (out.requests[:3], out.requests[3:]), strict=True):
        assert b - a == pytest.approx(max(r.ttft_s for r in batch))
    assert 0.0 <= spans[0][0] < spans[0][1] <= spans[1][0] < spans[1][1] <= out.duration_s


def test_output_stops_at_eos_and_padding_is_not_counted(model_dir: str) -> None:
    """Without fixed lengths, a row ends at its EOS; later positions hold padding, never counted.

    A random model rarely emits the real EOS, so the test declares as EOS a token that row 0 is
    known (from a greedy fixed-length run) to produce at step 3.
    """
    fixed = loaded(model_dir)
    prompts = load_prompts(fixed.config, fixed.tokenizer())[:3]
    reference = fixed.generate(prompts).output_token_ids
    fixed.close()
    stop_token = reference[0][2]
    free = loaded(model_dir, decoding={"fixed_output_length": False})
    try:
        free._model.generation_config.eos_token_id = [stop_token]
        free._eos_ids = {stop_token}
        out = free.generate(prompts)
    finally:
        free.close()
    for row, record in enumerate(out.requests):
        ref = reference[row]
        expected = ref.index(stop_token) + 1 if stop_token in ref else MAX_NEW
        assert record.output_tokens == expected
        assert out.output_token_ids[row] == ref[:expected]
        assert len(record.itl_s) == expected - 1
    # row 0 met the stop token by step 3 at the latest: its output really was cut short
    assert out.requests[0].output_tokens <= 3 < MAX_NEW


def test_static_cache_gives_the_same_tokens(model_dir: str, backend: Any) -> None:
    prompts = load_prompts(backend.config, backend.tokenizer())
    dynamic = backend.generate(prompts).output_token_ids
    static = loaded(model_dir, pytorch={"static_cache": True})
    try:
        assert static.generate(prompts).output_token_ids == dynamic
        assert getattr(static._model, "_compiled_call", None) is None  # static alone: no compile
    finally:
        static.close()


def test_attention_implementation_is_applied(model_dir: str) -> None:
    eager = loaded(model_dir, pytorch={"attn_implementation": "eager"})
    try:
        assert eager.load_info.extra["attn_implementation"] == "eager"
        assert eager.generate([Prompt([1, 5, 6], 4)]).output_tokens == 4
    finally:
        eager.close()


@pytest.mark.slow
def test_torch_compile_through_transformers(model_dir: str, backend: Any) -> None:
    """transformers' own compile path (static cache); about a minute of inductor on 2 cores."""
    prompts = load_prompts(backend.config, backend.tokenizer())[:3]
    eager = backend.generate(prompts).output_token_ids
    compiled = loaded(
        model_dir, pytorch={"static_cache": True, "torch_compile": True, "compile_mode": "default"}
    )
    try:
        assert compiled.generate(prompts).output_token_ids == eager
        assert compiled.load_info.extra["compiled"] is True
    finally:
        compiled.close()


def test_bf16_loads_in_bf16(model_dir: str) -> None:
    import torch

    b = loaded(model_dir, precision="bf16")
    try:
        assert b._model.dtype == torch.bfloat16 and b.load_info.dtype == "bf16"
        out = b.generate(load_prompts(b.config, b.tokenizer())[:2])
        assert out.output_tokens == 2 * MAX_NEW
    finally:
        b.close()


def test_pretrained_directory_loads_through_from_pretrained(
    tmp_path: Path, backend: Any, ragged_prompts: list[Prompt]
) -> None:
    """Save the random model's weights; loading them as a pretrained model gives the same tokens."""
    saved = tmp_path / "saved"
    backend._model.save_pretrained(saved)
    backend.tokenizer().save_pretrained(saved)
    pretrained = loaded(str(saved))
    try:
        assert pretrained.load_info.weights == "pretrained"
        assert pretrained.load_info.parameters == backend.load_info.parameters
        expected = backend.generate(ragged_prompts).output_token_ids
        assert pretrained.generate(ragged_prompts).output_token_ids == expected
    finally:
        pretrained.close()


def test_bad_input_is_refused(backend: Any) -> None:
    with pytest.raises(ValueError, match="share max_new_tokens"):
        backend.generate([Prompt([1, 5], 3), Prompt([1, 6], 4)])
    with pytest.raises(ValueError, match="token id 5000 is outside the model's vocabulary"):
        backend.generate([Prompt([1, 5000], 3)])
    with pytest.raises(ValueError, match="prompt 0 has no tokens"):
        backend.generate([Prompt([], 3)])
    assert backend.generate([]).requests == []


def test_missing_model_is_a_load_error(tmp_path: Path) -> None:
    from llenergymeasure.backends.pytorch.backend import PyTorchBackend

    empty = tmp_path / "empty-model"
    empty.mkdir()
    b = PyTorchBackend(make_config(), str(empty))
    with pytest.raises(ExperimentError, match="could not load the tokenizer") as info:
        b.load()
    assert info.value.phase == "load"
    b.close()
    b.close()


def test_close_is_idempotent_and_device_calls_are_safe(model_dir: str) -> None:
    from llenergymeasure.backends.pytorch.backend import PyTorchBackend

    never_loaded = PyTorchBackend(make_config(), model_dir)
    never_loaded.close()
    b = loaded(model_dir)
    b.synchronize()
    if cuda():
        assert b.peak_memory_bytes() > 0
    else:
        assert b.peak_memory_bytes() is None
    b.close()
    b.close()
    with pytest.raises(RuntimeError, match="before load"):
        b.generate([Prompt([1, 5], 2)])


# -- on the GPU machine only ---------------------------------------------------------------------


@pytest.mark.gpu
def test_gpu_memory_is_measured_and_released(model_dir: str) -> None:
    import torch

    before = torch.cuda.memory_allocated(0)
    b = loaded(model_dir, precision="bf16")
    weights = torch.cuda.memory_allocated(0) - before
    assert weights >= 2 * b.load_info.parameters  # bf16: two bytes a parameter
    out = b.generate(load_prompts(b.config, b.tokenizer()))
    b.synchronize()
    assert out.output_tokens == 5 * MAX_NEW
    assert b.peak_memory_bytes() >= weights
    b.close()
    assert torch.cuda.memory_allocated(0) - before < weights


@pytest.mark.gpu
def test_gpu_static_cache_without_compile_does_not_compile(model_dir: str) -> None:
    """On CUDA transformers would compile a static cache by itself; the config must decide."""
    b = loaded(model_dir, pytorch={"static_cache": True})
    try:
        b.generate(load_prompts(b.config, b.tokenizer()))
        assert getattr(b._model, "_compiled_call", None) is None
    finally:
        b.close()


@pytest.mark.gpu
def test_gpu_compile_path_engages_and_keeps_counts(model_dir: str) -> None:
    b = loaded(
        model_dir,
        precision="bf16",
        pytorch={"static_cache": True, "torch_compile": True, "compile_mode": "reduce-overhead"},
    )
    try:
        prompts = load_prompts(b.config, b.tokenizer())[:3]
        for _ in range(3):  # compile, record CUDA graphs, replay
            out = b.generate(prompts)
        assert b.load_info.extra["compiled"] is True
        assert out.output_tokens == 3 * MAX_NEW
        assert out.timing_source == "step-clock"
        assert all(len(r.itl_s) == MAX_NEW - 1 for r in out.requests)
    finally:
        b.close()


def test_effective_generation_config_is_recorded(model_dir: str) -> None:
    """What transformers ran with reaches the result (issue 19: the engine's effective config)."""
    sampled = loaded(model_dir, decoding={"temperature": 1.5, "top_k": 0})
    try:
        assert "generation_config" not in sampled.load_info.extra  # recorded when it is used
        prompts = load_prompts(sampled.config, sampled.tokenizer())
        sampled.generate(prompts)
        recorded = sampled.load_info.extra["generation_config"]
    finally:
        sampled.close()
    json.dumps(recorded)  # stored in result.json as it is
    assert recorded["do_sample"] is True
    assert recorded["temperature"] == 1.5
    assert recorded["max_new_tokens"] == MAX_NEW
