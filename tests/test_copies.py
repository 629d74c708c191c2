"""One copy contract for the serving structures (issue 13): copy, deepcopy and pickle.

Every structure below must give, through ``copy.copy``, ``copy.deepcopy`` and a pickle
round trip, an object that (1) observes exactly like the original at that moment,
(2) passes ``_check()``, and (3) is independent: changing the copy leaves the original
as it was, and the other way round. Classes with a lock (Scheduler,
AdmissionController, MetricsCollector) get a fresh lock and share their clock;
MemoryProfiler measures its own process and refuses to be copied.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from llmds.admissions import AdmissionController
from llmds.cmsketch import CountMinSketch
from llmds.indexed_heap import IndexedHeap
from llmds.scheduler import Scheduler
from llmds.token_lru import TokenLRU
from llmds.utils import MemoryProfiler, MetricsCollector, Timer
from tests.test_admissions import FakeClock

_KEYS = itertools.count()  # fresh keys, so every change is a new state
COPIERS: dict[str, Callable[[Any], Any]] = {
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "pickle": lambda obj: pickle.loads(pickle.dumps(obj)),
}


@dataclass
class Kind:
    make: Callable[[], Any]
    change: Callable[[Any], Any]  # a mutation that changes what ``observe`` sees
    observe: Callable[[Any], Any]


def _heap() -> IndexedHeap:
    h = IndexedHeap(max_heap=True)
    h.push_many(range(40), [float(i % 7) for i in range(40)])
    h.pop()
    return h


def _sketch() -> CountMinSketch:
    cms = CountMinSketch(64, 3)
    cms.add_many(["a", "b", "a", 7])
    return cms


def _lru() -> TokenLRU:
    cache: TokenLRU = TokenLRU(10, len)
    cache.put("a", "xx")
    cache.put("b", "yyy")
    cache.get("a")
    return cache


def _scheduler() -> Scheduler:
    s = Scheduler(4, 50.0, clock=FakeClock())
    for tokens in range(6):
        s.submit(tokens, slo_ms=100.0 if tokens % 2 else None)
    s.get_batch()
    return s


def _admission() -> AdmissionController:
    ac = AdmissionController(2.0, 100, clock=FakeClock())
    ac.try_admit(60)
    ac.try_admit(60)
    return ac


def _collector() -> MetricsCollector:
    c = MetricsCollector(clock=FakeClock())
    for ms in (1.0, 2.0, 3.0):
        c.record_latency(ms)
    return c


KINDS = {
    "IndexedHeap": Kind(_heap, lambda h: h.pop(), lambda h: sorted(h._entries())),
    "CountMinSketch": Kind(_sketch, lambda c: c.add("a", 5),
                           lambda c: (c._table.tobytes(), c.total)),
    "TokenLRU": Kind(_lru, lambda c: c.put(next(_KEYS), "z"), lambda c: list(c.items())),
    "Scheduler": Kind(_scheduler, lambda s: s.submit(99),
                      lambda s: (s.queued_ids(), s.num_in_flight, s.stats())),
    "AdmissionController": Kind(_admission, lambda a: a.record_request(10), lambda a: a.stats()),
    "MetricsCollector": Kind(_collector, lambda c: c.record_latency(9.0),
                             lambda c: c.get_metrics()),
}


@pytest.mark.parametrize("how", COPIERS)
@pytest.mark.parametrize("kind", KINDS)
def test_copies_are_equal_and_independent(kind: str, how: str) -> None:
    k = KINDS[kind]
    orig = k.make()
    before = k.observe(orig)
    dup = COPIERS[how](orig)
    assert type(dup) is type(orig) and k.observe(dup) == before
    if hasattr(dup, "_check"):
        dup._check()
    k.change(dup)
    assert k.observe(orig) == before  # the original did not see the copy's change
    k.change(orig)
    k.change(orig)
    assert k.observe(dup) != k.observe(orig)
    if hasattr(dup, "_check"):
        dup._check()
        orig._check()


@pytest.mark.parametrize("how", ["copy", "deepcopy"])
@pytest.mark.parametrize("kind", ["Scheduler", "AdmissionController", "MetricsCollector"])
def test_locked_structures_get_their_own_lock_and_share_the_clock(kind: str, how: str) -> None:
    orig = KINDS[kind].make()
    dup = COPIERS[how](orig)
    assert dup._lock is not orig._lock and dup._clock is orig._clock
    with orig._lock:  # the original's lock held: the copy must still work
        KINDS[kind].change(dup)


def test_scheduler_copy_under_concurrent_submits_is_consistent() -> None:
    s = Scheduler(8, 50.0)
    stop = threading.Event()

    def producer() -> None:
        while not stop.is_set():
            s.submit(3)
            s.get_batch()

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(20):
            copy.deepcopy(s)._check()  # a snapshot taken under the lock
    finally:
        stop.set()
        for t in threads:
            t.join()
    s._check()


def test_a_lambda_clock_is_named_by_pickle_but_deepcopies() -> None:
    s = Scheduler(clock=lambda: 0.0)
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(s)
    assert copy.deepcopy(s)._clock is s._clock


def test_memory_profiler_refuses_copies_with_a_reason() -> None:
    prof = MemoryProfiler()
    for how in COPIERS.values():
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            how(prof)


def test_timer_pickles() -> None:
    with Timer() as t:
        pass
    assert pickle.loads(pickle.dumps(t)).elapsed == t.elapsed
