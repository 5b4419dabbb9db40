"""The serving workload: how requests arrive (``load:``) and the latency target (``slo:``).

``workload: offline`` (the default) submits every prompt at once, as before. ``workload:
serving`` sends requests to the engine while it runs, either open loop (``arrival`` with
``rate_rps``: requests arrive on a schedule whatever the engine does) or closed loop
(``concurrency``: N clients, each sending its next request when the previous one finished). The
measurement and attribution rules are in docs/methodology.md ("Serving mode").
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

WorkloadKind = Literal["offline", "serving"]
ArrivalKind = Literal["poisson", "constant", "burst", "trace"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SloSearchConfig(_Strict):
    """``load.search``: find the highest request rate at which the SLO attainment holds.

    The study runs the config at rates chosen by bisection inside ``rate_rps`` (each run an
    ordinary open-loop run at one rate, recorded in the manifest) until the highest rate that met
    ``slo_attainment`` and the lowest that missed it are at most ``tolerance_rps`` apart
    (``study/slo_search.py``; docs/configuration.md).
    """

    slo_attainment: float = Field(
        0.9, gt=0.0, le=1.0, description="share of requests that must meet the SLO"
    )
    rate_rps: tuple[float, float] = Field(
        ..., description="[lowest, highest] request rate to search, requests per second"
    )
    tolerance_rps: float | None = Field(
        None,
        gt=0.0,
        description="stop when the bracket is this narrow (req/s); none: 1/16 of the range",
    )
    max_runs: int = Field(12, ge=2, le=100, description="never more runs than this")

    @model_validator(mode="after")
    def _range(self) -> SloSearchConfig:
        lo, hi = self.rate_rps
        if not 0.0 < lo < hi:
            raise ValueError(
                f"load.search.rate_rps must be [low, high] with 0 < low < high, got {[lo, hi]}; "
                "e.g. rate_rps: [1, 32]"
            )
        return self

    @property
    def tolerance(self) -> float:
        """The bracket width at which the search stops, req/s."""
        lo, hi = self.rate_rps
        return self.tolerance_rps if self.tolerance_rps is not None else (hi - lo) / 16.0


class LoadConfig(_Strict):
    """Request arrivals of a serving experiment.

    Exactly one of ``rate_rps`` (open loop; with ``arrival``) and ``concurrency`` (closed loop),
    and at least one of ``n_requests`` and ``duration_s`` (the run stops at whichever comes
    first). ``arrival: trace`` reads arrival times in seconds, one a line, from ``trace_file``
    (``rate_rps`` then rescales it: the trace's own mean rate becomes ``rate_rps``; leave
    ``rate_rps`` out to replay the times as they are).
    """

    arrival: ArrivalKind = Field(
        "poisson", description="open loop: poisson, constant, burst or trace"
    )
    rate_rps: float | None = Field(
        None, gt=0.0, le=100_000.0, description="open loop: mean requests per second"
    )
    concurrency: int | None = Field(
        None, ge=1, le=100_000, description="closed loop: requests in flight at all times"
    )
    n_requests: int | None = Field(None, ge=1, le=10_000_000, description="requests to send")
    duration_s: float | None = Field(
        None, gt=0.0, le=86_400.0, description="stop sending requests after this long"
    )
    burst_size: int = Field(
        8, ge=1, le=100_000, description="arrival: burst: requests arriving together"
    )
    trace_file: str | None = Field(
        None, description="arrival: trace: a text file of arrival times (s), one a line"
    )
    seed: int | None = Field(
        None, ge=0, description="seed of the arrival process; none: the experiment's seed"
    )
    search: SloSearchConfig | None = Field(
        None,
        description="open loop: search the highest rate meeting the SLO (a study of runs)",
        # left out of the request when absent, so images built before this field read it
        exclude_if=lambda v: v is None,
    )
    lengths: Literal["fixed", "dataset"] = Field(
        "fixed",
        description=(
            "fixed: every request asks max_output_tokens; dataset: each asks as many tokens as "
            "its record's output_field holds (capped at max_output_tokens)"
        ),
    )
    output_field: str = Field(
        "completion", description="lengths: dataset: JSONL key or column of the reference output"
    )

    @model_validator(mode="after")
    def _one_mode(self) -> LoadConfig:
        open_loop = (
            self.rate_rps is not None
            or self.search is not None
            or (self.arrival == "trace" and self.concurrency is None)
        )
        if self.search is not None and (self.rate_rps is not None or self.concurrency):
            given = "rate_rps" if self.rate_rps is not None else "concurrency"
            raise ValueError(
                f"load.search sets the request rate of each run, but load.{given} is also given; "
                f"remove load.{given} (the search's range is load.search.rate_rps)"
            )
        if self.concurrency is not None and self.rate_rps is not None:
            raise ValueError(
                f"load.rate_rps ({self.rate_rps}) and load.concurrency ({self.concurrency}) are "
                "both set; give rate_rps for an open-loop arrival process or concurrency for a "
                "closed loop, not both"
            )
        if not open_loop and self.concurrency is None:
            raise ValueError(
                "load needs load.rate_rps (open loop, e.g. rate_rps: 4) or load.concurrency "
                "(closed loop, e.g. concurrency: 8)"
            )
        if self.concurrency is not None and self.arrival == "trace":
            raise ValueError(
                "load.arrival: trace is an open-loop schedule; remove load.concurrency or choose "
                "another arrival"
            )
        if self.arrival == "trace" and not self.trace_file:
            raise ValueError(
                "load.arrival: trace needs load.trace_file (arrival times, one a line)"
            )
        if self.trace_file and self.arrival != "trace":
            raise ValueError(
                f"load.trace_file is given but load.arrival is {self.arrival!r}; set arrival: trace"
            )
        if self.n_requests is None and self.duration_s is None:
            raise ValueError(
                "load needs load.n_requests (e.g. 200) or load.duration_s (e.g. 60), or both"
            )
        return self

    @property
    def closed_loop(self) -> bool:
        return self.concurrency is not None

    def describe(self) -> str:
        """A short label: ``poisson@4rps`` or ``closed@8``."""
        if self.concurrency is not None:
            return f"closed@{self.concurrency}"
        rate = f"@{self.rate_rps:g}rps" if self.rate_rps is not None else ""
        if self.search is not None:
            lo, hi = self.search.rate_rps
            rate = f"@search[{lo:g}-{hi:g}]rps"
        return f"{self.arrival}{rate}"


class SLOConfig(_Strict):
    """A latency target; a request meets it when every given bound holds.

    ``ttft_ms`` bounds the request's time to first token, ``itl_ms`` its mean inter-token latency
    (time per output token after the first), ``e2e_ms`` its end-to-end latency.
    """

    ttft_ms: float | None = Field(None, gt=0.0, description="time to first token, ms")
    itl_ms: float | None = Field(None, gt=0.0, description="mean inter-token latency, ms")
    e2e_ms: float | None = Field(None, gt=0.0, description="end-to-end latency, ms")

    @model_validator(mode="after")
    def _some_bound(self) -> SLOConfig:
        if self.ttft_ms is None and self.itl_ms is None and self.e2e_ms is None:
            raise ValueError("slo needs at least one of slo.ttft_ms, slo.itl_ms, slo.e2e_ms")
        return self

    def describe(self) -> str:
        parts = []
        if self.ttft_ms is not None:
            parts.append(f"TTFT<={self.ttft_ms:g}ms")
        if self.itl_ms is not None:
            parts.append(f"ITL<={self.itl_ms:g}ms")
        if self.e2e_ms is not None:
            parts.append(f"e2e<={self.e2e_ms:g}ms")
        return ", ".join(parts)
