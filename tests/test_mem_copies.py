"""Pickle and deep-copy of the serving-memory structures: KVCache, PagedAllocator and
the radix prefix caches round-trip to independent objects that behave the same,
with their pools, at any tree depth (the stateful contract in tests/prefix_contract.py
also copies after random steps)."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from llmds.kv_cache import KVCache
from llmds.mem_cache import (
    MambaRadixCache,
    RadixCache,
    RadixKey,
    SWARadixCache,
    TokenToKVPoolAllocator,
)
from llmds.paged_allocator import PagedAllocator
from tests.prefix_rules import FACTORIES, snapshot

ROUND_TRIPS: list[Callable[[Any], Any]] = [
    lambda obj: pickle.loads(pickle.dumps(obj)),
    copy.deepcopy,
]
IDS = ["pickle", "deepcopy"]


def _kv_state(cache: KVCache) -> Any:
    seqs = {k: (cache.block_table(k).tolist(), cache.get(k)) for k in cache._seqs}
    return seqs, cache.stats(), cache.num_free_pages


def _kv_workload(cache: KVCache, start: int) -> list[Any]:
    """A few token-level and value-level calls; returns what they returned."""
    out: list[Any] = []
    base = list(range(40))
    for i in range(6):
        sid = ("r", start + i)
        out.append(cache.allocate(sid, [*base[: 8 + 5 * i], 100 + start + i]))
        cache.append_tokens(sid, [7] * (i + 1))
        if i % 2:
            cache.free(sid)
    cache.attach(("v", start), [1.0, 2.0, 3.0, 4.0, 5.0], prefix_tokens=[1, 2, 3, 4])
    cache.fork(("v", start), ("f", start))
    cache.append(("f", start), 9.0)
    out.append(cache.evict(3))
    out.append(_kv_state(cache))
    return out


@pytest.mark.parametrize("trip", ROUND_TRIPS, ids=IDS)
@pytest.mark.parametrize("algo", ["sha256", "chain64"])
def test_kvcache_round_trip_is_identical_and_independent(trip: Any, algo: str) -> None:
    cache = KVCache(page_size=4, max_pages=24, hash_algorithm=algo, dtype=np.float32)
    _kv_workload(cache, 0)
    before = _kv_state(cache)
    twin = trip(cache)
    twin._check()
    assert _kv_state(twin) == before
    # the same calls give the same answers on both ...
    assert _kv_workload(twin, 50) == _kv_workload(cache, 50)
    cache._check()
    twin._check()
    # ... and changing the copy leaves the original as it was
    mark = _kv_state(cache)
    for sid in list(twin._seqs):
        twin.detach(sid)
    twin.evict()
    twin.pool[:] = -1
    assert _kv_state(cache) == mark
    assert twin.stats()["used_pages"] == 0 and cache.stats()["used_pages"] > 0


@pytest.mark.parametrize("trip", ROUND_TRIPS, ids=IDS)
def test_paged_allocator_round_trip(trip: Any) -> None:
    a = PagedAllocator(10)
    pages = a.alloc(6)
    a.incref(pages[:2])
    a.free(pages[3:5])
    b = trip(a)
    b._check()
    assert b.refcounts() == a.refcounts() and b.stats() == a.stats()
    assert b.alloc(3) == a.alloc(3)  # the same pages, in the same order
    b.free(pages[:2])
    assert a.refcounts()[pages[0]] == 2 and b.refcounts()[pages[0]] == 1
    a._check()
    b._check()


def _state(cache: Any) -> dict[str, Any]:
    return {} if not isinstance(cache, MambaRadixCache) else {
        "mamba_value": cache.mamba_pool.alloc_track_slot()}


@pytest.mark.slow
@pytest.mark.parametrize("make", FACTORIES, ids=["radix", "swa", "mamba"])
@pytest.mark.parametrize("trip", ROUND_TRIPS, ids=IDS)
def test_deep_chain_round_trip(make: Any, trip: Any) -> None:
    """A chain of 10,000 one-token nodes (deeper than the recursion limit) copies, and
    the copy matches, locks, evicts and checks like the original."""
    n = 10_000
    pool = TokenToKVPoolAllocator(n + 64)
    cache = make(pool)
    toks = np.arange(n, dtype=np.int64)
    cache.insert(RadixKey(toks), pool.alloc(n), **_state(cache))
    for k in range(n - 1, 0, -1):  # each match splits the last node: a chain
        cache.match_prefix(RadixKey(toks[:k]))
    idx = pool.alloc(4)
    r = cache.insert(RadixKey(toks[:4]), idx, **_state(cache))  # a state near the root
    pool.free(idx[: r.prefix_len])
    assert cache.num_nodes == n
    mid = cache.match_prefix(RadixKey(toks[: n // 2])).last_node
    token = cache.inc_lock_ref(mid)
    before = snapshot(cache, pool)

    twin, twin_pool, twin_mid = trip((cache, pool, mid))
    assert snapshot(twin, twin_pool) == before
    assert twin.token_to_kv_pool_allocator is twin_pool
    assert twin_mid.root._owner is twin and twin_mid.id == mid.id
    twin._check()
    for key in (toks, toks[:3], toks[: n // 3], np.array([5, 6])):
        a, b = cache.match_prefix(RadixKey(key)), twin.match_prefix(RadixKey(key))
        assert a.prefix_len == b.prefix_len and np.array_equal(a.indices, b.indices)
        assert a.last_node.id == b.last_node.id
    twin.dec_lock_ref(twin_mid, token)
    mark = snapshot(cache, pool)
    res = twin.evict(n, n)
    assert res.full_evicted == n and twin.total_size() == 0
    assert twin_pool.num_free == twin_pool.size
    twin._check()
    assert snapshot(cache, pool) == mark  # the original kept its tree, lock and pool
    assert mid.lock_ref == 1 and cache.total_size() == n
    cache._check()


@pytest.mark.parametrize("trip", ROUND_TRIPS, ids=IDS)
def test_swa_lock_copied_with_its_boundary(trip: Any) -> None:
    pool = TokenToKVPoolAllocator(64)
    cache = SWARadixCache(sliding_window_size=2, token_to_kv_pool_allocator=pool)
    for toks in ([1, 2], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6]):
        idx = pool.alloc(len(toks))
        pool.free(idx[: cache.insert(RadixKey(toks), idx).prefix_len])
    node = cache.match_prefix(RadixKey([1, 2, 3, 4, 5, 6])).last_node
    b = cache.inc_lock_ref(node)  # window 2: [5,6] only, with a boundary marker
    cache.evict(0, 4)  # [1,2] and [3,4] become tombstones under the lock
    twin, twin_pool, twin_node = trip((cache, pool, node))
    twin._check()
    with pytest.raises(ValueError, match="swa_boundary_id"):
        twin.dec_lock_ref(twin_node, b + 1000)
    twin.dec_lock_ref(twin_node, b)
    assert twin.swa_protected_size() == twin.protected_size() == 0
    assert cache.swa_protected_size() == 2  # the original still holds its lock
    twin.evict(100, 100)
    assert twin.total_size() == 0 and twin_pool.num_free == twin_pool.size
    twin._check()
    cache._check()


def test_node_copied_alone_brings_its_cache_and_evicted_nodes_come_back_detached() -> None:
    cache = RadixCache()
    node = cache.insert(RadixKey([1, 2, 3]), np.array([4, 5, 6])).last_node
    alone = copy.deepcopy(node)
    assert alone.root._owner is not cache and alone.root._owner.total_size() == 3
    alone.root._owner.inc_lock_ref(alone)  # a live node of the copied cache
    cache.evict(3)
    ghost = pickle.loads(pickle.dumps(node))
    assert ghost.evicted and ghost.parent is None and ghost.key.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="evicted"):
        cache.inc_lock_ref(ghost)


def test_a_lambda_callback_cannot_be_pickled_but_can_be_deep_copied() -> None:
    seen: list[int] = []
    cache = RadixCache(on_node_evict=lambda nid: seen.append(nid))
    cache.insert(RadixKey([1]), np.array([0]))
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        pickle.dumps(cache)
    twin = copy.deepcopy(cache)  # functions are shared by deepcopy, as by copy.copy
    twin.evict(1)
    assert seen and cache.total_size() == 1
