"""Deterministic discrete-event LLM server built from the real llmds structures.

The server gates arrivals with :class:`~llmds.admissions.AdmissionController` (one
global bucket and, optionally, one per tenant), queues them in
:class:`~llmds.scheduler.Scheduler` and keeps KV memory in one of two backends
(:mod:`llmds.sim.kv_backends`): :class:`~llmds.kv_cache.KVCache` (``kv_backend=
"kvcache"``: token-level ``allocate``/``append_tokens``/``free`` with hash-chain prefix
sharing) or :class:`~llmds.mem_cache.RadixCache` over a
:class:`~llmds.paged_allocator.PagedAllocator` (``kv_backend="radix"``: match, lock,
LRU-evict, insert). ``prefix_caching=False`` turns prefix reuse off in either. All of
them read the simulated clock, which jumps from event to event (no sleeping). Time
per iteration comes from a :class:`~llmds.sim.cost_model.CostModel`.

Tenants (``SimConfig.tenants``, requests' ``tenant``): a tenant with ``qps_limit`` /
``token_rate_limit`` has its own admission bucket (rejections are counted as
``tenant_<reason>``); ``policy="fair"`` orders the queue by start-time fair queueing
(SFQ, Goyal et al. 1996) over tenants: a request's tag is ``max(V, F[tenant])``, its
tenant's finish tag advances by ``(prompt + output tokens) / weight``, ``V`` is the
tag of the last request taken from the queue, and the smallest tag runs first (FIFO
on ties). A backlogged tenant then gets service in proportion to its weight however
much the others send. ``metrics["by_tenant"]`` has goodput and TTFT per tenant.

Memory per running request: every iteration records the KV pages held by live
requests (shared pages counted once) and the number of running requests, weighted by
the iteration's duration; ``kv_pages_per_running_mean`` is their ratio (time-weighted
pages over time-weighted requests), ``kv_pages_per_running_peak`` the largest
per-iteration ratio and ``kv_active_pages_peak`` the largest page count.

Two batching modes:

* ``"continuous"`` (iteration-level, vLLM/Orca style): every iteration runs one
  decode token for each running request that finished prefill, continues
  partially prefilled requests, and admits queued requests (in scheduler order)
  while the per-iteration token budget ``max_num_batched_tokens``, the
  ``max_num_seqs`` limit and KV memory allow. With ``chunked_prefill`` a prompt is
  split over iterations to fit the budget. Prefix-cache hits are skipped (only the
  uncached tail is prefilled). When a decode step needs a page and none is free,
  the lowest-priority running request (latest deadline, then latest arrival) is
  preempted: its KV is freed and it goes back to the head of the waiting line to
  be recomputed (prompt + tokens generated so far).
* ``"micro_batch"`` (request-level, the seed's scheduler): the Scheduler's release
  rules (full batch, ``max_wait_ms``, SLO) release a batch; the batch reserves KV
  for its requests' whole prompt + output, runs one prefill iteration and then
  decode iterations until its longest request ends, and only then is the server
  free for the next batch. Requests whose KV does not fit wait for the next batch.

Everything is deterministic for a given workload and configuration.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmds.admissions import AdmissionController
from llmds.errors import CapacityError
from llmds.scheduler import Request, Scheduler
from llmds.sim.arrivals import SimRequest, Tenant
from llmds.sim.cost_model import CostModel
from llmds.sim.kv_backends import KV_BACKENDS, make_backend
from llmds.sim.metrics import FINISHED, REJECTED, RequestRecord, summarize

__all__ = [
    "KV_BACKENDS",
    "MAX_KV_TOKENS",
    "MODES",
    "POLICIES",
    "SimConfig",
    "SimResult",
    "Simulator",
    "simulate",
]

MODES = ("continuous", "micro_batch")
POLICIES = ("default", "fcfs", "edf", "sjf", "fair")


def _policy_fn(
    policy: str, tag: Callable[[], float] | None = None
) -> Callable[[Request], float] | None:
    """Scheduler ``priority_fn`` for a policy name (higher runs first).

    ``"fair"`` reads the SFQ start tag of the request being submitted from ``tag()``.
    """
    if policy == "fair":
        return (lambda r: -tag()) if tag is not None else (lambda r: 0.0)
    if policy == "default":
        return None  # Scheduler's own order: earliest deadline, fewest tokens, FIFO
    if policy == "fcfs":
        return lambda r: -r.arrival
    if policy == "edf":
        return lambda r: -r.deadline
    if policy == "sjf":
        return lambda r: -float(r.tokens)
    raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")


# Size caps, checked before anything is allocated (a typo such as kv_pages=10**9 used to
# end in a MemoryError after seconds of allocation). The KV pool is one float32 per
# token slot plus Python bookkeeping per page, so it is capped in slots and in pages.
MAX_KV_TOKENS = 1 << 28  # kv_pages * kv_page_size: a 1 GiB pool, mapped lazily
_MAX_KV_PAGES = 1 << 22  # ~50 bytes of allocator bookkeeping per page: ~200 MiB
_MAX_PAGE_SIZE = 1 << 16
_MAX_NUM_SEQS = 1 << 20
_MAX_BATCHED_TOKENS = (1 << 31) - 1  # the Scheduler's per-request token limit


def _pos_int(v: Any, name: str, minimum: int = 1, maximum: int | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {v!r}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v!r}")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Server configuration. Validated on construction (ValueError names the field).

    ``mode``: one of :data:`MODES`; ``policy``: one of :data:`POLICIES` (queue
    order); ``max_num_seqs``: running requests (continuous) or batch size
    (micro_batch); ``max_wait_ms``: the Scheduler's wait rule (micro_batch);
    ``max_num_batched_tokens``: per-iteration token budget (continuous);
    ``chunked_prefill``; ``kv_page_size``/``kv_pages``: the KV pool;
    ``kv_backend``: one of :data:`KV_BACKENDS` (``"kvcache"`` hash-chain KVCache,
    ``"radix"`` RadixCache + PagedAllocator); ``prefix_caching``;
    ``qps_limit``/``token_rate_limit`` (None: no admission control; set either to
    enable it, the other then defaults to unlimited-ish 1e12); ``tenants``: a
    tuple of :class:`~llmds.sim.arrivals.Tenant` (per-tenant buckets and
    ``policy="fair"`` weights; tenants not listed have weight 1 and no bucket);
    ``cost``: the iteration cost model.
    """

    mode: str = "continuous"
    policy: str = "default"
    max_num_seqs: int = 64
    max_wait_ms: float = 50.0
    max_num_batched_tokens: int = 2048
    chunked_prefill: bool = True
    kv_page_size: int = 16
    kv_pages: int = 8192
    prefix_caching: bool = True
    qps_limit: float | None = None
    token_rate_limit: float | None = None
    cost: CostModel = field(default_factory=CostModel)
    kv_backend: str = "kvcache"
    tenants: tuple[Tenant, ...] = ()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        _policy_fn(self.policy)
        _pos_int(self.max_num_seqs, "max_num_seqs", maximum=_MAX_NUM_SEQS)
        _pos_int(self.max_num_batched_tokens, "max_num_batched_tokens",
                 maximum=_MAX_BATCHED_TOKENS)
        _pos_int(self.kv_page_size, "kv_page_size", maximum=_MAX_PAGE_SIZE)
        _pos_int(self.kv_pages, "kv_pages", maximum=_MAX_KV_PAGES)
        if self.kv_pages * self.kv_page_size > MAX_KV_TOKENS:
            raise ValueError(
                f"kv_pages * kv_page_size must be <= {MAX_KV_TOKENS} token slots, got "
                f"{self.kv_pages} * {self.kv_page_size} = {self.kv_pages * self.kv_page_size}"
            )
        if isinstance(self.max_wait_ms, bool) or not (
            isinstance(self.max_wait_ms, (int, float)) and self.max_wait_ms >= 0
        ):
            raise ValueError(f"max_wait_ms must be a number >= 0, got {self.max_wait_ms!r}")
        for name in ("qps_limit", "token_rate_limit"):
            v = getattr(self, name)
            if v is not None and (
                isinstance(v, bool) or not (isinstance(v, (int, float)) and 0 < v < math.inf)
            ):
                raise ValueError(f"{name} must be a finite number > 0 or None, got {v!r}")
        if not isinstance(self.cost, CostModel):
            raise TypeError(f"cost must be a CostModel, got {type(self.cost).__name__}")
        if self.kv_backend not in KV_BACKENDS:
            raise ValueError(f"kv_backend must be one of {KV_BACKENDS}, got {self.kv_backend!r}")
        if not isinstance(self.chunked_prefill, bool) or not isinstance(self.prefix_caching,
                                                                        bool):
            raise TypeError("chunked_prefill and prefix_caching must be bools")
        if not isinstance(self.tenants, tuple) or not all(
            isinstance(t, Tenant) for t in self.tenants
        ):
            raise TypeError(f"tenants must be a tuple of Tenant, got {self.tenants!r}")
        names = [t.name for t in self.tenants]
        if len(set(names)) != len(names):
            raise ValueError(f"tenants must have distinct names, got {names}")


@dataclass(frozen=True, slots=True)
class SimResult:
    """A finished run: the metrics table, per-request records and server counters."""

    metrics: dict[str, Any]
    records: list[RequestRecord]
    kv_utilisation: list[tuple[float, float]]  # (time s, used pages / kv_pages), per iteration
    scheduler_stats: dict[str, Any]
    admission_stats: dict[str, Any] | None
    kv_stats: dict[str, Any]
    tenant_admission_stats: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Run:
    """Live state of one request inside the server."""

    __slots__ = ("computed", "deadline", "ids", "kv_len", "rec", "req", "sid", "target")

    def __init__(
        self, req: SimRequest, rec: RequestRecord, sid: int, deadline: float, ids: np.ndarray
    ) -> None:
        self.req = req
        self.rec = rec
        self.sid = sid  # scheduler request id
        self.deadline = deadline
        self.computed = 0  # tokens whose KV is computed
        self.target = 0  # tokens to prefill in the current attempt (prompt + generated)
        self.kv_len = 0  # token ids handed to the KV backend (<= slots in its pages)
        self.ids = ids  # in the backend's id space (see kv_backends.TokenRemap)


class Simulator:
    """A discrete-event server (see the module docstring).

    Complexity per iteration: O(running requests + tokens hashed by the KV
    cache); per request O(log queued) in the scheduler and admission O(1).
    Memory: O(requests) records plus the KV cache's page bookkeeping (the pool
    is one float32 per token slot, mapped lazily by the OS).

    >>> from llmds.sim.arrivals import synthetic_workload, LengthDist
    >>> reqs = synthetic_workload(20, 5.0, prompt=LengthDist("constant", mean=32),
    ...                           output=LengthDist("constant", mean=4), seed=0)
    >>> res = Simulator(SimConfig(kv_pages=64)).run(reqs)
    >>> res.metrics["completed"], res.kv_stats["used_pages"]
    (20, 0)
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._progress: Callable[[int, int, str], None] | None = None

    # ------------------------------------------------------------------ setup
    def validate(self, requests: Sequence[SimRequest]) -> None:
        """Check that every request can run on this server, before anything is built. O(n).

        Raises ``TypeError`` for a non-``SimRequest`` and ``ValueError`` for a request
        larger than the KV pool or (continuous batching without chunked prefill)
        than ``max_num_batched_tokens``. ``run`` calls it first; ``llmds simulate``
        calls it to report such a workload as a usage error.
        """
        cfg = self.config
        ps = cfg.kv_page_size
        for r in requests:
            if not isinstance(r, SimRequest):
                raise TypeError(f"requests must be SimRequest objects, got {type(r).__name__}")
            need = -(-(r.prompt_tokens + r.output_tokens) // ps)
            if need > cfg.kv_pages:
                raise ValueError(
                    f"kv_pages={cfg.kv_pages} (x {ps} tokens) is smaller than request "
                    f"{r.request_id}, which needs {need} pages for {r.prompt_tokens} prompt + "
                    f"{r.output_tokens} output tokens"
                )
            if (
                cfg.mode == "continuous"
                and not cfg.chunked_prefill
                and r.prompt_tokens + r.output_tokens > cfg.max_num_batched_tokens
            ):
                raise ValueError(
                    f"request {r.request_id} needs up to {r.prompt_tokens + r.output_tokens} "
                    f"tokens in one prefill > max_num_batched_tokens="
                    f"{cfg.max_num_batched_tokens}; enable chunked_prefill or raise the budget"
                )

    def run(
        self,
        requests: Sequence[SimRequest],
        progress: Callable[[int, int, str], None] | None = None,
    ) -> SimResult:
        """Simulate ``requests`` (any order; sorted by arrival) to completion. O(events).

        ``progress(arrived, total, label)``, if given, is called every 256 iterations
        (the CLI's progress bar); it does not affect the simulation.
        """
        self.validate(requests)
        self._progress = progress
        cfg = self.config
        reqs = sorted(requests, key=lambda r: (r.arrival, r.request_id))
        self.now = 0.0
        clock = self._clock
        self._tag = 0.0  # SFQ start tag of the request being submitted (policy "fair")
        self._vtime = 0.0  # SFQ virtual time: tag of the last request taken from the queue
        self._finish_tag: dict[Any, float] = {}  # tenant -> finish tag of its last request
        self._tags: dict[int, float] = {}  # scheduler id -> start tag
        self._weights: dict[Any, float] = {t.name: float(t.weight) for t in cfg.tenants}
        self.sched = Scheduler(
            max_batch_size=cfg.max_num_seqs if cfg.mode == "micro_batch" else 1,
            max_wait_ms=cfg.max_wait_ms if cfg.mode == "micro_batch" else 0.0,
            priority_fn=_policy_fn(cfg.policy, lambda: self._tag),
            clock=clock,
            history=0,
        )
        self.admission: AdmissionController | None = None
        if cfg.qps_limit is not None or cfg.token_rate_limit is not None:
            self.admission = AdmissionController(
                qps_target=cfg.qps_limit if cfg.qps_limit is not None else 1e12,
                token_rate_limit=(
                    cfg.token_rate_limit if cfg.token_rate_limit is not None else 1e12
                ),
                clock=clock,
            )
        self.tenant_admission: dict[Any, AdmissionController] = {
            t.name: AdmissionController(
                qps_target=t.qps_limit if t.qps_limit is not None else 1e12,
                token_rate_limit=t.token_rate_limit if t.token_rate_limit is not None else 1e12,
                clock=clock,
            )
            for t in cfg.tenants
            if t.qps_limit is not None or t.token_rate_limit is not None
        }
        self.kv = make_backend(cfg.kv_backend, cfg.kv_page_size, cfg.kv_pages,
                               cfg.prefix_caching)
        self._mem_area = 0.0  # sum of active pages * iteration duration
        self._run_area = 0.0  # sum of running requests * iteration duration
        self._mem_peak = 0
        self._per_run_peak = 0.0
        self.records = [RequestRecord(r) for r in reqs]
        self.runs: dict[int, _Run] = {}  # scheduler id -> run
        self.kv_util: list[tuple[float, float]] = []
        self._reqs = reqs
        self._next = 0
        self.busy_s = 0.0  # simulated time spent running iterations
        if cfg.mode == "continuous":
            self._run_continuous()
        else:
            self._run_micro_batch()
        kv_stats = self.kv.stats()
        extra = {
            "kv_utilisation_mean": (
                float(np.mean([u for _, u in self.kv_util])) if self.kv_util else 0.0
            ),
            "kv_utilisation_max": max((u for _, u in self.kv_util), default=0.0),
            "num_iterations": len(self.kv_util),
            "busy_s": self.busy_s,
            "kv_backend": self.kv.name,
            "kv_pages_per_running_mean": (
                self._mem_area / self._run_area if self._run_area else 0.0
            ),
            "kv_pages_per_running_peak": self._per_run_peak,
            "kv_active_pages_mean": self._mem_area / self.busy_s if self.busy_s else 0.0,
            "kv_active_pages_peak": self._mem_peak,
        }
        return SimResult(
            metrics=summarize(self.records, extra),
            records=self.records,
            kv_utilisation=self.kv_util,
            scheduler_stats=self.sched.stats(),
            admission_stats=None if self.admission is None else self.admission.stats(),
            kv_stats=kv_stats,
            tenant_admission_stats={str(k): a.stats() for k, a in self.tenant_admission.items()},
        )

    def _clock(self) -> float:
        return self.now

    # --------------------------------------------------------------- arrivals
    def _arrive_until(self, t: float) -> None:
        """Admit/queue every arrival at or before ``t``, each at its own time. O(k log n)."""
        reqs, recs = self._reqs, self.records
        i = self._next
        n = len(reqs)
        adm = self.admission
        sched = self.sched
        per_tenant = self.tenant_admission
        fair = self.config.policy == "fair"
        backend_ids = self.kv.token_ids
        while i < n and reqs[i].arrival <= t:
            r, rec = reqs[i], recs[i]
            self.now = r.arrival
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
            self.runs[sid] = _Run(r, rec, sid, deadline, backend_ids(r))
            i += 1
        self._next = i
        self.now = max(self.now, t)

    def _next_arrival(self) -> float:
        return self._reqs[self._next].arrival if self._next < len(self._reqs) else math.inf

    def _dispatched(self, sids: Sequence[int]) -> None:
        """SFQ: virtual time becomes the start tag of the last request taken. O(k)."""
        tags = self._tags
        if tags:
            for sid in sids:
                self._vtime = max(self._vtime, tags.pop(sid))

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
        self.kv_util.append((self.now, 1.0 - self.kv.num_free_pages / self.config.kv_pages))
        if self._progress is not None and len(self.kv_util) % 256 == 0:
            self._progress(self._next, len(self._reqs), "simulating")

    # ------------------------------------------------------------- continuous
    def _start(self, run: _Run) -> bool:
        """Allocate KV for a (re)started request; False if it does not fit. O(T)."""
        gen = run.rec.generated
        target = run.req.prompt_tokens + gen
        try:
            cached = self.kv.allocate(run.sid, run.ids[:target])
        except CapacityError:
            return False
        run.target = target
        run.kv_len = target
        run.computed = min(cached, target - 1)  # the last token is always recomputed
        if run.rec.first_scheduled is None:
            run.rec.first_scheduled = self.now
            run.rec.cached_tokens = run.computed
        return True

    def _release(self, run: _Run) -> None:
        """Hand the last page's pending ids to the KVCache (no new page), then free. O(P)."""
        upto = min(run.computed, -(-run.kv_len // self.config.kv_page_size)
                   * self.config.kv_page_size)
        if upto > run.kv_len:
            self.kv.append_tokens(run.sid, run.ids[run.kv_len : upto])
            run.kv_len = upto
        self.kv.free(run.sid, run.computed)

    def _preempt(self, run: _Run) -> None:
        self._release(run)
        run.computed = 0
        run.rec.preemptions += 1

    def _run_continuous(self) -> None:
        cfg = self.config
        cost = cfg.cost
        kv, sched = self.kv, self.sched
        running: list[_Run] = []  # admission order
        waiting: deque[_Run] = deque()  # taken from the scheduler (or preempted), not running
        budget_max = cfg.max_num_batched_tokens
        chunked = cfg.chunked_prefill
        ps = cfg.kv_page_size
        while True:
            self._arrive_until(self.now)
            if not running and not waiting and len(sched) == 0:
                t = self._next_arrival()
                if t == math.inf:
                    return
                self._arrive_until(t)
                continue
            # 1. Decode slots: each running request past prefill needs one more KV slot.
            # Token ids reach the KVCache lazily, one call per new page: the pages are
            # allocated at the same step as with a call per token (14x fewer calls;
            # 10k synthetic requests: 25 s -> 11 s on a loaded 2-core machine).
            victims: set[int] = set()
            for run in running:
                if run.sid in victims or run.computed < run.target:
                    continue
                pos = run.req.prompt_tokens + run.rec.generated - 1
                cap = -(-run.kv_len // ps) * ps  # token slots in the pages held
                while True:
                    try:
                        if pos >= cap:
                            kv.append_tokens(run.sid, run.ids[run.kv_len : pos + 1])
                            run.kv_len = pos + 1
                        run.computed = pos  # the new token's KV is computed this step
                        run.target = pos + 1
                        break
                    except CapacityError:
                        cands = [r for r in running if r.sid not in victims]
                        victim = max(cands, key=lambda r: (r.deadline, r.rec.arrival, r.sid))
                        victims.add(victim.sid)
                        self._preempt(victim)
                        if victim is run:
                            break
            if victims:
                pre = [r for r in running if r.sid in victims]
                running = [r for r in running if r.sid not in victims]
                pre.sort(key=lambda r: (r.deadline, r.rec.arrival, r.sid), reverse=True)
                for r in pre:  # highest priority ends at the head
                    waiting.appendleft(r)
            # 2. Build the batch: running requests first, then new ones.
            budget = budget_max
            batched = 0
            sq = 0
            kv_read = 0
            work: list[tuple[_Run, int]] = []
            for run in running:
                left = run.target - run.computed
                if left <= 0:
                    continue
                if left == 1 and run.rec.generated > 0 and run.computed == run.target - 1:
                    take = 1
                else:
                    take = min(left, budget) if chunked else (left if left <= budget else 0)
                if take <= 0 or take > budget:
                    continue
                work.append((run, take))
                budget -= take
                if take == 1 and run.rec.generated > 0:
                    kv_read += run.computed
                else:
                    sq += take * take
                batched += take
            while budget > 0 and len(running) < cfg.max_num_seqs:
                if not waiting:
                    batch = sched.get_batch()
                    if not batch:
                        break
                    self._dispatched(batch)
                    waiting.append(self.runs[batch[0]])
                run = waiting[0]
                if not self._start(run):
                    break
                left = run.target - run.computed
                take = min(left, budget) if chunked else (left if left <= budget else 0)
                if take <= 0:
                    kv.free(run.sid, 0)  # does not fit this iteration: retry next one
                    break
                waiting.popleft()
                running.append(run)
                work.append((run, take))
                budget -= take
                sq += take * take
                batched += take
            if not work:
                if not running and waiting:
                    # Nothing fits while idle: impossible after validate unless a
                    # budget issue; move time forward to the next arrival to avoid a spin.
                    raise RuntimeError("simulator stalled: a waiting request can never start")
                t = self._next_arrival()
                if t == math.inf and not running:
                    return
                self._arrive_until(t)
                continue
            dt = cost.iteration_ms(batched, sq, kv_read) / 1000.0
            self._record_memory(len(running), dt)
            self.now += dt
            self.busy_s += dt
            t = self.now
            self._record_util()
            finished: list[_Run] = []
            for run, take in work:
                run.computed += take
                if run.computed >= run.target:  # prefill done or decode step: one token out
                    if take > 1 or run.rec.generated == 0:  # a prefill just completed
                        kv.cache_prefill(run.sid, run.computed)
                    run.rec.emit(t)
                    if run.rec.generated >= run.req.output_tokens:
                        finished.append(run)
            if finished:
                done = {r.sid for r in finished}
                running = [r for r in running if r.sid not in done]
                for run in finished:
                    self._release(run)
                    run.rec.finish = t
                    run.rec.status = FINISHED
                    del self.runs[run.sid]
                sched.complete_batch([r.sid for r in finished])

    # ------------------------------------------------------------ micro-batch
    def _run_micro_batch(self) -> None:
        cfg = self.config
        cost = cfg.cost
        kv, sched = self.kv, self.sched
        deferred: list[_Run] = []
        while True:
            self._arrive_until(self.now)
            if deferred:
                batch_runs, deferred = deferred, []
            else:
                ids = sched.get_batch()
                if ids is None:
                    t_arr = self._next_arrival()
                    due = sched.next_release_time()
                    if due is None and t_arr == math.inf:
                        return
                    if t_arr == math.inf and (due is None or due == math.inf):
                        ids = sched.get_batch(force=True)  # drain: nothing else will come
                    else:
                        t = min(t_arr, math.inf if due is None else due)
                        if t <= self.now:  # float edge: the rule fires now
                            ids = sched.get_batch(force=True)
                        else:
                            self._arrive_until(t)
                            self.now = t
                            continue
                batch_runs = [self.runs[i] for i in ids or []]
                self._dispatched(ids or [])
            # Reserve KV for prompt + output of each request that fits.
            placed: list[_Run] = []
            for run in batch_runs:
                n = run.req.prompt_tokens + run.req.output_tokens
                try:
                    cached = kv.allocate(run.sid, run.ids[:n])
                except CapacityError:
                    deferred.append(run)
                    continue
                run.computed = min(cached, run.req.prompt_tokens - 1)
                if run.rec.first_scheduled is None:
                    run.rec.first_scheduled = self.now
                    run.rec.cached_tokens = run.computed
                placed.append(run)
            if not placed:
                raise RuntimeError("simulator stalled: a batch's KV does not fit an empty pool")
            t0 = self.now
            self._record_util()
            chunks = np.array([r.req.prompt_tokens - r.computed for r in placed], dtype=np.float64)
            t = t0 + cost.iteration_ms(chunks.sum(), (chunks * chunks).sum(), 0) / 1000.0
            outs = np.array([r.req.output_tokens for r in placed], dtype=np.int64)
            prompts = np.array([r.req.prompt_tokens for r in placed], dtype=np.float64)
            max_out = int(outs.max())
            # decode step j (1..max_out-1) runs the requests with output_tokens > j
            steps = np.arange(1, max_out, dtype=np.int64)
            order = np.argsort(outs, kind="stable")
            sorted_out = outs[order]
            sorted_prompt_suffix = np.concatenate(
                (np.cumsum(prompts[order][::-1])[::-1], [0.0])
            )
            first_active = np.searchsorted(sorted_out, steps, side="right")
            count = len(placed) - first_active
            kv_read = sorted_prompt_suffix[first_active] + steps * count
            step_ms = (
                cost.overhead_ms + cost.per_token_ms * count + cost.per_kv_token_ms * kv_read
            )
            times = t + np.concatenate(([0.0], np.cumsum(step_ms) / 1000.0))  # token j at times[j]
            for run, o in zip(placed, outs.tolist(), strict=True):
                rec = run.rec
                rec.first_token = float(times[0])
                rec.last_token = float(times[o - 1])
                if o > 1:
                    rec.itls.frombytes(np.diff(times[:o]).tobytes())
                rec.generated = o
                rec.finish = rec.last_token
            self.now = float(times[-1])
            self._record_memory(len(placed), self.now - t0)
            self.busy_s += self.now - t0
            # Arrivals during the batch are queued at their own times.
            self._arrive_until(self.now)
            for run in placed:
                kv.free(run.sid, run.req.prompt_tokens + run.req.output_tokens - 1)
                run.rec.status = FINISHED
                del self.runs[run.sid]
            sched.complete_batch([r.sid for r in placed])


def simulate(
    requests: Sequence[SimRequest],
    config: SimConfig | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SimResult:
    """Run one simulation (what ``llmds simulate`` calls). O(events)."""
    return Simulator(config).run(requests, progress)
