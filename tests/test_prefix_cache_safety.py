"""The prefix caches under hostile callers: bad KV indices, releases of nodes never
locked, pools that refuse a free, bad Mamba slots; and SGLang's split / tombstone
behaviour. Every failed call must raise a clear error and change nothing."""

from typing import Any, ClassVar

import numpy as np
import pytest

from llmds.mem_cache import (
    ChunkCache,
    MambaPool,
    MambaRadixCache,
    RadixKey,
    SWARadixCache,
    TokenToKVPoolAllocator,
)
from tests.prefix_rules import FACTORIES, Refused, RefusingPool, make_mamba, make_swa, snapshot


def _fill(cache: Any, pool: TokenToKVPoolAllocator) -> None:
    for toks in ([1, 2, 3, 4], [1, 2, 5], [7, 8]):
        idx = pool.alloc(len(toks))
        kw = {}
        if isinstance(cache, MambaRadixCache):
            kw["mamba_value"] = cache.mamba_pool.alloc_track_slot()
        r = cache.insert(RadixKey(toks), idx, **kw)
        pool.free(idx[: r.prefix_len])


@pytest.mark.parametrize("make", FACTORIES)
@pytest.mark.parametrize(
    ("value", "exc", "msg"),
    [
        (np.array([0, 1, -1]), ValueError, ">= 0"),
        (np.array([0, 1, 64]), ValueError, "pool size 64"),
        (np.array([0, 1, 2**64 - 1], dtype=np.uint64), ValueError, "wrapped negative"),
        (np.array([0.0, 1.0, 2.0]), TypeError, "integer KV indices"),
        (np.array([True, True, False]), TypeError, "integer KV indices"),
        (np.array([0, 1]), ValueError, "one index per token"),
        ([[0, 1, 2]], ValueError, "one index per token"),
        (["a", "b", "c"], TypeError, "integer KV indices"),
        ("free", ValueError, "not allocated"),
    ],
)
def test_insert_rejects_bad_kv_indices(make, value, exc, msg):
    pool = TokenToKVPoolAllocator(64)
    cache = make(pool)
    _fill(cache, pool)
    if isinstance(value, str):
        value = np.array([pool.alloc(1)[0], 60, 61])  # 60 and 61 were never handed out
    before = snapshot(cache, pool)
    with pytest.raises(exc, match=msg):
        cache.insert(RadixKey([9, 9, 9]), value)
    assert snapshot(cache, pool) == before
    cache._check()


def test_chunk_cache_validates_indices_too():
    pool = TokenToKVPoolAllocator(8)
    cache = ChunkCache(token_to_kv_pool_allocator=pool)
    for bad in (np.array([-1]), np.array([8]), np.array([1.5]), np.array([3])):
        with pytest.raises((TypeError, ValueError), match="value"):
            cache.insert(RadixKey([1]), bad)
    assert cache.insert(RadixKey([1]), pool.alloc(1)).prefix_len == 0


@pytest.mark.parametrize("make", FACTORIES)
def test_releasing_an_ancestor_never_locked_raises_and_changes_nothing(make):
    pool = TokenToKVPoolAllocator(64)
    cache = make(pool)
    _fill(cache, pool)
    node = cache.match_prefix(RadixKey([1, 2, 3, 4])).last_node
    token = cache.inc_lock_ref(node)
    ancestor = node.parent
    assert ancestor.lock_ref == 1 and ancestor.self_lock_ref == 0
    before = snapshot(cache, pool)
    for tok in (None, True, token):
        with pytest.raises(ValueError, match="was not locked by inc_lock_ref"):
            cache.dec_lock_ref(ancestor, tok)
    assert snapshot(cache, pool) == before
    cache.dec_lock_ref(node, token)
    with pytest.raises(ValueError, match="not locked"):  # twice: lock_ref never < 0
        cache.dec_lock_ref(node, token)
    assert node.lock_ref == 0 and cache.protected_size() == 0
    cache._check()


@pytest.mark.parametrize("make", FACTORIES)
def test_evict_is_atomic_when_the_pool_refuses(make):
    pool = TokenToKVPoolAllocator(64)
    notified: list[int] = []
    cache = make(pool)
    cache.on_node_evict = notified.append
    _fill(cache, pool)
    cache.token_to_kv_pool_allocator = RefusingPool(pool)
    before = snapshot(cache, pool)
    with pytest.raises(Refused):
        cache.evict(100)
    assert snapshot(cache, pool) == before and not notified
    cache._check()
    cache.token_to_kv_pool_allocator = pool
    cache.evict(100)
    assert cache.total_size() == 0 and pool.num_free == pool.size and notified
    cache._check()


def test_swa_free_refused_after_free_swa_keeps_tombstones_consistent():
    class HalfPool(TokenToKVPoolAllocator):
        """free_swa accepted (recorded), free refused."""

        swa: ClassVar[list[int]] = []

        def free_swa(self, idx: Any) -> None:
            HalfPool.swa.extend(np.asarray(idx).tolist())

        def free(self, idx: Any) -> None:
            raise Refused("no")

    pool = HalfPool(64)
    cache = SWARadixCache(sliding_window_size=1, token_to_kv_pool_allocator=pool)
    for toks in ([1, 2, 3], [1, 2, 4], [9]):
        cache.insert(RadixKey(toks), pool.alloc(len(toks)))  # [1,2] internal, 3 leaves
    nodes = {n.id: n for n in cache._iter_nodes()}
    with pytest.raises(Refused):
        cache.evict(1, 10)  # tombstones [1,2], deletes leaves
    # every node is back; the tombstoned one stays a tombstone (its SWA KV went back)
    assert {n.id for n in cache._iter_nodes()} == set(nodes)
    tomb = [n for n in cache._iter_nodes() if n.swa_tombstone]
    assert sorted(HalfPool.swa) == sorted(v for n in tomb for v in n.value.tolist())
    cache._check()


def test_mamba_slots_come_from_the_pool_one_node_each():
    pool = TokenToKVPoolAllocator(64)
    states = MambaPool(4)
    cache = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
    slot = states.alloc_track_slot()
    cache.insert(RadixKey([1, 2]), pool.alloc(2), mamba_value=slot)
    before = snapshot(cache, pool)
    cases = [
        (slot, ValueError, "already held"),  # the same node again: would be freed twice
        (3, ValueError, "not allocated in mamba_pool"),
        (-1, ValueError, ">= 0"),
        (True, TypeError, "mamba_value must be an int"),
        (1.0, TypeError, "mamba_value must be an int"),
    ]
    for bad, exc, msg in cases:
        for key in ([1, 2], [5, 6]):
            idx = pool.alloc(2)
            with pytest.raises(exc, match=msg):
                cache.insert(RadixKey(key), idx, mamba_value=bad)
            pool.free(idx)
            assert snapshot(cache, pool) == before
    cache._check()


def test_mamba_slot_freed_behind_the_caches_back_makes_evict_fail_cleanly():
    pool = TokenToKVPoolAllocator(64)
    states = MambaPool(4)
    cache = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
    slot = states.alloc_track_slot()
    cache.insert(RadixKey([1, 2]), pool.alloc(2), mamba_value=slot)
    states.free_track_slot(slot)  # a caller bug
    before = snapshot(cache, pool)
    with pytest.raises(ValueError, match="not allocated in mamba_pool"):
        cache.evict(2)
    assert snapshot(cache, pool) == before


def test_mamba_removes_stateless_leaves_after_eviction():
    """SGLang's tombstone-leaf cleanup: a stateless node left childless goes too."""
    pool = TokenToKVPoolAllocator(64)
    states = MambaPool(4)
    for phase in ("full", "state"):
        cache = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
        cache.insert(RadixKey([1, 2]), pool.alloc(2))  # stateless
        idx = pool.alloc(3)
        r = cache.insert(RadixKey([1, 2, 3]), idx, mamba_value=states.alloc_track_slot())
        pool.free(idx[: r.prefix_len])
        assert cache.total_size() == 3
        res = cache.evict(1) if phase == "full" else cache.evict(0, 1)
        assert res.full_evicted == 3 and res.mamba_evicted == 1
        assert cache.total_size() == 0 and cache.num_nodes == 0
        assert pool.num_free == pool.size and states.num_free == states.size
        cache._check()


def test_mamba_cleanup_stops_at_a_locked_or_stateful_parent():
    pool = TokenToKVPoolAllocator(64)
    states = MambaPool(4)
    cache = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
    cache.insert(RadixKey([1]), pool.alloc(1), mamba_value=states.alloc_track_slot())
    idx = pool.alloc(3)
    cache.insert(RadixKey([1, 2, 3]), idx, mamba_value=states.alloc_track_slot())
    pool.free(idx[:1])
    m = cache.match_prefix(RadixKey([1, 2]))  # splits [2 | 3]: [2] is stateless
    assert m.prefix_len == 1
    assert cache.evict(1).full_evicted == 2  # [3], then the stateless [2]; [1] has a state
    assert cache.total_size() == 1
    cache._check()


@pytest.mark.parametrize("make", [make_swa, make_mamba])
def test_split_marks_the_lower_half_just_used(make):
    """SGLang's SWA and Mamba caches: after a split the lower half is as recent as the
    upper one, so an older leaf is evicted before it."""
    pool = TokenToKVPoolAllocator(64)
    cache = make(pool)
    kw = (lambda: {"mamba_value": cache.mamba_pool.alloc_track_slot()}) if make is make_mamba \
        else dict
    cache.insert(RadixKey([1, 2, 3, 4]), pool.alloc(4), **kw())  # oldest
    cache.insert(RadixKey([9]), pool.alloc(1), **kw())
    m = cache.match_prefix(RadixKey([1, 2]))  # splits [1,2 | 3,4]
    lower = next(iter(m.last_node.children.values()))
    assert lower.last_access == m.last_node.last_access
    assert cache.evict(1).full_evicted == 1  # [9], the least recently used leaf
    assert cache.total_size() == 4
    cache._check()


@pytest.mark.parametrize("jit", [True, False])
def test_claim_and_all_set_kernels(jit):
    from llmds._kernels import kv as _kv

    claim = _kv.claim if jit else _kv.claim.py_func
    all_set = _kv.all_set if jit else _kv.all_set.py_func
    held = np.zeros(8, dtype=np.bool_)
    assert claim(np.array([1, 3], dtype=np.int64), held) == -1
    assert held.tolist() == [False, True, False, True, False, False, False, False]
    assert claim(np.array([5, 6, 5], dtype=np.int64), held) == 2  # repeated: undone
    assert claim(np.array([0, 3], dtype=np.int64), held) == 1  # held before: undone
    assert np.flatnonzero(held).tolist() == [1, 3]
    assert all_set(np.array([1, 3], dtype=np.int64), held)
    for bad in ([1, 2], [-1], [8]):
        assert not all_set(np.array(bad, dtype=np.int64), held)
    assert all_set(np.empty(0, dtype=np.int64), held)
