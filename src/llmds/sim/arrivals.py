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

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._validate import check_int
from llmds.bench.workloads import ChatRequest, multi_turn_chat_trace

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
#: Most requests one workload may hold: a simulated request costs about 5 KB (synthetic)
#: to 18 KB (chat trace) and 0.3-0.5 ms, so this is ~5-18 GB and minutes. Checked
#: before anything is drawn (``requests: 10**12`` used to allocate until MemoryError).
MAX_REQUESTS = 1_000_000
#: Longest prompt or output a LengthDist may produce: a request must fit in the KV pool,
#: which is capped at 2**28 token slots (``llmds.sim.engine.MAX_KV_TOKENS``).
MAX_LENGTH = 1 << 28
#: Most token ids a chat trace may hold (int32 in the trace, int64 in its requests:
#: about 3 GiB). See :func:`check_chat_trace_size`.
MAX_TRACE_TOKENS = 1 << 28


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


def check_seed(seed: object) -> int:
    """A workload seed: an int in ``[0, 2**63 - 1]`` (NumPy's generators take no negatives)."""
    return check_int(seed, "seed", minimum=0, maximum=2**63 - 1)


def check_chat_trace_size(num_requests: int, **params: Any) -> int:
    """About how many token ids ``multi_turn_chat_trace(num_requests, **params)`` holds. O(1).

    Raises ``ValueError`` above :data:`MAX_TRACE_TOKENS`, before the trace is drawn. A
    follow-up repeats its conversation's previous prompt and output, so a request ``d``
    turns deep holds ``system + user + d * (output + follow_up)`` prompt tokens; with
    follow-up probability ``p`` a conversation is continued ``p / (1 - p)`` times on
    average, which is also the mean depth of a request (``p = 1``: one conversation,
    mean depth ``num_requests / 2``). The estimate uses mean lengths, so the trace
    holds about this many tokens, not at most.

    >>> check_chat_trace_size(1000)  # the defaults: ~1,100 tokens per request
    1115000
    """
    defaults = inspect.signature(multi_turn_chat_trace).parameters

    def get(name: str) -> Any:
        return params.get(name, defaults[name].default)

    def mean(name: str) -> float:
        lo, hi = get(name)
        return (lo + hi) / 2.0

    p = float(get("follow_up_prob"))
    depth = num_requests / 2.0 if p >= 1.0 else min(p / (1.0 - p), num_requests / 2.0)
    output = mean("output_tokens")
    per_request = (get("system_prompt_tokens") + mean("user_tokens") + output
                   + depth * (output + mean("follow_up_tokens")))
    total = round(num_requests * per_request)
    if total > MAX_TRACE_TOKENS:
        raise ValueError(
            f"a chat trace of {num_requests} requests would hold about {total:,} token ids, "
            f"more than {MAX_TRACE_TOKENS:,}; use fewer requests, shorter turns or a lower "
            "follow_up_prob"
        )
    return total


def check_num_requests(num_requests: object, name: str = "num_requests") -> int:
    """A workload size: an int in ``[0, MAX_REQUESTS]``, checked before drawing anything."""
    return check_int(num_requests, name, minimum=0, maximum=MAX_REQUESTS)


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
        if _positive(self.mean, "mean") > MAX_LENGTH:
            raise ValueError(f"mean must be <= {MAX_LENGTH} tokens, got {self.mean!r}")
        _positive(self.sigma, "sigma")
        if isinstance(self.low, bool) or not isinstance(self.low, int) or self.low < 1:
            raise ValueError(f"low must be an int >= 1, got {self.low!r}")
        if isinstance(self.high, bool) or not isinstance(self.high, int) or self.high < self.low:
            raise ValueError(f"high must be an int >= low ({self.low}), got {self.high!r}")
        if self.high > MAX_LENGTH:
            raise ValueError(f"high must be <= {MAX_LENGTH} tokens, got {self.high!r}")

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.int64]:
        """``n`` lengths. O(n)."""
        n = _count(n, "n")
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
    seed = check_seed(seed)
    if process not in ARRIVAL_PROCESSES:
        raise ValueError(f"process must be one of {ARRIVAL_PROCESSES}, got {process!r}")
    rng = np.random.default_rng(seed)
    if process == "poisson":
        gaps = rng.exponential(1.0 / rate, n)
    else:
        cv = _positive(cv, "cv")
        if not 1e-3 <= cv <= 1e3:  # cv * cv must neither underflow to 0 nor overflow
            raise ValueError(f"cv must be in [0.001, 1000], got {cv!r}")
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

    >>> from llmds.bench.workloads import multi_turn_chat_trace
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
