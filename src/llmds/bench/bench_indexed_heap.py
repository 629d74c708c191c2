"""IndexedHeap vs pqdict, heapdict and heapq with lazy deletion on a push/pop/decrease-key mix.

Workload (seeded): prefill ``live`` keys with uniform random scores (untimed), then
replay a trace of ``num_ops`` operations: 34% push of a new key, 33% pop of the
minimum, 33% decrease-key of a random live key (by up to 0.1). The trace is built
once by a reference simulation, so every implementation performs exactly the same
calls; scores are distinct floats, so every correct heap pops the same keys (ours is
checked against the trace once, untimed). The live-key count stays around
``live`` (150k at the default size).

Rates are operations per CPU-second of the median run (see harness). The pure-Python
peers get no warm-up run (they have nothing to compile or cache, and heapdict's
runs dominate the benchmark's time); llmds gets one (numba compile/load).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.indexed_heap import IndexedHeap

NAME = "indexed_heap"
TITLE = "IndexedHeap: push/pop/decrease-key mix vs pqdict, heapdict, heapq+lazy deletion"

PUSH, POP, DECREASE = 0, 1, 2
Trace = list[tuple[int, int, float]]


def make_trace(
    num_ops: int, live: int, seed: int = 0
) -> tuple[list[tuple[int, float]], Trace, list[int]]:
    """``(prefill, ops, popped_keys)``; ops are ``(kind, key, score)``. O(num_ops log live)."""
    rng = random.Random(seed)
    prefill: list[tuple[int, float]] = []
    current: dict[int, float] = {}
    heap: list[tuple[float, int]] = []
    next_key = 0
    for _ in range(live):
        s = rng.random()
        prefill.append((next_key, s))
        current[next_key] = s
        heap.append((s, next_key))
        next_key += 1
    heapq.heapify(heap)
    ops: Trace = []
    popped: list[int] = []
    for _ in range(num_ops):
        r = rng.random()
        if r < 0.34 or not current:
            s = rng.random()
            ops.append((PUSH, next_key, s))
            current[next_key] = s
            heapq.heappush(heap, (s, next_key))
            next_key += 1
        elif r < 0.67:
            while True:  # lazy deletion: skip stale entries
                s, k = heapq.heappop(heap)
                if current.get(k) == s:
                    break
            del current[k]
            ops.append((POP, k, s))
            popped.append(k)
        else:
            lo = max(0, next_key - 3 * live)
            while True:
                k = rng.randrange(lo, next_key)
                if k in current:
                    break
            s = current[k] - rng.random() * 0.1
            current[k] = s
            heapq.heappush(heap, (s, k))
            ops.append((DECREASE, k, s))
    return prefill, ops, popped


class LazyHeapq:
    """The naive baseline: heapq of [score, seq, key] entries, stale entries skipped on pop.

    decrease-key pushes a fresh entry and marks the old one dead, so the list holds
    up to one dead entry per update until pops skip past them. Thread safety:
    not thread-safe.
    """

    _DEAD = object()

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []
        self.entries: dict[int, list[Any]] = {}
        self.counter = itertools.count()

    @classmethod
    def from_items(cls, items: list[tuple[int, float]]) -> LazyHeapq:
        """Build from ``(key, score)`` pairs with heapify, O(n)."""
        heap = cls()
        for key, score in items:
            entry = [score, next(heap.counter), key]
            heap.entries[key] = entry
            heap.heap.append(entry)
        heapq.heapify(heap.heap)
        return heap

    def push(self, key: int, score: float) -> None:
        if key in self.entries:
            raise KeyError(key)
        entry = [score, next(self.counter), key]
        self.entries[key] = entry
        heapq.heappush(self.heap, entry)

    def decrease_key(self, key: int, score: float) -> None:
        old = self.entries[key]
        if score > old[0]:
            raise ValueError("larger score")
        old[2] = self._DEAD
        entry = [score, next(self.counter), key]
        self.entries[key] = entry
        heapq.heappush(self.heap, entry)

    def pop(self) -> tuple[float, int]:
        heap, dead = self.heap, self._DEAD
        while heap:
            score, _, key = heapq.heappop(heap)
            if key is not dead:
                del self.entries[key]
                return score, key
        raise IndexError("pop from an empty heap")


def _replay(
    push: Callable[..., Any], pop: Callable[[], Any], dec: Callable[..., Any], ops: Trace
) -> None:
    for kind, key, score in ops:
        if kind == PUSH:
            push(key, score)
        elif kind == POP:
            pop()
        else:
            dec(key, score)


def _popped_keys(prefill: list[tuple[int, float]], ops: Trace) -> list[int]:
    """Replay ``ops`` on an IndexedHeap and return the popped keys in order."""
    heap = IndexedHeap()
    heap.push_many([k for k, _ in prefill], [s for _, s in prefill])
    out: list[int] = []

    def pop() -> None:
        out.append(heap.pop()[1])

    _replay(heap.push, pop, heap.decrease_key, ops)
    return out


def _prefilled(
    name: str, factory: Callable[..., Any], bind: Callable, prefill: list[tuple[int, float]]
) -> Any:
    """A heap holding ``prefill``, built in bulk where the implementation offers it (untimed)."""
    if name == "llmds.IndexedHeap":
        heap = factory()
        heap.push_many([k for k, _ in prefill], [s for _, s in prefill])
        return heap
    if name == "pqdict":
        return factory(dict(prefill))  # heapify, O(n)
    if name == "heapq + lazy deletion":
        return LazyHeapq.from_items(prefill)
    obj = factory()
    push, _, _ = bind(obj)
    for key, score in prefill:
        push(key, score)
    return obj


def _impls() -> list[tuple[str, Callable[[], Any] | None, Callable[[Any], tuple], str | None]]:
    """(name, factory or None if not importable, bind(obj) -> (push, pop, dec), peer module)."""
    out: list[tuple[str, Callable[[], Any] | None, Callable[[Any], tuple], str | None]] = [
        ("llmds.IndexedHeap", IndexedHeap, lambda h: (h.push, h.pop, h.decrease_key), None)
    ]
    pqdict = harness.peer("pqdict")
    out.append(
        (
            "pqdict",
            pqdict.pqdict if pqdict else None,
            lambda pq: (pq.additem, pq.popitem, pq.updateitem),
            "pqdict",
        )
    )
    heapdict = harness.peer("heapdict")

    def bind_hd(hd: Any) -> tuple:
        return hd.__setitem__, hd.popitem, hd.__setitem__

    out.append(("heapdict", heapdict.heapdict if heapdict else None, bind_hd, "heapdict"))
    out.append(
        ("heapq + lazy deletion", LazyHeapq, lambda h: (h.push, h.pop, h.decrease_key), None)
    )
    return out


def _sizes(ctx: BenchContext) -> tuple[int, int, int]:
    """``(operations, live keys, latency sample)`` for the run size."""
    if ctx.quick:
        return 30_000, 10_000, 5_000
    if ctx.full:
        # The headline workload: 1M ops with 100k-200k live keys.
        return 1_000_000, 150_000, 100_000
    # Same live-key count (so the same log n per op) at 40% of the ops: heapdict's
    # six 1M-op runs alone took ~2 min, too long for the default `make bench`.
    return 400_000, 150_000, 20_000


def _time_impl(
    ctx: BenchContext, name: str, factory: Callable[[], Any], bind: Callable,
    prefill: list[tuple[int, float]], ops: Trace, lat_n: int,
) -> tuple[harness.Measurement, dict[str, float]]:
    """Throughput of the whole trace on a prefilled heap, and per-call latencies."""

    def setup() -> tuple:
        return bind(_prefilled(name, factory, bind, prefill))

    def fn(state: tuple) -> None:
        push, pop, dec = state
        _replay(push, pop, dec, ops)

    m = harness.measure(fn, ops=len(ops), setup=setup, repeat=ctx.repeat,
                        warmup=1 if name.startswith("llmds") else 0)
    push, pop, dec = setup()

    def one(op: tuple[int, int, float]) -> None:
        # _replay's dispatch for one op; _replay inlines it because a call per op
        # would add that call's cost to every timed operation.
        kind, key, score = op
        if kind == PUSH:
            push(key, score)
        elif kind == POP:
            pop()
        else:
            dec(key, score)

    return m, harness.latency_percentiles_ms(one, ops[:lat_n])


def run(ctx: BenchContext) -> dict[str, Any]:
    num_ops, live, lat_n = _sizes(ctx)
    impls = _impls()
    total = len(impls) + 2
    ctx.progress(0, total, "building trace")
    prefill, ops, popped = make_trace(num_ops, live, ctx.seed)
    counts = {k: sum(1 for op in ops if op[0] == k) for k in (PUSH, POP, DECREASE)}

    # Untimed correctness check: ours pops exactly the keys the reference pops.
    ctx.progress(1, total, "checking llmds against the trace")
    if _popped_keys(prefill, ops) != popped:
        raise AssertionError("IndexedHeap popped a different key sequence than the reference")

    rows: list[dict[str, Any]] = []
    rates: dict[str, float] = {}
    measurements: dict[str, Any] = {}
    for i, (name, factory, bind, module) in enumerate(impls):
        ctx.progress(2 + i, total, name)
        if factory is None:
            rows.append({"impl": name, "skipped": harness.skipped(module or name)})
            continue
        m, lat = _time_impl(ctx, name, factory, bind, prefill, ops, lat_n)
        rates[name] = m.ops_per_cpu_s
        measurements[name] = m.to_dict()
        rows.append({"impl": name, "ops_per_cpu_s": m.ops_per_cpu_s, "ops_per_s": m.ops_per_s,
                     "median_cpu_s": m.median_cpu_s, "peak_rss_mb": m.peak_rss_mb,
                     "latency_ms": {k: lat[k] for k in ("p50", "p95", "p99")}})
    ours = rates["llmds.IndexedHeap"]
    ratios = [
        {"name": "IndexedHeap / pqdict (ops/s)",
         "value": harness.ratio(ours, rates.get("pqdict")), "goal": 3.0},
        {"name": "IndexedHeap / heapdict (ops/s)",
         "value": harness.ratio(ours, rates.get("heapdict")), "goal": None},
        {"name": "IndexedHeap / heapq + lazy deletion (ops/s)",
         "value": harness.ratio(ours, rates.get("heapq + lazy deletion")), "goal": None},
    ]
    ctx.progress(total, total, "done")
    plot = {
        "title": f"Indexed heap throughput ({num_ops:,} ops, ~{live:,} live keys)",
        "x_label": "implementation",
        "y_label": "operations per CPU-second",
        "kind": "bar",
        "series": [{"label": "ops/s", "x": list(rates), "y": list(rates.values())}],
    }
    return harness.result_record(
        NAME,
        TITLE,
        ctx=ctx,
        params={
            "num_ops": num_ops,
            "live_keys": live,
            "push_ops": counts[PUSH],
            "pop_ops": counts[POP],
            "decrease_key_ops": counts[DECREASE],
            "latency_sample_ops": min(lat_n, len(ops)),
        },
        data=f"synthetic trace, seed {ctx.seed}",
        rows=rows,
        ratios=ratios,
        notes=[
            "Same trace for every implementation; prefill untimed; latency = per-call "
            "timing of the first trace operations on a freshly prefilled heap.",
            "Pure-Python peers run without a warm-up run; llmds gets one (numba).",
        ],
        plots=[plot],
        extra={"measurements": measurements},
    )
