"""The remote second tier of KVCache and RadixCache against a real redis-server:
shared pages across processes and across the two caches, identity isolation, restarts,
background write-back, failing stores, and a stateful test against a reference."""

from __future__ import annotations

import copy
import pickle
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from llmds import KVCache, page_hash
from llmds._remote_hooks import RadixRemote
from llmds.dist import RedisPageStore, RemoteTier
from llmds.mem_cache import (
    MambaRadixCache,
    RadixCache,
    RadixKey,
    SWARadixCache,
    TokenToKVPoolAllocator,
)
from tests.redis_server import run_in_processes
from tests.reference.remote import DictPageStore, true_kv

P = 4  # remote page size (tokens)
ROW = (2, 3)  # one token's KV
DT = np.float32


def store(url: str, **kw: Any) -> RedisPageStore:
    args: dict[str, Any] = {"model": "m", "dtype": DT, "page_size": P,
                            "page_shape": (P, *ROW), "error_backoff_s": 0.05,
                            "timeout_s": 0.5}
    args.update(kw)
    return RedisPageStore(url, **args)


def kv_cache(remote: Any, **kw: Any) -> KVCache:
    args: dict[str, Any] = {"page_size": P, "max_pages": 512, "token_shape": ROW,
                            "dtype": DT, "remote": remote}
    args.update(kw)
    return KVCache(**args)


class RadixReplica:
    """A RadixCache with its engine: a token pool and a KV buffer, and the serving loop."""

    def __init__(self, remote: Any, page_size: int = 1, slots: int = 4096,
                 row: tuple[int, ...] = ROW, dtype: Any = DT) -> None:
        self.pool = TokenToKVPoolAllocator(slots)
        self.buf = np.zeros((slots, *row), dtype=dtype)
        self.row, self.dtype = row, dtype
        self.cache = RadixCache(page_size, token_to_kv_pool_allocator=self.pool,
                                remote=remote, kv_buffer=self.buf)

    def serve(self, tokens: Sequence[int], extra: Any = None) -> int:
        """Match, check the served KV, compute the rest, insert. Returns the hit tokens."""
        cache = self.cache
        key = RadixKey(np.asarray(tokens, dtype=np.int64), extra)
        r = cache.match_prefix(key)
        m = r.prefix_len
        truth = true_kv(tokens, extra, self.row, self.dtype)
        assert self.buf[r.indices].tobytes() == truth[:m].tobytes(), "wrong KV served"
        cache.inc_lock_ref(r.last_node)
        new = self.pool.alloc(len(tokens) - m)
        self.buf[new] = truth[m:]
        res = cache.insert(key, np.concatenate((r.indices, new)))
        assert res.prefix_len == m
        aligned = len(tokens) - len(tokens) % cache.page_size
        self.pool.free(new[aligned - m :])  # the unaligned tail is not cached
        cache.dec_lock_ref(r.last_node)
        return m


def kv_serve(cache: KVCache, sid: Any, tokens: Sequence[int], extra: Any = None) -> int:
    """allocate, check the cached KV, write the rest, free. Returns the hit tokens."""
    n = cache.allocate(sid, tokens, extra)
    truth = true_kv(tokens, extra, ROW, cache.pool.dtype)
    assert cache.get_array(sid)[:n].tobytes() == truth[:n].tobytes(), "wrong KV served"
    table = cache.block_table(sid)
    for i in range(n, len(tokens)):
        cache.pool[table[i // P], i % P] = truth[i]
    cache.free(sid)
    return n


def prompts(tag: int, n: int, length: int = 37) -> list[list[int]]:
    rng = np.random.default_rng(tag)
    system = rng.integers(0, 1000, 12).tolist()
    return [system + rng.integers(0, 1000, length - 12).tolist() for _ in range(n)]


# ---------------------------------------------------------------- identity
@pytest.mark.parametrize("extra", [None, 7, "lora-1", b"\x00", ("t", 3), np.int64(5)])
def test_both_caches_compute_the_page_hash_identity(extra: Any) -> None:
    tokens = list(range(3, 40))
    want = page_hash.chain_digests(tokens, P, extra)
    kv = KVCache(page_size=P, max_pages=32)
    kv.allocate("s", tokens, extra)
    table = kv.block_table("s").tolist()
    assert [kv._pages.page_digest[p] for p in table[: len(want)]] == want
    rr = RadixReplica(DictPageStore(P, (P, *ROW)))
    remote: RadixRemote = rr.cache._remote
    kb = np.asarray(tokens, dtype="<u4").tobytes()
    assert remote.digests(kb, extra, len(want)) == want
    assert remote.digests(kb, extra, 3) == want[:3]  # from the memo
    other = np.asarray([9, *tokens[1:]], dtype="<u4").tobytes()
    assert remote.digests(other, extra, 2) == page_hash.chain_digests(
        [9, *tokens[1:]], P, extra)[:2]


def test_kv_cache_and_radix_cache_share_one_tier(redis_url: str) -> None:
    kv = kv_cache(store(redis_url))
    rr = RadixReplica(store(redis_url))
    a, b = prompts(1, 3), prompts(2, 3)
    for i, t in enumerate(a):
        assert kv_serve(kv, i, t) == (12 // P * P if i else 0)  # system prompt reused
    for t in a:  # every full page KVCache wrote is a remote hit, byte-identical
        assert rr.serve(t) == len(t) // P * P
    for t in b:
        rr.serve(t)
    for i, t in enumerate(b):
        assert kv_serve(kv, 10 + i, t) == len(t) // P * P
    # the first prompt of each set whole from the store, then the system prompt is local
    assert kv.stats()["remote_hit_tokens"] == 36 + 2 * 24
    assert rr.cache.remote.stats()["hit_tokens"] == 36 + 2 * 24
    kv._check()
    rr.cache._check()
    kv.remote._check()


def test_radix_page_size_dividing_the_remote_page(redis_url: str) -> None:
    writer = RadixReplica(store(redis_url, page_size=8, page_shape=(8, *ROW)), page_size=2)
    reader = RadixReplica(store(redis_url, page_size=8, page_shape=(8, *ROW)), page_size=4)
    t = prompts(3, 1, length=30)[0]
    assert writer.serve(t) == 0
    assert writer.serve([*t[:14], 1, 2, 3]) == 14  # local, radix page 2
    assert reader.serve([*t[:22], 5]) == 16  # two remote pages of 8
    assert reader.serve(t) == 24  # 16 local, the third remote page
    reader.cache._check()


def test_bytes_store_and_background_tier(redis_url: str) -> None:
    s = store(redis_url, page_shape=None)  # opaque bytes pages
    with RemoteTier(s, background=True, batch_pages=3) as tier:
        kv = kv_cache(tier)
        for i, t in enumerate(prompts(4, 5)):
            kv_serve(kv, i, t)
        assert tier.flush(timeout_s=30)
    stats = tier.stats()
    assert stats["closed"] and stats["written_pages"] == stats["put_pages"] > 0
    reader = kv_cache(store(redis_url, page_shape=None))
    for i, t in enumerate(prompts(4, 5)):
        assert kv_serve(reader, i, t) == 36
    assert reader.remote.stats()["hit_pages"] == 9 + 4 * 6  # then the system prompt is local


# ---------------------------------------------------------------- processes
def _writer(url: str, kind: str, tag: int) -> int:
    remote = RemoteTier(store(url), background=kind == "kv")
    if kind == "kv":
        kv = kv_cache(remote)
        for i, t in enumerate(prompts(tag, 4)):
            kv_serve(kv, i, t)
    else:
        rr = RadixReplica(remote)
        for t in prompts(tag, 4):
            rr.serve(t)
    remote.close(flush=True)
    return int(remote.stats()["written_pages"])


def _reader(url: str, kind: str, tag: int) -> tuple[int, int]:
    remote = RemoteTier(store(url))
    hits = 0
    if kind == "kv":
        kv = kv_cache(remote)
        for i, t in enumerate(prompts(tag, 4)):
            hits += kv_serve(kv, i, t)  # checks the KV byte for byte
    else:
        rr = RadixReplica(remote)
        for t in prompts(tag, 4):
            hits += rr.serve(t)
    return hits, int(remote.stats()["hit_tokens"])


@pytest.mark.slow
def test_four_processes_share_one_store(redis_url: str) -> None:
    kinds = ["kv", "radix", "kv", "radix"]
    written = run_in_processes(_writer, [(redis_url, k, 100 + i) for i, k in enumerate(kinds)])
    assert all(w > 0 for w in written)
    # each process reads another's prompts, through the other kind of cache
    got = run_in_processes(_reader, [(redis_url, kinds[(i + 1) % 4], 100 + i)
                                     for i in range(4)])
    for hits, remote_hits in got:
        assert hits == 4 * 36  # every full page of every prompt
        assert remote_hits >= 36  # the first prompt entirely from the store


@pytest.mark.parametrize("change", [
    {"model": "other"}, {"revision": "r2"}, {"namespace": "tenant-b"},
    {"extra": "lora-2"}, {"dtype": np.float64},
])
def test_a_different_identity_never_hits(redis_url: str, change: dict[str, Any]) -> None:
    change = dict(change)
    extra = change.pop("extra", None)
    dtype = change.get("dtype", DT)
    writer = kv_cache(store(redis_url))
    reader_kv = kv_cache(store(redis_url, **change), dtype=dtype)
    reader_radix = RadixReplica(store(redis_url, **change), dtype=dtype)
    for i, t in enumerate(prompts(5, 3)):
        kv_serve(writer, i, t)
    for i, t in enumerate(prompts(5, 3)):
        assert reader_kv.allocate(i, t, extra) == (12 if i else 0)  # local only
        assert reader_radix.cache.match_prefix(RadixKey(t, extra)).prefix_len == 0
    assert reader_kv.remote.stats()["found_pages"] == 0
    assert reader_radix.cache.remote.stats()["found_pages"] == 0


# ---------------------------------------------------------------- failures
def test_restarting_redis_only_turns_hits_into_misses(make_redis_server: Any) -> None:
    server = make_redis_server()
    kv = kv_cache(store(server.url))
    rr = RadixReplica(store(server.url))
    ts = prompts(6, 6)
    kv_serve(kv, 0, ts[0])
    server.stop()
    assert kv_serve(kv, 1, ts[1]) == 12  # the system prompt, local
    assert rr.serve(ts[0]) == 0  # a miss, not an error
    server.start()  # same port, empty
    time.sleep(0.06)  # past error_backoff_s
    assert rr.serve(ts[2]) == 12  # its own system prompt; nothing remote survived
    assert kv_serve(kv, 2, ts[3]) == 12
    # writes work again: what one writes the other reads
    assert rr.serve(ts[3]) == 36
    kv_serve(kv, 3, ts[4])
    assert rr.serve(ts[4]) == 36
    kv._check()
    rr.cache._check()


class FailingStore(DictPageStore):
    """A store whose every call raises, or answers nonsense."""

    def __init__(self, mode: str) -> None:
        super().__init__(P, None)
        self.mode = mode

    def contains_prefix(self, page_hashes: Sequence[bytes]) -> int:
        if self.mode == "raise":
            raise RuntimeError("store down")
        return {"count": 10**6, "negative": -3, "text": "x"}.get(self.mode, len(page_hashes))

    def get_many(self, page_hashes: Sequence[bytes]) -> list[Any]:
        n = len(page_hashes)
        bad = {
            "shape": [np.zeros((P + 1, *ROW), DT)] * n,
            "dtype": [np.zeros((P, *ROW), np.float64)] * n,
            "length": [b"\x00" * 7] * n,
            "object": [object()] * n,
            "short": [],
        }
        if self.mode in bad:
            return bad[self.mode]
        raise RuntimeError("store down")

    def put_many(self, page_hashes: Sequence[bytes], payloads: Sequence[Any]) -> int:
        if self.mode == "put-none":
            return None  # type: ignore[return-value]
        raise RuntimeError("store down")


@pytest.mark.parametrize("mode", ["raise", "count", "negative", "text", "shape", "dtype",
                                  "length", "object", "short", "put-none"])
@pytest.mark.parametrize("background", [False, True])
def test_a_failing_store_never_raises_and_never_serves(mode: str, background: bool) -> None:
    tier = RemoteTier(FailingStore(mode), background=background)
    kv = kv_cache(tier)
    rr = RadixReplica(tier)
    for i, t in enumerate(prompts(7, 3)):
        assert kv_serve(kv, i, t) == (12 if i else 0)  # local hits only
        assert rr.serve(t) == (12 if i else 0)
    kv.attach("a", true_kv(list(range(9)), None, ROW, DT), prefix_tokens=list(range(9)))
    tier.close()
    stats = tier.stats()
    assert stats["hit_pages"] == 0
    assert stats["errors"] + stats["rejected_pages"] + stats["refused_pages"] > 0
    kv._check()
    rr.cache._check()
    tier._check()


def test_unreachable_redis_is_a_miss() -> None:
    kv = kv_cache(store("redis://127.0.0.1:1/0"))
    assert kv_serve(kv, 0, prompts(8, 1)[0]) == 0
    s = kv.remote.store.stats()
    assert s["errors"] >= 1 and not s["available"]


def test_a_corrupt_value_is_a_miss(redis_url: str) -> None:
    s = store(redis_url)
    kv = kv_cache(s)
    t = prompts(9, 1)[0]
    kv_serve(kv, 0, t)
    digests = page_hash.chain_digests(t, P)
    client = redis.Redis.from_url(redis_url)
    client.set(s.key(digests[2]), b"LLKV" + b"\x00" * 300)  # torn / foreign
    client.close()
    rr = RadixReplica(store(redis_url))
    assert rr.serve(t) == 2 * P  # the run stops at the corrupt page
    assert rr.cache.remote.store.stats()["corrupt"] == 1


def test_pool_short_evicts_unlocked_leaves_for_fetched_pages(redis_url: str) -> None:
    writer = kv_cache(store(redis_url))
    t = prompts(10, 1, length=40)[0]
    kv_serve(writer, 0, t)
    rr = RadixReplica(store(redis_url), slots=48)
    rr.serve(list(range(5000, 5030)))  # 30 slots held by an unlocked leaf
    assert rr.pool.num_free == 18
    assert rr.serve([*t[:20], 1]) == 20  # 20 fetched: fits
    assert rr.serve(t) == 40  # 20 more: the unrelated leaf is evicted
    rr.cache._check()


# ---------------------------------------------------------------- write-back
class GatedStore(DictPageStore):
    """put_many waits for ``gate`` and says when it started (deterministic queue tests)."""

    def __init__(self) -> None:
        super().__init__(P, (P, *ROW))
        self.gate = threading.Event()
        self.entered = threading.Event()

    def put_many(self, page_hashes: Sequence[bytes], payloads: Sequence[Any]) -> int:
        self.entered.set()
        assert self.gate.wait(30)
        return super().put_many(page_hashes, payloads)


def _pages(n: int) -> tuple[list[bytes], np.ndarray]:
    hashes = page_hash.chain_digests(list(range(n * P)), P, "wb")
    return hashes, np.arange(n * P * 6, dtype=DT).reshape(n, P, *ROW)


def test_background_queue_is_bounded_and_close_drops_or_flushes() -> None:
    s = GatedStore()
    tier = RemoteTier(s, background=True, max_pending_pages=8, batch_pages=4)
    tier.bind((P, *ROW), np.dtype(DT), "test pages")
    h, pages = _pages(20)
    tier.submit(h[:4], pages[:4])
    assert s.entered.wait(30)  # batch 1 is in flight, the writer blocks in put_many
    tier.submit(h[4:8], pages[4:8])  # queued: 8 pending
    tier.submit(h[8:10], pages[8:10])  # over max_pending_pages: dropped
    assert tier.stats()["pending_pages"] == 8 and tier.stats()["dropped_pages"] == 2
    assert not tier.flush(timeout_s=0.01)
    threading.Timer(0.05, s.gate.set).start()
    tier.close(flush=False)  # drops the queued batch, waits for the one in flight
    stats = tier.stats()
    assert stats["written_pages"] == 4 and stats["dropped_pages"] == 6
    assert stats["pending_pages"] == 0 and stats["closed"]
    tier.submit(h[10:12], pages[10:12])  # after close: dropped
    assert tier.stats()["dropped_pages"] == 8
    assert tier.fetch(h) == []
    tier._check()
    assert sorted(s.pages) == sorted(h[:4])

    s2 = DictPageStore(P, (P, *ROW))
    with RemoteTier(s2, background=True, batch_pages=3) as tier2:
        tier2.bind((P, *ROW), np.dtype(DT), "test pages")
        for i in range(0, 20, 2):
            tier2.submit(h[i : i + 2], pages[i : i + 2].copy())
    assert len(s2.pages) == 20 and tier2.stats()["written_pages"] == 20  # flushed on exit
    got = RemoteTier(s2)
    got.bind((P, *ROW), np.dtype(DT), "test pages")
    assert np.array_equal(np.stack(got.fetch(h)), pages)


def test_kv_cache_writes_back_on_free_and_attach_at_once() -> None:
    s = DictPageStore(P, (P, *ROW))
    kv = kv_cache(s)
    t = list(range(10))
    kv.allocate("s", t)
    kv.append_tokens("s", [10, 11, 12])
    assert not s.pages  # KV not written yet: nothing sent
    kv._check()
    kv.free("s")
    assert len(s.pages) == 3  # pages of 0..11
    kv.attach("a", true_kv(list(range(50, 59)), None, ROW, DT), prefix_tokens=range(50, 59))
    assert len(s.pages) == 5
    kv._check()


# ---------------------------------------------------------------- arguments
def test_bad_arguments_are_named(redis_url: str) -> None:
    s = store(redis_url)
    with pytest.raises(ValueError, match="page_size must equal the remote store's page_size"):
        kv_cache(s, page_size=8)
    with pytest.raises(ValueError, match=r"shape \(4, 3\).*page_shape is \(4, 2, 3\)"):
        kv_cache(s, token_shape=(3,))
    with pytest.raises(ValueError, match="hold float64, but the store's dtype is '<f4'"):
        kv_cache(s, dtype=np.float64)
    with pytest.raises(ValueError, match="enable_prefix_sharing=True"):
        kv_cache(s, enable_prefix_sharing=False)
    with pytest.raises(ValueError, match="hash_algorithm='sha256'"):
        kv_cache(s, hash_algorithm="chain64")
    with pytest.raises(ValueError, match="store's dtype is 'bfloat16'"):
        kv_cache(store(redis_url, dtype="bfloat16", page_shape=None))
    with pytest.raises(TypeError, match="remote must be a RemoteTier or a page store"):
        kv_cache(object())
    with pytest.raises(TypeError, match="int page_size"):
        RemoteTier(type("S", (), {"contains_prefix": len, "get_many": len,
                                  "put_many": len, "page_size": 0})())
    with pytest.raises(ValueError, match="max_pending_pages must be >= 1"):
        RemoteTier(s, max_pending_pages=0)
    pool = TokenToKVPoolAllocator(16)
    buf = np.zeros((16, *ROW), DT)
    with pytest.raises(ValueError, match="kv_buffer is only used with remote="):
        RadixCache(1, token_to_kv_pool_allocator=pool, kv_buffer=buf)
    with pytest.raises(ValueError, match="remote needs kv_buffer"):
        RadixCache(1, token_to_kv_pool_allocator=pool, remote=s)
    with pytest.raises(TypeError, match="token_to_kv_pool_allocator with alloc"):
        RadixCache(1, remote=s, kv_buffer=buf)
    with pytest.raises(ValueError, match="page_size 3 must divide the remote store's"):
        RadixCache(3, token_to_kv_pool_allocator=pool, remote=s, kv_buffer=buf)
    with pytest.raises(ValueError, match="kv_buffer has 8 rows, fewer than the pool's 16"):
        RadixCache(1, token_to_kv_pool_allocator=pool, remote=s, kv_buffer=buf[:8])
    with pytest.raises(TypeError, match="missing row_shape, dtype, gather, scatter"):
        RadixCache(1, token_to_kv_pool_allocator=pool, remote=s, kv_buffer=[0.0] * 16)
    tier = RemoteTier(DictPageStore(P, None))
    kv_cache(tier)
    with pytest.raises(ValueError, match="already serves pages of"):
        RadixCache(1, token_to_kv_pool_allocator=pool, remote=tier,
                   kv_buffer=np.zeros((16, 5), DT))
    for cls in (SWARadixCache, MambaRadixCache):
        with pytest.raises(TypeError, match="remote"):
            cls(remote=s)  # type: ignore[call-arg]


def test_caches_with_a_remote_tier_refuse_to_be_copied(redis_url: str) -> None:
    for cache in (kv_cache(store(redis_url)), RadixReplica(store(redis_url)).cache):
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            pickle.dumps(cache)
        with pytest.raises(TypeError, match="cannot be pickled or copied"):
            copy.deepcopy(cache)


# ---------------------------------------------------------------- stateful
_BASES = ((0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1), (0, 1, 2, 0, 2, 2, 1, 1, 0, 0, 2, 1, 1, 0),
          (1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 2, 2, 1, 1))
# prompts that often share pages: a cut of one of three bases, then a few random tokens
PROMPTS = st.tuples(st.sampled_from(_BASES), st.integers(0, 14),
                    st.lists(st.integers(0, 2), max_size=5)).map(
                        lambda x: x[0][: x[1]] + tuple(x[2]))


class TierMachine(RuleBasedStateMachine):
    """A KVCache replica and a RadixCache replica (radix page 2) sharing one Redis,
    against a model: the local prefixes of each and the page prefixes in the store.
    Every served KV row must be the true KV of its prefix; hits must be exactly the
    local run followed by the stored run."""

    url = ""

    @initialize()
    def setup(self) -> None:
        redis.Redis.from_url(self.url).flushall()
        self.store_a, self.store_b = store(self.url), store(self.url)
        self.a = kv_cache(self.store_a, max_pages=256)
        self.b = RadixReplica(self.store_b, page_size=2)
        self.local_a: set[tuple[Any, tuple[int, ...]]] = set()  # cached full-page prefixes
        self.local_b: set[tuple[Any, tuple[int, ...]]] = set()  # cached even-length prefixes
        self.remote: set[tuple[Any, tuple[int, ...]]] = set()  # stored page prefixes
        self.sid = 0

    def _run(self, extra: Any, t: tuple[int, ...], start: int) -> int:
        k = start
        while (k + 1) * P <= len(t) and (extra, t[: (k + 1) * P]) in self.remote:
            k += 1
        return k

    @rule(t=PROMPTS, extra=st.sampled_from([None, 1]))
    def serve_kv(self, t: tuple[int, ...], extra: Any) -> None:
        local = 0
        while (local + 1) * P <= len(t) and (extra, t[: (local + 1) * P]) in self.local_a:
            local += 1
        fetched = self._run(extra, t, local)
        self.sid += 1
        assert kv_serve(self.a, self.sid, t, extra) == fetched * P  # checks the KV
        full = len(t) // P
        self.local_a.update((extra, t[: (j + 1) * P]) for j in range(full))
        self.remote.update((extra, t[: (j + 1) * P]) for j in range(fetched, full))

    @rule(t=PROMPTS, extra=st.sampled_from([None, 1]))
    def serve_radix(self, t: tuple[int, ...], extra: Any) -> None:
        m = 0
        while m + 2 <= len(t) and (extra, t[: m + 2]) in self.local_b:
            m += 2
        first = m // P
        k = self._run(extra, t, first) - first
        expected = (first + k) * P if k else m
        assert self.b.serve(t, extra) == expected  # checks the KV
        aligned = len(t) - len(t) % 2
        self.local_b.update((extra, t[:e]) for e in range(2, aligned + 1, 2))
        self.remote.update((extra, t[: (j + 1) * P]) for j in range(expected // P, aligned // P))

    @rule()
    def evict_local(self) -> None:
        self.a.evict()
        self.local_a.clear()
        self.b.cache.evict(self.b.cache.total_size())
        self.local_b.clear()

    @rule()
    def flush_store(self) -> None:
        redis.Redis.from_url(self.url).flushall()
        self.remote.clear()

    @rule(data=st.data())
    def corrupt_a_page(self, data: st.DataObject) -> None:
        if not self.remote:
            return
        extra, prefix = data.draw(st.sampled_from(sorted(self.remote, key=repr)))
        digest = page_hash.chain_digests(prefix, P, extra)[-1]
        client = redis.Redis.from_url(self.url)
        value = client.get(self.store_a.key(digest))
        client.set(self.store_a.key(digest), value[:-1] + bytes([value[-1] ^ 1]))
        client.close()
        self.remote.discard((extra, prefix))

    @invariant()
    def check(self) -> None:
        if hasattr(self, "a"):
            self.a._check()
            self.b.cache._check()
            self.a.remote._check()
            self.b.cache.remote._check()
            self.store_a._check()


@pytest.mark.slow
def test_stateful_against_a_reference(redis_url: str) -> None:
    TierMachine.url = redis_url
    run = TierMachine.TestCase
    run.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
    run().runTest()


def test_the_readme_demo_shares_pages_between_runs(redis_url: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from llmds.dist import demo

    assert demo.main([redis_url, "--requests", "3", "--qps", "1000"]) == 0
    first = capsys.readouterr().out
    assert "remote hit tokens 0" in first
    assert demo.main([redis_url, "--requests", "3", "--qps", "1000"]) == 0
    second = capsys.readouterr().out.splitlines()[-1]
    assert "prefix hit rate 0.99" in second and "remote hit tokens 320" in second
    assert demo.main(["redis://127.0.0.1:1/0"]) == 1


@pytest.mark.parametrize("background", [False, True])
def test_one_tier_is_safe_for_eight_threads(redis_url: str, background: bool) -> None:
    tier = RemoteTier(store(redis_url), background=background, batch_pages=7)
    tier.bind((P, *ROW), np.dtype(DT), "test pages")

    def pages_of(t: int) -> tuple[list[bytes], np.ndarray]:
        hashes = page_hash.chain_digests(list(range(t * 1000, t * 1000 + 20 * P)), P)
        return hashes, (np.arange(20 * P * 6, dtype=DT) + t).reshape(20, P, *ROW)

    def work(t: int) -> bytes:
        hashes, pages = pages_of(t)
        for i in range(0, 20, 5):
            tier.submit(hashes[i : i + 5], pages[i : i + 5])
        assert tier.flush(timeout_s=30)
        return np.stack(tier.fetch(hashes)).tobytes()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(work, range(8)))
    assert got == [pages_of(t)[1].tobytes() for t in range(8)]
    stats = tier.stats()
    assert stats["put_pages"] == stats["written_pages"] == stats["hit_pages"] == 160
    tier._check()
    tier.close()


def test_benchmarks_report_skips_without_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmds.bench import bench_redis, bench_remote_tier
    from llmds.bench.harness import BenchContext

    monkeypatch.setenv("LLMDS_REDIS_SERVER", "/nonexistent/redis-server")
    for module in (bench_redis, bench_remote_tier):
        record = module.run(BenchContext(quick=True))
        assert record["rows"] and all("redis-server not found" in r["skipped"]
                                      for r in record["rows"])


def _child_of_a_busy_tier(tier: RemoteTier, store: GatedStore) -> dict[str, Any]:
    tier._check()  # the parent's queue is not the child's; the lock is fresh
    store.gate.set()
    hashes, pages = _pages(30)
    tier.submit(hashes[20:], pages[20:])
    assert tier.flush(timeout_s=30)
    tier._check()
    return tier.stats()


def test_a_forked_child_gets_its_own_queue_and_writer() -> None:
    s = GatedStore()
    tier = RemoteTier(s, background=True)
    tier.bind((P, *ROW), np.dtype(DT), "test pages")
    hashes, pages = _pages(30)
    tier.submit(hashes[:4], pages[:4])
    assert s.entered.wait(30)  # in flight in the parent
    tier.submit(hashes[4:10], pages[4:10])  # queued in the parent
    [child] = run_in_processes(_child_of_a_busy_tier, [(tier, s)])
    assert child["written_pages"] == 10 and child["dropped_pages"] == 10
    s.gate.set()
    tier.close()
    assert tier.stats()["written_pages"] == 10 and len(s.pages) == 10
