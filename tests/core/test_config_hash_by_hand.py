"""What enters a config hash, by hand: the resolved data (defaults filled in, the label and the
offline workload's serving fields left out, the chosen backend's section with its defaults) and the
``gpus`` rule (how many GPUs is configuration, which ones is placement; absent when unset)."""

from __future__ import annotations

from llenergymeasure.config.experiment import ExperimentConfig, canonical_hash
from llenergymeasure.config.gpus import hashable_gpus


def test_gpus_enter_the_hash_as_a_count_only() -> None:
    plain = ExperimentConfig(model="m")
    data = plain.hashable_dict()
    assert "gpus" not in data and "gpu_count" not in data
    one = ExperimentConfig(model="m", gpus=[0])
    three = ExperimentConfig(model="m", gpus=[3])
    assert one.hashable_dict()["gpu_count"] == 1 and "gpus" not in one.hashable_dict()
    assert one.config_hash == three.config_hash  # which GPU is placement
    assert one.config_hash != plain.config_hash  # stating one GPU is a different config
    two = ExperimentConfig(model="m", backend="vllm", gpus=[0, 1], vllm={"tensor_parallel_size": 2})
    two_other = ExperimentConfig(
        model="m", backend="vllm", gpus=[5, 2], vllm={"tensor_parallel_size": 2}
    )
    assert two.hashable_dict()["gpu_count"] == 2 and two.config_hash == two_other.config_hash
    # the hash is the canonical hash of exactly that data
    assert two.config_hash == canonical_hash(two.hashable_dict())


def test_hashable_gpus_edits_the_data_in_place() -> None:
    data = {"gpus": [4, 7, 9], "model": "m"}
    hashable_gpus(data, [4, 7, 9])
    assert data == {"model": "m", "gpu_count": 3}
    unset = {"gpus": None, "model": "m"}
    hashable_gpus(unset, None)
    assert unset == {"model": "m"}
    absent = {"model": "m"}
    hashable_gpus(absent, None)
    assert absent == {"model": "m"}


def test_backend_section_defaults_per_backend() -> None:
    for backend in ("pytorch", "vllm", "tensorrt"):
        bare = ExperimentConfig(model="m", backend=backend)
        section = bare.backend_section()
        assert type(section).__name__.lower() == f"{backend}config"
        assert section == type(section)()  # every default
        given = ExperimentConfig.from_dict({"model": "m", "backend": backend, backend: {}})
        assert given.backend_section() == section
    tuned = ExperimentConfig.from_dict(
        {"model": "m", "backend": "vllm", "gpus": [0, 1], "vllm": {"tensor_parallel_size": 2}}
    )
    assert (
        tuned.backend_section() is tuned.vllm and tuned.backend_section().tensor_parallel_size == 2
    )
