"""Redis tier: page lookups and transfers, shared admission, and pages under eviction.

Everything runs against private ``redis-server`` processes on loopback that this
benchmark starts and stops (one plain, one with ``maxmemory`` + ``allkeys-lru``).
Without the binary or redis-py every row is reported as skipped, with the reason.
Rates are operations per **wall** second of the median run: the cost of a Redis
call is mostly the server's time and the loopback round trip, which the client's
CPU time does not see. Cases of one section are timed in alternating turns
(:func:`~llmds.bench.harness.measure_interleaved`).

1. **Lookup of 1,000 page keys**, all stored: ``RedisPageStore.contains_prefix``
   (one Lua script) against one ``EXISTS`` per key (LMCache's ``redis://``
   connector checks keys one at a time) and a pipeline of ``EXISTS``.
2. **64 KiB pages, one client**: ``get_many`` / ``put_many`` in batches of 16 and
   64 (header and XXH64 checksum verified on every page) against redis-py
   one-at-a-time ``GET`` / ``SET`` of raw 64 KiB values, ``GET`` pipelined x16 and
   ``MGET`` x16.
3. **Admission decisions/s**: ``RedisAdmissionController.try_admit`` (one Lua call
   per decision, both buckets on the server's clock) and with ``lease=100``,
   against ``limits`` with ``RedisStorage`` (moving window, fixed window, sliding
   window counter), in two regimes: *saturated* (100 requests/s: nearly every call
   is a rejection) and *admitting* (10^9 requests/s: every call is an admission).
4. **Pages under eviction**: ``pages`` pages of 16 KiB written into a Redis whose
   ``maxmemory`` holds about half of them, ``allkeys-lru``. Baseline: two keys per
   page, payload and metadata, as LMCache's ``redis://`` connector stores them (our
   code, not LMCache's); count complete pages and orphans (one key without the
   other). llmds: one key per page; count pages ``get_many`` returns whole, and
   values that failed verification (``corrupt``).

Run it alone with ``python -m llmds.bench.bench_redis [--quick] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmds.bench import harness
from llmds.bench.harness import BenchContext

NAME = "redis"
TITLE = ("Redis tier: page lookups and 64 KiB transfers vs one-at-a-time Redis, admission vs "
         "limits (RedisStorage), pages under allkeys-lru vs two keys per page")

Cases = dict[str, tuple[Callable[[Any], object], Callable[[], Any] | None]]

_PAGE_BYTES = 64 * 1024
_EVICT_PAGE_BYTES = 16 * 1024


def _digests(tag: str, n: int) -> list[bytes]:
    return [hashlib.sha256(f"{tag}:{i}".encode()).digest() for i in range(n)]


def _sizes(ctx: BenchContext) -> dict[str, int]:
    if ctx.quick:
        return {"lookup_keys": 1000, "pages": 64, "decisions": 400, "lease_decisions": 4000,
                "evict_pages": 512}
    if ctx.full:
        return {"lookup_keys": 1000, "pages": 1024, "decisions": 10_000,
                "lease_decisions": 200_000, "evict_pages": 4096}
    return {"lookup_keys": 1000, "pages": 256, "decisions": 3000, "lease_decisions": 60_000,
            "evict_pages": 2048}


def _row(name: str, m: harness.Measurement, unit: str, **extra: Any) -> dict[str, Any]:
    return {"impl": name, f"{unit}_per_s": m.ops_per_s, "median_wall_s": m.median_wall_s,
            "median_cpu_s": m.median_cpu_s, "peak_rss_mb": m.peak_rss_mb, **extra}


# ------------------------------------------------------------------ lookups
def _lookup(redis: Any, store_cls: Any, url: str, ctx: BenchContext, n: int
            ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    store = store_cls(url, model="bench", dtype="float16", page_size=16)
    hashes = _digests("lookup", n)
    store.put_many(hashes, [b"x"] * n)
    keys = [store.key(h) for h in hashes]
    client = redis.Redis.from_url(url)
    assert store.contains_prefix(hashes) == n

    def one_at_a_time(_: Any) -> None:
        exists = client.exists
        for k in keys:
            exists(k)

    def pipelined(_: Any) -> None:
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.exists(k)
        pipe.execute()

    cases: Cases = {
        "llmds contains_prefix (1 Lua call)": (lambda _: store.contains_prefix(hashes), None),
        "EXISTS one at a time (LMCache-style)": (one_at_a_time, None),
        "EXISTS pipelined": (pipelined, None),
    }
    ms = harness.measure_interleaved(cases, ops=n, repeat=ctx.repeat)
    store.close()
    client.close()
    rows = [_row(name, m, "keys", section="lookup", keys=n) for name, m in ms.items()]
    return rows, {name: m.ops_per_s for name, m in ms.items()}


# -------------------------------------------------------------- 64 KiB pages
def _pages(redis: Any, store_cls: Any, url: str, ctx: BenchContext, n: int
           ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    rng = np.random.default_rng(ctx.seed)
    shape = (2, 16, 8, 128)  # K and V of a 16-token page, 8 KV heads of 128: 64 KiB fp16
    store = store_cls(url, model="bench", dtype=np.float16, page_size=16, page_shape=shape)
    hashes = _digests("pages", n)
    pages = [rng.standard_normal(shape).astype(np.float16) for _ in range(n)]
    raw_keys = [b"bench:raw:%d" % i for i in range(n)]
    raw_values = [p.tobytes() for p in pages]
    client = redis.Redis.from_url(url)
    client.mset(dict(zip(raw_keys, raw_values, strict=True)))
    store.put_many(hashes, pages)

    def batched(fn: Callable[[int, int], Any], size: int) -> Callable[[Any], None]:
        def run(_: Any) -> None:
            for i in range(0, n, size):
                fn(i, i + size)
        return run

    def get_loop(_: Any) -> None:
        get = client.get
        for k in raw_keys:
            get(k)

    def set_loop(_: Any) -> None:
        put = client.set
        for k, v in zip(raw_keys, raw_values, strict=True):
            put(k, v)

    def pipe_get(i: int, j: int) -> None:
        pipe = client.pipeline(transaction=False)
        for k in raw_keys[i:j]:
            pipe.get(k)
        pipe.execute()

    cases: Cases = {
        "GET one at a time": (get_loop, None),
        "SET one at a time": (set_loop, None),
        "GET pipelined x16": (batched(pipe_get, 16), None),
        "MGET x16": (batched(lambda i, j: client.mget(raw_keys[i:j]), 16), None),
        "llmds get_many x16": (batched(lambda i, j: store.get_many(hashes[i:j]), 16), None),
        "llmds get_many x64": (batched(lambda i, j: store.get_many(hashes[i:j]), 64), None),
        "llmds put_many x16": (batched(lambda i, j: store.put_many(hashes[i:j], pages[i:j]),
                                       16), None),
        "llmds put_many x64": (batched(lambda i, j: store.put_many(hashes[i:j], pages[i:j]),
                                       64), None),
    }
    ms = harness.measure_interleaved(cases, ops=n, repeat=ctx.repeat)
    got = store.get_many(hashes)
    identical = all(g is not None and g.tobytes() == v for g, v in zip(got, raw_values,
                                                                         strict=True))
    stats = store.stats()
    store.close()
    client.close()
    rows = [_row(name, m, "pages", section="64KiB pages", pages=n,
                 mb_per_s=m.ops_per_s * _PAGE_BYTES / 2**20) for name, m in ms.items()]
    rows.append({"impl": "llmds check", "section": "64KiB pages",
                 "byte_identical": identical, "corrupt": stats["corrupt"]})
    return rows, {name: m.ops_per_s for name, m in ms.items()}


# ---------------------------------------------------------------- admission
def _admission(adm_cls: Any, url: str, ctx: BenchContext, n: int, n_lease: int
               ) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    limits = harness.peer("limits")
    rng = np.random.default_rng(ctx.seed)
    tokens = rng.integers(50, 2001, max(n, n_lease)).tolist()
    rows: list[dict[str, Any]] = []
    rates: dict[str, dict[str, float]] = {}
    for regime, limit in (("saturated", 100), ("admitting", 10**9)):
        controllers: list[Any] = []

        def ours(lease: int, regime: str = regime, limit: int = limit,
                 controllers: list[Any] = controllers) -> Callable[[int], Any]:
            ac = adm_cls(url, limit, limit * 1e4, name=f"bench-{regime}-{lease}", lease=lease)
            controllers.append(ac)
            return ac.try_admit

        deciders: dict[str, tuple[Callable[[int], Any], int]] = {
            "llmds try_admit (1 call/decision)": (ours(0), n),
            "llmds try_admit, lease=100": (ours(100), n_lease),
        }
        if limits is None:
            rows.append({"impl": "limits (RedisStorage)", "section": "admission",
                         "regime": regime, "skipped": harness.skipped("limits")})
        else:
            storage = limits.storage.RedisStorage(url)
            item = limits.parse(f"{limit}/second")
            for label, strategy in (("moving window", "MovingWindowRateLimiter"),
                                    ("fixed window", "FixedWindowRateLimiter"),
                                    ("sliding window counter",
                                     "SlidingWindowCounterRateLimiter")):
                cls = getattr(limits.strategies, strategy, None)
                if cls is None:
                    continue
                deciders[f"limits {label} (RedisStorage)"] = (
                    _limits_decider(cls(storage).hit, item, f"{regime}-{label}"), n)
        cases: Cases = {}
        for name, (decide, count) in deciders.items():
            def run(_: Any, decide: Callable[[int], Any] = decide,
                    calls: list[int] = tokens[:count]) -> None:
                for t in calls:
                    decide(t)
            cases[name] = (run, None)
        # Every case does its own number of calls; measure_interleaved needs one ops
        # count, so rates are rescaled below.
        ms = harness.measure_interleaved(cases, ops=1, repeat=ctx.repeat)
        rates[regime] = {}
        for name, m in ms.items():
            count = deciders[name][1]
            per_s = count / m.median_wall_s
            rates[regime][name] = per_s
            rows.append({"impl": name, "section": "admission", "regime": regime,
                         "limit_per_s": limit, "decisions": count, "decisions_per_s": per_s,
                         "median_wall_s": m.median_wall_s, "median_cpu_s": m.median_cpu_s})
        for ac in controllers:
            stats = ac.stats()
            rows.append({"impl": f"llmds lease={ac.lease} stats", "section": "admission",
                         "regime": regime, "round_trips": stats["round_trips"],
                         "admitted": stats["admitted"], "decisions": stats["decisions"]})
            ac.close()
    return rows, rates


def _limits_decider(hit: Callable[..., Any], item: Any, key: str) -> Callable[[int], Any]:
    """One ``limits`` hit per decision (the token count is not part of its API)."""
    return lambda _tokens: hit(item, key)


# ----------------------------------------------------------------- eviction
def _eviction(redis: Any, store_cls: Any, server_cls: Any, ctx: BenchContext, n: int
              ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    maxmemory = n * _EVICT_PAGE_BYTES // 2
    rows: list[dict[str, Any]] = []
    out: dict[str, int] = {}
    rng = np.random.default_rng(ctx.seed)
    payloads = [rng.integers(0, 256, _EVICT_PAGE_BYTES, dtype=np.uint8) for _ in range(n)]
    hashes = _digests("evict", n)
    with server_cls(maxmemory=str(maxmemory), maxmemory_policy="allkeys-lru") as server:
        client = redis.Redis.from_url(server.url)
        # Baseline: payload and metadata under two keys, written together.
        meta = json.dumps({"fmt": "vllm", "dtype": "float16", "shape": [2, 16, 4, 64]}).encode()
        for i in range(0, n, 16):
            pipe = client.pipeline(transaction=False)
            for h, p in zip(hashes[i:i + 16], payloads[i:i + 16], strict=True):
                pipe.set(b"two:" + h.hex().encode() + b":kv_bytes", p.tobytes())
                pipe.set(b"two:" + h.hex().encode() + b":metadata", meta)
            pipe.execute()
        pipe = client.pipeline(transaction=False)
        for h in hashes:
            pipe.exists(b"two:" + h.hex().encode() + b":kv_bytes")
            pipe.exists(b"two:" + h.hex().encode() + b":metadata")
        flags = pipe.execute()
        payload_ok = np.array(flags[0::2], bool)
        meta_ok = np.array(flags[1::2], bool)
        out["two_keys_complete"] = int((payload_ok & meta_ok).sum())
        out["two_keys_orphan_metadata"] = int((meta_ok & ~payload_ok).sum())
        out["two_keys_orphan_payload"] = int((payload_ok & ~meta_ok).sum())
        rows.append({"impl": "two keys per page (LMCache-style)", "section": "eviction",
                     "pages": n, "maxmemory_bytes": maxmemory,
                     "complete": out["two_keys_complete"],
                     "orphan_metadata": out["two_keys_orphan_metadata"],
                     "orphan_payload": out["two_keys_orphan_payload"]})
        client.flushall()
        store = store_cls(server.url, model="bench", dtype=np.uint8, page_size=16,
                          page_shape=(_EVICT_PAGE_BYTES,))
        for i in range(0, n, 16):
            store.put_many(hashes[i:i + 16], payloads[i:i + 16])
        got = store.get_many(hashes)
        whole = sum(g is not None and g.tobytes() == p.tobytes()
                    for g, p in zip(got, payloads, strict=True))
        stats = store.stats()
        out["one_key_complete"] = int(whole)
        out["one_key_corrupt"] = int(stats["corrupt"])
        rows.append({"impl": "llmds one key per page", "section": "eviction", "pages": n,
                     "maxmemory_bytes": maxmemory, "complete": whole,
                     "returned_without_header": stats["corrupt"], "orphans": 0,
                     "oom_skipped": stats["oom_skipped"]})
        store.close()
        client.close()
    return rows, out


def redis_missing() -> str | None:
    """Why the Redis benchmarks cannot run here (no redis-py, no ``redis-server``), or
    None when they can. Shared with ``bench_remote_tier``."""
    if harness.peer("redis", extra="redis") is None:
        return harness.skipped("redis")
    from llmds.dist._redis_server import redis_server_binary

    if redis_server_binary() is None:
        return "redis-server not found on PATH (apt-get install redis-server)"
    return None


def skipped_record(name: str, title: str, ctx: BenchContext, params: dict[str, Any],
                   impls: tuple[str, ...], why: str) -> dict[str, Any]:
    """The record of a Redis benchmark that could not run: each of ``impls`` skipped."""
    rows = [{"impl": impl, "skipped": why} for impl in impls]
    return harness.result_record(name, title, ctx=ctx, params=params, data="none",
                                 rows=rows, notes=[f"skipped: {why}"])


def run(ctx: BenchContext) -> dict[str, Any]:
    why = redis_missing()
    if why is not None:
        return skipped_record(NAME, TITLE, ctx, _sizes(ctx), (
            "llmds contains_prefix", "llmds get_many/put_many",
            "llmds RedisAdmissionController", "pages under allkeys-lru"), why)
    import redis

    from llmds.dist import RedisAdmissionController, RedisPageStore
    from llmds.dist._redis_server import RedisServer

    sizes = _sizes(ctx)
    rows: list[dict[str, Any]] = []
    steps = 4
    with RedisServer() as server:
        probe: Any = redis.Redis.from_url(server.url)
        versions = {"redis_server": probe.info("server").get("redis_version"),
                    "redis_py": harness.peer_version("redis"),
                    "hiredis": harness.peer_version("hiredis") if _hiredis() else None,
                    "limits": harness.peer_version("limits")}
        probe.close()
        ctx.progress(0, steps, "lookup of 1,000 page keys")
        lookup_rows, lookup = _lookup(redis, RedisPageStore, server.url, ctx,
                                      sizes["lookup_keys"])
        rows += lookup_rows
        ctx.progress(1, steps, "64 KiB pages")
        page_rows, pages = _pages(redis, RedisPageStore, server.url, ctx, sizes["pages"])
        rows += page_rows
        ctx.progress(2, steps, "admission decisions")
        adm_rows, adm = _admission(RedisAdmissionController, server.url, ctx,
                                   sizes["decisions"], sizes["lease_decisions"])
        rows += adm_rows
    ctx.progress(3, steps, "pages under allkeys-lru")
    evict_rows, evict = _eviction(redis, RedisPageStore, RedisServer, ctx, sizes["evict_pages"])
    rows += evict_rows
    ctx.progress(steps, steps, "done")

    ratios = [
        {"name": "contains_prefix / EXISTS one at a time (1,000 keys, keys/s)",
         "value": harness.ratio(lookup["llmds contains_prefix (1 Lua call)"],
                                lookup["EXISTS one at a time (LMCache-style)"]), "goal": 20.0},
        {"name": "get_many x16 / GET one at a time (64 KiB pages/s)",
         "value": harness.ratio(pages["llmds get_many x16"], pages["GET one at a time"]),
         "goal": 2.5},
        {"name": "put_many x16 / GET one at a time (64 KiB pages/s)",
         "value": harness.ratio(pages["llmds put_many x16"], pages["GET one at a time"]),
         "goal": 2.5},
        {"name": "put_many x16 / SET one at a time (64 KiB pages/s)",
         "value": harness.ratio(pages["llmds put_many x16"], pages["SET one at a time"]),
         "goal": None},
    ]
    for regime, r in adm.items():
        peers = {k: v for k, v in r.items() if k.startswith("limits")}
        best = max(peers, key=peers.__getitem__) if peers else None
        for ours, goal in (("llmds try_admit (1 call/decision)", 1.0),
                           ("llmds try_admit, lease=100", 20.0)):
            ratios.append({
                "name": f"{ours} / {best or 'limits'}, {regime} (decisions/s; the "
                        "fastest limits strategy)",
                "value": harness.ratio(r[ours], peers.get(best)) if best else None,
                "goal": goal,
            })
    ratios.append({"name": "complete pages under allkeys-lru: one key / two keys per page",
                   "value": harness.ratio(evict["one_key_complete"],
                                          evict["two_keys_complete"]), "goal": 1.0})
    ratios.append({"name": "pages returned without their header (one key per page)",
                   "value": float(evict["one_key_corrupt"]), "goal": 0.0,
                   "higher_is_better": False})
    plots: list[dict[str, Any]] = [{
        "title": "64 KiB pages per second, one client (loopback)",
        "x_label": "implementation", "y_label": "pages per second", "kind": "bar",
        "series": [{"label": "pages/s", "x": list(pages), "y": list(pages.values())}],
    }, {
        "title": "Admission decisions per second through Redis",
        "x_label": "implementation", "y_label": "decisions per second", "kind": "bar",
        "log_y": True,
        "series": [{"label": regime, "x": list(r), "y": list(r.values())}
                   for regime, r in adm.items()],
    }]
    return harness.result_record(
        NAME, TITLE, ctx=ctx, params={**sizes, "page_bytes": _PAGE_BYTES,
                                      "evict_page_bytes": _EVICT_PAGE_BYTES,
                                      "versions": versions},
        data=f"synthetic pages and token counts, seed {ctx.seed}; private redis-server on "
             "127.0.0.1",
        rows=rows, ratios=ratios, plots=plots,
        notes=[
            "Rates are per wall-clock second (Redis work happens in the server process).",
            "llmds get_many verifies each page's header and XXH64 checksum; the raw "
            "anchors transfer unchecked bytes.",
            "llmds' admission script checks and charges two buckets on the server's "
            "clock; the limits strategies check one request limit.",
            "Under saturation a lease also caches the rejection until a request fits.",
            f"Eviction: maxmemory = half the payload bytes of {sizes['evict_pages']} "
            "pages, allkeys-lru; the two-key baseline is our code modelled on LMCache's "
            "redis:// connector (payload and metadata keys).",
        ],
        extra={"eviction": evict},
    )


def _hiredis() -> bool:
    try:
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:  # pragma: no cover
        return False
    return bool(HIREDIS_AVAILABLE)


def cli(module: str, run_fn: Callable[[BenchContext], dict[str, Any]], title: str,
        argv: list[str] | None) -> int:
    """``python -m llmds.bench.<module>``: run at the size asked, print the skips and
    ratios, write the JSON record with ``--out DIR``. Shared with ``bench_remote_tier``."""
    parser = argparse.ArgumentParser(prog=f"python -m llmds.bench.{module}",
                                     description=title)
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--full", action="store_true", help="large sizes")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per case (>= 1)")
    parser.add_argument("--out", type=Path, default=None, help="write <out>/<name>.json")
    args = parser.parse_args(argv)
    record = run_fn(BenchContext(quick=args.quick, full=args.full, repeat=args.repeat))
    if args.out is not None:
        print(harness.write_record(record, args.out))
    for row in record["rows"]:
        if "skipped" in row:
            print(f"skipped {row['impl']}: {row['skipped']}")
    for r in record["ratios"]:
        value = "n/a" if r["value"] is None else f"{r['value']:.4g}"
        print(f"{r['name']}: {value} (goal {r['goal']}, met {r['met']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli("bench_redis", run, TITLE, argv)


if __name__ == "__main__":
    sys.exit(main())
