"""The PyTorch backend's fast path: a lean decode loop over a preallocated static KV cache.

Used when ``static_cache`` and ``torch_compile`` are both on. ``transformers.generate`` spends a
few milliseconds of Python per decoding step (input preparation, logits processors, stopping
criteria that synchronise with the GPU every step), which at batch 1 is several times the GPU's
own time for a 1 B-parameter model. This loop does per step only what decoding needs:

- **prefill** keeps only the last position's logits; its time is the request's TTFT. The first
  batch of each size runs it eagerly (that allocates the static cache); later batches run one
  compiled graph with a symbolic prompt length (``dynamic=True``, no CUDA graph), so a new
  prompt length never recompiles and the per-operator Python of eager mode (about 20 ms for a
  22-layer model on an H200 host) is gone. If that compile fails, prefill stays eager and
  ``prefill_mode`` says why (on the CPU it is always eager);
- **decode** is one compiled function per batch shape (``torch.compile``, ``fullgraph``,
  ``dynamic=False``) that takes the previous token, runs the model one step on the static cache
  and returns the next token. With ``compile_mode: reduce-overhead`` on CUDA the compiled step is
  captured as a CUDA graph once per batch size (``CudaGraphStep``: the token, position and cache
  position live in fixed buffers that the graph itself advances) and each step is one replay,
  so the host launches one graph instead of a few hundred kernels. The capture is done by this
  loop rather than by Inductor's own CUDA-graph trees, which skip graphs whose inputs (the cache)
  are mutated in place unless every cache tensor carries a static address — on the H100 that
  left the step launch-bound (1.98 ms either way). If the capture fails, the step stays a
  compiled function and ``decode_mode`` says why;
- nothing synchronises with the GPU inside the loop (no ``.item()``, no stopping check), except
  an all-finished check every ``EOS_CHECK_EVERY`` steps when EOS may end a request early;
- the step clock is a CUDA event recorded after each step, read once the batch is done.

Decoding matches ``generate``'s: greedy is ``argmax``; sampling applies temperature, top-k and
top-p in that order and draws with the exponential-race method (the same distribution as
``multinomial``, but capturable in a CUDA graph); with ``fixed_output_length`` EOS is masked out
exactly as ``min_new_tokens`` does. The cache lives as long as the backend: it is allocated on
the first batch of each size and reset (zeroed) before every batch, not rebuilt.

torch and transformers are passed in or imported inside the functions, never at module import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

#: with EOS allowed to end requests early, check for "all finished" this often (one sync each).
EOS_CHECK_EVERY = 16


@dataclass
class DecodeSettings:
    """What the loop needs from the experiment config (kept framework-free)."""

    greedy: bool = True
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    fixed_output_length: bool = True
    eos_ids: list[int] = field(default_factory=list)
    pad_id: int = 0
    compile_mode: str = "reduce-overhead"
    compile: bool = True


@dataclass
class BatchTiming:
    """Per-step GPU times of one batch, seconds from just before the prefill."""

    step_offsets_s: list[float]
    wall_s: float


class StaticDecoder:
    """Greedy or sampled decoding with an eager prefill and a compiled one-token step."""

    def __init__(
        self, torch: Any, model: Any, settings: DecodeSettings, max_cache_len: int
    ) -> None:
        self.torch = torch
        self.model = model
        self.settings = settings
        self.max_cache_len = int(max_cache_len)
        self.device = model.get_input_embeddings().weight.device
        self._caches: dict[int, Any] = {}
        self._positions = torch.arange(self.max_cache_len, device=self.device)
        self._allow_eos = not settings.fixed_output_length
        self._keep = _logits_keep_keyword(model)
        self._eos = (
            torch.tensor(sorted(set(settings.eos_ids)), device=self.device, dtype=torch.long)
            if settings.eos_ids
            else None
        )
        self._cuda = self.device.type == "cuda"
        #: llem captures the step as a CUDA graph itself (see the module docstring)
        self._graphed = (
            settings.compile and self._cuda and settings.compile_mode == "reduce-overhead"
        )
        step = self._step
        if settings.compile:
            mode = "default" if self._graphed else settings.compile_mode
            step = torch.compile(step, mode=mode, fullgraph=True, dynamic=False)
        self._compiled_step = step
        self._graphs: dict[tuple[int, bool], CudaGraphStep] = {}
        self._masks: dict[int, Any] = {}
        self.decode_mode = (
            "cuda graph (captured per batch size)"
            if self._graphed
            else f"compiled ({settings.compile_mode})"
            if settings.compile
            else "eager"
        )
        # On the CPU the eager prefill's Python is small next to its arithmetic: not compiled.
        compile_prefill = settings.compile and self._cuda
        self._prefill = (
            torch.compile(_prefill, dynamic=True, fullgraph=True) if compile_prefill else _prefill
        )
        self.prefill_mode = "compiled (dynamic length)" if compile_prefill else "eager"
        self.compiled_shapes: set[tuple[int, ...]] = set()

    # -- pieces --------------------------------------------------------------------------------

    def _cache(self, batch: int) -> tuple[Any, bool]:
        """(the batch size's static cache, reset; whether it is new and still unallocated)."""
        cache = self._caches.get(batch)
        if cache is None:
            from transformers import StaticCache

            cache = _make_static_cache(StaticCache, self.model, batch, self.max_cache_len)
            self._caches[batch] = cache
            return cache, True
        cache.reset()
        return cache, False

    def _run_prefill(self, fresh: bool, batch: int, *args: Any) -> Any:
        if fresh or self._prefill is _prefill:
            return _prefill(self.model, *args)
        try:
            return self._prefill(self.model, *args)
        except Exception as exc:  # a graph break or an unsupported op: stay eager, say why
            self._prefill = _prefill
            self.prefill_mode = f"eager (compiling it failed: {type(exc).__name__}: {exc})"[:300]
            self._caches[batch].reset()
            return _prefill(self.model, *args)

    def _select(self, logits: Any, allow_eos: bool) -> Any:
        """The next token from last-position logits (batch, vocab), as ``generate`` picks it."""
        torch = self.torch
        s = self.settings
        logits = logits.float()
        if not allow_eos and self._eos is not None:
            logits = logits.index_fill(-1, self._eos, float("-inf"))
        if s.greedy:
            return torch.argmax(logits, dim=-1)
        logits = logits / s.temperature
        if s.top_k > 0:
            k = min(s.top_k, logits.shape[-1])
            kth = torch.topk(logits, k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if s.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            probs = torch.softmax(sorted_logits, dim=-1)
            # drop a token once the tokens before it already reach top_p (the first always stays)
            drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= s.top_p
            drop = drop_sorted.scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        race = torch.empty_like(probs).exponential_(1.0)
        return torch.argmax(probs / race, dim=-1)

    def _step(
        self,
        token: Any,
        position_ids: Any,
        cache_position: Any,
        mask: Any,
        cache: Any,
        allow_eos: bool,
    ) -> Any:
        out = self.model(
            input_ids=token[:, None],
            position_ids=position_ids[:, None],
            cache_position=cache_position,
            attention_mask=mask,
            past_key_values=cache,
            use_cache=True,
        )
        return self._select(out.logits[:, -1, :], allow_eos)

    def _full_mask(self, batch: int, mask: Any) -> Any:
        """The attention mask over the whole cache: the prompt's, then ones. On the CUDA-graph
        path one buffer per batch size (a captured graph reads it at a fixed address)."""
        torch = self.torch
        width = mask.shape[1]
        if not self._graphed:
            full = torch.ones((batch, self.max_cache_len), dtype=mask.dtype, device=self.device)
            full[:, :width] = mask
            return full
        full = self._masks.get(batch)
        if full is None or full.dtype != mask.dtype:
            full = torch.ones((batch, self.max_cache_len), dtype=mask.dtype, device=self.device)
            self._masks[batch] = full
            self._graphs = {k: g for k, g in self._graphs.items() if k[0] != batch}
        full.fill_(1)
        full[:, :width] = mask
        return full

    def _graph_for(
        self,
        batch: int,
        allow: bool,
        token: Any,
        next_pos: Any,
        cache_pos0: Any,
        full_mask: Any,
        cache: Any,
    ) -> CudaGraphStep | None:
        """The batch size's captured step, its buffers loaded with this batch's first decode
        inputs; captured on first use (after the prefill has allocated the cache). None, with
        ``decode_mode`` saying why, when the capture fails: the loop then calls the compiled step."""
        key = (batch, allow)
        graph = self._graphs.get(key)
        if graph is None:
            try:
                graph = CudaGraphStep.capture(
                    self.torch,
                    lambda t, p, c: self._compiled_step(t, p, c, full_mask, cache, allow),
                    token,
                    next_pos,
                    cache_pos0,
                    cache,
                )
            except Exception as exc:  # an op that cannot be captured: stay a compiled function
                self._graphed = False
                self._graphs.clear()
                self.decode_mode = (
                    f"compiled, no CUDA graph (capturing it failed: {type(exc).__name__}: {exc})"
                )[:300]
                return None
            self._graphs[key] = graph
        graph.load(token, next_pos, cache_pos0)
        return graph

    # -- one batch -----------------------------------------------------------------------------

    def generate(self, ids: Any, mask: Any, max_new_tokens: int) -> tuple[Any, BatchTiming]:
        """Decode ``max_new_tokens`` for a left-padded batch; see ``_generate``."""
        with self.torch.inference_mode():
            return self._generate(ids, mask, max_new_tokens)

    def _generate(self, ids: Any, mask: Any, max_new_tokens: int) -> tuple[Any, BatchTiming]:
        """Decode ``max_new_tokens`` for a left-padded batch; returns (new tokens, timing).

        ``ids`` and ``mask`` are (batch, width) on the model's device; the returned tokens are
        (batch, max_new_tokens); rows that finished early are padded with ``pad_id``.
        """
        torch = self.torch
        s = self.settings
        batch, width = ids.shape
        total = width + max_new_tokens
        if total > self.max_cache_len:
            raise ValueError(
                f"prompt width {width} + {max_new_tokens} new tokens exceeds the static cache "
                f"({self.max_cache_len} positions)"
            )
        cache, fresh = self._cache(batch)
        full_mask = self._full_mask(batch, mask)
        # positions count real tokens only, as generate's do for left-padded rows
        prompt_pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        next_pos = mask.long().sum(-1)  # (batch,) position of the first new token
        cache_pos0 = torch.full((1,), width, dtype=torch.long, device=self.device)
        tokens = torch.full((batch, max_new_tokens), s.pad_id, dtype=torch.long, device=self.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        pad = torch.full_like(finished, s.pad_id, dtype=torch.long)
        events: list[Any] = []
        host_times: list[float] = []
        may_stop = not s.fixed_output_length and self._eos is not None

        def mark() -> None:
            if self._cuda:
                ev = torch.cuda.Event(enable_timing=True)
                ev.record()
                events.append(ev)
            else:
                host_times.append(time.perf_counter())

        start = None
        if self._cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        if True:  # (inside inference_mode: see generate)
            out = self._run_prefill(
                fresh, batch, ids, full_mask, prompt_pos, self._positions[:width], cache, self._keep
            )
            # fixed_output_length masks EOS at every step, as generate's min_new_tokens does
            allow = not s.fixed_output_length
            token = self._select(out.logits[:, -1, :], allow)
            del out
            tokens[:, 0] = token
            if may_stop:
                finished |= torch.isin(token, self._eos)
            mark()
            graph = None
            if self._graphed and max_new_tokens > 1:
                graph = self._graph_for(batch, allow, token, next_pos, cache_pos0, full_mask, cache)
            for i in range(1, max_new_tokens):
                if graph is not None:
                    graph.step()  # the new token is in graph.token until the next replay
                    if may_stop:
                        graph.token.copy_(torch.where(finished, pad, graph.token))
                        finished |= torch.isin(graph.token, self._eos)
                    tokens[:, i] = graph.token
                    mark()
                    if may_stop and i % EOS_CHECK_EVERY == 0 and bool(finished.all()):
                        break
                    continue
                if self._cuda and s.compile:
                    torch.compiler.cudagraph_mark_step_begin()
                # fresh small tensors (not views): a compiled graph guards on its inputs' layout
                nxt = self._compiled_step(
                    token,
                    next_pos + (i - 1),
                    cache_pos0 + (i - 1),
                    full_mask,
                    cache,
                    allow,
                )
                token = nxt.clone()  # the graph's output buffer is reused by the next replay
                if may_stop:
                    token = torch.where(finished, pad, token)
                    finished |= torch.isin(token, self._eos)
                tokens[:, i] = token
                mark()
                if may_stop and i % EOS_CHECK_EVERY == 0 and bool(finished.all()):
                    break
            self.compiled_shapes.add((batch, self.max_cache_len))
        if start is not None:
            events[-1].synchronize()
            offsets = [start.elapsed_time(e) / 1e3 for e in events]
        else:
            offsets = [t - t0 for t in host_times]
        return tokens, BatchTiming(step_offsets_s=offsets, wall_s=time.perf_counter() - t0)


class CudaGraphStep:
    """One decode step captured as a CUDA graph over fixed input buffers.

    The graph runs the compiled step on ``token``/``position``/``cache_position``, writes the
    next token back into ``token`` and advances both positions by one, so consecutive replays
    decode consecutive tokens with no host work but the replay itself. The static cache's
    tensors keep their addresses for the backend's life (``reset`` zeroes them in place), so
    one capture per batch size serves every later batch of that size.
    """

    def __init__(self, graph: Any, token: Any, position: Any, cache_position: Any) -> None:
        self.graph = graph
        self.token = token
        self.position = position
        self.cache_position = cache_position

    @classmethod
    def capture(
        cls, torch: Any, step: Any, token: Any, position: Any, cache_position: Any, cache: Any
    ) -> CudaGraphStep:
        """Warm the step on a side stream (as CUDA-graph capture requires), then capture it.

        The warm-up steps run for real: they write the first decode position's keys and values
        (which the first replay writes again, identically) and may advance the cache's own
        length counters (transformers 5.x ``cumulative_length``), which are put back."""
        buffers = cls(None, token.clone(), position.clone(), cache_position.clone())
        counters = _cache_length_counters(cache)
        saved = [c.clone() for c in counters]

        def body() -> None:
            nxt = step(buffers.token, buffers.position, buffers.cache_position)
            buffers.token.copy_(nxt)
            buffers.position.add_(1)
            buffers.cache_position.add_(1)

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                body()
                buffers.load(token, position, cache_position)
                for c, v in zip(counters, saved, strict=True):
                    c.copy_(v)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()
        buffers.graph = graph
        return buffers

    def load(self, token: Any, position: Any, cache_position: Any) -> None:
        """Put a batch's first decode inputs into the graph's buffers."""
        self.token.copy_(token)
        self.position.copy_(position)
        self.cache_position.copy_(cache_position)

    def step(self) -> Any:
        """One decode step; returns the buffer holding the new token."""
        self.graph.replay()
        return self.token


def _cache_length_counters(cache: Any) -> list[Any]:
    """The cache layers' in-place length counters (tensors), if this transformers has them."""
    layers = getattr(cache, "layers", None) or []
    found = []
    for layer in layers:
        counter = getattr(layer, "cumulative_length", None)
        if counter is not None and hasattr(counter, "copy_"):
            found.append(counter)
    return found


#: torch's compile-cache counters (``torch._dynamo.utils.counters``): group, then names
CACHE_COUNTERS = {
    "inductor": ("fxgraph_cache_hit", "fxgraph_cache_miss", "fxgraph_cache_bypass"),
    "aot_autograd": ("autograd_cache_hit", "autograd_cache_miss", "autograd_cache_bypass"),
}


def cache_counters() -> dict[str, int]:
    """torch's compile-cache hit/miss/bypass counts so far in this process (empty if unreadable)."""
    try:
        from torch._dynamo.utils import counters
    except Exception:  # torch without dynamo: nothing compiled through it
        return {}
    return {
        name: int(counters[group][name])
        for group, names in CACHE_COUNTERS.items()
        for name in names
    }


def compile_batches(decoder: StaticDecoder | None) -> int:
    """Batches that compile everything a run compiles: the first compiles the decode step (and,
    with ``reduce-overhead``, records its CUDA graph); on CUDA the second compiles the prefill
    (the first batch of a size runs it eagerly to allocate the static cache)."""
    if decoder is not None and decoder._prefill is not _prefill:
        return 2
    return 1


def _prefill(
    model: Any, ids: Any, full_mask: Any, pos: Any, cache_pos: Any, cache: Any, keep_kw: str
) -> Any:
    """The prompt's forward pass on the static cache, keeping only the last position's logits."""
    kwargs = {
        "input_ids": ids,
        "attention_mask": full_mask,
        "position_ids": pos,
        "cache_position": cache_pos,
        "past_key_values": cache,
        "use_cache": True,
        keep_kw: 1,
    }
    return model(**kwargs)


def _logits_keep_keyword(model: Any) -> str:
    """transformers >= 4.50 calls it ``logits_to_keep``, older ones ``num_logits_to_keep``."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep"


def _make_static_cache(cls: Any, model: Any, batch: int, max_cache_len: int) -> Any:
    """A ``StaticCache`` for ``batch`` rows; the keyword set changed across transformers 4.x/5.x."""
    param = next(model.parameters())
    try:
        return cls(config=model.config, max_cache_len=max_cache_len)
    except TypeError:
        return cls(
            config=model.config,
            max_batch_size=batch,
            max_cache_len=max_cache_len,
            device=param.device,
            dtype=param.dtype,
        )
