"""TokenLRU vs cachetools.LRUCache(getsizeof=...) and a plain dict LRU.

Workload (seeded): ``num_ops`` operations, 80% ``get`` / 20% ``put``, keys drawn
from a Zipf(1.1) distribution over ``num_keys`` ids; a put stores a value of
16-1024 tokens (a ``bytes`` object whose ``len`` is its token count, so
``token_of=len`` / ``getsizeof=len`` is a C call for every implementation). The
token budget holds ~4% of the key space, so the cache evicts steadily. Every
implementation replays exactly the same operations; hit rates are recorded
(they differ slightly where cachetools evicts before re-inserting an updated key).

A second, smaller variant uses a Python ``token_of`` (``lambda v: len(v) // 4``,
what a caller estimating tokens from bytes would write) for all implementations.
A third, "eviction-heavy", fills a cache of ``scan`` one-token entries and then
puts ``scan`` new keys (every put evicts): the insertion-ordered-dict LRU finds
its oldest key by iterating from the front of the dict, which skips over every
hole left by earlier deletions, so it turns quadratic until the dict resizes;
TokenLRU's ``OrderedDict`` stays O(1). Rates are operations per CPU-second of the
median run (see harness).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.bench.workloads import zipf_keys
from llmds.token_lru import TokenLRU

NAME = "token_lru"
TITLE = "TokenLRU: 80/20 get/put on Zipf keys vs cachetools.LRUCache(getsizeof) and a dict LRU"

Op = tuple[int, bool, bytes]


class DictLRU:
    """The naive baseline: an insertion-ordered dict, re-inserted on every hit.

    ``get`` O(1); ``put`` O(1) plus the scan for the oldest key (see the module
    docstring). Thread safety: not thread-safe.
    """

    def __init__(self, budget: int, token_of: Callable[[Any], int]) -> None:
        self.budget = budget
        self.token_of = token_of
        self.data: dict[Any, tuple[Any, int]] = {}
        self.tokens = 0

    def get(self, key: Any) -> Any:
        entry = self.data.pop(key, None)
        if entry is None:
            return None
        self.data[key] = entry
        return entry[0]

    def put(self, key: Any, value: Any) -> None:
        size = self.token_of(value)
        if size > self.budget:
            raise ValueError("too large")
        old = self.data.pop(key, None)
        if old is not None:
            self.tokens -= old[1]
        data = self.data
        while self.tokens + size > self.budget:
            k = next(iter(data))
            self.tokens -= data.pop(k)[1]
        data[key] = (value, size)
        self.tokens += size


def make_ops(num_ops: int, num_keys: int, seed: int) -> list[Op]:
    """The seeded operation trace: ``(key, is_get, value)``."""
    keys = zipf_keys(num_ops, num_keys, s=1.1, seed=seed).tolist()
    rng = np.random.default_rng(seed + 1)
    is_get = (rng.random(num_ops) < 0.8).tolist()
    values = [b"t" * n for n in range(1025)]
    sizes = rng.integers(16, 1025, num_ops).tolist()
    return [(k, g, values[s]) for k, g, s in zip(keys, is_get, sizes, strict=True)]


def _replay(get: Callable[[Any], Any], put: Callable[[Any, Any], Any], ops: list[Op]) -> None:
    """The timed loop: only the cache calls (hits are counted in an untimed replay)."""
    for key, is_get, value in ops:
        if is_get:
            get(key)
        else:
            put(key, value)


def _count_hits(
    get: Callable[[Any], Any], put: Callable[[Any, Any], Any], ops: list[Op]
) -> int:
    hits = 0
    for key, is_get, value in ops:
        if is_get:
            if get(key) is not None:
                hits += 1
        else:
            put(key, value)
    return hits


def _impls(budget: int, token_of: Callable[[Any], int]) -> list[tuple[str, Any, str | None]]:
    """(name, factory returning (get, put) or None when not importable, peer module)."""
    out: list[tuple[str, Any, str | None]] = []

    def ours() -> tuple[Any, Any]:
        c: TokenLRU[int, bytes] = TokenLRU(budget, token_of)
        return c.get, c.put

    out.append(("llmds.TokenLRU", ours, None))
    cachetools = harness.peer("cachetools")
    if cachetools is not None:

        def ct() -> tuple[Any, Any]:
            c = cachetools.LRUCache(maxsize=budget, getsizeof=token_of)
            return c.get, c.__setitem__

        out.append(("cachetools.LRUCache", ct, "cachetools"))
    else:
        out.append(("cachetools.LRUCache", None, "cachetools"))

    def naive() -> tuple[Any, Any]:
        c = DictLRU(budget, token_of)
        return c.get, c.put

    out.append(("dict LRU (naive)", naive, None))
    return out


def _run_variant(
    ctx: BenchContext, ops: list[Op], budget: int, token_of: Callable[[Any], int], lat_n: int,
    label: str, step: int, total: int,
) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    rates: dict[str, float] = {}
    measurements: dict[str, Any] = {}
    impls = _impls(budget, token_of)
    ctx.progress(step, total, f"{label}: timing in alternating rounds")

    def fn(state: tuple[Any, Any]) -> None:
        _replay(state[0], state[1], ops)

    # All implementations in turns, so machine noise falls on each alike.
    timed = harness.measure_interleaved(
        {name: (fn, factory) for name, factory, _ in impls if factory is not None},
        ops=len(ops), repeat=ctx.repeat, warmup=1,
    )
    for i, (name, factory, module) in enumerate(impls):
        ctx.progress(step + i, total, f"{label}: {name}")
        if factory is None:
            why = harness.skipped(module or name)
            rows.append({"impl": name, "variant": label, "skipped": why})
            continue
        m = timed[name]
        hit_get, hit_put = factory()
        hits = _count_hits(hit_get, hit_put, ops)
        get, put = factory()

        def one(op: Op, get: Any = get, put: Any = put) -> None:
            if op[1]:
                get(op[0])
            else:
                put(op[0], op[2])

        lat = harness.latency_percentiles_ms(one, ops[:lat_n])
        num_gets = sum(1 for op in ops if op[1])
        rates[name] = m.ops_per_cpu_s
        measurements[f"{label}/{name}"] = m.to_dict()
        rows.append(
            {
                "impl": name,
                "variant": label,
                "ops_per_cpu_s": m.ops_per_cpu_s,
                "ops_per_s": m.ops_per_s,
                "median_cpu_s": m.median_cpu_s,
                "hit_rate": hits / max(1, num_gets),
                "peak_rss_mb": m.peak_rss_mb,
                "latency_ms": {k: lat[k] for k in ("p50", "p95", "p99")},
            }
        )
    return rows, rates, measurements


def _sizes(ctx: BenchContext) -> tuple[int, int, int, int]:
    """``(operations, keys, latency sample, eviction-heavy entries)`` for the run size."""
    if ctx.quick:
        return 30_000, 10_000, 5_000, 5_000
    if ctx.full:
        return 3_000_000, 300_000, 100_000, 60_000
    return 1_000_000, 100_000, 50_000, 40_000


def _eviction_heavy(
    ctx: BenchContext, scan: int, step: int, total: int
) -> tuple[list[dict[str, Any]], dict[str, float], dict[str, Any]]:
    """Fill a cache of ``scan`` one-token entries, then time ``scan`` puts that all evict."""
    fill = [(k, False, b"t") for k in range(scan)]
    fresh = [(k, False, b"t") for k in range(scan, 2 * scan)]
    rows: list[dict[str, Any]] = []
    rates: dict[str, float] = {}
    measurements: dict[str, Any] = {}
    for i, (name, factory, module) in enumerate(_impls(scan, len)):
        ctx.progress(step + i, total, f"eviction-heavy: {name}")
        if factory is None:
            rows.append({"impl": name, "variant": "eviction-heavy",
                         "skipped": harness.skipped(module or name)})
            continue

        def setup(factory: Any = factory) -> tuple[Any, Any]:
            get, put = factory()
            _replay(get, put, fill)
            return get, put

        m = harness.measure(lambda st: _replay(st[0], st[1], fresh), ops=scan, setup=setup,
                            repeat=ctx.repeat, warmup=0)
        rates[name] = m.ops_per_cpu_s
        measurements[f"eviction-heavy/{name}"] = m.to_dict()
        rows.append({"impl": name, "variant": "eviction-heavy", "ops_per_cpu_s": m.ops_per_cpu_s,
                     "ops_per_s": m.ops_per_s, "median_cpu_s": m.median_cpu_s,
                     "peak_rss_mb": m.peak_rss_mb})
    return rows, rates, measurements


def _ratios(
    by_len: dict[str, float], by_py: dict[str, float], evicting: dict[str, float]
) -> list[dict[str, Any]]:
    """The measures, headline first: ``token_of=len`` is what a cache of token-id lists
    (or of bytes) uses, so it is the realistic input; a Python ``token_of`` follows."""
    ours = by_len["llmds.TokenLRU"]
    return [
        {"name": "TokenLRU / cachetools.LRUCache (ops/s, token_of=len)",
         "value": harness.ratio(ours, by_len.get("cachetools.LRUCache")), "goal": 2.0},
        {"name": "TokenLRU / cachetools.LRUCache (ops/s, Python token_of)",
         "value": harness.ratio(by_py["llmds.TokenLRU"], by_py.get("cachetools.LRUCache")),
         "goal": None},
        {"name": "TokenLRU / dict LRU (ops/s, token_of=len)",
         "value": harness.ratio(ours, by_len.get("dict LRU (naive)")), "goal": None},
        {"name": "TokenLRU / cachetools.LRUCache (puts/s, eviction-heavy)",
         "value": harness.ratio(evicting["llmds.TokenLRU"], evicting.get("cachetools.LRUCache")),
         "goal": None},
        {"name": "TokenLRU / dict LRU (puts/s, eviction-heavy)",
         "value": harness.ratio(evicting["llmds.TokenLRU"], evicting.get("dict LRU (naive)")),
         "goal": None},
    ]


def _py_token_of(v: bytes) -> int:
    """The Python ``token_of`` variant: what a caller estimating tokens from bytes writes."""
    return len(v) // 4


def run(ctx: BenchContext) -> dict[str, Any]:
    num_ops, num_keys, lat_n, scan = _sizes(ctx)
    budget = num_keys * 520 // 25  # ~4% of the key space at the mean value size (520 tokens)
    total = 10
    ctx.progress(0, total, "building trace")
    ops = make_ops(num_ops, num_keys, ctx.seed)
    rows, rates, measurements = _run_variant(ctx, ops, budget, len, lat_n, "token_of=len", 1,
                                             total)
    small = ops[: max(1, num_ops // 4)]
    rows2, rates2, meas2 = _run_variant(ctx, small, budget // 4, _py_token_of, lat_n // 4,
                                        "python token_of", 4, total)
    rows3, rates3, meas3 = _eviction_heavy(ctx, scan, 7, total)
    rows += rows2 + rows3
    measurements.update(meas2)
    measurements.update(meas3)
    ctx.progress(total, total, "done")
    plot = {
        "title": f"Token-budget LRU throughput ({num_ops:,} ops, 80/20 get/put, Zipf 1.1)",
        "x_label": "implementation",
        "y_label": "operations per CPU-second",
        "kind": "bar",
        "series": [
            {"label": "token_of=len", "x": list(rates), "y": list(rates.values())},
            {"label": "Python token_of", "x": list(rates2), "y": list(rates2.values())},
            {"label": "eviction-heavy puts", "x": list(rates3), "y": list(rates3.values())},
        ],
    }
    return harness.result_record(
        NAME,
        TITLE,
        ctx=ctx,
        params={
            "num_ops": num_ops,
            "num_keys": num_keys,
            "zipf_s": 1.1,
            "get_fraction": 0.8,
            "value_tokens": [16, 1024],
            "token_budget": budget,
            "python_token_of_ops": len(small),
            "eviction_heavy_entries": scan,
            "latency_sample_ops": min(lat_n, num_ops),
        },
        data=f"synthetic Zipf trace, seed {ctx.seed}",
        rows=rows,
        ratios=_ratios(rates, rates2, rates3),
        notes=[
            "Same trace for every implementation; the cache starts empty each run.",
            "cachetools: LRUCache(maxsize=budget, getsizeof=token_of), get() and "
            "__setitem__; llmds: get() and put() (put returns the evicted pairs).",
            "Latency = per-call timing of the first trace operations on a fresh cache.",
        ],
        plots=[plot],
        extra={"measurements": measurements},
    )
