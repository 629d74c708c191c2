"""The simulated server's state during one run, and the steps both batching modes share.

:class:`Server` holds what one :meth:`~llmds.sim.engine.Simulator.run` builds: the
simulated clock, the :class:`~llmds.scheduler.Scheduler`, the admission controllers,
the KV backend (:mod:`llmds.sim.kv_backends`), one :class:`LiveRequest` per queued
or running request, and the per-iteration accounting. Its steps are shared by the
two loops, :class:`~llmds.sim.continuous.ContinuousBatching` and
:class:`~llmds.sim.micro_batch.MicroBatching`, which subclass it; the
:class:`~llmds.sim.engine.Simulator` is both.

Arrivals (:meth:`Server._arrive_until`): each request, at its own arrival time, passes
its tenant's token bucket (if the tenant has ``qps_limit``/``token_rate_limit``;
rejections are counted as ``tenant_<reason>``), then the global one, and is queued
in the Scheduler. ``policy="fair"`` orders the queue by start-time fair queueing
(SFQ, Goyal et al. 1996) over tenants: a request's tag is ``max(V, F[tenant])``, its
tenant's finish tag advances by ``(prompt + output tokens) / weight``, ``V`` is the
tag of the last request taken from the queue, and the smallest tag runs first (FIFO
on ties). A backlogged tenant then gets service in proportion to its weight however
much the others send.

Requests normally come as one sorted list (:meth:`Server._begin`); a cluster
(:mod:`llmds.sim.cluster`) instead hands each replica its requests one at a time
(:meth:`Server._submit`), each with the token codes the cluster computed, the time it
may enter the server (its arrival, or later when its prefix is first fetched from a
shared tier) and the tokens that fetch brings (``fetched``).

Memory per running request (:meth:`Server._record_memory`): every iteration records
the KV pages held by live requests (shared pages counted once) and the number of
running requests, weighted by the iteration's duration;
``kv_pages_per_running_mean`` is their ratio (time-weighted pages over time-weighted
requests), ``kv_pages_per_running_peak`` the largest per-iteration ratio and
``kv_active_pages_peak`` the largest page count.

Thread safety: not thread-safe; one run at a time per object (each
:meth:`~llmds.sim.engine.Simulator.run` rebuilds the state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from llmds.admissions import AdmissionController
from llmds.scheduler import Request, Scheduler
from llmds.sim.arrivals import SimRequest
from llmds.sim.config import SimConfig
from llmds.sim.kv_backends import TokenRemap, make_backend
from llmds.sim.metrics import REJECTED, RequestRecord

__all__ = ["LiveRequest", "Server"]

# A limit left unset when the other one is set: admission is on, this bucket never binds.
_UNLIMITED = 1e12


def _priority_fn(
    policy: str, tag: Callable[[], float]
) -> Callable[[Request], float] | None:
    """Scheduler ``priority_fn`` for a policy name (higher runs first).

    ``"fair"`` reads the SFQ start tag of the request being submitted from ``tag()``;
    ``"default"`` is the Scheduler's own order (earliest deadline, fewest tokens, FIFO).
    """
    orders: dict[str, Callable[[Request], float] | None] = {
        "default": None,
        "fair": lambda r: -tag(),
        "fcfs": lambda r: -r.arrival,
        "edf": lambda r: -r.deadline,
        "sjf": lambda r: -float(r.tokens),
    }
    return orders[policy]  # SimConfig checked the name


def _bucket(qps_limit: float | None, token_rate_limit: float | None,
            clock: Callable[[], float]) -> AdmissionController | None:
    """A token bucket if either limit is set (the other then never binds), else None."""
    if qps_limit is None and token_rate_limit is None:
        return None
    return AdmissionController(
        qps_target=_UNLIMITED if qps_limit is None else qps_limit,
        token_rate_limit=_UNLIMITED if token_rate_limit is None else token_rate_limit,
        clock=clock,
    )


class LiveRequest:
    """A request inside the server: queued, waiting for KV, or running. O(1) memory.

    Thread safety: not thread-safe (its server's).
    """

    __slots__ = ("computed", "deadline", "fetched", "ids", "kv_len", "rec", "req", "sid",
                 "target")

    def __init__(
        self, req: SimRequest, rec: RequestRecord, sid: int, deadline: float, ids: np.ndarray,
        fetched: int = 0,
    ) -> None:
        self.req = req
        self.rec = rec
        self.sid = sid  # scheduler request id
        self.deadline = deadline
        self.computed = 0  # tokens whose KV is computed
        self.target = 0  # tokens to prefill in the current attempt (prompt + generated)
        self.kv_len = 0  # token ids handed to the KV backend (<= slots in its pages)
        self.ids = ids  # in the backend's id space (see kv_backends.TokenRemap)
        self.fetched = fetched  # leading tokens whose KV a shared tier supplied (cluster)


class Server:
    """State of one simulated run and the steps both batching loops share.

    ``_begin(requests)`` builds the state; the loops then call ``_arrive_until``,
    ``_next_arrival``, ``_dispatched``, ``_record_memory`` and ``_record_util``.
    Complexity: arrivals O(log queued) each (Scheduler) plus O(T) token-id coding;
    the recording steps O(1). Memory: one :class:`RequestRecord` per request and one
    :class:`LiveRequest` per queued or running request, plus the KV backend.
    Thread safety: not thread-safe.
    """

    config: SimConfig
    now: float
    busy_s: float
    sched: Scheduler
    admission: AdmissionController | None
    tenant_admission: dict[Any, AdmissionController]
    kv: Any
    records: list[RequestRecord]
    runs: dict[int, LiveRequest]
    kv_util: list[tuple[float, float]]

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self._progress: Callable[[int, int, str], None] | None = None

    def _begin(
        self, reqs: list[SimRequest], progress: Callable[[int, int, str], None] | None,
        remap: TokenRemap | None = None, tier: Any = None,
    ) -> None:
        """Fresh state for a run over ``reqs`` (sorted by arrival). O(n).

        ``remap``: the token-code table to share (a cluster's replicas share one);
        ``tier``: an object with ``publish(ids, num_tokens)`` told about every prefix
        whose KV this server computed (a cluster's shared tier), or None.
        """
        cfg = self.config
        self._progress = progress
        self._tier = tier
        self._extrapolated0 = getattr(cfg.cost, "num_extrapolated", 0)
        self.now = 0.0
        clock = self._clock
        self._tag = 0.0  # SFQ start tag of the request being submitted (policy "fair")
        self._vtime = 0.0  # SFQ virtual time: tag of the last request taken from the queue
        self._finish_tag: dict[Any, float] = {}  # tenant -> finish tag of its last request
        self._tags: dict[int, float] = {}  # scheduler id -> start tag
        self._weights: dict[Any, float] = {t.name: float(t.weight) for t in cfg.tenants}
        micro = cfg.mode == "micro_batch"
        self.sched = Scheduler(
            max_batch_size=cfg.max_num_seqs if micro else 1,
            max_wait_ms=cfg.max_wait_ms if micro else 0.0,
            priority_fn=_priority_fn(cfg.policy, lambda: self._tag),
            clock=clock,
            history=0,
        )
        self.admission = _bucket(cfg.qps_limit, cfg.token_rate_limit, clock)
        self.tenant_admission = {}
        for t in cfg.tenants:
            bucket = _bucket(t.qps_limit, t.token_rate_limit, clock)
            if bucket is not None:
                self.tenant_admission[t.name] = bucket
        self.kv = make_backend(cfg.kv_backend, cfg.kv_page_size, cfg.kv_pages,
                               cfg.prefix_caching, remap)
        self._mem_area = 0.0  # sum of active pages * iteration duration
        self._run_area = 0.0  # sum of running requests * iteration duration
        self._mem_peak = 0
        self._per_run_peak = 0.0
        self.records = [RequestRecord(r) for r in reqs]
        self.runs = {}  # scheduler id -> live request
        self.kv_util = []
        self._reqs = reqs
        self._ready = [r.arrival for r in reqs]  # when each may enter (see _submit)
        self._given: dict[int, tuple[np.ndarray, int]] = {}  # index -> (codes, fetched)
        self._next = 0
        self.busy_s = 0.0  # simulated time spent running iterations

    def _clock(self) -> float:
        return self.now

    def _memory_metrics(self) -> dict[str, Any]:
        """The run's KV-memory and iteration figures (``SimResult.metrics`` extras). O(iters)."""
        util = self.kv_util
        return {
            "kv_utilisation_mean": float(np.mean([u for _, u in util])) if util else 0.0,
            "kv_utilisation_max": max((u for _, u in util), default=0.0),
            "num_iterations": len(util),
            "busy_s": self.busy_s,
            "kv_backend": self.kv.name,
            "kv_pages_per_running_mean": (
                self._mem_area / self._run_area if self._run_area else 0.0
            ),
            "kv_pages_per_running_peak": self._per_run_peak,
            "kv_active_pages_mean": self._mem_area / self.busy_s if self.busy_s else 0.0,
            "kv_active_pages_peak": self._mem_peak,
            "kv_active_page_s": self._mem_area,  # pages held x seconds
            "running_request_s": self._run_area,  # running requests x seconds
            # lookups of the profile cost model beyond its profiled range, this run
            "num_extrapolated": getattr(self.config.cost, "num_extrapolated", 0)
            - self._extrapolated0,
        }

    # --------------------------------------------------------------- streaming (clusters)
    def _submit(self, req: SimRequest, rec: RequestRecord, ids: np.ndarray, ready: float,
                fetched: int = 0) -> None:
        """Hand one more request to a running server (arrivals in time order). O(1).

        It enters the scheduler at ``ready`` (>= its arrival and >= the previous
        request's ``ready``); ``ids`` are its token codes in this server's table;
        ``fetched`` leading tokens need no prefill (their KV came from a shared tier).
        """
        i = len(self._reqs)
        self._reqs.append(req)
        self.records.append(rec)
        self._ready.append(ready)
        self._given[i] = (ids, fetched)

    @property
    def num_outstanding(self) -> int:
        """Requests handed to this server and not finished (queued, running, not yet
        entered); rejected ones do not count. O(1)."""
        return len(self.runs) + len(self._reqs) - self._next

    # --------------------------------------------------------------- arrivals
    def _arrive_until(self, t: float) -> None:
        """Admit/queue every arrival at or before ``t``, each at its own time. O(k log n)."""
        reqs, recs, ready, given = self._reqs, self.records, self._ready, self._given
        i = self._next
        n = len(reqs)
        adm = self.admission
        sched = self.sched
        per_tenant = self.tenant_admission
        fair = self.config.policy == "fair"
        backend_ids = self.kv.token_ids
        while i < n and ready[i] <= t:
            r, rec = reqs[i], recs[i]
            self.now = ready[i]
            pre = given.pop(i) if given else None  # a cluster's codes and fetched tokens
            work = r.prompt_tokens + r.output_tokens
            tadm = per_tenant.get(r.tenant) if per_tenant else None
            if tadm is not None:
                ok, reason = tadm.should_admit(work)
                if not ok:
                    rec.status, rec.reason = REJECTED, f"tenant_{reason}"
                    i += 1
                    continue
            if adm is not None:
                ok, reason = adm.try_admit(work)
                if not ok:
                    rec.status, rec.reason = REJECTED, reason
                    i += 1
                    continue
            if tadm is not None:
                tadm.try_admit(work)  # admitted by should_admit at this same instant
            if fair:
                start = max(self._vtime, self._finish_tag.get(r.tenant, 0.0))
                self._finish_tag[r.tenant] = start + work / self._weights.get(r.tenant, 1.0)
                self._tag = start
            sid = sched.submit(r.prompt_tokens, r.ttft_slo_ms)
            if fair:
                self._tags[sid] = self._tag
            deadline = sched.request(sid).deadline  # type: ignore[union-attr]
            if pre is not None:
                self.runs[sid] = LiveRequest(r, rec, sid, deadline, pre[0], pre[1])
            else:
                self.runs[sid] = LiveRequest(r, rec, sid, deadline, backend_ids(r))
            i += 1
        self._next = i
        self.now = max(self.now, t)

    def _next_arrival(self) -> float:
        return self._ready[self._next] if self._next < len(self._reqs) else math.inf

    def _dispatched(self, sids: Sequence[int]) -> None:
        """SFQ: virtual time becomes the start tag of the last request taken. O(k)."""
        tags = self._tags
        if tags:
            for sid in sids:
                self._vtime = max(self._vtime, tags.pop(sid))

    # --------------------------------------------------------------- accounting
    def _record_memory(self, running: int, dt: float) -> None:
        """Pages held by live requests during an iteration of ``dt`` s. O(1)."""
        active = self.kv.active_pages()
        self._mem_area += active * dt
        self._run_area += running * dt
        if active > self._mem_peak:
            self._mem_peak = active
        if running and active / running > self._per_run_peak:
            self._per_run_peak = active / running

    def _record_util(self) -> None:
        """One iteration's KV utilisation; the progress callback every 256 of them. O(1)."""
        self.kv_util.append((self.now, 1.0 - self.kv.num_free_pages / self.config.kv_pages))
        if self._progress is not None and len(self.kv_util) % 256 == 0:
            self._progress(self._next, len(self._reqs), "simulating")
