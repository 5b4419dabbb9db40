"""Named lm-eval tasks checked at validation: llem's reading of lm-eval's own task YAMLs.

``config/lm_eval_index.py`` reads lm-eval's shipped task YAMLs without importing lm-eval; the
first test compares it, entry by entry, with lm-eval's own ``TaskIndex`` (what ``TaskManager``
uses), on the lm-eval installed here. The others use real task names (hellaswag, wikitext,
gsm8k, mmlu, ai2_arc) and small task trees written for one rule each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from llenergymeasure import ExperimentConfig
from llenergymeasure.config import lm_eval_index
from llenergymeasure.config.lm_eval_index import build_index, named_task_output_types, tasks_dir
from tests.quality.conftest import GEN_TASK

pytest.importorskip("lm_eval")


@pytest.mark.slow
def test_index_matches_lm_evals_own_task_index_entry_by_entry() -> None:
    from lm_eval.tasks._index import Kind, TaskIndex

    root = tasks_dir()
    assert root is not None
    theirs = TaskIndex.build([root])
    ours = build_index(root)
    kinds = {Kind.TASK: "task", Kind.PY_TASK: "py_task", Kind.GROUP: "group", Kind.TAG: "tag"}
    assert sorted(ours) == sorted(theirs)
    for name, entry in theirs.items():
        kind = kinds[entry.kind]
        expected = (
            (entry.cfg or {}).get("output_type", "generate_until") if kind == "task" else None
        )
        assert (ours[name].kind, ours[name].output_type) == (kind, expected), name
        if kind != "tag":
            assert ours[name].yaml_path == str(entry.yaml_path), name
    assert len(ours) > 10_000  # the whole shipped tree, not a corner of it


def test_real_task_names_have_their_output_types() -> None:
    types = named_task_output_types(["hellaswag", "wikitext", "gsm8k", "lambada_openai"])
    assert types == {
        "hellaswag": "multiple_choice",
        "wikitext": "loglikelihood_rolling",
        "gsm8k": "generate_until",
        "lambada_openai": "loglikelihood",
    }


def test_tensorrt_refuses_named_loglikelihood_tasks_at_validation_naming_them() -> None:
    with pytest.raises(ValidationError) as info:
        ExperimentConfig(
            model="synthetic/tiny-llama",
            backend="tensorrt",
            quality={"tasks": ["hellaswag", "gsm8k", "wikitext", str(GEN_TASK)]},
        )
    text = str(info.value)
    assert "TensorRT-LLM cannot compute loglikelihood (needed by hellaswag)" in text
    assert "loglikelihood_rolling (needed by wikitext)" in text
    assert "gsm8k" not in text.split("supports")[0]
    ExperimentConfig(
        model="synthetic/tiny-llama",
        backend="tensorrt",
        quality={"tasks": ["gsm8k", str(GEN_TASK)]},
    )
    ExperimentConfig(model="synthetic/tiny-llama", quality={"tasks": ["hellaswag", "wikitext"]})


@pytest.mark.parametrize(
    ("task", "words"),
    [
        ("hellaswagg", ["unknown lm-eval task 'hellaswagg'", "did you mean hellaswag", ".yaml"]),
        ("mmlu", ["'mmlu' is an lm-eval group", "one by one"]),
        ("ai2_arc", ["'ai2_arc' is an lm-eval tag", "one by one"]),
    ],
)
def test_unknown_names_groups_and_tags_are_refused_at_validation(
    task: str, words: list[str]
) -> None:
    with pytest.raises(ValidationError) as info:
        ExperimentConfig(model="synthetic/tiny-llama", quality={"tasks": [task]})
    for word in words:
        assert word in str(info.value)


def test_without_lm_eval_named_tasks_wait_for_the_evaluation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lm_eval_index, "tasks_dir", lambda: None)
    config = ExperimentConfig(
        model="synthetic/tiny-llama", backend="tensorrt", quality={"tasks": ["hellaswagg"]}
    )
    assert config.quality is not None and config.quality.tasks == ["hellaswagg"]


def test_validating_a_named_task_does_not_import_lm_eval() -> None:
    code = (
        "import sys; from llenergymeasure import ExperimentConfig; "
        "ExperimentConfig(model='synthetic/tiny-llama', quality={'tasks': ['hellaswag']}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lm_eval', 'torch', 'datasets')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_includes_merge_as_lm_evals_loader_merges_them(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "a/_base_yaml": "output_type: multiple_choice\ntag:\n  - family\n  - other\n",
            "a/_gen_yaml": "output_type: generate_until\ntask_list: [x]\n",
            # a later include wins over an earlier one; a file's own keys over both
            "a/one.yaml": "include: [_base_yaml, _gen_yaml]\n'task': 'one' # quoted\n",
            "a/two.yaml": "include: _base_yaml\ntask: two\noutput_type: loglikelihood_rolling\n",
            "a/three.yaml": 'include: _base_yaml\n"task": three\n',
            "b/one.yaml": "task: one\noutput_type: loglikelihood\n",  # later duplicate: skipped
            "c/group.yaml": "group: grp\ntask:\n  - one\n  - two\n",
            "c/py.yaml": "task: pyt\nclass: !function x.Y\n",
            "c/broken.yaml": "include: missing_yaml\ntask: broken\n",
            "c/notes.yaml": "metadata:\n  task: nested\n",
        },
    )
    index = build_index(root)
    assert index["one"].output_type == "generate_until" and index["one"].kind == "task"
    assert index["one"].yaml_path == str(root / "a" / "one.yaml")
    assert index["two"].output_type == "loglikelihood_rolling"
    assert index["three"].output_type == "multiple_choice"
    assert index["family"].kind == "tag" and index["other"].kind == "tag"
    assert index["grp"].kind == "group" and index["pyt"].kind == "py_task"
    assert index["pyt"].output_type is None
    assert "broken" not in index and "nested" not in index
    assert named_task_output_types(["one", "pyt"], root) == {"one": "generate_until"}
