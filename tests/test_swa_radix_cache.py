"""SWARadixCache: tombstones, window-cut matches, SWA locks, two-phase eviction, model test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from llmds.mem_cache import (
    EvictResult,
    RadixCache,
    RadixKey,
    SWARadixCache,
    TokenToKVPoolAllocator,
)
from tests.prefix_contract import PrefixCacheMachine
from tests.reference.hybrid import NaiveSWACache


class RecPool:
    """Records full and SWA frees."""

    def __init__(self) -> None:
        self.freed: list[int] = []
        self.swa_freed: list[int] = []

    def free(self, idx: Any) -> None:
        self.freed.extend(np.asarray(idx).tolist())

    def free_swa(self, idx: Any) -> None:
        self.swa_freed.extend(np.asarray(idx).tolist())


def ins(c: SWARadixCache, toks: list[int], start: int) -> Any:
    return c.insert(RadixKey(toks), np.arange(start, start + len(toks)))


def test_constructor_and_dispatch() -> None:
    with pytest.raises(NotImplementedError, match="SWARadixCache"):
        RadixCache(sliding_window_size=4)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="sliding_window_size"):
            SWARadixCache(sliding_window_size=bad)
    for badt in (1.5, True, "4"):
        with pytest.raises(TypeError, match="sliding_window_size"):
            SWARadixCache(sliding_window_size=badt)  # type: ignore[arg-type]
    c = SWARadixCache(page_size=2, sliding_window_size=4)
    assert c.sliding_window_size == 4 and c.swa_total_size() == 0
    assert c.evict(5, 5) == EvictResult(0, 0, 0)
    with pytest.raises(ValueError, match="swa_num_tokens"):
        c.evict(0, -1)
    c._check()


def _tombstone_setup() -> tuple[SWARadixCache, RecPool]:
    pool = RecPool()
    c = SWARadixCache(sliding_window_size=2, token_to_kv_pool_allocator=pool)
    ins(c, [1, 2, 3, 4], 10)  # node A = [1,2,3,4]
    ins(c, [1, 2, 3, 4, 5, 6, 7], 20)  # child B = [5,6,7]
    ins(c, [1, 2, 3, 4, 8, 9], 30)  # child C = [8,9]
    c.match_prefix([1, 2, 3, 4, 5, 6, 7])  # B is newer than C
    c._check()
    return c, pool


def test_two_phase_evict_tombstones_internal_nodes() -> None:
    c, pool = _tombstone_setup()
    assert c.swa_total_size() == c.total_size() == 9
    # SWA phase only: LRU among SWA-unlocked: A (internal, touched with B) is older? A was
    # touched with B last, C is oldest -> C leaves the tree (a fully unlocked leaf).
    r = c.evict(0, 1)
    assert r == EvictResult(full_evicted=2, swa_evicted=2, mamba_evicted=0)
    assert sorted(pool.freed) == [34, 35]
    # next: A and B have the same time; A has the smaller id -> A becomes a tombstone
    r = c.evict(0, 1)
    assert r.swa_evicted == 4 and r.full_evicted == 0
    assert sorted(pool.swa_freed) == [10, 11, 12, 13]
    assert c.total_size() == 7 and c.swa_total_size() == 3
    c._check()
    # a match through the tombstone needs W=2 live tokens behind its end
    m = c.match_prefix([1, 2, 3, 4, 5, 6, 7])
    assert m.prefix_len == 7 and m.indices.tolist() == [10, 11, 12, 13, 24, 25, 26]
    m = c.match_prefix([1, 2, 3, 4, 5, 9])  # ends 1 token after the tombstone
    assert m.prefix_len == 0 and m.last_node is c.root_node
    m = c.match_prefix([1, 2, 3])  # inside the tombstone -> nothing usable
    assert m.prefix_len == 0
    c._check()


def test_insert_restores_tombstone() -> None:
    c, pool = _tombstone_setup()
    c.evict(0, 3)  # C leaves, A becomes a tombstone
    pool.freed.clear()
    res = ins(c, [1, 2, 3, 4, 5, 6, 7, 9], 50)
    # prefix_len stops at the first tombstone; the cache adopts 50..53 for A, frees
    # A's old 10..13 and the caller's duplicates 54..56 of B
    assert res.prefix_len == 0
    assert sorted(pool.freed) == [10, 11, 12, 13, 54, 55, 56]
    assert c.match_prefix([1, 2, 3]).indices.tolist() == [50, 51, 52]
    assert c.swa_total_size() == c.total_size() == 8
    c._check()


def test_tombstone_leaves_are_removed_with_their_last_child() -> None:
    pool = RecPool()
    c = SWARadixCache(sliding_window_size=2, token_to_kv_pool_allocator=pool)
    ins(c, [1, 2], 10)
    ins(c, [1, 2, 3, 4], 20)
    ins(c, [1, 2, 3, 4, 5, 6], 30)  # chain [1,2] -> [3,4] -> [5,6]
    ins(c, [9], 40)
    node = c.match_prefix([1, 2, 3, 4, 5, 6]).last_node
    b = c.inc_lock_ref(node)  # W=2: only [5,6] is SWA-locked
    assert c.evict(0, 4) == EvictResult(full_evicted=1, swa_evicted=5, mamba_evicted=0)
    # [9] left the tree, [1,2] and [3,4] are tombstones under the lock
    assert sorted(pool.swa_freed) == [10, 11, 22, 23] and pool.freed == [40]
    c._check()
    c.dec_lock_ref(node, b)
    # [5,6] goes; its tombstone ancestors are useless now and go with it
    assert c.evict(0, 1) == EvictResult(full_evicted=6, swa_evicted=2, mamba_evicted=0)
    assert sorted(pool.freed) == [10, 11, 22, 23, 34, 35, 40]
    assert c.total_size() == c.swa_total_size() == 0 and c.num_nodes == 0
    c._check()


def test_tombstone_cascade_stops_at_a_live_or_shared_node() -> None:
    c = SWARadixCache(sliding_window_size=1)
    ins(c, [1, 2, 3], 10)
    ins(c, [1, 2, 3, 4], 20)
    ins(c, [1, 2, 3, 5], 30)  # A=[1,2,3] -> {B=[4], C=[5]}
    node = c.match_prefix([1, 2, 3, 5]).last_node
    b = c.inc_lock_ref(node)  # W=1: C is SWA-locked, A only full-locked
    r = c.evict(0, 10)  # B (unlocked leaf) leaves; A becomes a tombstone
    assert r == EvictResult(full_evicted=1, swa_evicted=4, mamba_evicted=0)
    assert c.total_size() == 4 and c.swa_total_size() == 1  # A stays: C is its child
    c._check()
    c.dec_lock_ref(node, b)
    assert c.evict(1).full_evicted == 4  # C goes, then the childless tombstone A
    assert c.num_nodes == 0
    c._check()
    # the cascade stops at a live node: U=[1,2] -> X=[3,4] (tombstone) -> Y=[5]
    ins(c, [1, 2, 3, 4], 10)
    ins(c, [1, 2, 3, 4, 5], 20)
    c.match_prefix([1, 2, 9])  # splits X: the upper half U gets the newer id
    node = c.match_prefix([1, 2, 3, 4, 5]).last_node
    b = c.inc_lock_ref(node)
    assert c.evict(0, 2).swa_evicted == 2  # equal times: X (older id) is tombstoned
    c.dec_lock_ref(node, b)
    assert c.evict(1).full_evicted == 3  # Y and the tombstone X; live U stays
    assert c.total_size() == c.swa_total_size() == 2
    assert c.match_prefix([1, 2, 3]).indices.tolist() == [10, 11]
    c._check()


def test_insert_keeps_a_locked_tombstone() -> None:
    pool = RecPool()
    c = SWARadixCache(sliding_window_size=2, token_to_kv_pool_allocator=pool)
    ins(c, [1, 2, 3, 4], 10)
    ins(c, [1, 2, 3, 4, 5, 6], 20)
    node = c.match_prefix([1, 2, 3, 4, 5, 6]).last_node
    b = c.inc_lock_ref(node)
    c.evict(0, 4)  # [1..4] becomes a tombstone; its full KV is read by the lock
    assert sorted(pool.swa_freed) == [10, 11, 12, 13]
    r = ins(c, [1, 2, 3, 4, 5, 6, 7], 50)
    # the locked tombstone keeps 10..13 (not freed) and stays a tombstone; the
    # cache frees the caller's copies 50..53 and its duplicates 54, 55 of [5,6]
    assert r.prefix_len == 0 and sorted(pool.freed) == [50, 51, 52, 53, 54, 55]
    assert c.match_prefix([1, 2, 3, 4, 5, 6, 7]).indices.tolist() == [10, 11, 12, 13, 24, 25, 56]
    c._check()
    c.dec_lock_ref(node, b)
    ins(c, [1, 2, 3, 4], 60)  # unlocked now: restored with the caller's indices
    assert c.match_prefix([1, 2, 3]).indices.tolist() == [60, 61, 62]
    c._check()


def test_swa_lock_boundary_and_bad_unlocks() -> None:
    c = SWARadixCache(sliding_window_size=3)
    ins(c, [1, 2], 10)
    ins(c, [1, 2, 3, 4], 20)
    ins(c, [1, 2, 3, 4, 5, 6], 30)  # chain [1,2] -> [3,4] -> [5,6]
    m = c.match_prefix([1, 2, 3, 4, 5, 6])
    node = m.last_node
    b = c.inc_lock_ref(node)
    assert b is not None  # window 3 covered by [5,6]+[3,4]; [1,2] not SWA-locked
    assert c.protected_size() == 6 and c.swa_protected_size() == 4
    assert c.evictable_size() + c.protected_size() == c.total_size()
    assert c.swa_evictable_size() + c.swa_protected_size() == c.swa_total_size()
    c._check()
    # [1,2] is outside the window: it can lose its SWA KV while locked
    assert c.evict(100, 100) == EvictResult(0, 2, 0)
    c._check()
    assert c.match_prefix([1, 2, 3, 4, 5, 6]).prefix_len == 6
    # bad unlocks change nothing
    other = node.parent  # locked through the path, but not the node b was issued for
    with pytest.raises(ValueError, match="boundary"):
        c.dec_lock_ref(node, 987654)
    with pytest.raises(ValueError, match=r"boundary|SWA"):
        c.dec_lock_ref(node, None)
    with pytest.raises(ValueError):
        c.dec_lock_ref(other, b)  # a boundary id from another node
    c._check()
    c.dec_lock_ref(node, b)
    assert c.protected_size() == 0 and c.swa_protected_size() == 0
    with pytest.raises(ValueError, match="not locked"):
        c.dec_lock_ref(node, b)
    c._check()
    with pytest.raises(ValueError, match="tombstone"):
        c.inc_lock_ref(c.root_node.children[np.array([1], "<u4").tobytes()])
    with pytest.raises(TypeError):
        c.inc_lock_ref("node")  # type: ignore[arg-type]
    c._check()


def test_lock_survives_split_of_boundary_node() -> None:
    c = SWARadixCache(sliding_window_size=2)
    ins(c, [1, 2, 3, 4], 10)
    ins(c, [1, 2, 3, 4, 5, 6, 7, 8], 20)
    node = c.match_prefix([1, 2, 3, 4, 5, 6, 7, 8]).last_node
    b = c.inc_lock_ref(node)  # [5..8] covers W=2 alone: boundary on it
    c.match_prefix([1, 2, 3, 4, 5, 6, 9])  # splits the boundary node [5,6 | 7,8]
    c._check()
    c.dec_lock_ref(node, b)
    assert c.swa_protected_size() == 0 and c.protected_size() == 0
    c._check()


def test_with_token_pool_sizes_match() -> None:
    pool = TokenToKVPoolAllocator(64)
    c = SWARadixCache(page_size=2, sliding_window_size=4, token_to_kv_pool_allocator=pool)
    idx = pool.alloc(10)
    r = c.insert(RadixKey(list(range(10))), idx)
    assert r.prefix_len == 0
    c.evict(0, 4)
    assert pool.num_free + c.total_size() == 64
    c.evict(100)
    assert c.total_size() == 0 and pool.num_free == 64
    c._check()


# ------------------------------------------------------------ stateful model test


class SWAMachine(PrefixCacheMachine):
    """The family contract for SWARadixCache, plus inserts over locked tombstones."""

    page_size = 1
    window = 3

    def make_cache(self) -> SWARadixCache:
        return SWARadixCache(self.page_size, sliding_window_size=self.window,
                             token_to_kv_pool_allocator=self.pool)

    def make_model(self) -> NaiveSWACache:
        return NaiveSWACache(self.page_size, self.window)

    @staticmethod
    def page_info(node: Any, page: tuple[int, ...], at_end: bool) -> Any:
        return page, node.swa_tombstone

    def model_pages(self) -> dict[Any, Any]:
        return self.model.pages()

    def _locked(self) -> set[Any]:
        """Pages on a locked path (their full KV is read by a running request)."""
        ps = self.page_size
        return {(lk.extra, lk.toks[:e]) for lk in self.locks
                for e in range(ps, len(lk.toks) + 1, ps)}

    def expect_insert(self, toks: list[int], extra: Any, vals: Any, kw: dict[str, Any],
                      res: Any) -> None:
        exp = self.model.insert(toks, vals.tolist(), extra, locked=self._locked())
        assert res.prefix_len == exp

    def expect_match(self, toks: list[int], extra: Any, r: Any) -> None:
        exp_len, exp_idx = self.model.match(toks, extra)
        assert r.prefix_len == exp_len and r.indices.tolist() == exp_idx

    @precondition(lambda self: self.locks)
    @rule(i=st.integers(0, 100), more=st.lists(st.integers(0, 3), max_size=3))
    def insert_over_lock(self, i: int, more: list[int]) -> None:
        """Tombstone what a lock leaves outside its window, then insert through the
        locked path (a running request still reads the tombstones' full KV)."""
        self.evict(0, 1 << 20)
        held = self.locks[i % len(self.locks)]
        self.insert(list(held.toks) + more, held.extra)

    def expect_evict(self, n: int, s: int, r: Any, before: dict[Any, Any],
                     after: dict[Any, Any]) -> None:
        removed = set(before) - set(after)
        newly_tomb = {p for p, (_v, t) in after.items() if t and not before[p][1]}
        swa_gone = {p for p in removed if not before[p][1]} | newly_tomb
        assert r.swa_evicted == len(swa_gone) * self.page_size
        for p, (v, t) in after.items():
            assert v == before[p][0] and (t or not before[p][1])
        # nothing in a lock's window was tombstoned
        for lk in self.locks:
            for e in range(len(lk.toks) - len(lk.toks) % self.page_size, 0, -self.page_size):
                if e <= len(lk.toks) - self.window:
                    break
                p = (lk.extra, lk.toks[:e])
                assert not after[p][1] or before[p][1]
        self.model.value = {p: v for p, (v, _t) in after.items()}
        self.model.tomb = {p: t for p, (_v, t) in after.items()}

    @invariant()
    def swa_sizes(self) -> None:
        c = self.cache
        assert c.swa_evictable_size() + c.swa_protected_size() == c.swa_total_size()
        assert c.swa_total_size() == self.page_size * sum(
            1 for t in self.model.tomb.values() if not t)
        assert not self.model.tombstone_leaves()


TestSWAModel = pytest.mark.slow(SWAMachine.TestCase)
TestSWAModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


class SWAMachinePaged(SWAMachine):
    page_size = 2
    window = 4


TestSWAModelPaged = pytest.mark.slow(SWAMachinePaged.TestCase)
TestSWAModelPaged.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


class SWAMachineNarrow(SWAMachine):
    """W=1: tombstones under a lock (outside its window) come up often."""

    window = 1


TestSWAModelNarrow = pytest.mark.slow(SWAMachineNarrow.TestCase)
TestSWAModelNarrow.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
