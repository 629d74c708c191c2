"""Dynamic micro-batching scheduler over an :class:`~llmds.indexed_heap.IndexedHeap`.

Requests wait in a priority queue; the consumer asks for a batch and gets one only
when a release rule fires, so small requests are grouped into batches without any
of them waiting longer than ``max_wait_ms`` or past its SLO deadline.

Release rules (checked in this order by ``get_batch``; the first that holds names
the release in ``stats()["releases"]``):

1. ``force`` -- ``get_batch(force=True)`` releases whatever is queued;
2. ``full`` -- at least ``max_batch_size`` requests are queued, or (with a token
   budget) the queued requests hold at least ``max_batch_tokens`` tokens;
3. ``max_wait`` -- the oldest queued request has waited ``max_wait_ms``:
   ``now >= arrival + max_wait_ms / 1000``;
4. ``slo`` -- a queued request's deadline is about to be missed:
   ``now >= arrival + (slo_ms - slo_margin_ms) / 1000`` (``slo_margin_ms`` is the
   time the caller needs to run a batch).

``next_release_time()`` says when rule 3 or 4 will fire, so an event-driven
simulator can jump the clock there and a blocking consumer knows how long to sleep.

Batch order: with the default policy, earliest deadline first (requests without an
SLO have an infinite deadline, or ``arrival + default_slo_ms`` if that is set),
then fewest tokens, then FIFO (request id). With ``priority_fn(req)``, higher
values run first and FIFO breaks ties. A batch takes requests in that order until
it holds ``max_batch_size`` requests or the next request would exceed
``max_batch_tokens`` (no skipping ahead: the order is strict).

Time comes from the injectable ``clock`` (seconds, non-decreasing; default
``time.monotonic``), so with a fake clock the scheduler is fully deterministic.
The per-request record (:class:`Request`, importable from here) and the dispatch
statistics behind ``stats()`` live in :mod:`llmds._request`.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from llmds._locked import LockedState
from llmds._request import (
    CANCELLED,
    COMPLETED,
    IN_FLIGHT,
    QUEUED,
    DispatchStats,
    Request,
)
from llmds._validate import check_bool, check_int, check_number, show
from llmds.indexed_heap import IndexedHeap

__all__ = ["Request", "Scheduler"]

# Default-order tie-break packs (tokens, submission number) into one int64:
# tokens in the high 31 bits, the submission number modulo 2**32 in the low bits.
_TOKEN_LIMIT = 2**31 - 1
_SEQ_BITS = 32
_SEQ_MASK = (1 << _SEQ_BITS) - 1


class Scheduler(LockedState):
    """Dynamic micro-batching with SLO-aware release rules (see the module docstring).

    Parameters: ``max_batch_size`` (>= 1) requests per batch; ``max_wait_ms``
    (>= 0, ``inf`` disables the rule) the longest a request waits for a fuller
    batch; ``priority_fn(req) -> number``, higher runs first (default: earliest
    deadline, fewest tokens, FIFO). Keyword-only: ``max_batch_tokens`` per-batch
    token budget (a single request larger than it is refused at submit);
    ``slo_margin_ms`` time reserved before a deadline; ``default_slo_ms`` deadline
    for requests submitted without one (ordering and release); ``clock`` returning
    seconds; ``history`` how many completed requests ``drain_completed`` and the
    wait-time statistics keep.

    Invariants (asserted by ``_check``): every queued request is in the priority
    heap and the arrival-ordered index, and nowhere else; in-flight requests are in
    neither; ``queued_tokens`` is the sum of queued tokens; with ``priority_fn`` the
    deadline heap holds exactly the queued requests that have a finite deadline.

    Complexity (n queued, k per batch): ``submit``, ``cancel``,
    ``update_priority`` O(log n); ``get_batch`` O(1) when nothing is released,
    O(k log n) otherwise; ``complete_batch`` O(k); ``next_release_time``,
    ``request`` O(1); ``stats`` O(history). Memory: one ``Request`` plus O(1)
    index entries per queued or in-flight request, and up to ``history`` completed
    requests.

    Thread safety: every public method takes one internal lock, so any number of
    producer threads may ``submit`` while a consumer calls ``get_batch`` (use
    ``block=True`` to sleep until a batch is due). ``priority_fn`` runs under that
    lock and must not call back into the scheduler.

    Copies: ``copy.copy``, ``copy.deepcopy`` and ``pickle`` give an independent
    scheduler with the same queue, in-flight requests and statistics, snapshotted
    under the lock; the copy gets a fresh lock and no blocked consumers. ``clock``
    and ``priority_fn`` are shared by the copies (a time source and a policy, not
    state) and must be picklable for ``pickle`` (``time.monotonic`` and
    module-level functions are; a lambda is refused with pickle's own error).

    >>> t = [0.0]
    >>> s = Scheduler(max_batch_size=2, max_wait_ms=50.0, clock=lambda: t[0])
    >>> a = s.submit(tokens=100); b = s.submit(tokens=10, slo_ms=30.0)
    >>> s.get_batch()  # full: two requests queued
    [1, 0]
    >>> s.complete_batch([1, 0])
    >>> c = s.submit(tokens=5)
    >>> s.get_batch() is None  # one request, nothing due yet
    True
    >>> t[0] = 0.05; s.get_batch()  # waited max_wait_ms
    [2]
    """

    def __init__(
        self,
        max_batch_size: int = 32,
        max_wait_ms: float = 50.0,
        priority_fn: Callable[[Request], float] | None = None,
        *,
        max_batch_tokens: int | None = None,
        slo_margin_ms: float = 0.0,
        default_slo_ms: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        history: int = 100_000,
    ) -> None:
        self.max_batch_size = check_int(max_batch_size, "max_batch_size", minimum=1)
        self.max_wait_ms = check_number(max_wait_ms, "max_wait_ms", minimum=0.0, finite=False)
        if priority_fn is not None and not callable(priority_fn):
            raise TypeError(f"priority_fn must be callable or None, got {show(priority_fn)}")
        self.priority_fn = priority_fn
        self.max_batch_tokens = (
            None if max_batch_tokens is None
            else check_int(max_batch_tokens, "max_batch_tokens", minimum=1)
        )
        self.slo_margin_ms = check_number(slo_margin_ms, "slo_margin_ms", minimum=0.0)
        self.default_slo_ms = (
            None if default_slo_ms is None
            else check_number(default_slo_ms, "default_slo_ms", minimum=0.0, finite=False)
        )
        if not callable(clock):
            raise TypeError(f"clock must be callable, got {show(clock)}")
        self._clock = clock
        self._history = check_int(history, "history", minimum=0, maximum=sys.maxsize)

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._heap = IndexedHeap()  # request id -> priority (min first)
        # Only with priority_fn: the heap no longer orders by deadline, so the SLO
        # rule needs its own index of queued deadlines.
        self._deadlines: IndexedHeap | None = IndexedHeap() if priority_fn is not None else None
        self._queued: OrderedDict[int, Request] = OrderedDict()  # arrival (submission) order
        self._in_flight: dict[int, Request] = {}
        self._completed: deque[Request] = deque(maxlen=self._history)
        self._waiters = 0  # consumers blocked in get_batch
        self._queued_tokens = 0
        self._next_id = 0
        self._closed = False
        self._stats = DispatchStats(self._history)  # counters and queue waits
        self._counts = self._stats.counts  # bound once: submit counts every request

    # -- producers ------------------------------------------------------------------

    def submit(self, tokens: int, slo_ms: float | None = None) -> int:
        """Queue a request of ``tokens`` tokens; return its request id. O(log n).

        ``slo_ms``: the request must be dispatched within this many ms of
        arrival (``None``: no deadline). Raises TypeError/ValueError for a
        non-int or negative ``tokens``, a NaN or negative ``slo_ms``, or tokens
        above ``max_batch_tokens``; RuntimeError after ``close()``.
        """
        # Fast paths for the common types; the helpers produce the error messages.
        if type(tokens) is not int or not 0 <= tokens <= _TOKEN_LIMIT:
            tokens = check_int(tokens, "tokens", minimum=0, maximum=_TOKEN_LIMIT)
        budget = self.max_batch_tokens
        if budget is not None and tokens > budget:
            raise ValueError(
                f"tokens ({tokens}) exceeds max_batch_tokens ({budget}); it could never be batched"
            )
        if slo_ms is not None and (type(slo_ms) is not float or not slo_ms >= 0.0):
            slo_ms = check_number(slo_ms, "slo_ms", minimum=0.0, finite=False)
        with self._lock:
            if self._closed:
                raise RuntimeError("submit on a closed Scheduler")
            now = self._clock()
            if type(now) is not float or now - now != 0.0:  # not a finite float
                now = check_number(now, "clock()")
            request_id = self._next_id
            budget_ms = slo_ms if slo_ms is not None else self.default_slo_ms
            deadline = math.inf if budget_ms is None else now + budget_ms / 1000.0
            req = Request(request_id, tokens, slo_ms, now, deadline)
            if self.priority_fn is None:
                score, tie = deadline, (tokens << _SEQ_BITS) | (request_id & _SEQ_MASK)
            else:
                score, tie = self._priority(req)  # may raise: nothing changed yet
            self._next_id = request_id + 1
            self._heap.push(request_id, score, tie)
            if self._deadlines is not None and deadline != math.inf:
                self._deadlines.push(request_id, deadline, request_id)
            req.order_key = (score, tie)
            self._queued[request_id] = req
            self._queued_tokens += tokens
            self._counts["submitted"] += 1
            if self._waiters:  # Condition.notify costs ~1 us even with nobody waiting
                self._cond.notify()
        return request_id

    def _priority(self, req: Request) -> tuple[float, int]:
        """Heap key of ``req``: (score, tie), smaller first."""
        fn = self.priority_fn
        if fn is None:
            return req.deadline, (req.tokens << _SEQ_BITS) | (req.request_id & _SEQ_MASK)
        value = fn(req)
        try:
            p = check_number(value, "priority_fn(req)", finite=False)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{exc} (request tokens={req.tokens})") from None
        return -p, req.request_id

    def _now(self) -> float:
        now = self._clock()
        if type(now) is not float or now - now != 0.0:
            now = check_number(now, "clock()")
        return now

    def _dequeue(self, rid: int) -> Request:
        """Drop a queued request from every index (heap entry already popped or not)."""
        req = self._queued.pop(rid)
        if rid in self._heap:
            self._heap.delete(rid)
        if self._deadlines is not None and rid in self._deadlines:
            self._deadlines.delete(rid)
        self._queued_tokens -= req.tokens
        return req

    def update_priority(self, request_id: int, new_tokens: int) -> None:
        """Set a queued request's token count and re-rank it. O(log n).

        Raises KeyError if ``request_id`` is not queued (unknown, in flight or
        done) and TypeError/ValueError for bad ``new_tokens``; nothing changes then.
        """
        if type(request_id) is not int:
            request_id = check_int(request_id, "request_id")
        new_tokens = check_int(new_tokens, "new_tokens", minimum=0, maximum=_TOKEN_LIMIT)
        budget = self.max_batch_tokens
        if budget is not None and new_tokens > budget:
            raise ValueError(f"new_tokens ({new_tokens}) exceeds max_batch_tokens ({budget})")
        with self._cond:
            req = self._queued_request(request_id)
            old = req.tokens
            req.tokens = new_tokens
            try:
                score, tie = self._priority(req)
            except BaseException:
                req.tokens = old
                raise
            self._heap.delete(request_id)
            self._heap.push(request_id, score, tie)
            req.order_key = (score, tie)
            self._queued_tokens += new_tokens - old
            if self._waiters:  # a token budget may now be reached
                self._cond.notify()

    def cancel(self, request_id: int) -> Request:
        """Remove a queued request and return its record. O(log n).

        Raises KeyError if ``request_id`` is not queued.
        """
        if type(request_id) is not int:
            request_id = check_int(request_id, "request_id")
        with self._cond:
            self._queued_request(request_id)
            req = self._dequeue(request_id)
            req.state = CANCELLED
            self._counts["cancelled"] += 1
            return req

    def _queued_request(self, request_id: int) -> Request:
        req = self._queued.get(request_id)
        if req is not None:
            return req
        where = "in flight" if request_id in self._in_flight else "unknown or already done"
        raise KeyError(f"request_id {request_id!r} is not queued ({where})") from None

    # -- consumer -------------------------------------------------------------------

    def _release_reason(self, now: float, force: bool) -> str | None:
        """Which rule releases a batch at ``now`` (None: keep waiting). O(1)."""
        queued = self._queued
        if not queued:
            return None
        if force:
            return "force"
        if len(queued) >= self.max_batch_size:
            return "full"
        budget = self.max_batch_tokens
        if budget is not None and self._queued_tokens >= budget:
            return "full"
        oldest = next(iter(queued.values()))
        # Same expression as _next_due, so next_release_time() is exact in floats.
        if now >= oldest.arrival + self.max_wait_ms / 1000.0:
            return "max_wait"
        deadline = self._earliest_deadline()
        if now >= deadline - self.slo_margin_ms / 1000.0:
            return "slo"
        return None

    def _earliest_deadline(self) -> float:
        if self._deadlines is None:
            top = self._heap.peek()  # default order: the heap's score is the deadline
            return math.inf if top is None else top[0]
        top = self._deadlines.peek()
        return math.inf if top is None else top[0]

    def _next_due(self) -> float | None:
        """Clock time at which rule 3 or 4 fires for the current queue (None if empty)."""
        if not self._queued:
            return None
        oldest = next(iter(self._queued.values()))
        due = oldest.arrival + self.max_wait_ms / 1000.0
        deadline = self._earliest_deadline()
        if deadline != math.inf:
            due = min(due, deadline - self.slo_margin_ms / 1000.0)
        return due

    def next_release_time(self) -> float | None:
        """Clock time at which ``get_batch()`` will release a batch. O(1).

        The current time if a batch is due now, None if the queue is empty, and
        ``inf`` if only ``force`` (or more requests) can release one.
        """
        with self._cond:
            now = self._now()
            if self._release_reason(now, False) is not None:
                return now
            return self._next_due()

    def get_batch(
        self, force: bool = False, block: bool = False, timeout: float | None = None
    ) -> list[int] | None:
        """Release a batch of request ids if a release rule holds, else None. O(k log n).

        With ``block=True`` wait (on a condition variable, woken by ``submit``,
        ``wakeup`` and ``close``) until a batch is released, the scheduler is
        closed and empty, or ``timeout`` seconds of real time pass; a closed
        scheduler releases its remaining requests without waiting for the rules.
        The rules are evaluated with the scheduler's clock every time the thread
        wakes.
        """
        if force.__class__ is not bool:
            force = check_bool(force, "force")
        if block.__class__ is not bool:
            block = check_bool(block, "block")
        if timeout is not None:
            timeout = check_number(timeout, "timeout", minimum=0.0, finite=False)
            if timeout == math.inf:
                timeout = None
        with self._cond:
            if not block:
                return self._take(self._now(), force)
            end = None if timeout is None else time.monotonic() + timeout
            while True:
                now = self._now()
                batch = self._take(now, force or self._closed)
                if batch is not None or (self._closed and not self._queued):
                    return batch
                wait = None
                due = self._next_due()
                if due is not None and due != math.inf:
                    wait = max(due - now, 0.0)
                if end is not None:
                    left = end - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                if wait is not None and wait > threading.TIMEOUT_MAX:
                    wait = threading.TIMEOUT_MAX  # Condition.wait overflows above it
                self._waiters += 1
                try:
                    self._cond.wait(wait)
                finally:
                    self._waiters -= 1

    def _take(self, now: float, force: bool) -> list[int] | None:
        reason = self._release_reason(now, force)
        if reason is None:
            return None
        heap, queued, in_flight = self._heap, self._queued, self._in_flight
        budget = self.max_batch_tokens
        limit = self.max_batch_size
        batch: list[int]
        if budget is None:
            batch = [rid for _, rid in heap.pop_many(limit)]  # one kernel call
        else:
            batch = []
            total = 0
            while len(batch) < limit and heap:
                rid = heap.peek()[1]  # type: ignore[index]
                tokens = queued[rid].tokens
                if total + tokens > budget:
                    break
                heap.pop()
                total += tokens
                batch.append(rid)
        deadlines = self._deadlines
        waits: list[float] = []
        missed = 0
        for rid in batch:
            req = queued.pop(rid)
            if deadlines is not None and req.deadline != math.inf:
                deadlines.delete(rid)
            self._queued_tokens -= req.tokens
            req.state = IN_FLIGHT
            req.dispatch_time = now
            in_flight[rid] = req
            waits.append((now - req.arrival) * 1000.0)
            if req.slo_ms is not None and now > req.arrival + req.slo_ms / 1000.0:
                missed += 1
        self._stats.record_batch(reason, waits, missed)
        return batch

    def complete_batch(self, request_ids: Iterable[int]) -> None:
        """Mark in-flight requests done and record their completion time. O(k).

        All-or-nothing: raises KeyError if any id is not in flight (unknown,
        still queued, already completed) and ValueError for a repeated id.
        """
        if isinstance(request_ids, (str, bytes, Mapping)) or not isinstance(request_ids, Iterable):
            raise TypeError(f"request_ids must be an iterable of ints, got {show(request_ids)}")
        ids = [
            rid if type(rid) is int else check_int(rid, f"request_ids[{i}]")
            for i, rid in enumerate(request_ids)
        ]
        with self._cond:
            in_flight = self._in_flight
            seen: set[int] = set()
            for rid in ids:
                if rid not in in_flight:
                    where = "queued" if rid in self._queued else "unknown or done"
                    raise KeyError(f"request_id {rid!r} is not in flight ({where})")
                if rid in seen:
                    raise ValueError(f"request_id {rid!r} appears twice in request_ids")
                seen.add(rid)
            now = self._now()
            for rid in ids:
                req = in_flight.pop(rid)
                req.state = COMPLETED
                req.completion_time = now
                if self._history:
                    self._completed.append(req)
            self._counts["completed"] += len(ids)

    # -- lifecycle ------------------------------------------------------------------

    # -- copy / pickle ----------------------------------------------------------------

    # LockedState: copies and pickles skip the locks and share clock and policy.
    _LOCKS = ("_lock", "_cond")
    _SHARED = ("_clock", "priority_fn")

    def _new_locks(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiters = 0  # blocked consumers stay with the original

    def wakeup(self) -> None:
        """Wake blocked ``get_batch`` calls to re-check the rules (after moving a fake clock)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Refuse further submits; blocked consumers drain the queue, then get None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- inspection -----------------------------------------------------------------

    def __len__(self) -> int:
        """Number of queued requests (not counting in-flight ones)."""
        return len(self._queued)

    @property
    def queued_tokens(self) -> int:
        """Tokens held by queued requests."""
        return self._queued_tokens

    @property
    def num_in_flight(self) -> int:
        return len(self._in_flight)

    def request(self, request_id: int) -> Request | None:
        """The record of a queued or in-flight request, else None. O(1)."""
        if type(request_id) is not int:
            request_id = check_int(request_id, "request_id")
        with self._cond:
            req = self._queued.get(request_id)
            return req if req is not None else self._in_flight.get(request_id)

    def queued_ids(self) -> list[int]:
        """Queued request ids in the order batches would take them. O(n log n)."""
        with self._cond:
            return [r.request_id for r in sorted(self._queued.values(), key=lambda r: r.order_key)]

    def drain_completed(self) -> list[Request]:
        """Completed requests since the last drain (at most ``history``), oldest first."""
        with self._cond:
            out = list(self._completed)
            self._completed.clear()
            return out

    def stats(self) -> dict[str, Any]:
        """Counters, release reasons and queue waits in ms. O(history).

        ``wait_ms``: ``count``, ``mean`` and ``max`` over every dispatched request;
        ``p50``/``p95``/``p99`` over the last ``history`` of them (``window``).
        """
        with self._cond:
            return self._stats.snapshot(len(self._queued), len(self._in_flight),
                                        self._queued_tokens)

    def _check(self) -> None:
        """Assert the invariants. O(n log n); tests call it after each step."""
        with self._cond:
            heap, queued = self._heap, self._queued
            heap._check()
            assert set(heap) == set(queued), "heap and queue index disagree"
            assert not set(queued) & set(self._in_flight), "a request is queued and in flight"
            assert self._queued_tokens == sum(r.tokens for r in queued.values()), "token sum"
            arrivals = [r.request_id for r in queued.values()]
            assert arrivals == sorted(arrivals), "arrival index out of order"
            for rid, req in queued.items():
                assert req.state == QUEUED and req.request_id == rid
                assert heap.get_score(rid) == req.order_key[0], f"stale heap score of {rid}"
            for rid, req in self._in_flight.items():
                assert req.state == IN_FLIGHT and req.dispatch_time is not None, rid
            if self._deadlines is not None:
                self._deadlines._check()
                want = {rid for rid, r in queued.items() if r.deadline != math.inf}
                assert set(self._deadlines) == want, "deadline index disagrees"
