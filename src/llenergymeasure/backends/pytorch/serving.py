"""PyTorch in serving mode: transformers' continuous batching (``ContinuousBatchingManager``).

The model loads as in the offline backend (``PyTorchBackend.load``); then
``model.init_continuous_batching(generation_config=...)`` builds the manager (paged KV cache,
scheduler) and ``start()`` runs its generation loop on a background thread. The manager takes
requests at any time (``add_request``), so both open-loop arrivals and a closed loop work.
Results come back through ``register_result_handler``, which calls back on the asyncio loop the
handler was registered from: the backend's own loop, the one the load driver runs on.

Per-request timestamps are the manager's own, all ``time.perf_counter``: ``created_time`` (the
request entered the manager's queue), ``lifespan[0]`` (it left the pending state: scheduled),
``lifespan[1]`` (finished) and, with ``record_timestamps=True``, one timestamp per generated token.

``decoding.fixed_output_length`` passes ``eos_token_id=-1`` per request (EOS never stops it) so
every request generates exactly its ``max_new_tokens``. ``static_cache`` / ``torch_compile`` do
not apply: the manager has its own paged cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from llenergymeasure.backends.base import GenerationOutput, LoadInfo, Prompt
from llenergymeasure.backends.pytorch.args import generation_config
from llenergymeasure.backends.pytorch.backend import PyTorchBackend
from llenergymeasure.backends.serving_base import RequestTimeline, generate_through
from llenergymeasure.errors import ExperimentError

TIMING_SOURCE = "transformers-continuous-batching-timestamps"


class PyTorchServingBackend(PyTorchBackend):
    """``PyTorchBackend``'s model served by transformers' continuous-batching manager."""

    def __init__(self, config: Any, model_path: str) -> None:
        super().__init__(config, model_path)
        self.loop = asyncio.new_event_loop()
        self._manager: Any = None
        self._calls = 0

    def load(self) -> LoadInfo:
        info = super().load()
        special = self._model.generation_config
        gen = generation_config(
            self.config,
            self.config.max_output_tokens,
            bos_token_id=special.bos_token_id,
            eos_token_id=special.eos_token_id if special.eos_token_id is not None else -1,
            pad_token_id=self._pad_id,
            device=self._device,
        )
        # the manager has its own paged cache; a static cache or compile config does not apply
        for key in ("cache_implementation", "compile_config", "min_new_tokens"):
            with contextlib.suppress(AttributeError):
                setattr(gen, key, None)
        try:
            self._manager = self._model.init_continuous_batching(generation_config=gen)
            self._manager.start()
        except Exception as exc:
            raise ExperimentError(
                f"transformers' continuous batching could not start: {type(exc).__name__}: {exc}",
                phase="load",
            ) from exc
        info.extra.update(
            {
                "timing": TIMING_SOURCE,
                "batching": "transformers continuous batching (ContinuousBatchingManager)",
            }
        )
        return info

    def clock_note(self) -> str:
        return (
            "transformers ContinuousBatchingManager: created_time, lifespan and per-token "
            "timestamps (perf_counter)"
        )

    async def submit(self, index: int, prompt: Prompt, timeline: RequestTimeline) -> None:
        if self._manager is None:
            raise ExperimentError("the pytorch serving backend was asked to serve before load()")
        self._calls += 1
        request_id = f"llem-serve-{self._calls}-{index}"
        done: asyncio.Future[Any] = self.loop.create_future()

        def on_result(out: Any) -> None:
            if out.is_finished() and not done.done():
                done.set_result(out)

        self._manager.register_result_handler(request_id, on_result)
        fixed = self.config.decoding.fixed_output_length
        accepted = self._manager.add_request(
            list(prompt.token_ids),
            request_id=request_id,
            max_new_tokens=prompt.max_new_tokens,
            streaming=False,
            record_timestamps=True,
            **({"eos_token_id": -1} if fixed else {}),
        )
        if accepted is None:
            raise ExperimentError(
                "transformers' continuous batching manager refused a request (it is stopping or "
                "its generation thread failed)",
                phase="measure",
            )
        out = await done
        if out.error:
            raise ExperimentError(f"request {index} failed in the manager: {out.error}")
        timeline.input_tokens = len(out.prompt_ids) or len(prompt.token_ids)
        timeline.queued_s = float(out.created_time)
        if out.lifespan[0] > 0:
            timeline.started_s = float(out.lifespan[0])
        timeline.finished_s = float(out.lifespan[1]) if out.lifespan[1] > 0 else time.perf_counter()
        stamps = list(out.timestamps or [])
        n = len(out.generated_tokens)
        if len(stamps) == n:
            timeline.token_steps = [(float(ts), 1) for ts in stamps]
        elif n:  # no per-token stamps: all tokens at the finish (documented as coarser)
            timeline.token_steps = [(timeline.finished_s, n)]

    def generate(self, prompts: list[Prompt]) -> GenerationOutput:
        """All prompts at once through the manager (warmup); per-request records."""
        return generate_through(self, self.loop, prompts)

    def close(self) -> None:
        manager, self._manager = self._manager, None
        if manager is not None:
            with contextlib.suppress(Exception):
                manager.stop(block=True, timeout=30)
        super().close()
        with contextlib.suppress(Exception):
            self.loop.close()
