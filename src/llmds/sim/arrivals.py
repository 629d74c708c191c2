"""Seeded request workloads for the serving simulator.

Arrival processes: Poisson (exponential inter-arrival times) and gamma (bursty:
coefficient of variation ``cv`` > 1 clusters arrivals; ``cv == 1`` is Poisson).
Lengths come from a :class:`LengthDist`, or from the multi-turn chat trace
(:func:`llmds.sim.workloads.multi_turn_chat_trace`), whose shared system prompts
and conversation histories give the KV cache real prefix hits.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments give
the same workload on every machine. The size caps (:data:`MAX_REQUESTS`,
:data:`MAX_TRACE_TOKENS`) and their checks live in :mod:`llmds.sim.workloads` and
are re-exported here.

Thread safety: the records are immutable after construction and the functions are
pure; safe from any number of threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import (
    check_choice,
    check_int,
    check_nonneg_int,
    check_number,
    check_str,
)
from llmds.sim.workloads import (
    MAX_REQUESTS,
    MAX_TRACE_TOKENS,
    ChatRequest,
    check_chat_trace_size,
    check_num_requests,
    check_seed,
)

__all__ = [
    "LENGTH_KINDS",
    "MAX_LENGTH",
    "MAX_REQUESTS",
    "MAX_TRACE_TOKENS",
    "LengthDist",
    "SLOClass",
    "SimRequest",
    "Tenant",
    "arrival_times",
    "check_chat_trace_size",
    "check_num_requests",
    "check_seed",
    "synthetic_workload",
    "trace_workload",
]

LENGTH_KINDS = ("constant", "uniform", "exponential", "lognormal")
ARRIVAL_PROCESSES = ("poisson", "gamma")
#: Longest prompt or output a LengthDist may produce: a request must fit in the KV pool,
#: which is capped at 2**28 token slots (``llmds.sim.config.MAX_KV_TOKENS``).
MAX_LENGTH = 1 << 28
#: Allowed gamma burstiness: cv * cv must neither underflow to 0 nor overflow.
CV_RANGE = (1e-3, 1e3)


# check_number keywords of the one rule for rates, weights, shares and SLOs: finite, > 0.
_GT0: dict[str, Any] = {"minimum": 0.0, "exclusive_minimum": True}


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A distribution of token counts (integers >= ``low``, <= ``high``).

    ``kind``: ``"constant"`` (always ``mean``), ``"uniform"`` (integers in
    ``[low, high]``), ``"exponential"`` (``round(Exp(mean))``, clipped to
    ``[low, high]``) or ``"lognormal"`` (median ``mean``, log-space sigma
    ``sigma``, clipped). ``sample`` is O(n). Thread safety: immutable; ``sample``
    draws from the generator it is given (one generator per thread).

    >>> LengthDist("constant", mean=7).sample(np.random.default_rng(0), 3).tolist()
    [7, 7, 7]
    """

    kind: str = "constant"
    mean: float = 128.0
    low: int = 1
    high: int = 1 << 20
    sigma: float = 1.0

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", LENGTH_KINDS)
        check_number(self.mean, "mean", **_GT0, maximum=MAX_LENGTH)
        check_number(self.sigma, "sigma", **_GT0)
        low = check_int(self.low, "low", minimum=1)
        high = check_int(self.high, "high", maximum=MAX_LENGTH)
        if high < low:
            raise ValueError(f"high must be >= low ({low}), got {high}")

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """``n`` lengths. O(n)."""
        n = check_nonneg_int(n, "n")
        if self.kind == "uniform":
            return rng.integers(self.low, self.high, n, endpoint=True, dtype=np.int64)
        if self.kind == "constant":
            draws = np.full(n, float(self.mean))
        elif self.kind == "exponential":
            draws = rng.exponential(self.mean, n)
        else:
            draws = rng.lognormal(math.log(self.mean), self.sigma, n)
        # Clip as floats, then cast: a huge sigma draws inf, which int64 cannot hold.
        return np.clip(np.rint(draws), self.low, self.high).astype(np.int64)


@dataclass(frozen=True, slots=True)
class SLOClass:
    """A service-level class: name, share of requests, and its SLOs in ms (None: none).

    ``ttft_ms`` bounds time to first token (also the scheduler's dispatch
    deadline, so EDF orders by it), ``e2e_ms`` arrival to last token and
    ``tpot_ms`` the mean time per output token after the first. Thread safety:
    immutable.
    """

    name: str
    weight: float = 1.0
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    tpot_ms: float | None = None

    def __post_init__(self) -> None:
        check_str(self.name, "name")
        check_number(self.weight, "weight", **_GT0)
        for field in ("ttft_ms", "e2e_ms", "tpot_ms"):
            v = getattr(self, field)
            if v is not None:
                check_number(v, field, **_GT0)


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant: its share of the arriving requests and how the server treats it.

    Workload side: ``share`` (relative weight when requests are assigned to
    tenants by :func:`synthetic_workload` / :func:`trace_workload`). Server side
    (:class:`~llmds.sim.engine.SimConfig` ``tenants``): ``weight`` is the tenant's
    fair share under ``policy="fair"`` (start-time fair queueing: a tenant with
    weight 2 gets twice the token service of one with weight 1 when both are
    backlogged); ``qps_limit`` / ``token_rate_limit`` give the tenant its own
    :class:`~llmds.admissions.AdmissionController` token bucket (``None``: no
    per-tenant limit), checked before the global one. Thread safety: immutable.
    """

    name: str
    share: float = 1.0
    weight: float = 1.0
    qps_limit: float | None = None
    token_rate_limit: float | None = None

    def __post_init__(self) -> None:
        check_str(self.name, "name", nonempty=True)
        check_number(self.share, "share", **_GT0)
        check_number(self.weight, "weight", **_GT0)
        for field in ("qps_limit", "token_rate_limit"):
            v = getattr(self, field)
            if v is not None:
                check_number(v, field, **_GT0)


class SimRequest:
    """One simulated request (input to :class:`~llmds.sim.engine.Simulator`).

    ``token_ids`` is the prompt followed by the output (so recomputation after
    preemption and prefix hashing see real ids), or None for synthetic requests,
    whose ids the engine makes unique per request. Memory: O(1) plus the ids.
    Thread safety: read-only after construction (the simulator never writes it).
    """

    __slots__ = (
        "arrival",
        "e2e_slo_ms",
        "output_tokens",
        "prompt_tokens",
        "request_id",
        "slo_class",
        "tenant",
        "token_ids",
        "tpot_slo_ms",
        "ttft_slo_ms",
    )

    def __init__(
        self,
        request_id: int,
        arrival: float,
        prompt_tokens: int,
        output_tokens: int,
        *,
        token_ids: npt.NDArray[np.int64] | None = None,
        slo_class: str = "default",
        ttft_slo_ms: float | None = None,
        e2e_slo_ms: float | None = None,
        tpot_slo_ms: float | None = None,
        tenant: str | int = 0,
    ) -> None:
        which = f"of request {request_id!r}"
        prompt_tokens = check_int(prompt_tokens, f"prompt_tokens {which}", minimum=1)
        output_tokens = check_int(output_tokens, f"output_tokens {which}", minimum=1)
        arrival = check_number(arrival, f"arrival {which}", minimum=0.0)
        if token_ids is not None and len(token_ids) != prompt_tokens + output_tokens:
            raise ValueError(f"token_ids {which} must hold prompt_tokens + output_tokens "
                             f"= {prompt_tokens + output_tokens} ids, got {len(token_ids)}")
        self.request_id = request_id
        self.arrival = arrival
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.token_ids = token_ids
        self.slo_class = slo_class
        self.ttft_slo_ms = ttft_slo_ms
        self.e2e_slo_ms = e2e_slo_ms
        self.tpot_slo_ms = tpot_slo_ms
        self.tenant = tenant

    def __repr__(self) -> str:
        return (
            f"SimRequest(request_id={self.request_id}, arrival={self.arrival:.6f}, "
            f"prompt_tokens={self.prompt_tokens}, output_tokens={self.output_tokens}, "
            f"slo_class={self.slo_class!r}, tenant={self.tenant!r})"
        )


def arrival_times(
    n: int, rate: float, process: str = "poisson", *, cv: float = 2.0, seed: int = 0
) -> npt.NDArray[np.float64]:
    """``n`` increasing arrival times (s) at mean ``rate`` requests/s. O(n).

    ``process="poisson"``: exponential gaps; ``"gamma"``: gamma gaps of shape
    ``1 / cv**2`` (``cv`` > 1 is burstier than Poisson). The first request
    arrives after one gap.

    >>> arrival_times(3, 10.0, seed=1).round(3).tolist()
    [0.107, 0.138, 0.676]
    """
    n = check_nonneg_int(n, "n")
    rate = check_number(rate, "rate", **_GT0)
    seed = check_seed(seed)
    check_choice(process, "process", ARRIVAL_PROCESSES)
    rng = np.random.default_rng(seed)
    if process == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    else:
        cv = check_number(cv, "cv", minimum=CV_RANGE[0], maximum=CV_RANGE[1])
        shape = 1.0 / (cv * cv)
        gaps = rng.gamma(shape, 1.0 / (rate * shape), n)
    return np.cumsum(gaps)


def _assign_classes(
    rng: np.random.Generator, n: int, slo_classes: Sequence[SLOClass] | None
) -> list[SLOClass | None]:
    if not slo_classes:
        return [None] * n
    w = np.array([c.weight for c in slo_classes], dtype=np.float64)
    idx = rng.choice(len(slo_classes), size=n, p=w / w.sum())
    return [slo_classes[i] for i in idx]


def _assign_tenants(seed: int, n: int, tenants: Sequence[Tenant] | None) -> list[str | int]:
    """Tenant names by ``share`` from their own stream (other draws are unchanged)."""
    if not tenants:
        return [0] * n
    names = [t.name for t in tenants]
    if len(set(names)) != len(names):
        raise ValueError(f"tenant names must be distinct, got {names}")
    w = np.array([t.share for t in tenants], dtype=np.float64)
    idx = np.random.default_rng([seed, 3]).choice(len(tenants), size=n, p=w / w.sum())
    return [names[i] for i in idx]


def _make(
    rid: int, t: float, p: int, o: int, cls: SLOClass | None, ids: npt.NDArray[np.int64] | None,
    tenant: str | int = 0,
) -> SimRequest:
    if cls is None:
        return SimRequest(rid, t, p, o, token_ids=ids, tenant=tenant)
    return SimRequest(
        rid, t, p, o, token_ids=ids, slo_class=cls.name, ttft_slo_ms=cls.ttft_ms,
        e2e_slo_ms=cls.e2e_ms, tpot_slo_ms=cls.tpot_ms, tenant=tenant,
    )


def synthetic_workload(
    num_requests: int,
    rate: float,
    *,
    process: str = "poisson",
    cv: float = 2.0,
    prompt: LengthDist | None = None,
    output: LengthDist | None = None,
    slo_classes: Sequence[SLOClass] | None = None,
    tenants: Sequence[Tenant] | None = None,
    seed: int = 0,
) -> list[SimRequest]:
    """Seeded requests with independent prompt/output lengths (no shared prefixes). O(n).

    Defaults: prompts ``LengthDist("uniform", low=64, high=1024)``, outputs
    ``LengthDist("uniform", low=16, high=256)``. ``tenants``: requests are assigned
    to them by ``share`` (default: every request is tenant ``0``).
    """
    n = check_num_requests(num_requests)
    seed = check_seed(seed)
    times = arrival_times(n, rate, process, cv=cv, seed=seed)
    rng = np.random.default_rng([seed, 1])
    prompt = prompt or LengthDist("uniform", low=64, high=1024)
    output = output or LengthDist("uniform", low=16, high=256)
    plen = prompt.sample(rng, n)
    olen = output.sample(rng, n)
    classes = _assign_classes(rng, n, slo_classes)
    who = _assign_tenants(seed, n, tenants)
    return [
        _make(i, float(times[i]), int(plen[i]), int(olen[i]), classes[i], None, who[i])
        for i in range(n)
    ]


def trace_workload(
    trace: Sequence[ChatRequest],
    rate: float,
    *,
    process: str = "poisson",
    cv: float = 2.0,
    slo_classes: Sequence[SLOClass] | None = None,
    tenants: Sequence[Tenant] | None = None,
    seed: int = 0,
) -> list[SimRequest]:
    """Replay a multi-turn chat trace (prompts, outputs, token ids) at ``rate`` req/s. O(T).

    >>> from llmds.sim.workloads import multi_turn_chat_trace
    >>> reqs = trace_workload(multi_turn_chat_trace(5, seed=0), 2.0)
    >>> len(reqs), reqs[0].prompt_tokens >= 550
    (5, True)
    """
    seed = check_seed(seed)
    times = arrival_times(len(trace), rate, process, cv=cv, seed=seed)
    rng = np.random.default_rng([seed, 2])
    classes = _assign_classes(rng, len(trace), slo_classes)
    who = _assign_tenants(seed, len(trace), tenants)
    out = []
    for i, r in enumerate(trace):
        ids = np.concatenate((r.prompt, r.output)).astype(np.int64)
        out.append(
            _make(i, float(times[i]), len(r.prompt), len(r.output), classes[i], ids, who[i])
        )
    return out
