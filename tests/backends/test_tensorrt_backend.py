"""Contract tests of the TensorRT-LLM backend against ``tests/fake_trtllm`` (see its docstring).

TensorRT-LLM cannot run here, so these tests check what the backend asks of the LLM API (every
keyword, every config object) against a fake that mirrors the real signatures and refuses what the
real one refuses, plus the backend's own logic: the engine cache, token counting, fixed lengths,
timings and the error paths.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.backends.base import Backend, Prompt
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.errors import BackendUnavailableError, ConfigError, ExperimentError

FAKE_ROOT = Path(__file__).resolve().parents[1] / "fake_trtllm"


def _purge_trtllm_modules() -> None:
    for name in list(sys.modules):
        if name == "tensorrt_llm" or name.startswith("tensorrt_llm."):
            del sys.modules[name]


@pytest.fixture
def trtllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake ``tensorrt_llm`` on sys.path for one test only."""
    _purge_trtllm_modules()
    monkeypatch.syspath_prepend(str(FAKE_ROOT))
    import tensorrt_llm

    tensorrt_llm.fake_state.reset()
    yield tensorrt_llm
    _purge_trtllm_modules()


@pytest.fixture(scope="session")
def synthetic_dir(shared_model_cache: Path) -> Path:
    from llenergymeasure.models.synthetic import materialise_synthetic

    return materialise_synthetic("tiny-llama", shared_model_cache)


@pytest.fixture
def pretrained_dir(synthetic_dir: Path, tmp_path: Path) -> Path:
    """A model directory that looks pretrained: no synthetic marker, a weights file."""
    d = tmp_path / "pretrained"
    shutil.copytree(synthetic_dir, d)
    (d / "llem_synthetic.json").unlink()
    (d / "model.safetensors").write_bytes(b"\0" * 64)
    return d


def make_config(**overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "model": "synthetic/tiny-llama",
        "backend": "tensorrt",
        "precision": "fp16",
        "n": 4,
        "max_input_tokens": 32,
        "max_output_tokens": 16,
        "dataset": {"source": "synthetic", "input_tokens": 16},
        "baseline": {"enabled": False},
    }
    data.update(overrides)
    return ExperimentConfig(**data)


def make_backend(config: ExperimentConfig, model: Path, cache: Path) -> Any:
    from llenergymeasure.backends.tensorrt.backend import TensorRTBackend

    return TensorRTBackend(config, str(model), engine_cache_dir=cache)


def prompts_of(lengths: list[int], new_tokens: int = 16) -> list[Prompt]:
    return [
        Prompt(token_ids=[4 + (7 * i + j) % 4000 for j in range(n)], max_new_tokens=new_tokens)
        for i, n in enumerate(lengths)
    ]


# -- import hygiene and missing module -----------------------------------------------------------


def test_module_import_does_not_import_tensorrt_llm() -> None:
    _purge_trtllm_modules()
    import llenergymeasure.backends.tensorrt.backend  # noqa: F401

    assert "tensorrt_llm" not in sys.modules


def test_missing_tensorrt_llm_names_extra_and_image(
    monkeypatch: pytest.MonkeyPatch, synthetic_dir: Path, tmp_path: Path
) -> None:
    _purge_trtllm_modules()
    monkeypatch.setitem(sys.modules, "tensorrt_llm", None)  # makes `import tensorrt_llm` fail
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    with pytest.raises(BackendUnavailableError) as err:
        backend.load()
    text = str(err.value)
    assert "[tensorrt]" in text and "llenergymeasure:trtllm" in text
    backend.close()  # safe after a failed load


def test_broken_tensorrt_llm_install_is_unavailable_not_a_crash(
    monkeypatch: pytest.MonkeyPatch, synthetic_dir: Path, tmp_path: Path
) -> None:
    _purge_trtllm_modules()
    pkg = tmp_path / "broken" / "tensorrt_llm"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "raise OSError('libnvinfer.so.10: cannot open shared object')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "broken"))
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    with pytest.raises(BackendUnavailableError, match="libnvinfer"):
        backend.load()
    _purge_trtllm_modules()


# -- the fake is strict like the real API (so the tests below can fail) -----------------------------


def test_fake_refuses_what_the_real_api_refuses(trtllm: Any, synthetic_dir: Path) -> None:
    from tensorrt_llm._tensorrt_engine import LLM
    from tensorrt_llm.llmapi import BuildConfig, KvCacheConfig, SamplingParams

    with pytest.raises(ValueError, match="invalid argument: max_model_len"):
        LLM(model=str(synthetic_dir), max_model_len=128)
    with pytest.raises(TypeError):
        BuildConfig(max_output_len=16)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SamplingParams(max_new_tokens=16)  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        KvCacheConfig(free_gpu_memory_fraction=1.5)
    with pytest.raises(ValueError, match=r"KvCacheConfig\.dtype"):
        LLM(
            model=str(synthetic_dir),
            kv_cache_config=KvCacheConfig(dtype="fp8"),
            load_format="dummy",
        )
    # The 1.x top-level LLM is the PyTorch flow: it has no build_config.
    with pytest.raises(ValueError, match="invalid argument: build_config"):
        trtllm.LLM(model=str(synthetic_dir), build_config=BuildConfig())


# -- config translation --------------------------------------------------------------------------


def test_every_tensorrt_field_reaches_the_engine(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    config = make_config(
        precision="bf16",
        tensorrt={
            "tp_size": 2,
            "pp_size": 2,
            "max_batch_size": 8,
            "max_num_tokens": 1024,
            "max_input_len": 64,
            "max_seq_len": 128,
            "quantization": "fp8",
            "kv_cache_dtype": "FP8",
            "kv_cache_free_gpu_memory_fraction": 0.5,
            "enable_block_reuse": False,
        },
    )
    backend = make_backend(config, synthetic_dir, tmp_path / "engines")
    info = backend.load()
    init = trtllm.fake_state.last("init")
    assert init["cls"] == "_TrtLLM"  # the TensorRT-engine flow, not the PyTorch flow
    assert init["dtype"] == "bfloat16"
    assert init["tensor_parallel_size"] == 2
    kw = init["kwargs"]
    assert kw["pipeline_parallel_size"] == 2
    assert kw["load_format"] == "dummy"
    bc = kw["build_config"]
    assert (bc.max_batch_size, bc.max_num_tokens, bc.max_input_len, bc.max_seq_len) == (
        8,
        1024,
        64,
        128,
    )
    qc = kw["quant_config"]
    assert (qc.quant_algo.name, qc.kv_cache_quant_algo.name) == ("FP8", "FP8")
    kv = kw["kv_cache_config"]
    assert kv.free_gpu_memory_fraction == 0.5 and kv.enable_block_reuse is False
    assert kv.dtype == "auto"  # TensorRT engines take the KV-cache dtype from quant_config
    built = trtllm.fake_state.last("build")
    assert built["world_size"] == 4 and built["load_format"] == "dummy"
    assert info.cuda_devices == [0, 1, 2, 3]
    assert info.dtype == "bfloat16" and info.weights == "random" and info.device == "cuda"
    assert info.extra["kv_cache_config"] == {
        "free_gpu_memory_fraction": 0.5,
        "enable_block_reuse": False,
    }
    backend.close()


def test_defaults_size_the_engine_for_the_workload(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    info = backend.load()
    kw = trtllm.fake_state.last("init")["kwargs"]
    bc = kw["build_config"]
    assert bc.max_input_len == 32 and bc.max_seq_len == 32 + 16
    assert bc.max_batch_size == 2048 and bc.max_num_tokens == 8192  # the library's own defaults
    assert "quant_config" not in kw
    assert trtllm.fake_state.last("init")["dtype"] == "float16"
    # library defaults are recorded, not guessed
    assert info.extra["kv_cache_config"] == {
        "free_gpu_memory_fraction": 0.9,
        "enable_block_reuse": True,
    }
    assert info.cuda_devices == [0]
    backend.close()


def test_pretrained_directory_loads_real_weights(
    trtllm: Any, pretrained_dir: Path, tmp_path: Path
) -> None:
    backend = make_backend(make_config(model=str(pretrained_dir)), pretrained_dir, tmp_path / "e")
    info = backend.load()
    assert "load_format" not in trtllm.fake_state.last("init")["kwargs"]
    assert info.weights == "pretrained"
    backend.close()


def test_parameter_count_matches_transformers(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    cfg = transformers.AutoConfig.from_pretrained(synthetic_dir)
    expected = sum(p.numel() for p in transformers.LlamaForCausalLM(cfg).parameters())
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    assert backend.load().parameters == expected
    backend.close()


# -- the engine cache ------------------------------------------------------------------------------


def _load(trtllm: Any, config: ExperimentConfig, model: Path, cache: Path) -> dict[str, Any]:
    backend = make_backend(config, model, cache)
    try:
        return backend.load().extra
    finally:
        backend.close()


def test_cache_miss_then_hit(trtllm: Any, synthetic_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "engines"
    first = _load(trtllm, make_config(), synthetic_dir, cache)
    assert first["engine_cache_hit"] is False
    assert isinstance(first["build_time_s"], float) and first["build_time_s"] >= 0
    engine_dir = Path(first["engine_dir"])
    assert engine_dir.parent == cache and (engine_dir / "llem_engine.json").is_file()
    assert (engine_dir / "rank0.engine").is_file()
    meta = json.loads((engine_dir / "llem_engine.json").read_text())
    assert meta["key"] == first["engine_cache_key"] == engine_dir.name
    assert trtllm.fake_state.count("build") == 1

    second = _load(trtllm, make_config(), synthetic_dir, cache)
    assert second["engine_cache_hit"] is True and second["build_time_s"] is None
    assert second["engine_dir"] == first["engine_dir"]
    assert trtllm.fake_state.count("build") == 1
    assert trtllm.fake_state.last("load_engine")["engine_dir"] == first["engine_dir"]
    # loading an engine passes no build arguments (the engine's own build_config rules)
    assert "build_config" not in trtllm.fake_state.last("init")["kwargs"]
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp dirs left


@pytest.mark.parametrize(
    "change",
    [
        {"precision": "bf16"},
        {"tensorrt": {"tp_size": 2}},
        {"tensorrt": {"pp_size": 2}},
        {"tensorrt": {"max_batch_size": 4}},
        {"tensorrt": {"max_num_tokens": 512}},
        {"tensorrt": {"max_input_len": 40}},
        {"tensorrt": {"max_seq_len": 100}},
        {"tensorrt": {"quantization": "W4A16_AWQ"}},
        {"tensorrt": {"kv_cache_dtype": "int8"}},
        {"max_input_tokens": 24, "dataset": {"input_tokens": 8}},  # derived max_input_len
        {"max_output_tokens": 8},  # derived max_seq_len
    ],
)
def test_build_fields_change_the_key(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path, change: dict[str, Any]
) -> None:
    cache = tmp_path / "engines"
    base = _load(trtllm, make_config(), synthetic_dir, cache)
    other = _load(trtllm, make_config(**change), synthetic_dir, cache)
    assert other["engine_cache_hit"] is False
    assert other["engine_cache_key"] != base["engine_cache_key"]
    assert trtllm.fake_state.count("build") == 2


@pytest.mark.parametrize(
    "change",
    [
        {"tensorrt": {"kv_cache_free_gpu_memory_fraction": 0.3}},
        {"tensorrt": {"enable_block_reuse": False}},
        {"decoding": {"temperature": 0.8, "top_p": 0.9, "top_k": 10}},
        {"decoding": {"fixed_output_length": False}},
        {"n": 50, "batch_size": 8, "seed": 7, "name": "other"},
        {"warmup": {"runs": 1}},
    ],
)
def test_runtime_fields_reuse_the_engine(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path, change: dict[str, Any]
) -> None:
    cache = tmp_path / "engines"
    base = _load(trtllm, make_config(), synthetic_dir, cache)
    other = _load(trtllm, make_config(**change), synthetic_dir, cache)
    assert other["engine_cache_hit"] is True
    assert other["engine_cache_key"] == base["engine_cache_key"]
    assert trtllm.fake_state.count("build") == 1
    # runtime knobs still reach the runtime on a cache hit
    kv = trtllm.fake_state.last("init")["kwargs"]["kv_cache_config"]
    section = make_config(**change).backend_section()
    if section.kv_cache_free_gpu_memory_fraction is not None:
        assert kv.free_gpu_memory_fraction == section.kv_cache_free_gpu_memory_fraction
    if section.enable_block_reuse is not None:
        assert kv.enable_block_reuse == section.enable_block_reuse


def test_library_version_and_model_files_change_the_key(
    trtllm: Any, pretrained_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "engines"
    config = make_config(model=str(pretrained_dir))
    base = _load(trtllm, config, pretrained_dir, cache)
    assert _load(trtllm, config, pretrained_dir, cache)["engine_cache_hit"] is True
    trtllm.__version__ = "9.9.9"
    assert _load(trtllm, config, pretrained_dir, cache)["engine_cache_hit"] is False
    (pretrained_dir / "model.safetensors").write_bytes(b"\1" * 128)  # new weights
    changed = _load(trtllm, config, pretrained_dir, cache)
    assert changed["engine_cache_hit"] is False
    assert changed["engine_cache_key"] != base["engine_cache_key"]


def test_incomplete_cache_entry_is_rebuilt(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "engines"
    first = _load(trtllm, make_config(), synthetic_dir, cache)
    engine_dir = Path(first["engine_dir"])
    (engine_dir / "llem_engine.json").unlink()  # as if a build died before finishing
    again = _load(trtllm, make_config(), synthetic_dir, cache)
    assert again["engine_cache_hit"] is False
    assert (engine_dir / "llem_engine.json").is_file()
    assert trtllm.fake_state.count("build") == 2


# -- the measured window ---------------------------------------------------------------------------


def test_generate_fixed_lengths_and_engine_token_counts(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    backend.load()
    assert isinstance(backend, Backend)
    prompts = prompts_of([5, 16, 9, 32], new_tokens=16)
    out = backend.generate(prompts)
    gen = trtllm.fake_state.last("generate")
    assert gen["n"] == 4 and gen["use_tqdm"] is False  # one call for all prompts
    params = gen["sampling_params"]
    assert len(params) == 4
    for sp in params:
        assert (sp.max_tokens, sp.min_tokens, sp.ignore_eos) == (16, 16, True)
        assert sp.temperature == 0.0 and sp.return_perf_metrics is True
        assert sp.end_id == 2  # filled in from the tokenizer by the engine (EOS of tiny-llama)
    assert [r.input_tokens for r in out.requests] == [5, 16, 9, 32]
    assert [r.output_tokens for r in out.requests] == [16, 16, 16, 16]
    assert out.input_tokens == 62 and out.output_tokens == 64
    assert out.output_token_ids is not None and [len(t) for t in out.output_token_ids] == [16] * 4
    assert out.duration_s > 0
    assert out.timing_source == "engine-perf-metrics"
    for r in out.requests:
        assert r.ttft_s is not None and r.latency_s is not None
        assert 0 < r.ttft_s <= r.latency_s
        assert r.latency_s - r.ttft_s == pytest.approx(15 * 1e-4, rel=1e-3)
        assert r.itl_s == []
    assert "inter-token" in (out.timing_unavailable_reason or "")
    backend.close()


def test_generate_without_fixed_length_counts_what_the_engine_returned(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    config = make_config(decoding={"fixed_output_length": False})
    backend = make_backend(config, synthetic_dir, tmp_path / "engines")
    backend.load()
    out = backend.generate(prompts_of([8, 8, 12, 3, 20], new_tokens=16))
    sp = trtllm.fake_state.last("generate")["sampling_params"][0]
    assert sp.min_tokens is None and sp.ignore_eos is False
    lengths = [r.output_tokens for r in out.requests]
    assert lengths == [len(t) for t in out.output_token_ids or []]
    assert all(3 <= n < 16 for n in lengths)  # the fake emits EOS after 3..7 tokens
    backend.close()


def test_sampling_translation(trtllm: Any, synthetic_dir: Path, tmp_path: Path) -> None:
    config = make_config(decoding={"temperature": 0.7, "top_p": 0.9, "top_k": 50}, seed=123)
    backend = make_backend(config, synthetic_dir, tmp_path / "engines")
    backend.load()
    backend.generate(prompts_of([4]))
    sp = trtllm.fake_state.last("generate")["sampling_params"][0]
    assert (sp.temperature, sp.top_p, sp.top_k, sp.seed) == (0.7, 0.9, 50, 123)
    backend.close()
    backend = make_backend(
        make_config(decoding={"temperature": 0.7}), synthetic_dir, tmp_path / "e"
    )
    backend.load()
    backend.generate(prompts_of([4]))
    assert trtllm.fake_state.last("generate")["sampling_params"][0].top_k is None  # 0 = disabled
    backend.close()


def test_prompts_that_do_not_fit_the_engine_name_the_field(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    config = make_config(tensorrt={"max_input_len": 16, "max_seq_len": 24})
    backend = make_backend(config, synthetic_dir, tmp_path / "engines")
    backend.load()
    with pytest.raises(ConfigError, match=r"tensorrt\.max_input_len=16"):
        backend.generate(prompts_of([17], new_tokens=4))
    with pytest.raises(ConfigError, match=r"tensorrt\.max_seq_len=24"):
        backend.generate(prompts_of([16], new_tokens=16))
    backend.close()


def test_max_seq_len_must_leave_room(trtllm: Any, synthetic_dir: Path, tmp_path: Path) -> None:
    config = make_config(tensorrt={"max_input_len": 64, "max_seq_len": 64})
    backend = make_backend(config, synthetic_dir, tmp_path / "engines")
    with pytest.raises(ConfigError, match="max_seq_len"):
        backend.load()


def test_empty_prompt_list(trtllm: Any, synthetic_dir: Path, tmp_path: Path) -> None:
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    backend.load()
    out = backend.generate([])
    assert out.requests == [] and trtllm.fake_state.count("generate") == 0
    backend.close()


def test_tokenizer_is_the_one_given_to_the_engine(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    with pytest.raises(RuntimeError, match="before load"):
        backend.tokenizer()
    backend.load()
    tok = backend.tokenizer()
    assert trtllm.fake_state.last("init")["tokenizer"] is tok
    assert tok.eos_token_id == 2
    backend.close()


def test_peak_memory_from_runtime_stats(trtllm: Any, synthetic_dir: Path, tmp_path: Path) -> None:
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    backend.load()
    backend.generate(prompts_of([4, 4]))
    assert backend.peak_memory_bytes() == 3 * 1024**3
    backend.close()
    assert backend.peak_memory_bytes() == 3 * 1024**3  # remembered after close
    multi = make_backend(make_config(tensorrt={"tp_size": 2}), synthetic_dir, tmp_path / "engines")
    multi.load()
    multi.generate(prompts_of([4]))
    assert multi.peak_memory_bytes() is None  # rank 0 alone is not the total
    multi.close()


def test_synchronize_waits_on_each_visible_cuda_device_and_nothing_else(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    synced: list[int] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synced.append(device))
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    backend.synchronize()  # before load, no GPU: a no-op, not an error
    backend.load()
    events = list(trtllm.fake_state.events)
    backend.synchronize()
    assert synced == []  # no CUDA device: nothing to wait on
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    backend.synchronize()
    assert synced == [0, 1, 2]  # every device this process sees
    assert trtllm.fake_state.events == events  # the engine was not called
    backend.close()


def test_close_is_idempotent_and_final(trtllm: Any, synthetic_dir: Path, tmp_path: Path) -> None:
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    backend.close()  # before load
    backend.load()
    backend.close()
    backend.close()
    assert trtllm.fake_state.count("shutdown") == 1
    with pytest.raises(RuntimeError, match="after close"):
        backend.generate(prompts_of([4]))


# -- error paths -------------------------------------------------------------------------------------


def test_synthetic_model_without_dummy_support_is_a_clear_error(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typing import Literal

    import tensorrt_llm.llmapi.llm_args as llm_args

    class OldTrtLlmArgs(llm_args.TrtLlmArgs):
        load_format: Literal["auto"] = "auto"  # type: ignore[assignment]

    monkeypatch.setattr(llm_args, "TrtLlmArgs", OldTrtLlmArgs)
    backend = make_backend(make_config(), synthetic_dir, tmp_path / "engines")
    with pytest.raises(BackendUnavailableError, match="dummy") as err:
        backend.load()
    assert "synthetic" in str(err.value)
    assert trtllm.fake_state.count("init") == 0  # refused before any engine work


def test_bad_quantization_name_lists_accepted_values(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    backend = make_backend(make_config(tensorrt={"quantization": "int3"}), synthetic_dir, tmp_path)
    with pytest.raises(ConfigError) as err:
        backend.load()
    text = str(err.value)
    assert "tensorrt.quantization" in text and "'int3'" in text
    assert "FP8" in text and "W4A16_AWQ" in text and "NVFP4" in text


def test_bad_kv_cache_dtype_lists_accepted_values(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    backend = make_backend(make_config(tensorrt={"kv_cache_dtype": "fp4"}), synthetic_dir, tmp_path)
    with pytest.raises(ConfigError) as err:
        backend.load()
    text = str(err.value)
    assert "tensorrt.kv_cache_dtype" in text and "FP8, INT8, NVFP4" in text


def test_more_ranks_than_gpus_fails_in_load(
    trtllm: Any, synthetic_dir: Path, tmp_path: Path
) -> None:
    trtllm.fake_state.device_count = 2
    backend = make_backend(make_config(tensorrt={"tp_size": 4}), synthetic_dir, tmp_path)
    with pytest.raises(ExperimentError, match="Only 2 GPUs are available") as err:
        backend.load()
    assert err.value.phase == "load"
    assert not list((tmp_path).glob("*/llem_engine.json"))  # nothing cached


def test_wrong_backend_config_is_refused(synthetic_dir: Path, tmp_path: Path) -> None:
    from llenergymeasure.backends.tensorrt.backend import TensorRTBackend

    with pytest.raises(ValueError, match="backend 'pytorch'"):
        TensorRTBackend(make_config(backend="pytorch"), str(synthetic_dir), tmp_path)
