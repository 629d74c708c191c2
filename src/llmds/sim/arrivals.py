"""Seeded request workloads for the serving simulator.

Arrival processes: Poisson (exponential inter-arrival times) and gamma (bursty:
coefficient of variation ``cv`` > 1 clusters arrivals; ``cv == 1`` is Poisson).
Lengths come from a :class:`LengthDist`, or from the multi-turn chat trace
(:func:`llmds.bench.workloads.multi_turn_chat_trace`), whose shared system prompts
and conversation histories give the KV cache real prefix hits.

Everything is drawn from ``numpy.random.default_rng(seed)``: the same arguments give
the same workload on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmds.bench.workloads import ChatRequest

__all__ = [
    "LENGTH_KINDS",
    "LengthDist",
    "SLOClass",
    "SimRequest",
    "Tenant",
    "arrival_times",
    "synthetic_workload",
    "trace_workload",
]

LENGTH_KINDS = ("constant", "uniform", "exponential", "lognormal")
ARRIVAL_PROCESSES = ("poisson", "gamma")


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True)
class LengthDist:
    """A distribution of token counts (integers >= ``low``, <= ``high``).

    ``kind``: ``"constant"`` (always ``mean``), ``"uniform"`` (integers in
    ``[low, high]``), ``"exponential"`` (``round(Exp(mean))``, clipped to
    ``[low, high]``) or ``"lognormal"`` (median ``mean``, log-space sigma
    ``sigma``, clipped).

    >>> LengthDist("constant", mean=7).sample(np.random.default_rng(0), 3).tolist()
    [7, 7, 7]
    """

    kind: str = "constant"
    mean: float = 128.0
    low: int = 1
    high: int = 1 << 20
    sigma: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in LENGTH_KINDS:
            raise ValueError(f"kind must be one of {LENGTH_KINDS}, got {self.kind!r}")
        _positive(self.mean, "mean")
        _positive(self.sigma, "sigma")
        if isinstance(self.low, bool) or not isinstance(self.low, int) or self.low < 1:
            raise ValueError(f"low must be an int >= 1, got {self.low!r}")
        if isinstance(self.high, bool) or not isinstance(self.high, int) or self.high < self.low:
            raise ValueError(f"high must be an int >= low ({self.low}), got {self.high!r}")

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """``n`` lengths. O(n)."""
        n = _count(n, "n")
        if self.kind == "constant":
            out = np.full(n, round(self.mean), dtype=np.int64)
        elif self.kind == "uniform":
            out = rng.integers(self.low, self.high, n, endpoint=True, dtype=np.int64)
        elif self.kind == "exponential":
            out = np.rint(rng.exponential(self.mean, n)).astype(np.int64)
        else:
            out = np.rint(rng.lognormal(math.log(self.mean), self.sigma, n)).astype(np.int64)
        return np.clip(out, self.low, self.high)


@dataclass(frozen=True, slots=True)
class SLOClass:
    """A service-level class: name, share of requests, and its SLOs in ms (None: none).

    ``ttft_ms`` bounds time to first token (also the scheduler's dispatch
    deadline, so EDF orders by it), ``e2e_ms`` arrival to last token and
    ``tpot_ms`` the mean time per output token after the first.
    """

    name: str
    weight: float = 1.0
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    tpot_ms: float | None = None

    def __post_init__(self) -> None:
        _positive(self.weight, "weight")
        for field in ("ttft_ms", "e2e_ms", "tpot_ms"):
            v = getattr(self, field)
            if v is not None:
                _positive(v, field)


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
    per-tenant limit), checked before the global one.
    """

    name: str
    share: float = 1.0
    weight: float = 1.0
    qps_limit: float | None = None
    token_rate_limit: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        _positive(self.share, "share")
        _positive(self.weight, "weight")
        for field in ("qps_limit", "token_rate_limit"):
            v = getattr(self, field)
            if v is not None:
                _positive(v, field)


class SimRequest:
    """One simulated request (input to :class:`~llmds.sim.engine.Simulator`).

    ``token_ids`` is the prompt followed by the output (so recomputation after
    preemption and prefix hashing see real ids), or None for synthetic requests,
    whose ids the engine makes unique per request. Memory: O(1) plus the ids.
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
        if prompt_tokens < 1 or output_tokens < 1:
            raise ValueError(
                f"prompt_tokens and output_tokens must be >= 1, got {prompt_tokens}, "
                f"{output_tokens} (request {request_id})"
            )
        if not (arrival >= 0.0 and math.isfinite(arrival)):
            raise ValueError(f"arrival must be a finite time >= 0, got {arrival!r}")
        if token_ids is not None and len(token_ids) != prompt_tokens + output_tokens:
            raise ValueError("token_ids must hold prompt_tokens + output_tokens ids")
        self.request_id = request_id
        self.arrival = float(arrival)
        self.prompt_tokens = int(prompt_tokens)
        self.output_tokens = int(output_tokens)
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
    n = _count(n, "n")
    rate = _positive(rate, "rate")
    if process not in ARRIVAL_PROCESSES:
        raise ValueError(f"process must be one of {ARRIVAL_PROCESSES}, got {process!r}")
    rng = np.random.default_rng(seed)
    if process == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    else:
        cv = _positive(cv, "cv")
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
    n = _count(num_requests, "num_requests")
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

    >>> from llmds.bench.workloads import multi_turn_chat_trace
    >>> reqs = trace_workload(multi_turn_chat_trace(5, seed=0), 2.0)
    >>> len(reqs), reqs[0].prompt_tokens >= 550
    (5, True)
    """
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
