"""Issue 25 item 10: a leaderboard board is labelled by the GPUs a run measured and their power
limit, not by the machine (``env.gpu_count``, NVML GPU 0): a 1-GPU run on an 8-GPU node is on a
``1x`` board, and runs at another power limit are on a board of their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llenergymeasure.environment.snapshot import GpuInfo
from llenergymeasure.results.export import write_exports
from llenergymeasure.results.export_rows import measured_gpus_label, run_record
from llenergymeasure.results.loading import load_study_dir
from llenergymeasure.results.models import ExperimentResult
from tests.report.report_builders import build_study_dir

duckdb = pytest.importorskip("duckdb")

from llenergymeasure.results.archive.store import Archive  # noqa: E402
from llenergymeasure.results.leaderboard import (  # noqa: E402
    _label_from_lists,
    leaderboards,
    write_leaderboards,
)


def _on_gpu(result: ExperimentResult, index: int, limit_w: float) -> ExperimentResult:
    """The result as measured on NVML GPU ``index`` of an 8-GPU node whose GPU ``index`` is
    capped at ``limit_w`` (GPU 0, which the machine label reads, stays at 700 W)."""
    env = result.environment
    assert env is not None
    gpus = [
        GpuInfo(
            nvml_index=i,
            name="NVIDIA H200",
            power_limit_w=700.0,
            enforced_power_limit_w=limit_w if i == index else 700.0,
        )
        for i in range(8)
    ]
    env = env.model_copy(update={"gpus": gpus, "gpu_count": 8})
    devices = [d.model_copy(update={"nvml_index": index}) for d in result.energy.devices]
    energy = result.energy.model_copy(update={"devices": devices})
    return result.model_copy(update={"environment": env, "energy": energy})


def test_the_label_names_the_measured_devices_and_their_limit() -> None:
    from llenergymeasure.config.experiment import ExperimentConfig
    from tests.report.report_builders import synthetic_result

    cfg = ExperimentConfig(model="synthetic/tiny-llama", batch_size=2, n=4, max_output_tokens=8)
    r = _on_gpu(synthetic_result(cfg, "001_c1", 1), 3, 400.0)
    assert measured_gpus_label(r) == "1x NVIDIA H200 @ 400 W"
    assert run_record(r)["energy.gpus"] == "1x NVIDIA H200 @ 400 W"
    assert run_record(r)["env.gpu_count"] == 8  # the machine: what the board used to say
    two = r.model_copy(
        update={
            "energy": r.energy.model_copy(
                update={
                    "devices": [
                        *r.energy.devices,
                        r.energy.devices[0].model_copy(update={"nvml_index": 5}),
                    ]
                }
            )
        }
    )
    assert measured_gpus_label(two) == "1x NVIDIA H200 @ 400 W + 1x NVIDIA H200 @ 700 W"
    no_energy = synthetic_result(cfg, "002_c1", 1, with_energy=False)
    assert measured_gpus_label(no_energy) is None
    # an export written before energy.gpus: rebuilt from the per-GPU lists, by NVML index
    rec = run_record(r)
    row = {
        "nvml_indices": rec["energy.nvml_indices"],
        "names": rec["env.gpus.name"],
        "limits": rec["env.gpus.power_limit_w"],
        "enforced": rec["env.gpus.enforced_power_limit_w"],
    }
    assert _label_from_lists(row) == "1x NVIDIA H200 @ 400 W"
    assert _label_from_lists({**row, "enforced": None}) == "1x NVIDIA H200 @ 700 W"
    assert _label_from_lists({**row, "nvml_indices": None}) is None


def test_a_one_gpu_run_on_an_eight_gpu_node_is_on_a_one_gpu_board(tmp_path: Path) -> None:
    root = tmp_path / "results"
    study_dir, _ = build_study_dir(root, fail_run=None, write_aggregate=False)
    for folder in sorted(p for p in study_dir.iterdir() if (p / "result.json").exists()):
        r = ExperimentResult.model_validate_json((folder / "result.json").read_text())
        # the pytorch configs ran on GPU 3 capped at 400 W, the vLLM ones on GPU 5 at 700 W
        index, limit = (3, 400.0) if r.config.backend == "pytorch" else (5, 700.0)
        (folder / "result.json").write_text(_on_gpu(r, index, limit).model_dump_json())
    write_exports(load_study_dir(study_dir), study_dir)
    archive = Archive([root], cache_dir=None, cache=False)
    boards = {b["gpu"]: b for b in leaderboards(archive)}
    # before: one "8x NVIDIA H200" board (env.gpu_count and GPU 0) mixing the 400 W and 700 W runs
    assert sorted(boards) == ["1x NVIDIA H200 @ 400 W", "1x NVIDIA H200 @ 700 W"]
    capped = boards["1x NVIDIA H200 @ 400 W"]
    assert {p["backend"] for p in capped["points"]} == {"pytorch"}
    assert all(p["node_gpus"] == "8x NVIDIA H200" for p in capped["points"])
    paths = write_leaderboards(archive, tmp_path / "lb")
    assert sorted(p.name for p in paths if p.suffix == ".json") == [
        "leaderboard_synthetic-tiny-llama_1x-nvidia-h200-400-w.json",
        "leaderboard_synthetic-tiny-llama_1x-nvidia-h200-700-w.json",
    ]
    data = json.loads(paths[0].read_text())
    assert data["gpu"].startswith("1x NVIDIA H200 @")
    # llem results show RUN says both: what was measured, and the machine
    import os
    import subprocess
    import sys

    run = next(p for p in sorted(study_dir.iterdir()) if (p / "result.json").exists())
    out = subprocess.run(
        [sys.executable, "-m", "llenergymeasure", "results", "show", str(run)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "GPUs measured" in out.stdout and "1x NVIDIA H200 @ 400 W" in out.stdout
    assert "GPUs of the machine" in out.stdout and "8x NVIDIA H200" in out.stdout


def test_compare_flags_a_different_measured_gpu(tmp_path: Path) -> None:
    """Two configs measured on GPUs at different power limits: compare says the environments
    differ, on energy.gpus, though the machine (env.gpu_count, GPU 0) is the same."""
    from llenergymeasure.results.archive.compare import compare, resolve

    root = tmp_path / "results"
    study_dir, _ = build_study_dir(root, fail_run=None, write_aggregate=False)
    hashes: dict[str, str] = {}
    for folder in sorted(p for p in study_dir.iterdir() if (p / "result.json").exists()):
        r = ExperimentResult.model_validate_json((folder / "result.json").read_text())
        index, limit = (3, 400.0) if r.config.backend == "pytorch" else (5, 700.0)
        (folder / "result.json").write_text(_on_gpu(r, index, limit).model_dump_json())
        if r.config.batch_size == 1:
            hashes[r.config.backend] = r.config_hash
    write_exports(load_study_dir(study_dir), study_dir)
    archive = Archive([root], cache_dir=None, cache=False)
    result = compare(
        archive, resolve(archive, hashes["pytorch"][:12]), resolve(archive, hashes["vllm"][:12])
    )
    assert result.environment_differs == ["energy.gpus"]
    assert result.environment["energy.gpus"] == (
        "1x NVIDIA H200 @ 400 W",
        "1x NVIDIA H200 @ 700 W",
    )
