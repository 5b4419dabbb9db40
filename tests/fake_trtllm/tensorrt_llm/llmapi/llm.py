"""Mirror of ``tensorrt_llm/llmapi/llm.py``: ``BaseLLM``, ``_TrtLLM`` (exported as
``tensorrt_llm._tensorrt_engine.LLM``) and ``_TorchLLM`` (the top-level ``tensorrt_llm.LLM``).

What is real: the constructor signature, the refusal of unknown keywords (``ValueError``), the
GPU-count check, the model-format detection (engine directory = ``config.json`` holding
``pretrained_config`` and ``build_config``), the refusal to load a Hugging Face directory without
weights unless ``load_format="dummy"``, ``generate``'s argument handling and its
``prompt + max_tokens <= max_seq_len`` check, ``save``, ``shutdown`` and ``get_stats``.

What is fake: no engine is compiled and no GPU is touched. "Building" writes a ``config.json`` and
``rank{N}.engine`` files into the workspace; generation produces deterministic token ids from
the prompt (an end-of-sequence token appears after a few tokens, so EOS handling is observable);
timings are steady-clock readings spaced by fixed steps.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from tensorrt_llm import fake_state
from tensorrt_llm.builder import BuildConfig
from tensorrt_llm.executor.result import CompletionOutput, RequestPerfMetrics, TimingMetrics
from tensorrt_llm.llmapi.llm_args import BaseLlmArgs, TorchLlmArgs, TrtLlmArgs
from tensorrt_llm.sampling_params import SamplingParams

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class RequestOutput:
    """The output of one request: ``request_id``, ``prompt``, ``prompt_token_ids``, ``outputs``,
    ``finished`` (the real one is built by the executor; users never construct it)."""

    def __init__(
        self,
        request_id: int,
        prompt: str | None,
        prompt_token_ids: list[int],
        outputs: list[CompletionOutput],
    ) -> None:
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = prompt_token_ids
        self.outputs = outputs
        self.finished = True


def _steady_now() -> datetime.timedelta:
    return datetime.timedelta(seconds=time.monotonic())


class BaseLLM:
    _args_cls: type[BaseLlmArgs] = TrtLlmArgs

    def __init__(
        self,
        model: str | Path,
        tokenizer: Any = None,
        tokenizer_mode: Literal["auto", "slow"] = "auto",
        skip_tokenizer_init: bool = False,
        trust_remote_code: bool = False,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        revision: str | None = None,
        tokenizer_revision: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._executor: object | None = None
        self.mpi_session = None
        valid_keys = set(self._args_cls.model_fields) | {"_mpi_session", "backend"}
        for key in kwargs:
            if key not in valid_keys:
                raise ValueError(f"{self.__class__.__name__} got invalid argument: {key}")
        self.args = self._args_cls.from_kwargs(
            model=model,
            tokenizer=tokenizer,
            tokenizer_mode=tokenizer_mode,
            skip_tokenizer_init=skip_tokenizer_init,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            dtype=dtype,
            revision=revision,
            tokenizer_revision=tokenizer_revision,
            **kwargs,
        )
        fake_state.events.append(
            {
                "event": "init",
                "cls": type(self).__name__,
                "kwargs": dict(kwargs),
                "model": str(model),
                "tensor_parallel_size": tensor_parallel_size,
                "dtype": dtype,
                "tokenizer": tokenizer,
            }
        )
        world = self.args.world_size
        if world > 1 and fake_state.device_count < world:
            raise RuntimeError(
                f"Only {fake_state.device_count} GPUs are available, but {world} are required."
            )
        self._workspace = tempfile.TemporaryDirectory(suffix="-llm-workspace")
        self._engine_dir: Path | None = None
        self._vocab_size = 32000
        self._stats: list[dict[str, Any]] = []
        self._iter = 0
        self._next_request_id = 0
        self._build_model()
        self._executor = object()

    # -- model loading ------------------------------------------------------------------------

    def _build_model(self) -> None:
        raise NotImplementedError

    def _load_tokenizer(self, fallback_dir: Path | None) -> Any:
        if self.args.skip_tokenizer_init:
            return None
        tok = self.args.tokenizer
        if tok is not None and not isinstance(tok, (str, Path)):
            return tok
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(tok or fallback_dir))

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        inputs: Any,
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        prompt_adapter_request: Any = None,
        kv_cache_retention_config: Any = None,
        disaggregated_params: Any = None,
        scheduling_params: Any = None,
        cache_salt: Any = None,
    ) -> RequestOutput | list[RequestOutput]:
        unbatched = not isinstance(inputs, list)
        if not unbatched and inputs and isinstance(inputs[0], int):
            unbatched = True
        if unbatched:
            inputs = [inputs]
        results = []
        for i, request_inputs in enumerate(inputs):
            sp = sampling_params[i] if isinstance(sampling_params, list) else sampling_params
            results.append(self.generate_async(request_inputs, sampling_params=sp))
        fake_state.events.append(
            {
                "event": "generate",
                "n": len(results),
                "use_tqdm": use_tqdm,
                "sampling_params": sampling_params,
            }
        )
        return results[0] if unbatched else results

    def generate_async(
        self, inputs: Any, sampling_params: SamplingParams | None = None, streaming: bool = False
    ) -> RequestOutput:
        if self._executor is None:
            raise RuntimeError("LLM is shutting down")
        arrival = _steady_now()
        sp = self._prepare_sampling_params(sampling_params)
        if isinstance(inputs, dict) and "prompt_token_ids" in inputs:
            prompt_ids, prompt = list(inputs["prompt_token_ids"]), None
        elif isinstance(inputs, list) and all(isinstance(t, int) for t in inputs):
            prompt_ids, prompt = list(inputs), None
        elif isinstance(inputs, str):
            prompt_ids, prompt = list(self.tokenizer.encode(inputs)), inputs
        else:
            raise TypeError(f"The inputs must be type str or list of int, but got {type(inputs)}")
        self._check_arguments(len(prompt_ids), sp)
        token_ids, finish = self._fake_decode(prompt_ids, sp)
        metrics = None
        if sp.return_perf_metrics or self.args.return_perf_metrics:
            scheduled = arrival + datetime.timedelta(microseconds=10)
            first = scheduled + datetime.timedelta(milliseconds=1)
            last = first + datetime.timedelta(microseconds=100) * max(len(token_ids) - 1, 0)
            metrics = RequestPerfMetrics(
                timing_metrics=TimingMetrics(arrival, scheduled, first, last),
                first_iter=self._iter,
                last_iter=self._iter + len(token_ids) - 1,
                iter=self._iter + len(token_ids) - 1,
            )
        for _ in token_ids:
            self._stats.append(
                {
                    "iter": self._iter,
                    "gpuMemUsage": fake_state.gpu_mem_usage_bytes,
                    "cpuMemUsage": 1 << 20,
                    "numActiveRequests": 1,
                }
            )
            self._iter += 1
        out = CompletionOutput(
            index=0, token_ids=token_ids, finish_reason=finish, request_perf_metrics=metrics
        )
        self._next_request_id += 1
        return RequestOutput(self._next_request_id, prompt, prompt_ids, [out])

    def _prepare_sampling_params(self, sampling_params: SamplingParams | None) -> SamplingParams:
        if sampling_params is None:
            sampling_params = SamplingParams()
        if not isinstance(sampling_params, SamplingParams):
            raise TypeError(
                "The sampling_params must be type SamplingParams or None, but got "
                f"{type(sampling_params)}"
            )
        if sampling_params.end_id is None:
            if self.tokenizer is None:
                raise ValueError(
                    "tokenizer is required to reset end_id if it is None, or you can explicitly "
                    "specify the end_id for sampling_params"
                )
            sampling_params._setup(self.tokenizer)
        return sampling_params

    def _check_arguments(self, prompt_len: int, sp: SamplingParams) -> None:
        raise NotImplementedError

    def _fake_decode(self, prompt_ids: list[int], sp: SamplingParams) -> tuple[list[int], str]:
        base = int(hashlib.sha256(json.dumps(prompt_ids).encode()).hexdigest()[:8], 16)
        salt = 0 if sp._greedy_decoding else (sp.seed or 0) * 1_000_003
        eos_at = 3 + base % 5
        min_tokens = sp.min_tokens if sp.min_tokens is not None else 1
        end_id = sp.end_id
        tokens: list[int] = []
        for k in range(sp.max_tokens):
            if k == eos_at and end_id is not None and not sp.ignore_eos and k >= min_tokens:
                return tokens, "stop"
            tok = (base + salt + 7919 * (k + 1)) % self._vocab_size
            if tok == end_id:
                tok = (tok + 1) % self._vocab_size
            tokens.append(tok)
        return tokens, "length"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def get_stats(self, timeout: float | None = 2) -> list[dict[str, Any]]:
        stats, self._stats = self._stats, []
        return stats

    def shutdown(self) -> None:
        if getattr(self, "_executor", None) is not None:
            self._executor = None
            fake_state.events.append({"event": "shutdown"})

    def __enter__(self) -> BaseLLM:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.shutdown()
        return False

    def __del__(self) -> None:
        self.shutdown()


class _TrtLLM(BaseLLM):
    """The TensorRT-engine flow: builds (or loads) a TensorRT engine, then serves it."""

    _args_cls = TrtLlmArgs

    @property
    def workspace(self) -> Path:
        return Path(self._workspace.name)

    def _build_model(self) -> None:
        args = self.args
        assert isinstance(args, TrtLlmArgs) and args.build_config is not None
        model_dir = Path(args.model)
        config_file = model_dir / "config.json"
        if not config_file.exists():
            raise ValueError(
                f"Failed to infer model format because no config.json exists in {model_dir}"
            )
        config = json.loads(config_file.read_text())
        if "pretrained_config" in config and "build_config" in config:
            mapping = config["pretrained_config"]["mapping"]
            for name, key in (
                ("tensor_parallel_size", "tp_size"),
                ("pipeline_parallel_size", "pp_size"),
            ):
                if getattr(args, name) not in (1, mapping[key]):
                    raise ValueError(
                        f"{key} {getattr(args, name)} is not consistent with the engine's "
                        f"{key} {mapping[key]}"
                    )
            for rank in range(mapping["world_size"]):
                if not (model_dir / f"rank{rank}.engine").is_file():
                    raise FileNotFoundError(model_dir / f"rank{rank}.engine")
            args.build_config = BuildConfig.from_dict(config["build_config"])
            self._engine_dir = model_dir
            self._vocab_size = int(config["pretrained_config"]["vocab_size"])
            self._hf_dir = Path(config.get("llemfake_hf_dir", model_dir))
            fake_state.events.append({"event": "load_engine", "engine_dir": str(model_dir)})
        else:
            if args.load_format == "auto" and not any(
                p.suffix in _WEIGHT_SUFFIXES for p in model_dir.iterdir()
            ):
                raise OSError(
                    f"Error no file named model.safetensors, pytorch_model.bin found in "
                    f"directory {model_dir}."
                )
            self._vocab_size = int(config.get("vocab_size", 32000))
            self._hf_dir = model_dir
            engine_dir = self.workspace / "tmp.engine"
            engine_dir.mkdir()
            world = args.world_size
            engine_config = {
                "version": "1.2.1+llemfake",
                "llemfake_hf_dir": str(model_dir),
                "pretrained_config": {
                    "architecture": (config.get("architectures") or ["?"])[0],
                    "dtype": args.dtype,
                    "vocab_size": self._vocab_size,
                    "mapping": {
                        "world_size": world,
                        "tp_size": args.tensor_parallel_size,
                        "pp_size": args.pipeline_parallel_size,
                    },
                    "quantization": args.quant_config.to_dict(),
                },
                "build_config": args.build_config.to_dict(),
            }
            (engine_dir / "config.json").write_text(json.dumps(engine_config, indent=2))
            for rank in range(world):
                (engine_dir / f"rank{rank}.engine").write_bytes(
                    hashlib.sha256(f"{engine_config}{rank}".encode()).digest() * 64
                )
            self._engine_dir = engine_dir
            fake_state.events.append(
                {
                    "event": "build",
                    "load_format": args.load_format,
                    "dtype": args.dtype,
                    "build_config": args.build_config.to_dict(),
                    "quant_config": args.quant_config.to_dict(),
                    "kv_cache_config": args.kv_cache_config.model_dump(),
                    "world_size": world,
                }
            )
        self._tokenizer = self._load_tokenizer(self._hf_dir)

    def _check_arguments(self, prompt_len: int, sp: SamplingParams) -> None:
        assert isinstance(self.args, TrtLlmArgs) and self.args.build_config is not None
        max_seq_len = self.args.build_config.max_seq_len
        if max_seq_len is not None and prompt_len + (sp.max_tokens or 0) > max_seq_len:
            raise ValueError(
                f"The sum of prompt length ({float(prompt_len)}) and query length (0) max_tokens "
                f"({sp.max_tokens}) should not exceed max_seq_len ({max_seq_len})"
            )

    def save(self, engine_dir: str) -> None:
        if self._engine_dir is None:
            raise RuntimeError("The engine is not built yet.")
        if self._engine_dir.absolute() == Path(engine_dir).absolute():
            return
        shutil.copytree(self._engine_dir, engine_dir, dirs_exist_ok=True)
        fake_state.events.append({"event": "save", "engine_dir": str(engine_dir)})


class _TorchLLM(BaseLLM):
    """The PyTorch flow (the top-level ``tensorrt_llm.LLM`` in 1.x): no engine build, so no
    ``build_config`` / ``quant_config`` / ``save``; present so a wrong import fails loudly."""

    _args_cls = TorchLlmArgs

    def _build_model(self) -> None:
        self._tokenizer = self._load_tokenizer(Path(self.args.model))
        fake_state.events.append({"event": "torch_load"})

    def _check_arguments(self, prompt_len: int, sp: SamplingParams) -> None:
        return None


LLM = _TorchLLM
