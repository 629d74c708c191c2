"""RadixCache, ChunkCache and the token pool: behaviour, bad input, stateful model test."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis.stateful import invariant

from llmds.errors import CapacityError
from llmds.mem_cache import (
    BasePrefixCache,
    ChunkCache,
    EvictResult,
    InsertResult,
    MatchResult,
    RadixCache,
    RadixKey,
    TokenToKVPoolAllocator,
)
from tests.prefix_contract import Lock, PrefixCacheMachine, walk_nodes
from tests.reference.radix import NaivePrefixCache


def ins(cache: RadixCache, toks: list[int], start: int = 100, extra: Any = None) -> InsertResult:
    return cache.insert(RadixKey(toks, extra), np.arange(start, start + len(toks)))


def test_empty_cache_and_empty_key() -> None:
    c = RadixCache()
    r = c.match_prefix(RadixKey([1, 2, 3]))
    assert isinstance(r, MatchResult)
    assert r.prefix_len == 0 and r.indices.dtype == np.int64 and r.indices.size == 0
    assert r.last_node is c.root_node
    assert c.match_prefix(RadixKey([])).prefix_len == 0
    assert c.insert(RadixKey([]), np.array([], dtype=np.int64)).prefix_len == 0
    assert c.total_size() == c.evictable_size() == c.protected_size() == 0
    assert c.evict(10) == EvictResult(0, 0, 0)
    assert isinstance(c, BasePrefixCache)
    c._check()


def test_match_insert_split_and_duplicates() -> None:
    c = RadixCache()
    assert ins(c, [1, 2, 3, 4, 5], 10).prefix_len == 0
    r = c.match_prefix(RadixKey([1, 2, 3, 9]))
    assert r.prefix_len == 3 and r.indices.tolist() == [10, 11, 12]
    assert r.last_node.key.tolist() == [1, 2, 3]  # split at the match end
    assert c.num_nodes == 2
    res = ins(c, [1, 2, 3, 4, 5, 6], 50)
    assert res.prefix_len == 5 and res.last_node.key.tolist() == [6]
    got = c.match_prefix(RadixKey([1, 2, 3, 4, 5, 6, 7])).indices.tolist()
    assert got == [10, 11, 12, 13, 14, 55]
    # insert ending inside a node splits it, last_node ends exactly there
    res = ins(c, [1, 2], 70)
    assert res.prefix_len == 2 and res.last_node.key.tolist() == [1, 2]
    assert c.total_size() == 6
    c._check()


@pytest.mark.parametrize("toks", [
    [1, 258, 2**32 - 1, 0], (5, 6), [np.int64(3), 4, np.int64(7)], [1, True], [],
    [True, True], [-1, 2], [2, 2**32], [1, 2.0], [1.5], ["a"], [None], [[1, 2]],
    [2**70], [np.float64(1.0)],
])
def test_list_keys_take_the_fast_path_with_the_same_answers(toks: Any) -> None:
    """A list or tuple of ints is encoded by ``array('I')``; whatever it encodes or
    refuses, the answer (bytes, or the error type and message) is the NumPy path's,
    except that ints NumPy would promote to float (int64 with uint64) are read as the
    ints they are."""
    from llmds.mem_cache._keys import key_token_bytes

    def answer(x: Any) -> Any:
        try:
            return key_token_bytes(x)
        except (TypeError, ValueError) as e:
            return type(e), str(e)

    try:
        arr = np.asarray(toks)
    except (TypeError, ValueError, OverflowError):
        arr = None
    got = answer(toks)
    if arr is not None:
        assert got == answer(arr)
    if isinstance(got, bytes):
        assert got == np.asarray(toks, dtype=np.int64).astype("<u4").tobytes()
    else:
        assert "token_ids" in got[1]
    mixed = [np.int64(3), np.uint64(7)]
    assert answer(mixed) == answer([3, 7]) and isinstance(answer(mixed), bytes)


def test_match_accepts_plain_sequences_and_arrays() -> None:
    c = RadixCache()
    c.insert([3, 4, 5], [7, 8, 9])
    assert c.match_prefix(np.array([3, 4], dtype=np.int32)).indices.tolist() == [7, 8]
    assert c.match_prefix(np.array([3, 4, 5], dtype=np.uint64)).prefix_len == 3
    assert c.match_prefix((3, 4, 5, 6)).prefix_len == 3
    # value=None stores the token ids themselves
    c.insert(RadixKey([9, 8]))
    assert c.match_prefix([9, 8]).indices.tolist() == [9, 8]
    c._check()


def test_indices_are_a_copy() -> None:
    c = RadixCache()
    ins(c, [1, 2, 3], 10)
    r = c.match_prefix([1, 2, 3])
    r.indices[:] = -1
    assert c.match_prefix([1, 2, 3]).indices.tolist() == [10, 11, 12]


def test_page_alignment() -> None:
    c = RadixCache(page_size=4)
    res = ins(c, list(range(10)), 0)  # only 8 tokens (2 pages) are stored
    assert res.prefix_len == 0 and c.total_size() == 8
    assert c.match_prefix(list(range(7))).prefix_len == 4
    assert c.match_prefix(list(range(3))).prefix_len == 0
    assert c.match_prefix([0, 1, 2, 3, 4, 5, 9, 7]).prefix_len == 4  # second page differs
    assert c.num_nodes == 2  # the match split the node at the page boundary
    assert ins(c, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 100).prefix_len == 8
    assert c.total_size() == 12
    # a different first page is a different child even if the first token agrees
    assert ins(c, [0, 1, 2, 9], 200).prefix_len == 0
    assert c.match_prefix([0, 1, 2, 9, 5]).indices.tolist() == [200, 201, 202, 203]
    c._check()


def test_namespaces_never_match_each_other() -> None:
    c = RadixCache()
    ins(c, [1, 2, 3], 10, extra="a")
    assert c.match_prefix(RadixKey([1, 2, 3])).prefix_len == 0
    assert c.match_prefix(RadixKey([1, 2, 3], "b")).prefix_len == 0
    assert c.match_prefix(RadixKey([1, 2, 3], "a")).prefix_len == 3
    assert ins(c, [1, 2, 3], 20).prefix_len == 0
    assert ins(c, [1, 2, 3], 30, extra=("tenant", 7)).prefix_len == 0
    assert c.match_prefix(RadixKey([1, 2], ("tenant", 7))).indices.tolist() == [30, 31]
    assert c.total_size() == 9
    c._check()


def test_lru_eviction_order_and_callbacks() -> None:
    pool = TokenToKVPoolAllocator(100)
    evicted: list[int] = []
    c = RadixCache(token_to_kv_pool_allocator=pool, on_node_evict=evicted.append)
    nodes = {}
    for name, toks in [("a", [1, 1]), ("b", [2, 2, 2]), ("c", [3])]:
        v = pool.alloc(len(toks))
        nodes[name] = c.insert(RadixKey(toks), v).last_node
    c.match_prefix([1, 1])  # a is now the most recently used
    assert pool.num_free == 94
    r = c.evict(1)
    assert r.full_evicted == 3 and evicted == [nodes["b"].id]  # b: least recent
    assert nodes["b"].evicted and pool.num_free == 97
    assert c.evict(2).full_evicted == 3 and evicted[1:] == [nodes["c"].id, nodes["a"].id]
    assert c.total_size() == 0 and pool.num_free == 100
    c._check()


def test_parent_becomes_leaf_and_competes_by_its_own_time() -> None:
    c = RadixCache()
    ins(c, [1, 2, 3, 4], 0)
    ins(c, [1, 2, 9], 10)  # splits: [1,2] -> {[3,4], [9]}
    ins(c, [5], 20)
    ins(c, [1, 2, 9], 10)  # touches [1,2] and [9]
    r = c.evict(2)  # [3,4] is least recent
    assert r.full_evicted == 2
    assert c.match_prefix([5]).prefix_len == 1
    assert c.evict(1).full_evicted == 1  # [9] (older than [5] now)
    assert c.match_prefix([1, 2, 9]).prefix_len == 2
    assert c.evict(100).full_evicted == 3
    assert c.total_size() == 0
    c._check()


def test_locking_prevents_eviction_and_moves_sizes() -> None:
    c = RadixCache()
    ins(c, [1, 2, 3, 4], 0)
    ins(c, [1, 2, 5], 10)
    r = c.match_prefix([1, 2, 3])
    assert r.prefix_len == 3
    assert c.inc_lock_ref(r.last_node) is None
    assert c.protected_size() == 3 and c.evictable_size() == 2 and c.total_size() == 5
    c.inc_lock_ref(r.last_node)  # twice
    assert c.evict(100).full_evicted == 2  # [4] and [5] go, the locked path stays
    assert c.match_prefix([1, 2, 3]).prefix_len == 3
    assert c.evictable_size() == 0 and c.protected_size() == 3
    c.dec_lock_ref(r.last_node)
    assert c.protected_size() == 3
    c.dec_lock_ref(r.last_node)
    assert c.protected_size() == 0 and c.evictable_size() == 3
    with pytest.raises(ValueError, match="not locked"):
        c.dec_lock_ref(r.last_node)
    assert c.evictable_size() == 3
    assert c.evict(3).full_evicted == 3 and c.total_size() == 0
    c._check()


def test_lock_root_none_and_foreign_or_evicted_nodes() -> None:
    c = RadixCache()
    assert c.inc_lock_ref(None) is None
    c.dec_lock_ref(None)
    c.inc_lock_ref(c.root_node)
    c.dec_lock_ref(c.root_node)
    node = ins(c, [1], 0).last_node
    other = RadixCache()
    with pytest.raises(ValueError, match="another cache"):
        other.inc_lock_ref(node)
    with pytest.raises(TypeError):
        c.inc_lock_ref("node")
    c.evict(1)
    with pytest.raises(ValueError, match="evicted"):
        c.inc_lock_ref(node)
    node2 = ins(c, [2], 0).last_node
    c.reset()
    with pytest.raises(ValueError, match="another cache"):
        c.inc_lock_ref(node2)
    assert c.total_size() == 0
    c._check()


def test_bad_inputs_change_nothing() -> None:
    c = RadixCache()
    ins(c, [1, 2, 3], 0)
    before = (c.total_size(), c.num_nodes)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        c.insert(RadixKey([1, -2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="2\\*\\*32"):
        c.match_prefix(RadixKey([1, 2**32]))
    with pytest.raises(ValueError, match="2\\*\\*32"):
        c.match_prefix(np.array([-1], dtype=np.int32))
    with pytest.raises(ValueError, match="one index per token"):
        c.insert(RadixKey([1, 2, 3, 4]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="one index per token"):
        c.insert(RadixKey([1, 2]), np.zeros((2, 1), dtype=np.int64))
    with pytest.raises(TypeError):
        c.insert(RadixKey([1, 2]), np.array([0.5, 1.5]))
    with pytest.raises(TypeError):
        c.match_prefix(RadixKey([1.5, 2.0]))
    with pytest.raises(TypeError, match="tuple"):
        c.match_prefix(RadixKey([(1, 2), (2, 3)]))
    with pytest.raises(TypeError, match="extra_key must be None, int, str, bytes"):
        c.match_prefix(RadixKey([1], extra_key=[1]))
    with pytest.raises(ValueError, match="num_tokens"):
        c.evict(-1)
    with pytest.raises(ValueError, match="swa_num_tokens"):
        c.evict(1, swa_num_tokens=-1)
    with pytest.raises(TypeError):
        c.evict(1.5)  # type: ignore[arg-type]
    assert (c.total_size(), c.num_nodes) == before
    assert c.match_prefix([1, 2, 3]).indices.tolist() == [0, 1, 2]
    c._check()


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="page_size"):
        RadixCache(page_size=0)
    with pytest.raises(TypeError, match="page_size"):
        RadixCache(page_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(NotImplementedError):
        RadixCache(sliding_window_size=128)
    with pytest.raises(TypeError, match="free"):
        RadixCache(token_to_kv_pool_allocator=object())
    with pytest.raises(TypeError, match="on_node_evict"):
        RadixCache(on_node_evict=3)  # type: ignore[arg-type]


def test_reset_and_flatten_and_print(capsys: pytest.CaptureFixture[str]) -> None:
    c = RadixCache()
    ins(c, [1, 2, 3], 0)
    ins(c, [1, 4], 10, extra="x")
    assert sorted(c.all_values_flatten().tolist()) == [0, 1, 2, 10, 11]
    c.pretty_print()
    assert "total=5" in capsys.readouterr().out
    c.reset()
    assert c.total_size() == 0 and c.match_prefix([1, 2]).prefix_len == 0
    assert c.all_values_flatten().size == 0
    c._check()


def test_heap_compaction_keeps_lru_correct() -> None:
    c = RadixCache()
    rng = np.random.default_rng(0)
    for i in range(3000):  # many inserts under a few parents: lots of stale heap entries
        ins(c, [i % 3, int(rng.integers(0, 50)), i], i * 3)
    assert len(c._heap) <= max(1024, 2 * c.num_nodes) + 1  # compacted
    c._check()
    total = c.total_size()
    assert c.evict(total).full_evicted == total
    c._check()


def test_chunk_cache_is_a_no_op() -> None:
    c = ChunkCache()
    assert isinstance(c, BasePrefixCache)
    r = c.match_prefix(RadixKey([1, 2, 3]))
    assert r.prefix_len == 0 and r.indices.dtype == np.int64 and r.last_node is None
    assert c.insert(RadixKey([1, 2]), np.array([3, 4])) == InsertResult()
    assert c.evict(10) == EvictResult()
    assert c.inc_lock_ref(None) is None
    c.dec_lock_ref(None)
    c.reset()
    assert c.total_size() == c.evictable_size() == c.protected_size() == 0
    assert c.swa_evictable_size() == c.swa_protected_size() == 0
    with pytest.raises(ValueError):
        c.evict(-1)
    with pytest.raises(ValueError):
        c.insert(RadixKey([1, 2]), np.array([3]))


def test_token_pool() -> None:
    pool = TokenToKVPoolAllocator(10)
    a = pool.alloc(4)
    assert a.dtype == np.int64 and len(set(a.tolist())) == 4 and pool.num_free == 6
    assert pool.can_allocate(6) and not pool.can_allocate(7)
    with pytest.raises(CapacityError):
        pool.alloc(7)
    assert pool.num_free == 6
    with pytest.raises(ValueError, match="not allocated"):
        pool.free(np.array([int(a[0]), int(a[0]) ^ 1 if (int(a[0]) ^ 1) not in a else 9]))
    with pytest.raises(ValueError, match="repeated"):
        pool.free(np.array([a[0], a[0]]))
    with pytest.raises(ValueError, match="\\[0, 10\\)"):
        pool.free(np.array([10]))
    with pytest.raises(ValueError, match="n must be"):
        pool.alloc(-1)
    assert pool.num_free == 6
    pool._check()
    pool.free(a)
    assert pool.num_free == 10 and pool.available_size() == 10
    with pytest.raises(ValueError, match="not allocated"):
        pool.free(a[:1])
    pool.free(np.array([], dtype=np.int64))
    assert pool.alloc(0).size == 0
    pool._check()


class RadixMachine(PrefixCacheMachine):
    """The family contract for RadixCache, against the dict-of-prefixes model."""

    page_size = 1

    def make_cache(self) -> RadixCache:
        self.evicted_ids: list[int] = []
        return RadixCache(
            page_size=self.page_size,
            token_to_kv_pool_allocator=self.pool,
            on_node_evict=self.evicted_ids.append,
        )

    def make_model(self) -> NaivePrefixCache:
        return NaivePrefixCache(self.page_size)

    def model_pages(self) -> dict[Any, Any]:
        return self.model.value

    def expect_insert(self, toks: list[int], extra: Any, vals: Any, kw: dict[str, Any],
                      res: Any) -> None:
        assert res.prefix_len == self.model.insert(toks, vals, extra)

    def expect_match(self, toks: list[int], extra: Any, r: Any) -> None:
        length, indices = self.model.match(toks, extra)
        assert r.prefix_len == length and r.indices.tolist() == indices

    def on_lock(self, lock: Lock, by: int) -> None:
        self.model.lock_prefix(lock.toks, len(lock.toks), lock.extra, by)

    def expect_evict(self, n: int, s: int, r: Any, before: dict[Any, Any],
                     after: dict[Any, Any]) -> None:
        model = self.model
        removed = set(before) - set(after)
        evictable_before = self.page_size * sum(
            1 for p in before if model.lock[p] == 0)
        assert r.full_evicted >= min(n, evictable_before)
        if removed:
            newest_removed = max(model.stamp[p] for p in removed)
            remaining = [model.stamp[p] for p in after if model.lock[p] == 0 and model.is_leaf(p)]
            assert all(newest_removed <= s for s in remaining), "not LRU among unlocked leaves"
        model.remove(removed)

    @invariant()
    def lru_times_and_locks(self) -> None:
        """The tree's node times order pages exactly as the model's times do."""
        c = self.cache
        assert c.protected_size() == self.model.protected()
        ps = c.page_size
        times: dict[int, int] = {}
        for extra, prefix, node in walk_nodes(c):
            toks = prefix + tuple(node.key.tolist())
            for end in range(len(prefix) + ps, len(toks) + 1, ps):
                m = self.model.stamp[(extra, toks[:end])]
                assert times.setdefault(m, node.last_access) == node.last_access
        pairs = sorted(times.items())
        assert all(a[1] < b[1] for a, b in itertools.pairwise(pairs))


class RadixMachinePage4(RadixMachine):
    page_size = 4


TestRadixPage1 = pytest.mark.slow(RadixMachine.TestCase)
TestRadixPage1.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)
TestRadixPage4 = pytest.mark.slow(RadixMachinePage4.TestCase)
TestRadixPage4.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


def test_heap_compaction_during_evict() -> None:
    # A chain of one-token nodes made by splits (so only the deepest was ever filed):
    # each eviction files the parent, and a zero limit compacts the heap in the middle
    # of the evict call, which must keep going on the compacted heap.
    c = RadixCache()
    ins(c, list(range(300)), 0)
    for k in range(299, 0, -1):
        assert c.match_prefix(list(range(k))).prefix_len == k
    assert c.num_nodes == 300
    c._heap.limit = 0
    assert c.evict(150).full_evicted == 150
    c._check()
    assert c.match_prefix(list(range(300))).prefix_len == 150
    assert c.evict(1000).full_evicted == 150
    assert c.total_size() == 0 and c.num_nodes == 0
    c._check()
