"""The backend's translation of the config against the real vLLM classes (no engine is started).

Runs in the vLLM environment: ``vllm.EngineArgs`` must accept every keyword ``engine_kwargs``
produces (an unknown name is a ``TypeError``), vLLM's own config resolution must end with the
values asked for, and ``vllm.SamplingParams`` must accept and keep the sampling keywords.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm

SCRIPT = r"""
import json, sys
from pathlib import Path

import vllm
from vllm.sampling_params import RequestOutputKind

from llenergymeasure.backends.vllm.args import engine_kwargs, sampling_kwargs
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.models.synthetic import materialise_synthetic

model_dir = str(materialise_synthetic("tiny-llama", Path(sys.argv[1])))
report = {}

# 1. Every field, non-default: EngineArgs must know every keyword.
every = ExperimentConfig(
    model="synthetic/tiny-llama", backend="vllm", precision="bf16", seed=5,
    vllm={
        "tensor_parallel_size": 2, "pipeline_parallel_size": 2, "gpu_memory_utilization": 0.5,
        "max_num_seqs": 16, "max_num_batched_tokens": 2048, "max_model_len": 1024,
        "enforce_eager": True, "quantization": "fp8", "kv_cache_dtype": "fp8",
        "enable_prefix_caching": False, "trust_remote_code": True,
    },
)
kwargs = engine_kwargs(every, model_dir, synthetic=True)
args = vllm.EngineArgs(**kwargs)
report["every_field"] = {k: getattr(args, k) for k in kwargs}

# 2. A configuration this CPU can run: vLLM's resolved config holds what was asked for.
runnable = ExperimentConfig(
    model="synthetic/tiny-llama", backend="vllm", precision="fp32", seed=11,
    vllm={
        "gpu_memory_utilization": 0.2, "max_num_seqs": 8, "max_num_batched_tokens": 1024,
        "max_model_len": 512, "enforce_eager": True, "enable_prefix_caching": False,
    },
)
resolved = vllm.EngineArgs(**engine_kwargs(runnable, model_dir, synthetic=True)).create_engine_config()
report["resolved"] = {
    "max_num_seqs": resolved.scheduler_config.max_num_seqs,
    "max_num_batched_tokens": resolved.scheduler_config.max_num_batched_tokens,
    "max_model_len": resolved.model_config.max_model_len,
    "enforce_eager": resolved.model_config.enforce_eager,
    "enable_prefix_caching": resolved.cache_config.enable_prefix_caching,
    "gpu_memory_utilization": resolved.cache_config.gpu_memory_utilization,
    "cache_dtype": str(resolved.cache_config.cache_dtype),
    "dtype": str(resolved.model_config.dtype),
    "seed": resolved.model_config.seed,
    "load_format": str(resolved.load_config.load_format),
    "tensor_parallel_size": resolved.parallel_config.tensor_parallel_size,
    "pipeline_parallel_size": resolved.parallel_config.pipeline_parallel_size,
}

# 3. SamplingParams: fixed length, free length, sampling with a seed.
cases = {
    "fixed": ExperimentConfig(model="synthetic/tiny-llama", backend="vllm"),
    "free": ExperimentConfig(
        model="synthetic/tiny-llama", backend="vllm", decoding={"fixed_output_length": False}
    ),
    "sampled": ExperimentConfig(
        model="synthetic/tiny-llama", backend="vllm", seed=9,
        decoding={"temperature": 0.8, "top_p": 0.9, "top_k": 20},
    ),
}
report["sampling"] = {}
for name, cfg in cases.items():
    sp = vllm.SamplingParams(**sampling_kwargs(cfg, 33), output_kind=RequestOutputKind.DELTA)
    report["sampling"][name] = {
        k: getattr(sp, k)
        for k in ("max_tokens", "min_tokens", "ignore_eos", "temperature", "top_p", "top_k", "seed")
    }
    report["sampling"][name]["output_kind"] = sp.output_kind.name
print("REPORT " + json.dumps(report, default=str))
"""


@pytest.fixture(scope="module")
def contract_report(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cache = tmp_path_factory.mktemp("vllm-contract-models")
    res = subprocess.run(
        [str(vllm_python), "-c", SCRIPT, str(cache)], capture_output=True, text=True, timeout=600
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("REPORT ")]
    assert res.returncode == 0 and lines, f"contract script failed:\n{res.stderr[-4000:]}"
    return json.loads(lines[-1][len("REPORT ") :])  # type: ignore[no-any-return]


def test_engine_args_know_every_keyword(contract_report: dict) -> None:
    every = contract_report["every_field"]
    assert every["tensor_parallel_size"] == 2
    assert every["pipeline_parallel_size"] == 2
    assert every["gpu_memory_utilization"] == 0.5
    assert every["max_num_seqs"] == 16
    assert every["max_num_batched_tokens"] == 2048
    assert every["max_model_len"] == 1024
    assert every["enforce_eager"] is True
    assert every["quantization"] == "fp8"
    assert every["kv_cache_dtype"] == "fp8"
    assert every["enable_prefix_caching"] is False
    assert every["trust_remote_code"] is True
    assert every["dtype"] == "bfloat16"
    assert every["seed"] == 5
    assert every["load_format"] == "dummy"
    assert every["disable_log_stats"] is False


def test_vllm_resolves_the_values_asked_for(contract_report: dict) -> None:
    resolved = contract_report["resolved"]
    assert resolved["max_num_seqs"] == 8
    assert resolved["max_num_batched_tokens"] == 1024
    assert resolved["max_model_len"] == 512
    assert resolved["enforce_eager"] is True
    assert resolved["enable_prefix_caching"] is False
    assert resolved["gpu_memory_utilization"] == 0.2
    assert resolved["cache_dtype"] == "auto"
    assert resolved["dtype"] == "torch.float32"
    assert resolved["seed"] == 11
    assert resolved["load_format"] == "dummy"
    assert resolved["tensor_parallel_size"] == 1 and resolved["pipeline_parallel_size"] == 1


def test_sampling_params_keep_the_decoding(contract_report: dict) -> None:
    sampling = contract_report["sampling"]
    fixed = sampling["fixed"]
    assert fixed["max_tokens"] == fixed["min_tokens"] == 33
    assert fixed["ignore_eos"] is True
    assert fixed["temperature"] == 0.0
    assert fixed["seed"] is None
    assert fixed["output_kind"] == "DELTA"
    free = sampling["free"]
    assert free["max_tokens"] == 33 and free["min_tokens"] == 0 and free["ignore_eos"] is False
    sampled = sampling["sampled"]
    assert sampled["temperature"] == 0.8
    assert sampled["top_p"] == 0.9
    assert sampled["top_k"] == 20
    assert sampled["seed"] == 9
