"""Hostile-input probe of the serving/measuring structures (issue 12, section 3).

Every public method of CountMinSketch, TokenLRU, IndexedHeap, Scheduler,
AdmissionController and the ``llmds.utils`` helpers is called with values a hostile
or careless caller passes: None, bools where ints are expected, floats where ints
are expected, NaN/inf, strings, huge ints, negative sizes, unhashable keys,
lists/dicts, empty sequences. Each call must

* raise the expected ``TypeError``/``ValueError``/``KeyError``/``IndexError``,
* with a message naming the argument (and never a Python internal such as
  ``unhashable type: 'list'`` or ``'<' not supported``),
* and leave the structure exactly as it was.

The cases are generated from small tables (argument kind -> hostile values), so a
new method gets the whole battery by adding one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from llmds.admissions import AdmissionController
from llmds.cmsketch import CountMinSketch
from llmds.indexed_heap import IndexedHeap
from llmds.scheduler import Scheduler
from llmds.token_lru import TokenLRU
from llmds.utils import (
    MemoryProfiler,
    MetricsCollector,
    calculate_statistics,
    compute_percentiles,
    memory_profiler,
    student_t_ppf,
)
from tests.test_admissions import FakeClock

NAN, INF = math.nan, math.inf
T, V = TypeError, ValueError

# Phrases of Python/NumPy internals that name nothing the caller wrote.
INTERNAL = (
    "unhashable type",
    "is not iterable",
    "not supported between",
    "cannot be interpreted as",
    "has no attribute",
    "could not convert",
    "not subscriptable",
    "argument must be",
    "object is not callable",
    "unsupported operand",
    "too large to convert",
    "cannot convert float",
    "invalid literal",
    "expected non-negative",
    "'NoneType' object",
    "int too large",
)

# Hostile values by the kind of argument, with the error each must raise.
NOT_A_NUMBER = [(None, T), ("1", T), ([1], T), ({}, T), (True, T), (1j, T)]
INT_TYPE = [*NOT_A_NUMBER, (1.5, T), (2.0, T), (NAN, T), (INF, T)]
INT_GE0 = [*INT_TYPE, (-1, V)]
INT_GE1 = [*INT_GE0, (0, V)]
NUMBER = [*NOT_A_NUMBER, (NAN, V), (10**400, V)]  # inf allowed
FINITE = [*NUMBER, (INF, V)]
FINITE_GE0 = [*FINITE, (-1, V), (-INF, V)]
FINITE_GT0 = [*FINITE_GE0, (0, V), (0.0, V)]
UNHASHABLE = [([1], T), ({}, T), ({1}, T), ((1, [2]), T)]
NOT_BOOL = [("yes", T), (1, T), (None, T), (0.0, T)]
NOT_CALLABLE = [(5, T), ("len", T)]


def no_none(values: list[tuple[Any, type[Exception]]]) -> list[tuple[Any, type[Exception]]]:
    """The hostile values for an argument where None is valid (a default)."""
    return [(v, e) for v, e in values if v is not None]


ITEM = [(None, T), (1.5, T), ([1], T), ({}, T), (True, T), (object(), T), (2**64, V)]
INT_IDS = [(None, T), (True, T), (1.0, T), ("0", T), ([1], T)]  # request ids


@dataclass
class Case:
    id: str
    make: Callable[[], Any]
    call: Callable[[Any, Any], Any]
    value: Any
    exc: type[Exception]
    name: str
    state: Callable[[Any], Any] = lambda obj: None


def expand(label, make, state, call, values, name) -> Iterator[Case]:
    for i, (value, exc) in enumerate(values):
        yield Case(f"{label}[{i}:{type(value).__name__}]", make, call, value, exc, name, state)


# ------------------------------------------------------------------ structures
def make_cms() -> CountMinSketch:
    cms = CountMinSketch(64, 3)
    cms.add_many(["a", "b", "a"])
    return cms


def cms_state(c: CountMinSketch) -> Any:
    return c._table.tobytes(), c.total, getattr(c, "_capped", None)


def make_lru() -> TokenLRU:
    cache: TokenLRU = TokenLRU(10, len)
    cache.put("a", "xx")
    cache.put("b", "yyy")
    return cache


def lru_state(c: TokenLRU) -> Any:
    return list(c._data.items()), c.total_tokens()


def make_heap() -> IndexedHeap:
    h = IndexedHeap()
    h.push_many([1, 2, 3], [3.0, 1.0, 2.0])
    return h


def heap_state(h: IndexedHeap) -> Any:
    return sorted(h._entries(), key=repr), len(h)


def clock_reads(make: Callable[[], Any], value: Any) -> Callable[[], Any]:
    """``make()``, then its fake clock reads ``value`` (the object was built on a good one)."""
    def build() -> Any:
        obj = make()
        obj._clock.t = value
        return obj
    return build


def make_sched() -> Scheduler:
    s = Scheduler(max_batch_size=4, max_wait_ms=1000.0, max_batch_tokens=100,
                  clock=FakeClock(1.0))
    s.submit(10)
    s.submit(20)
    s.get_batch(force=True)  # 0 and 1 in flight
    s.submit(30)  # 2 queued
    return s


def sched_state(s: Scheduler) -> Any:
    st = s.stats()
    return s.queued_ids(), s.queued_tokens, s.num_in_flight, st["submitted"], st["batches"]


def make_ac() -> AdmissionController:
    return AdmissionController(qps_target=5.0, token_rate_limit=100.0, clock=FakeClock(1.0))


def ac_state(ac: AdmissionController) -> Any:
    # Raw fields: stats() would read the (possibly hostile) clock itself.
    return (ac._req_level, ac._tok_level, ac._last, ac._admitted, dict(ac._rejected),
            ac._recorded_requests, ac._recorded_tokens, ac.last_retry_after)


def make_mc() -> MetricsCollector:
    mc = MetricsCollector(clock=FakeClock(1.0))
    mc.record_latency(1.0)
    return mc


def none() -> None:
    return None


def cases() -> Iterator[Case]:
    # CountMinSketch
    yield from expand("cms.init.width", none, lambda o: None,
                      lambda o, v: CountMinSketch(v, 3), [*no_none(INT_GE1), (2**31, V)],
                      "width")
    yield from expand("cms.init.depth", none, lambda o: None,
                      lambda o, v: CountMinSketch(64, v), [*no_none(INT_GE1), (65, V)],
                      "depth")
    yield from expand("cms.init.cells", none, lambda o: None,
                      lambda o, v: CountMinSketch(v, 64), [(2**31 - 1, V)], "width * depth")
    for arg in ("epsilon", "delta"):
        yield from expand(f"cms.init.{arg}", none, lambda o: None,
                          lambda o, v, a=arg: CountMinSketch(**{a: v}),
                          no_none([*FINITE_GT0, (1.0, V), (2, V)]), arg)
        yield from expand(f"cms.size_for.{arg}", none, lambda o: None,
                          lambda o, v, a=arg: CountMinSketch.size_for(
                              **{"epsilon": 0.1, "delta": 0.1, a: v}),
                          [*FINITE_GT0, (1.0, V)], arg)
    yield from expand("cms.size_for.tiny_epsilon", none, lambda o: None,
                      lambda o, v: CountMinSketch.size_for(v, 0.1), [(5e-324, V)], "epsilon")
    yield from expand("cms.init.seed", none, lambda o: None,
                      lambda o, v: CountMinSketch(64, 3, seed=v), INT_TYPE, "seed")
    yield from expand("cms.init.conservative", none, lambda o: None,
                      lambda o, v: CountMinSketch(64, 3, conservative=v), NOT_BOOL,
                      "conservative")
    yield from expand("cms.add.item", make_cms, cms_state, lambda o, v: o.add(v), ITEM, "item")
    yield from expand("cms.add.count", make_cms, cms_state, lambda o, v: o.add("a", v),
                      [*INT_GE0, (2**63, V)], "count")
    yield from expand("cms.add_many.items", make_cms, cms_state, lambda o, v: o.add_many(v),
                      [(None, T), (5, T), ("abc", T), (b"ab", T), ({"a": 1}, T), ([None], T),
                       ([1.5], T), ([[1]], T), ([1, 2**64], V), (np.zeros((2, 2), int), V),
                       (np.array([1.0]), T), (np.array([True]), T)], "item")
    yield from expand("cms.add_many.counts", make_cms, cms_state,
                      lambda o, v: o.add_many(["a", "b"], v),
                      [("3", T), (1.5, T), (True, T), ([1.5, 2.0], T), ([1], V), ([-1, 1], V),
                       ({"a": 1}, T), ([2**63, 1], V), (-1, V), ([None, 1], T), (NAN, T)],
                      "count")
    yield from expand("cms.estimate.item", make_cms, cms_state, lambda o, v: o.estimate(v),
                      ITEM, "item")
    yield from expand("cms.getitem.item", make_cms, cms_state, lambda o, v: o[v], ITEM, "item")
    yield from expand("cms.estimate_many.items", make_cms, cms_state,
                      lambda o, v: o.estimate_many(v),
                      [(None, T), (5, T), ("abc", T), ({"a": 1}, T), ([None], T), ([1.5], T)],
                      "item")
    yield from expand("cms.is_hot.threshold", make_cms, cms_state,
                      lambda o, v: o.is_hot("a", v), [*NOT_A_NUMBER, (NAN, V)], "threshold")
    yield from expand("cms.is_hot.item", make_cms, cms_state, lambda o, v: o.is_hot(v, 1),
                      ITEM, "item")
    yield from expand("cms.merge.other", make_cms, cms_state, lambda o, v: o.merge(v),
                      [(None, T), ("x", T), (5, T), (CountMinSketch(32, 3), V),
                       (CountMinSketch(64, 3, seed=1), V), (CountMinSketch(64, 2), V)],
                      "")

    # TokenLRU
    yield from expand("lru.init.token_budget", none, lambda o: None,
                      lambda o, v: TokenLRU(v, len), INT_GE1, "token_budget")
    yield from expand("lru.init.token_of", none, lambda o: None,
                      lambda o, v: TokenLRU(10, v), [*NOT_CALLABLE, (None, T)], "token_of")
    for method, call in [
        ("put", lambda o, v: o.put(v, "z")),
        ("setitem", lambda o, v: o.__setitem__(v, "z")),
        ("get", lambda o, v: o.get(v)),
        ("getitem", lambda o, v: o[v]),
        ("peek", lambda o, v: o.peek(v)),
        ("pop", lambda o, v: o.pop(v)),
        ("pop_default", lambda o, v: o.pop(v, None)),
        ("delete", lambda o, v: o.delete(v)),
        ("delitem", lambda o, v: o.__delitem__(v)),
        ("contains", lambda o, v: v in o),
        ("size_of", lambda o, v: o.size_of(v)),
    ]:
        yield from expand(f"lru.{method}.key", make_lru, lru_state, call, UNHASHABLE, "key")
    for method, call in [("put", lambda o, v: o.put("c", v)), ("fits", lambda o, v: o.fits(v))]:
        # token_of is the identity: the value *is* the size it reports
        yield from expand(f"lru.{method}.token_of_result",
                          lambda: TokenLRU(10, lambda v: v), lru_state, call,
                          [(-1, V), (1.5, T), ("3", T), (None, T), (True, T), (NAN, T),
                           ([1], T)], "token_of")
    yield from expand("lru.put.too_large", make_lru, lru_state, lambda o, v: o.put("c", v),
                      [("x" * 11, V)], "token_budget")
    yield from expand("lru.evict_until_budget.target_budget", make_lru, lru_state,
                      lambda o, v: o.evict_until_budget(v), INT_GE0, "target_budget")
    yield from expand("lru.missing", make_lru, lru_state, lambda o, v: o[v],
                      [("zz", KeyError)], "zz")
    yield from expand("lru.popitem.empty", lambda: TokenLRU(5, len), lru_state,
                      lambda o, v: o.popitem(), [(None, KeyError)], "empty")

    # IndexedHeap
    yield from expand("heap.init.max_heap", none, lambda o: None,
                      lambda o, v: IndexedHeap(max_heap=v), NOT_BOOL, "max_heap")
    yield from expand("heap.push.key_id", make_heap, heap_state, lambda o, v: o.push(v, 1.0),
                      [*UNHASHABLE, (1, KeyError)], "key_id")
    for method in ("push", "decrease_key", "increase_key", "update"):
        key = 9 if method == "push" else 1
        yield from expand(f"heap.{method}.score", make_heap, heap_state,
                          lambda o, v, m=method, k=key: getattr(o, m)(k, v),
                          [*NOT_A_NUMBER, (NAN, V), (10**400, V)], "score")
    for method in ("decrease_key", "increase_key", "update", "delete", "remove", "get_score"):
        call = (lambda o, v, m=method: getattr(o, m)(v, 0.0)) if method in (
            "decrease_key", "increase_key", "update") else (
            lambda o, v, m=method: getattr(o, m)(v))
        bad = [*UNHASHABLE] if method == "get_score" else [*UNHASHABLE, (99, KeyError)]
        yield from expand(f"heap.{method}.key_id", make_heap, heap_state, call, bad, "key_id")
    yield from expand("heap.decrease_key.direction", make_heap, heap_state,
                      lambda o, v: o.decrease_key(2, v), [(5.0, V)], "new_score")
    yield from expand("heap.increase_key.direction", make_heap, heap_state,
                      lambda o, v: o.increase_key(1, v), [(0.0, V)], "new_score")
    yield from expand("heap.pop.empty", IndexedHeap, heap_state, lambda o, v: o.pop(),
                      [(None, IndexError)], "empty")
    yield from expand("heap.push_many.key_ids", make_heap, heap_state,
                      lambda o, v: o.push_many(v, [1.0, 2.0]),
                      [(None, T), (5, T), ("ab", T), ([[1], [2]], T), ([7, 7], KeyError),
                       ([1, 8], KeyError), ([7], V)], "key_id")
    yield from expand("heap.push_many.scores", make_heap, heap_state,
                      lambda o, v: o.push_many([7, 8], v),
                      [(None, T), (5, T), ("ab", T), ([None, 1.0], T), ([NAN, 1.0], V),
                       ([1.0], V), ([[1.0], [2.0]], V), ([True, False], T),
                       ([10**400, 1], V), (["a", "b"], T), ({"a": 1.0, "b": 2.0}, T)],
                      "scores")
    yield from expand("heap.pop_many.k", make_heap, heap_state, lambda o, v: o.pop_many(v),
                      INT_GE0, "k")

    # Scheduler
    for arg, bad in [
        ("max_batch_size", INT_GE1),
        ("max_wait_ms", [*NUMBER, (-1, V)]),
        ("priority_fn", NOT_CALLABLE),  # None is the default order
        ("max_batch_tokens", no_none(INT_GE1)),
        ("slo_margin_ms", [*FINITE_GE0]),
        ("default_slo_ms", no_none([*NUMBER, (-1, V)])),
        ("clock", [*NOT_CALLABLE, (None, T)]),
        ("history", [*INT_GE0, (10**30, V)]),
    ]:
        yield from expand(f"sched.init.{arg}", none, lambda o: None,
                          lambda o, v, a=arg: Scheduler(**{a: v}), bad, arg)
    yield from expand("sched.submit.tokens", make_sched, sched_state,
                      lambda o, v: o.submit(v), [*INT_GE0, (2**31, V), (101, V)], "tokens")
    yield from expand("sched.submit.slo_ms", make_sched, sched_state,
                      lambda o, v: o.submit(1, slo_ms=v), no_none([*NUMBER, (-1, V)]),
                      "slo_ms")
    for method, call in [
        ("cancel", lambda o, v: o.cancel(v)),
        ("update_priority", lambda o, v: o.update_priority(v, 5)),
        ("request", lambda o, v: o.request(v)),
    ]:
        bad = INT_IDS if method == "request" else [*INT_IDS, (99, KeyError), (0, KeyError)]
        yield from expand(f"sched.{method}.request_id", make_sched, sched_state, call, bad,
                          "request_id")
    yield from expand("sched.update_priority.new_tokens", make_sched, sched_state,
                      lambda o, v: o.update_priority(2, v), [*INT_GE0, (101, V)], "new_tokens")
    yield from expand("sched.complete_batch.request_ids", make_sched, sched_state,
                      lambda o, v: o.complete_batch(v),
                      [(None, T), (5, T), ("01", T), ({0: 1}, T), ([True], T), ([0, 1.0], T),
                       ([[0]], T), ([99], KeyError), ([2], KeyError), ([0, 0], V)],
                      "request_id")
    for arg in ("force", "block"):
        yield from expand(f"sched.get_batch.{arg}", make_sched, sched_state,
                          lambda o, v, a=arg: o.get_batch(**{a: v}), NOT_BOOL, arg)
    yield from expand("sched.get_batch.timeout", make_sched, sched_state,
                      lambda o, v: o.get_batch(block=True, timeout=v),
                      no_none([*NUMBER, (-1, V)]), "timeout")

    for i, (value, exc) in enumerate([(None, T), ("1", T), (NAN, V), (INF, V), ([1], T)]):
        for method, call in [("submit", lambda o, v: o.submit(1)),
                             ("get_batch", lambda o, v: o.get_batch()),
                             ("next_release_time", lambda o, v: o.next_release_time()),
                             ("complete_batch", lambda o, v: o.complete_batch([0]))]:
            yield Case(f"sched.{method}.clock_result[{i}]", clock_reads(make_sched, value), call,
                       None, exc, "clock()", sched_state)

    # AdmissionController
    for arg, bad in [("qps_target", FINITE_GT0), ("token_rate_limit", FINITE_GT0),
                     ("request_burst", no_none([*FINITE_GT0, (0.5, V)])),
                     ("token_burst", no_none(FINITE_GT0)),
                     ("clock", [*NOT_CALLABLE, (None, T)])]:
        yield from expand(f"ac.init.{arg}", none, lambda o: None,
                          lambda o, v, a=arg: AdmissionController(**{a: v}), bad, arg)
    yield from expand("ac.init.clock_result", none, lambda o: None,
                      lambda o, v: AdmissionController(clock=FakeClock(v)),
                      [(None, T), ("0", T), (NAN, V), (INF, V)], "clock()")
    for method, arg in [("should_admit", "estimated_tokens"), ("try_admit", "tokens"),
                        ("check", "estimated_tokens"), ("record_request", "tokens")]:
        yield from expand(f"ac.{method}.{arg}", make_ac, ac_state,
                          lambda o, v, m=method: getattr(o, m)(v), FINITE_GE0, arg)
    yield from expand("ac.check.record", make_ac, ac_state,
                      lambda o, v: o.check(1, record=v), NOT_BOOL, "record")

    for i, (value, exc) in enumerate([(None, T), ("1", T), (NAN, V), (INF, V)]):
        for method in ("should_admit", "try_admit", "check", "record_request", "stats",
                       "reset"):
            call = (lambda o, v, m=method: getattr(o, m)()) if method in ("stats", "reset") \
                else (lambda o, v, m=method: getattr(o, m)(1))
            yield Case(f"ac.{method}.clock_result[{i}]", clock_reads(make_ac, value), call, None,
                       exc, "clock()", ac_state)

    # utils
    interval = [*FINITE_GT0, (1e300, V)]
    yield from expand("utils.MemoryProfiler.interval_s", none, lambda o: None,
                      lambda o, v: MemoryProfiler(v), interval, "interval_s")
    yield from expand("utils.memory_profiler.interval_s", none, lambda o: None,
                      lambda o, v: memory_profiler(v).__enter__(), interval, "interval_s")
    values = [(None, T), (5, T), ("abc", T), ([], V), (["a"], T), ([None], T), ([NAN], V),
              ([INF], V), ([[1.0, 2.0]], V), ({}, T), ({"a": 1.0}, T), ([True, False], T),
              ([10**400], T), (np.array([], dtype=float), V), ({1.0, 2.0}, T)]
    yield from expand("utils.compute_percentiles.values", none, lambda o: None,
                      lambda o, v: compute_percentiles(v), values, "values")
    yield from expand("utils.calculate_statistics.values", none, lambda o: None,
                      lambda o, v: calculate_statistics(v), values, "values")
    yield from expand("utils.calculate_statistics.confidence_level", none, lambda o: None,
                      lambda o, v: calculate_statistics([1.0, 2.0], v),
                      [*FINITE, (0, V), (1, V), (1.5, V)], "confidence_level")
    yield from expand("utils.student_t_ppf.q", none, lambda o: None,
                      lambda o, v: student_t_ppf(v, 3), [*FINITE, (0, V), (1, V)], "q")
    yield from expand("utils.student_t_ppf.df", none, lambda o: None,
                      lambda o, v: student_t_ppf(0.9, v), FINITE_GT0, "df")
    yield from expand("utils.MetricsCollector.clock", none, lambda o: None,
                      lambda o, v: MetricsCollector(clock=v), [*NOT_CALLABLE, (None, T)],
                      "clock")
    yield from expand("utils.MetricsCollector.clock_result", none, lambda o: None,
                      lambda o, v: MetricsCollector(clock=FakeClock(v)),
                      [(None, T), ("1", T), (NAN, V), (INF, V)], "clock()")
    yield from expand("utils.MetricsCollector.record_latency", make_mc, len,
                      lambda o, v: o.record_latency(v), FINITE_GE0, "latency_ms")

    for i, (value, exc) in enumerate([(None, T), ("1", T), (NAN, V)]):
        for method in ("get_metrics", "reset"):
            yield Case(f"utils.MetricsCollector.{method}.clock_result[{i}]",
                       clock_reads(make_mc, value),
                       lambda o, v, m=method: getattr(o, m)(), None, exc, "clock()",
                       lambda o: (list(o._latencies), o._start))


CASES = list(cases())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_input_is_rejected_clearly_and_changes_nothing(case: Case) -> None:
    obj = case.make()
    before = case.state(obj)
    with pytest.raises(case.exc) as info:
        case.call(obj, case.value)
    message = str(info.value)
    assert case.name in message, f"message does not name {case.name!r}: {message}"
    for phrase in INTERNAL:
        assert phrase not in message, f"Python internal {phrase!r} in: {message}"
    assert case.state(obj) == before, "a failed call changed the structure"
    if hasattr(obj, "_check"):
        obj._check()


def test_probe_size() -> None:
    # The count reported in issue 12's closing note; keep it honest when cases change.
    assert len(CASES) >= 400
