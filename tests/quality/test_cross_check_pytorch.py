"""llem's PyTorch lm-eval adapter against lm-eval's own ``hf`` model, on the same weights.

Same saved random-weight model directory, same local tasks (multiple choice, generation, rolling
log-likelihood), no hub: every per-item log-likelihood agrees within 1e-4, greedy flags and
generated texts are identical, and so is every metric value. llem runs its requests in batches of
3 (right-padded scoring, left-padded generation) while ``hf`` runs them one by one, so padding
is exercised too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from tests.quality.conftest import GEN_TASK, MC_TASK, PPL_TASK

pytest.importorskip("lm_eval")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.timeout(900)


def _evaluate(lm: Any, task_spec: Any, manager: Any, limit: int) -> dict[str, Any]:
    from lm_eval import simple_evaluate

    return simple_evaluate(  # type: ignore[no-any-return]
        model=lm,
        tasks=[task_spec],
        limit=limit,
        task_manager=manager,
        log_samples=True,
        bootstrap_iters=0,
        random_seed=1,
        numpy_random_seed=1,
        torch_random_seed=1,
        fewshot_random_seed=1,
    )


@pytest.fixture(scope="module")
def both(saved_model: Path) -> tuple[Any, Any, Any, list[Any]]:
    """(llem's adapter over a loaded PyTorchBackend, lm-eval's hf model, manager, tasks)."""
    from lm_eval.models.huggingface import HFLM

    from llenergymeasure.backends import create_backend
    from llenergymeasure.quality.adapter import adapter_for
    from llenergymeasure.quality.tasks import resolve_tasks

    config = ExperimentConfig(
        model=str(saved_model),
        backend="pytorch",
        precision="fp32",
        quality={"tasks": [str(MC_TASK), str(GEN_TASK), str(PPL_TASK)], "batch_size": 3},
    )
    assert config.quality is not None
    backend = create_backend(config, str(saved_model))
    info = backend.load()
    assert info.weights == "pretrained"  # the saved weights, not a seeded rebuild
    manager, tasks = resolve_tasks(
        config.quality, config.backend_section().QUALITY_REQUESTS, "PyTorch", hub_check=lambda: None
    )
    ours = adapter_for(backend, config.quality)
    theirs = HFLM(pretrained=str(saved_model), device="cpu", dtype="float32", batch_size=1)
    yield ours, theirs, manager, tasks
    backend.close()


def _by_doc(output: dict[str, Any], task: str) -> dict[int, Any]:
    return {s["doc_id"]: s for s in output["samples"][task]}


def _metrics(output: dict[str, Any], task: str) -> dict[str, Any]:
    return {k: v for k, v in output["results"][task].items() if "_stderr" not in k and k != "alias"}


@pytest.mark.parametrize("which", ["mc", "ppl"])
def test_loglikelihoods_agree_within_1e_4(both: Any, which: str) -> None:
    ours, theirs, manager, tasks = both
    task = next(t for t in tasks if t.name == f"llem_local_{which}")
    a = _evaluate(ours, task.spec, manager, limit=12)
    b = _evaluate(theirs, task.spec, manager, limit=12)
    sa, sb = _by_doc(a, task.name), _by_doc(b, task.name)
    assert sorted(sa) == sorted(sb) and len(sa) >= 8
    compared = 0
    for doc_id, sample in sa.items():
        for ra, rb in zip(sample["resps"], sb[doc_id]["resps"], strict=True):
            mine, ref = ra[0], rb[0]
            if which == "mc":  # (loglikelihood, is_greedy)
                assert mine[0] == pytest.approx(ref[0], abs=1e-4)
                assert bool(mine[1]) == bool(ref[1])
            else:  # a rolling log-likelihood
                assert mine == pytest.approx(ref, abs=1e-4)
            compared += 1
    assert compared >= 8
    ma, mb = _metrics(a, task.name), _metrics(b, task.name)
    assert ma.keys() == mb.keys() and ma
    numbers = [k for k in ma if isinstance(ma[k], float)]
    assert numbers
    for key in ma:
        if key in numbers:  # accuracies identical; perplexities from sums agreeing within 1e-4
            assert ma[key] == pytest.approx(mb[key], rel=1e-5), key
        else:
            assert ma[key] == mb[key], key
    if which == "mc":
        assert ma["acc,none"] == mb["acc,none"]
        assert ma["acc_norm,none"] == mb["acc_norm,none"]


def test_generations_identical(both: Any) -> None:
    ours, theirs, manager, tasks = both
    task = next(t for t in tasks if t.name == "llem_local_gen")
    a = _evaluate(ours, task.spec, manager, limit=8)
    b = _evaluate(theirs, task.spec, manager, limit=8)
    sa, sb = _by_doc(a, task.name), _by_doc(b, task.name)
    assert [sa[i]["resps"] for i in sorted(sa)] == [sb[i]["resps"] for i in sorted(sb)]
    assert any(r[0][0] for s in sa.values() for r in [s["resps"]])  # something was generated
    assert _metrics(a, task.name) == _metrics(b, task.name)
    assert ours.counts.output_tokens > 0
