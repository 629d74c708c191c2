"""Shared Redis page tier: two replicas on the chat trace, and the remote fetch cost.

1. **Hit rate across replicas.** The seeded multi-turn chat trace
   (:func:`llmds.bench.workloads.multi_turn_chat_trace`, via
   :func:`llmds.bench._replay.chat_requests`) is routed round-robin to two replicas
   (request ``i`` to replica ``i % 2``), so a conversation's next turn usually lands
   on the other replica. Three set-ups, each with unbounded local capacity:
   *one cache* serving every request (the ceiling), *isolated* replicas (each its
   own cache), and *shared tier* (each replica's cache with ``remote=`` a
   :class:`~llmds.dist.RedisPageStore` on one private ``redis-server``). Hit rate =
   prompt tokens not recomputed / prompt tokens. For :class:`~llmds.KVCache`
   replicas (``allocate(prompt)``, ``append_tokens(output)``, ``free``: pages are
   written back at ``free``) and :class:`~llmds.mem_cache.RadixCache` replicas (the
   serving loop of ``bench_prefix_cache``: match, lock, allocate, insert prompt +
   output, free duplicates; pages are written back by ``insert``), at page sizes 1
   and 16 (remote page = local page), and one *mixed* pair at page 16 (replica 0 a
   KVCache, replica 1 a RadixCache: one store, one page identity). Goal: the shared
   tier within 0.02 of one cache. The KV payload is one byte per token (the hit rate
   does not depend on it).
2. **Remote fetch cost** (for the simulator's replica model): ``RemoteTier.fetch``
   of a run of 1, 16 and 64 stored pages of 64 KiB (16 tokens x 8 KV heads x 128 x
   K and V, fp16), one client, loopback; and a KVCache ``allocate`` of 64 pages
   served from Redis against the same ``allocate`` served from local pages. A timed
   run makes about 256 pages' worth of fetches (256 one-page fetches, ...); the
   cost is fitted as ``fixed + per_page * k`` from the 1- and 64-page fetches.

Without ``redis-server`` or redis-py every row is reported as skipped, with the
reason. Run it alone with ``python -m llmds.bench.bench_remote_tier [--quick]``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench._replay import Request, chat_requests
from llmds.bench.bench_redis import cli, redis_missing, skipped_record
from llmds.bench.harness import BenchContext
from llmds.kv_cache import KVCache
from llmds.mem_cache import RadixCache, RadixKey, TokenToKVPoolAllocator

NAME = "remote_tier"
TITLE = ("Shared Redis page tier: two replicas on the chat trace (isolated vs shared vs one "
         "cache) and the remote fetch cost")

PAGE_SIZES = (1, 16)
_FETCH_SHAPE = (16, 2, 8, 128)  # a 16-token page: K and V, 8 KV heads of 128, fp16: 64 KiB
_FETCH_RUNS = (1, 16, 64)
_GOAL_GAP = 0.02


def _num_requests(ctx: BenchContext) -> int:
    return 200 if ctx.quick else 2000


def _calls(pages: int) -> int:
    """Fetches per timed run of a ``pages``-page fetch: 256 pages per run, so a 1-page
    fetch is the median of runs of 256 calls, not of single calls."""
    return 256 // pages


# ------------------------------------------------------------------ replicas
class _KVReplica:
    """A KVCache replica: allocate the prompt, append the output, free."""

    def __init__(self, page: int, num_pages: int, remote: Any) -> None:
        self.cache = KVCache(page_size=page, max_pages=num_pages, dtype=np.uint8,
                             remote=remote)
        self.next_id = 0

    def serve(self, prompt: np.ndarray, full: np.ndarray) -> int:
        cache, sid = self.cache, self.next_id
        self.next_id += 1
        hit = cache.allocate(sid, prompt)
        cache.append_tokens(sid, full[len(prompt) :])
        cache.free(sid)
        return hit


class _RadixReplica:
    """A RadixCache replica with its engine's token pool and (with a tier) KV buffer."""

    def __init__(self, page: int, slots: int, remote: Any) -> None:
        self.pool = TokenToKVPoolAllocator(slots)
        buf = np.zeros(slots, dtype=np.uint8) if remote is not None else None
        self.cache = RadixCache(page, token_to_kv_pool_allocator=self.pool, remote=remote,
                                kv_buffer=buf)
        self.page = page

    def serve(self, prompt: np.ndarray, full: np.ndarray) -> int:
        cache, pool = self.cache, self.pool
        r = cache.match_prefix(RadixKey(prompt))
        m = r.prefix_len
        cache.inc_lock_ref(r.last_node)
        value = np.concatenate((r.indices, pool.alloc(len(full) - m)))
        done = cache.insert(RadixKey(full), value).prefix_len
        if done > m:
            pool.free(value[m:done])
        aligned = len(full) - len(full) % self.page
        if aligned < len(full):
            pool.free(value[aligned:])
        cache.dec_lock_ref(r.last_node)
        return m


def _replica(kind: str, page: int, reqs: list[Request], remote: Any) -> Any:
    """A replica big enough never to evict while serving ``reqs``."""
    if kind == "kv":
        return _KVReplica(page, sum(-(-len(f) // page) for _, f in reqs) + 1, remote)
    return _RadixReplica(page, sum(len(f) for _, f in reqs) + 1, remote)


def _replay(replicas: list[Any], reqs: list[Request]) -> tuple[float, float]:
    """Round-robin ``reqs`` over ``replicas``; (hit rate, wall seconds)."""
    hit = total = 0
    start = time.perf_counter()
    for i, (prompt, full) in enumerate(reqs):
        hit += replicas[i % len(replicas)].serve(prompt, full)
        total += len(prompt)
    return (hit / total if total else 0.0), time.perf_counter() - start


def _hit_rates(store_cls: Any, tier_cls: Any, server: Any, reqs: list[Request]
               ) -> tuple[list[dict[str, Any]], dict[tuple[str, int, str], float]]:
    rows: list[dict[str, Any]] = []
    rates: dict[tuple[str, int, str], float] = {}
    setups: list[tuple[str, int]] = [(k, p) for k in ("kv", "radix") for p in PAGE_SIZES]
    setups.append(("mixed", 16))
    label = {"kv": "KVCache", "radix": "RadixCache", "mixed": "KVCache + RadixCache"}
    for kind, page in setups:
        kinds = ["kv", "radix"] if kind == "mixed" else [kind, kind]
        configs = ["shared tier"] if kind == "mixed" else ["one cache", "isolated", "shared tier"]
        for config in configs:
            server.flushall()
            tiers: list[Any] = []
            if config == "one cache":
                replicas = [_replica(kind, page, reqs, None)]
            elif config == "isolated":
                replicas = [_replica(k, page, reqs[i::2], None) for i, k in enumerate(kinds)]
            else:
                tiers = [tier_cls(store_cls(server.url, model="bench", dtype=np.uint8,
                                            page_size=page, page_shape=(page,)))
                         for _ in kinds]
                replicas = [_replica(k, page, reqs[i::2], tiers[i])
                            for i, k in enumerate(kinds)]
            rate, wall = _replay(replicas, reqs)
            rates[(kind, page, config)] = rate
            row: dict[str, Any] = {
                "impl": f"{label[kind]}, {config}", "section": "hit rate", "cache": kind,
                "page_size": page, "config": config, "replicas": len(replicas),
                "hit_rate": rate, "wall_s": wall, "requests_per_s": len(reqs) / wall,
            }
            if tiers:
                stats = [t.stats() for t in tiers]
                row.update(remote_hit_tokens=sum(s["hit_tokens"] for s in stats),
                           pages_written=sum(s["written_pages"] for s in stats),
                           remote_errors=sum(s["errors"] for s in stats))
                for t in tiers:
                    t.close()
                    t.store.close()
            rows.append(row)
    return rows, rates


# ---------------------------------------------------------------- fetch cost
def _fetch_cost(store_cls: Any, tier_cls: Any, url: str, ctx: BenchContext
                ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    from llmds import page_hash

    page = _FETCH_SHAPE[0]
    token_shape = _FETCH_SHAPE[1:]
    store = store_cls(url, model="bench-fetch", dtype=np.float16, page_size=page,
                      page_shape=_FETCH_SHAPE)
    n = max(_FETCH_RUNS)
    tokens = np.random.default_rng(ctx.seed).integers(0, 32_000, n * page + 1)
    digests = page_hash.chain_digests(tokens, page)
    pages = np.random.default_rng(ctx.seed + 1).standard_normal((n, *_FETCH_SHAPE)).astype(
        np.float16)
    tier = tier_cls(store)
    tier.bind(_FETCH_SHAPE, np.dtype(np.float16), "bench pages")
    tier.submit(digests, pages)
    assert tier.stats()["written_pages"] == n

    def fetch(k: int) -> Any:
        def run(_: Any) -> None:
            for _ in range(_calls(k)):
                got = tier.fetch(digests[:k])
            assert len(got) == k
        return run

    def make(local: bool) -> Any:
        cache = KVCache(page_size=page, max_pages=n + 2, token_shape=token_shape,
                        dtype=np.float16, remote=tier)
        if local:
            cache.allocate("warm", tokens)
            cache.free("warm")
        return cache

    def allocate(cache: Any) -> None:
        assert cache.allocate("s", tokens) == n * page
        cache.free("s")

    fetches: dict[str, tuple[Any, Any]] = {
        f"RemoteTier.fetch, {k} page{'s' if k > 1 else ''}": (fetch(k), None)
        for k in _FETCH_RUNS}
    allocates: dict[str, tuple[Any, Any]] = {
        f"KVCache.allocate, {n} pages from Redis": (allocate, lambda: make(False)),
        f"KVCache.allocate, {n} pages local": (allocate, lambda: make(True)),
    }
    # each group in alternating turns, so a noisy stretch of the machine hits all alike
    measured = {**harness.measure_interleaved(fetches, ops=_calls(1), repeat=ctx.repeat),
                **harness.measure_interleaved(allocates, ops=n, repeat=ctx.repeat)}
    rows = []
    per_call: dict[str, float] = {}
    for name, m in measured.items():
        k = n if "allocate" in name else int(name.split(", ")[1].split()[0])
        calls = 1 if "allocate" in name else _calls(k)
        per_call[name] = call = m.median_wall_s / calls
        rows.append({"impl": name, "section": "fetch cost", "pages": k, "calls_per_run": calls,
                     "page_bytes": int(pages[0].nbytes), "pages_per_s": k / call,
                     "us_per_page": 1e6 * call / k, "us_per_call": 1e6 * call,
                     "mb_per_s": k * pages[0].nbytes / call / 2**20,
                     "median_wall_s": m.median_wall_s, "median_cpu_s": m.median_cpu_s})
    tier.close()
    store.close()
    t1 = per_call["RemoteTier.fetch, 1 page"]
    t64 = per_call[f"RemoteTier.fetch, {n} pages"]
    per_page = (t64 - t1) / (n - 1)
    fit = {"fixed_us": 1e6 * (t1 - per_page), "per_page_us": 1e6 * per_page,
           "page_bytes": int(pages[0].nbytes),
           "allocate_remote_us_per_page": 1e6 * per_call[f"KVCache.allocate, {n} pages from "
                                                         "Redis"] / n,
           "allocate_local_us_per_page": 1e6 * per_call[f"KVCache.allocate, {n} pages local"]
           / n}
    rows.append({"impl": "fit: fetch = fixed + per_page * pages", "section": "fetch cost",
                 **fit})
    return rows, fit


# ---------------------------------------------------------------------- run
def run(ctx: BenchContext) -> dict[str, Any]:
    why = redis_missing()
    if why is not None:
        return skipped_record(NAME, TITLE, ctx, {"requests": _num_requests(ctx)}, (
            "hit rate: one cache / isolated / shared tier", "remote fetch cost"), why)
    import redis

    from llmds.dist import RedisPageStore, RemoteTier
    from llmds.dist._redis_server import RedisServer

    n = _num_requests(ctx)
    reqs = chat_requests(n, ctx.seed)
    ctx.progress(0, 2, "two replicas on the chat trace")
    with RedisServer() as server:
        probe: Any = redis.Redis.from_url(server.url)
        version = probe.info("server").get("redis_version")
        probe.close()
        rows, rates = _hit_rates(RedisPageStore, RemoteTier, server, reqs)
        ctx.progress(1, 2, "remote fetch cost")
        server.flushall()
        fetch_rows, fit = _fetch_cost(RedisPageStore, RemoteTier, server.url, ctx)
        rows += fetch_rows
    ctx.progress(2, 2, "done")

    label = {"kv": "KVCache", "radix": "RadixCache"}
    ratios: list[dict[str, Any]] = []
    for kind in ("kv", "radix"):
        for page in PAGE_SIZES:
            one, iso, shared = (rates[(kind, page, c)]
                                for c in ("one cache", "isolated", "shared tier"))
            ratios.append({"name": f"hit rate: one cache - shared tier, {label[kind]} "
                                   f"replicas, page {page}",
                           "value": one - shared, "goal": _GOAL_GAP, "higher_is_better": False})
            ratios.append({"name": f"hit rate: shared tier - isolated, {label[kind]} "
                                   f"replicas, page {page}", "value": shared - iso,
                           "goal": None})
    ratios.append({"name": "hit rate: one KVCache - shared tier of a KVCache and a "
                           "RadixCache replica, page 16",
                   "value": rates[("kv", 16, "one cache")] - rates[("mixed", 16, "shared tier")],
                   "goal": _GOAL_GAP, "higher_is_better": False})
    ratios.append({"name": "remote fetch: microseconds per 64 KiB page (fitted, loopback)",
                   "value": fit["per_page_us"], "goal": None, "higher_is_better": False})
    ratios.append({"name": "remote fetch: fixed microseconds per fetch (fitted, loopback)",
                   "value": fit["fixed_us"], "goal": None, "higher_is_better": False})
    plots = [{
        "title": f"Prompt-token hit rate, two replicas round-robin ({n} chat requests)",
        "x_label": "cache and page size", "y_label": "hit rate", "kind": "bar",
        "series": [{"label": config,
                    "x": [f"{label[k]} p{p}" for k in ("kv", "radix") for p in PAGE_SIZES],
                    "y": [rates[(k, p, config)] for k in ("kv", "radix") for p in PAGE_SIZES]}
                   for config in ("one cache", "isolated", "shared tier")],
    }]
    return harness.result_record(
        NAME, TITLE, ctx=ctx,
        params={"requests": n, "page_sizes": list(PAGE_SIZES), "replicas": 2,
                "routing": "round-robin", "fetch_page_shape": list(_FETCH_SHAPE),
                "fetch_dtype": "float16", "redis_server": version,
                "redis_py": harness.peer_version("redis")},
        data=f"synthetic multi_turn_chat_trace({n}, seed={ctx.seed}); private redis-server "
             "on 127.0.0.1",
        rows=rows, ratios=ratios, plots=plots,
        notes=[
            "Hit rates are deterministic; wall_s is one replay (indicative, includes "
            "the Redis round trips of the shared tier).",
            "Local capacity is unbounded in every set-up, so the gap to one cache is "
            "only what the tier cannot carry across replicas.",
            "Fetch cost: one contains_prefix script + one MGET per fetch, header and "
            "XXH64 checksum checked per page; loopback, one client.",
        ],
        extra={"fetch_fit": fit},
    )


def main(argv: list[str] | None = None) -> int:
    return cli("bench_remote_tier", run, TITLE, argv)


if __name__ == "__main__":
    sys.exit(main())
