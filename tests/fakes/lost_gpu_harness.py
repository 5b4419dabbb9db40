"""A harness process whose GPU is lost in its measured window, for the engine-tree test.

``python -m tests.fakes.lost_gpu_harness OUT MODEL_CACHE``: runs the real harness (synthetic
tiny-llama on the CPU) as the runners' entry does (``own_process=True``), with a fake NVML GPU as
its meter that says "GPU is lost" once the measured window opens. Its engine gets one extra
worker process (``sleep``, standing for a vLLM engine worker), whose pid is written to
``OUT/worker.pid``; after the run the names of this process's live threads go to
``OUT/threads.json``. Exits 1 (the run failed) as the harness entry does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import llenergymeasure.backends as backends
from llenergymeasure.config.experiment import ExperimentConfig
from llenergymeasure.energy import select_meter
from llenergymeasure.errors import ExperimentError
from llenergymeasure.harness.core import run_harness
from llenergymeasure.harness.request import HarnessRequest, HarnessSettings
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.helpers import tiny_experiment


def main(out: Path, cache: Path) -> int:
    run_dir = out / "run"
    fake = FakeNvml([FakeGpu()])
    gpu = fake.gpus[0]
    real_create = backends.create_backend

    def create_backend(*args: Any, **kwargs: Any) -> Any:
        backend = real_create(*args, **kwargs)
        real_load = backend.load

        def load() -> Any:  # the engine starts a worker process beside its model
            # not on this process's pipes, so a worker left behind cannot hold the test's read
            worker = subprocess.Popen(
                ["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            (out / "worker.pid").write_text(str(worker.pid))
            return real_load()

        backend.load = load
        return backend

    backends.create_backend = create_backend  # load_engine imports it from the package

    def factory(energy_backend: str, devices: list[int]) -> Any:
        meter = select_meter("nvml", [0], {}, nvml_module=fake, sample_period_s=0.02)
        real_start = meter.start

        def start() -> None:
            real_start()
            progress = json.loads((run_dir / "progress.json").read_text())
            if progress["phase"] == "measure":  # Xid 79 inside the measured window
                gpu.fails_from_s = fake.now()

        meter.start = start
        return meter

    request = HarnessRequest(
        config=ExperimentConfig.from_dict(tiny_experiment(n=4)),
        settings=HarnessSettings(energy_backend="nvml", model_cache_dir=str(cache), run_id="r1"),
    )
    code = 0
    try:
        run_harness(request, run_dir, meter_factory=factory, own_process=True)
    except ExperimentError:
        code = 1
    names = sorted(t.name for t in threading.enumerate())
    (out / "threads.json").write_text(json.dumps(names))
    return code


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
