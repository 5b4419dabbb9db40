"""Loading a transformers causal LM and its tokenizer for the PyTorch backend.

Pretrained checkpoints load with ``from_pretrained`` (on one device, or sharded by ``device_map``);
a synthetic model directory (``models/synthetic.py``) gets seeded random weights, on its device
or dispatched over GPUs by accelerate. torch and transformers are passed in by the caller, which
imports them inside ``load``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from llenergymeasure.errors import BackendUnavailableError, ConfigError, ExperimentError

if TYPE_CHECKING:
    from llenergymeasure.backends.pytorch.section import PyTorchConfig


def load_tokenizer(
    transformers: Any, model_path: str, section: PyTorchConfig, extra: dict[str, Any]
) -> Any:
    """The model's tokenizer, padding on the left (pad token: EOS when it has none)."""
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            model_path, trust_remote_code=section.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise ExperimentError(
            f"could not load the tokenizer of {model_path!r}: "
            f"{exc.__class__.__name__}: {exc}. On a machine without the model hub use a "
            "local model directory or synthetic/<preset>",
            phase="load",
        ) from exc
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ExperimentError(
                f"the tokenizer of {model_path!r} has neither a pad nor an EOS token; "
                "batched generation needs one to pad with",
                phase="load",
            )
        tokenizer.pad_token = tokenizer.eos_token
        extra["pad_token"] = "eos (the tokenizer has no pad token)"
    return tokenizer


def load_model(
    torch: Any,
    transformers: Any,
    model_path: str,
    section: PyTorchConfig,
    *,
    dtype: Any,
    device: str,
    seed: int,
    synthetic: bool,
    extra: dict[str, Any],
) -> Any:
    """The model: pretrained from ``model_path``, or seeded random weights for a synthetic one.

    A synthetic directory has no weight files: on one device the model is built in ``dtype`` right
    on it with every initialiser off and filled from a generator seeded with ``seed``
    (``models.synthetic.build_random_model``); sharded with ``device_map`` it is allocated on the
    host with the initialisers off, dispatched, and each part filled where it lies
    (``synthetic_sharded``). The same seed, device types and device map give the same weights.
    """
    kwargs: dict[str, Any] = {"dtype": dtype}
    if section.attn_implementation is not None:
        kwargs["attn_implementation"] = section.attn_implementation
    if synthetic:
        if section.device_map is None:
            # Built straight in dtype on the device, initialisers off, one seeded fill pass.
            from llenergymeasure.models.synthetic import build_random_model

            model_kwargs = {k: v for k, v in kwargs.items() if k != "dtype"}
            model, timings = build_random_model(
                torch,
                transformers,
                model_path,
                dtype=dtype,
                device=device,
                seed=seed,
                model_kwargs=model_kwargs,
            )
            extra["synthetic_build_s"] = timings
            return model
        config = transformers.AutoConfig.from_pretrained(model_path)
        return synthetic_sharded(torch, transformers, config, section, kwargs, extra, seed=seed)
    device_map = section.device_map if section.device_map is not None else device
    return transformers.AutoModelForCausalLM.from_pretrained(
        model_path,
        device_map=device_map,
        trust_remote_code=section.trust_remote_code,
        **kwargs,
    )


def synthetic_sharded(
    torch: Any,
    transformers: Any,
    config: Any,
    section: PyTorchConfig,
    kwargs: dict[str, Any],
    extra: dict[str, Any],
    *,
    seed: int,
) -> Any:
    """Random weights over GPUs: allocated on the host, dispatched by accelerate, filled in place.

    ``from_config`` takes no ``device_map``; accelerate computes one from free memory (for
    ``auto``/``balanced``/``balanced_low_0``/``sequential``) and moves each layer there. The model
    is constructed with transformers' initialisers off (on the H200, initialising llama-8b on the
    host took 272 s of a 4-minute load) and each part is filled from ``seed`` on its own device:
    parts the map keeps on the host before ``dispatch_model`` (which may offload them), the rest
    after it, on their GPUs.
    """
    import time

    from llenergymeasure.models.synthetic import fill_random_weights, no_init_weights

    try:
        from accelerate import dispatch_model, infer_auto_device_map
        from accelerate.utils import get_balanced_memory
    except ImportError as exc:
        raise BackendUnavailableError(
            "device_map with a synthetic model needs accelerate: pip install accelerate"
        ) from exc
    t0 = time.perf_counter()
    with no_init_weights(transformers):
        model = transformers.AutoModelForCausalLM.from_config(config, **kwargs)
    timings = {"construct_s": time.perf_counter() - t0}
    requested = section.device_map
    no_split = getattr(model, "_no_split_modules", None) or []
    if requested in ("auto", "balanced", "balanced_low_0"):
        max_memory = get_balanced_memory(
            model,
            dtype=kwargs["dtype"],
            low_zero=requested == "balanced_low_0",
            no_split_module_classes=no_split,
        )
    elif requested == "sequential":
        max_memory = None
    else:
        raise ConfigError(
            f"pytorch.device_map: {requested!r} is not supported for synthetic models; use "
            "auto, balanced, balanced_low_0 or sequential (or leave it unset for one device)"
        )
    device_map = infer_auto_device_map(
        model, max_memory=max_memory, no_split_module_classes=no_split, dtype=kwargs["dtype"]
    )
    extra["synthetic_device_map"] = {k: str(v) for k, v in device_map.items()}
    std = float(getattr(config, "initializer_range", 0.02))
    generators: dict[Any, Any] = {}
    on_host = [n for n, d in device_map.items() if str(d) in ("cpu", "disk")]
    on_gpus = [n for n in device_map if n not in on_host]
    t1 = time.perf_counter()
    for name in on_host:
        fill_random_weights(torch, model.get_submodule(name), seed, std, generators=generators)
    if not on_gpus:
        extra["synthetic_build_s"] = {**timings, "fill_s": time.perf_counter() - t1}
        return model
    model = dispatch_model(model, device_map=device_map)
    model.hf_device_map = device_map
    for name in on_gpus:
        fill_random_weights(torch, model.get_submodule(name), seed, std, generators=generators)
    torch.cuda.synchronize()
    extra["synthetic_build_s"] = {**timings, "fill_s": time.perf_counter() - t1}
    return model


def is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except OSError:
        return False


def cuda_devices_of(torch: Any, model: Any) -> list[int]:
    """CUDA indices holding the model's parameters (several when ``device_map`` shards it)."""
    devices: set[int] = set()
    for param in model.parameters():
        if param.device.type == "cuda":
            index = param.device.index
            devices.add(torch.cuda.current_device() if index is None else int(index))
    return sorted(devices)
