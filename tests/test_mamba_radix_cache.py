"""MambaRadixCache and MambaPool: state-cut matches, two-phase eviction, locks, model test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis.stateful import invariant

from llmds.errors import CapacityError
from llmds.mem_cache import (
    EvictResult,
    MambaPool,
    MambaRadixCache,
    RadixKey,
    TokenToKVPoolAllocator,
)
from tests.prefix_contract import Lock, PrefixCacheMachine
from tests.reference.hybrid import NaiveMambaCache


def test_pool_basics_and_bad_input() -> None:
    p = MambaPool(2, state_shape=(2, 3))
    a, b = p.alloc_track_slot(), p.alloc_track_slot()
    assert {a, b} == {0, 1} and p.num_free == 0
    with pytest.raises(CapacityError):
        p.alloc_track_slot()
    p.states[a] = 7.0
    p.copy_states(a, b)
    assert (p.states[b] == 7.0).all()
    p.free_track_slot(a)
    with pytest.raises(ValueError, match="not allocated"):
        p.free_track_slot(a)
    with pytest.raises(ValueError, match="not allocated"):
        p.copy_states(a, b)
    with pytest.raises(ValueError, match="slot"):
        p.free_track_slot(5)
    with pytest.raises(TypeError):
        p.free_track_slot(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MambaPool(-1)
    assert p.num_free == 1


def test_match_cuts_at_last_state_and_branching() -> None:
    pool = MambaPool(8)
    c = MambaRadixCache(mamba_pool=pool)
    s1 = pool.alloc_track_slot()
    r = c.insert(RadixKey([1, 2, 3]), np.array([10, 11, 12]), mamba_value=s1)
    assert r.prefix_len == 0 and not r.mamba_exist
    c.insert(RadixKey([1, 2, 3, 4, 5]), np.array([10, 11, 12, 13, 14]))  # no state
    m = c.match_prefix(RadixKey([1, 2, 3, 4, 5, 6]))
    assert m.prefix_len == 3 and m.indices.tolist() == [10, 11, 12]
    # the KV matches 5 tokens, 2 past the last state: the request branches at 5
    assert m.mamba_branching_seqlen == 5 and m.last_node.mamba_value == s1
    # a match ending inside the state node splits it: the upper half has no state
    m = c.match_prefix(RadixKey([1, 2, 9]))
    assert m.prefix_len == 0 and m.mamba_branching_seqlen == 2
    m = c.match_prefix(RadixKey([1, 2, 3]))  # the KV match ends at a state
    assert m.prefix_len == 3 and m.mamba_branching_seqlen is None
    assert c.match_prefix(RadixKey([7])).mamba_branching_seqlen is None  # no match
    s2 = pool.alloc_track_slot()
    r = c.insert(RadixKey([1, 2, 3]), np.array([20, 21, 22]), mamba_value=s2)
    assert r.prefix_len == 3 and r.mamba_exist  # the caller frees s2
    pool.free_track_slot(s2)
    assert c.mamba_total_size() == 1
    c._check()


def test_branching_seqlen_is_chunk_aligned() -> None:
    """SGLang's definition: the KV-matched length rounded down to the state chunk
    when the KV match goes past the last state, None when that is 0."""
    pool = MambaPool(4)
    c = MambaRadixCache(mamba_pool=pool, mamba_cache_chunk_size=4)
    c.insert(RadixKey(list(range(4))), mamba_value=pool.alloc_track_slot())
    c.insert(RadixKey(list(range(11))))  # KV only past the state at 4
    m = c.match_prefix(RadixKey([*range(11), 99]))
    assert m.prefix_len == 4 and m.mamba_branching_seqlen == 8
    m = c.match_prefix(RadixKey([*range(6), 99]))
    assert m.prefix_len == 4 and m.mamba_branching_seqlen == 4  # 6 -> chunk 4
    m = c.match_prefix(RadixKey([0, 1, 2, 99]))  # 3 tokens: rounds to 0 -> None
    assert m.prefix_len == 0 and m.mamba_branching_seqlen is None
    for bad, err in ((0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(err, match="mamba_cache_chunk_size"):
            MambaRadixCache(mamba_cache_chunk_size=bad)  # type: ignore[arg-type]
    c._check()


def _full_list(c: MambaRadixCache) -> list[list[int]]:
    out = []
    n = c._flru.f_next
    while n is not c._flru:
        out.append(n.key.tolist())
        n = n.f_next
    return out


def _state_list(c: MambaRadixCache) -> list[list[int]]:
    out = []
    n = c._mlru.m_next
    while n is not c._mlru:
        out.append(n.key.tolist())
        n = n.m_next
    return out


def test_lru_lists_follow_uses_locks_and_evictions() -> None:
    pool = MambaPool(8)
    c = MambaRadixCache(mamba_pool=pool)
    c.insert(RadixKey([1, 2]), mamba_value=pool.alloc_track_slot())
    c.insert(RadixKey([1, 2, 3]), mamba_value=pool.alloc_track_slot())
    c.insert(RadixKey([1, 2, 4]), mamba_value=pool.alloc_track_slot())
    # full list: LRU end first, each node after its descendants (leaves first)
    assert _full_list(c) == [[3], [4], [1, 2]]
    # state list: same times, root-side first within one use
    assert _state_list(c) == [[3], [1, 2], [4]]
    c._check()
    m = c.match_prefix(RadixKey([1, 2, 3]))
    assert _full_list(c) == [[4], [3], [1, 2]] and _state_list(c) == [[4], [1, 2], [3]]
    tok = c.inc_lock_ref(m.last_node)  # the locked path leaves both lists
    assert _full_list(c) == [[4]] and _state_list(c) == [[4], [1, 2]]
    c._check()
    c.match_prefix(RadixKey([1, 2, 4]))  # locked [1,2] is touched but not listed
    assert _state_list(c) == [[1, 2], [4]]
    c.dec_lock_ref(m.last_node, tok)  # an unlock is a use: the path is MRU again
    assert _full_list(c) == [[4], [3], [1, 2]] and _state_list(c) == [[4], [1, 2], [3]]
    c._check()
    # a split marks both halves just used (SGLang): the lower one right before the upper
    c.insert(RadixKey([5, 6, 7]))
    c.match_prefix(RadixKey([1, 2, 3]))
    c.match_prefix(RadixKey([5, 9]))  # splits [5 | 6,7]; touches [5] and [6,7]
    assert _full_list(c) == [[4], [3], [1, 2], [6, 7], [5]]
    c._check()
    # phase 1 always pops the LRU leaf: [4], [3], then [1,2] (a leaf by then)
    assert c.evict(4) == EvictResult(full_evicted=4, swa_evicted=0, mamba_evicted=3)
    assert _full_list(c) == [[6, 7], [5]]
    c._check()


def test_insert_bad_input_changes_nothing() -> None:
    c = MambaRadixCache(page_size=2, mamba_pool=MambaPool(2))
    with pytest.raises(ValueError, match="whole pages"):
        c.insert(RadixKey([1, 2, 3]), np.array([1, 2, 3]), mamba_value=0)
    with pytest.raises(ValueError, match="non-empty"):
        c.insert(RadixKey([]), np.array([], dtype=np.int64), mamba_value=0)
    with pytest.raises(TypeError, match="mamba_value"):
        c.insert(RadixKey([1, 2]), np.array([1, 2]), mamba_value="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="mamba_pool"):
        MambaRadixCache(mamba_pool=object())
    assert c.total_size() == 0
    with pytest.raises(ValueError, match="swa_num_tokens"):
        c.evict(0, -1)
    c._check()


def test_two_phase_eviction_order() -> None:
    pool = MambaPool(8)
    kv = TokenToKVPoolAllocator(64)
    c = MambaRadixCache(token_to_kv_pool_allocator=kv, mamba_pool=pool)

    def put(toks: list[int]) -> None:
        idx = kv.alloc(len(toks))
        r = c.insert(RadixKey(toks), idx, mamba_value=pool.alloc_track_slot())
        kv.free(idx[: r.prefix_len])

    put([1, 2])
    put([1, 2, 3, 4])
    put([1, 2, 5, 6])
    c.match_prefix(RadixKey([1, 2, 5, 6]))  # [3,4] is the LRU state
    assert c.mamba_total_size() == 3 and pool.num_free == 5
    # one state: the LRU state is [3,4]'s, an unlocked leaf: it leaves the tree
    r = c.evict(0, 1)
    assert r == EvictResult(full_evicted=2, swa_evicted=0, mamba_evicted=1)
    assert c.total_size() == 4 and pool.num_free == 6 and kv.num_free == 60
    c._check()
    # next LRU state is [1,2]'s (internal): only the state goes
    r = c.evict(0, 1)
    assert r == EvictResult(full_evicted=0, swa_evicted=0, mamba_evicted=1)
    assert c.total_size() == 4 and pool.num_free == 7
    assert c.match_prefix(RadixKey([1, 2, 7])).prefix_len == 0
    # phase 1: full eviction frees leaves and their states
    node = c.match_prefix(RadixKey([1, 2, 5, 6])).last_node
    tok = c.inc_lock_ref(node)
    assert tok is True and c.mamba_protected_size() == 1
    assert c.evict(100, 100) == EvictResult(0, 0, 0)  # everything locked
    c._check()
    c.dec_lock_ref(node, tok)
    r = c.evict(100)
    assert r.full_evicted == 4 and r.mamba_evicted == 1
    assert c.total_size() == 0 and pool.num_free == 8 and kv.num_free == 64
    c._check()


def test_lock_bad_inputs() -> None:
    pool = MambaPool(4)
    c = MambaRadixCache(mamba_pool=pool)
    c.insert(RadixKey([1, 2, 3]), mamba_value=pool.alloc_track_slot())
    node = c.match_prefix(RadixKey([1, 2, 3])).last_node
    with pytest.raises(ValueError, match="not locked"):
        c.dec_lock_ref(node, True)
    tok = c.inc_lock_ref(node)
    # a state lock only on the locked node, full lock over the path
    assert c.match_prefix(RadixKey([1, 2])).last_node is c.root_node  # splits [1,2 | 3]
    upper = node.parent
    assert upper.mamba_value is None and upper.lock_ref == 1 and node.mamba_lock_ref == 1
    for tok_ in (True, False, None):  # an ancestor the caller never locked
        with pytest.raises(ValueError, match="was not locked by inc_lock_ref"):
            c.dec_lock_ref(upper, tok_)
    assert upper.lock_ref == 1 and node.lock_ref == 1
    with pytest.raises(ValueError, match="token"):
        c.dec_lock_ref(node)  # would leave the state locked under a free path
    c._check()
    c.dec_lock_ref(node, tok)
    assert c.protected_size() == 0 and c.mamba_protected_size() == 0
    c._check()


# ------------------------------------------------------------ stateful model test


class MambaMachine(PrefixCacheMachine):
    """The family contract for MambaRadixCache: states, branching and LRU orders."""

    chunk = 1

    def make_cache(self) -> MambaRadixCache:
        self.states = MambaPool(1024)
        return MambaRadixCache(token_to_kv_pool_allocator=self.pool, mamba_pool=self.states,
                               mamba_cache_chunk_size=self.chunk)

    def make_model(self) -> NaiveMambaCache:
        return NaiveMambaCache(self.chunk)

    @staticmethod
    def page_info(node: Any, page: tuple[int, ...], at_end: bool) -> Any:
        return page[0], at_end and node.mamba_value is not None

    def model_pages(self) -> dict[Any, Any]:
        return self.model.snapshot()

    def insert_kwargs(self, toks: list[int], state: bool) -> dict[str, Any]:
        return {"mamba_value": self.states.alloc_track_slot()} if state and toks else {}

    def expect_insert(self, toks: list[int], extra: Any, vals: Any, kw: dict[str, Any],
                      res: Any) -> None:
        slot = kw.get("mamba_value")
        exp_len, exp_exist = self.model.insert(toks, vals.tolist(), extra,
                                               with_state=slot is not None)
        assert res.prefix_len == exp_len and res.mamba_exist == exp_exist
        if res.mamba_exist:  # the cache keeps its own state; the caller frees the slot
            self.states.free_track_slot(slot)

    def expect_match(self, toks: list[int], extra: Any, r: Any) -> None:
        exp_b = self.model.branching(toks, extra)
        exp_len, exp_idx = self.model.match(toks, extra)
        assert r.prefix_len == exp_len and r.indices.tolist() == exp_idx
        assert r.mamba_branching_seqlen == exp_b

    def on_lock(self, lock: Lock, by: int) -> None:
        if by < 0:  # an unlock is a use of the path
            self.model.touch(lock.toks, lock.extra)

    def release_states(self) -> None:
        for node in self.cache._iter_nodes():
            if node.mamba_value is not None:
                self.states.free_track_slot(node.mamba_value)

    def _locked(self) -> tuple[set[Any], set[Any]]:
        """Prefixes under a full lock, and the prefixes whose state is locked."""
        full: set[Any] = set()
        state: set[Any] = set()
        for lk in self.locks:
            full.update((lk.extra, lk.toks[:e]) for e in range(1, len(lk.toks) + 1))
            if lk.token:
                state.add((lk.extra, lk.toks))
        return full, state

    def expect_evict(self, n: int, s: int, r: Any, before: dict[Any, Any],
                     after: dict[Any, Any]) -> None:
        removed = set(before) - set(after)
        lost = {p for p, (_v, st_) in before.items() if st_ and (p not in after or not after[p][1])}
        assert r.mamba_evicted == len(lost)
        for p, (v, st_) in after.items():
            assert v == before[p][0] and (not st_ or before[p][1])
        for lk in self.locks:
            if lk.toks:
                assert after[(lk.extra, lk.toks)][1], "a locked state was evicted"
        # LRU order (model times): phase 1 frees the least recently used unlocked
        # leaves, phase 2 the least recently used unlocked states
        time = self.model.time
        locked, state_locked = self._locked()
        # stateless nodes deleted with their last child (SGLang's tombstone-leaf
        # cleanup) may be newer; the LRU check is over the leaves eviction chose
        chosen = {p for p in removed if self.model.is_leaf(p) or before[p][1]}
        self.model.sync(after)
        leaves = [p for p in after if p not in locked and self.model.is_leaf(p)]
        states = [p for p, (_v, st_) in after.items() if st_ and p not in state_locked]
        if s == 0 and chosen:
            assert max(time[p] for p in chosen) <= min((time[q] for q in leaves), default=1 << 60)
        for p in removed - chosen:  # deleted by the cleanup: stateless, its subtree gone
            assert not before[p][1] and not any(
                q[0] == p[0] and q[1][: len(p[1])] == p[1] for q in after)
        if s == 0 and r.full_evicted < n:
            assert not leaves, "stopped while an unlocked leaf was left"
        if n == 0 and lost:
            assert max(time[p] for p in lost) <= min((time[q] for q in states), default=1 << 60)
        if r.mamba_evicted < s:
            assert not states, "stopped while an unlocked state was left"

    @invariant()
    def state_sizes(self) -> None:
        c = self.cache
        assert c.mamba_evictable_size() + c.mamba_protected_size() == c.mamba_total_size()
        assert c.swa_evictable_size() == c.mamba_evictable_size()
        assert c.swa_protected_size() == c.mamba_protected_size()
        assert c.mamba_total_size() == sum(self.model.state.values())
        assert self.states.num_free + c.mamba_total_size() == self.states.size


TestMambaModel = pytest.mark.slow(MambaMachine.TestCase)
TestMambaModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


class MambaMachineChunked(MambaMachine):
    chunk = 2


TestMambaModelChunked = pytest.mark.slow(MambaMachineChunked.TestCase)
TestMambaModelChunked.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)


@pytest.mark.slow
def test_hybrid_bench_quick_runs() -> None:
    from llmds.bench import bench_hybrid_cache
    from llmds.bench.harness import BenchContext

    rec = bench_hybrid_cache.run(BenchContext(quick=True, repeat=1))
    impls = {r["impl"] for r in rec["rows"]}
    assert len(impls) == 3 and all(0 <= r["hit_rate"] <= 1 for r in rec["rows"])
    plain = [r["hit_rate"] for r in rec["rows"] if r["impl"] == "RadixCache"]
    assert all(r["hit_rate"] <= plain[0] + 1e-12 for r in rec["rows"])


def test_paged_random_ops_keep_lists_consistent() -> None:
    """page_size 2: splits land on page boundaries; _check after every step."""
    rng = np.random.default_rng(7)
    kv = TokenToKVPoolAllocator(2048)
    pool = MambaPool(256)
    c = MambaRadixCache(page_size=2, token_to_kv_pool_allocator=kv, mamba_pool=pool)
    locks: list[tuple[Any, Any]] = []
    for _ in range(300):
        op = rng.integers(5)
        toks = rng.integers(0, 3, size=int(rng.integers(0, 5)) * 2).tolist()
        if op == 0:
            idx = kv.alloc(len(toks))
            slot = pool.alloc_track_slot() if toks and rng.integers(2) else None
            r = c.insert(RadixKey(toks), idx, mamba_value=slot)
            kv.free(idx[: r.prefix_len])
            if r.mamba_exist:
                pool.free_track_slot(slot)  # type: ignore[arg-type]
        elif op == 1:
            m = c.match_prefix(RadixKey([*toks, 9]))
            assert m.prefix_len % 2 == 0
        elif op == 2:
            m = c.match_prefix(RadixKey(toks))
            locks.append((m.last_node, c.inc_lock_ref(m.last_node)))
        elif op == 3 and locks:
            node, tok = locks.pop(int(rng.integers(len(locks))))
            c.dec_lock_ref(node, tok)
        else:
            c.evict(int(rng.integers(0, 6)), int(rng.integers(0, 3)))
        c._check()
        assert kv.num_free + c.total_size() == kv.size
        assert pool.num_free + c.mamba_total_size() == pool.size
    for node, tok in locks:
        c.dec_lock_ref(node, tok)
    c.evict(10**6)
    assert c.total_size() == 0 and pool.num_free == pool.size
    c._check()
