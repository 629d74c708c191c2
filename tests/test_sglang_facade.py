"""llmds.integrations.sglang: SGLang's prefix-cache interface over llmds's caches.

Written from SGLang's documented behaviour (constructor forms, parameter and result
objects, page alignment, LRU eviction of leaves, request lifecycle), checked against
the naive page-prefix model of tests/reference/radix.py.
"""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from llmds.integrations.sglang import (  # noqa: E402
    CacheInitParams,
    ChunkCache,
    DecLockRefParams,
    EvictParams,
    EvictResult,
    InsertParams,
    MambaRadixCache,
    MatchPrefixParams,
    RadixCache,
    RadixKey,
    Req,
    ReqToTokenPool,
    SWARadixCache,
    TokenToKVPoolAllocator,
)
from llmds.mem_cache import MambaPool  # noqa: E402
from tests.reference.radix import NaivePrefixCache  # noqa: E402


def test_constructor_forms() -> None:
    alloc = TokenToKVPoolAllocator(16)
    a = RadixCache(None, alloc, 4)
    b = RadixCache(req_to_token_pool=None, token_to_kv_pool_allocator=alloc, page_size=4)
    c = RadixCache(CacheInitParams(token_to_kv_pool_allocator=alloc, page_size=4))
    d = RadixCache.create_simulated(mock_allocator=alloc, page_size=4)
    for cache in (a, b, c, d):
        assert cache.page_size == 4 and cache.device == torch.device("cpu")
        assert cache.token_to_kv_pool_allocator is alloc and len(cache.root_node.key) == 0
    for bad in ({"is_eagle": True}, {"enable_kv_cache_events": True}):
        with pytest.raises(NotImplementedError):
            RadixCache(None, None, 1, **bad)
    with pytest.raises(ValueError, match="eviction_policy"):
        RadixCache(None, None, 1, eviction_policy="lfu")
    with pytest.raises(TypeError, match="unexpected"):
        RadixCache(None, None, 1, bogus=1)


def test_insert_match_both_call_forms() -> None:
    cache = RadixCache.create_simulated()
    assert cache.insert(RadixKey(array("q", [1, 2, 3])), torch.tensor([10, 20, 30])) == 0
    r = cache.insert(InsertParams(key=RadixKey([1, 2, 3, 4]), value=torch.tensor([10, 20, 30, 40])))
    assert r.prefix_len == 3 and r == 3
    m = cache.match_prefix(MatchPrefixParams(key=RadixKey([1, 2, 3, 4, 5])))
    assert m.device_indices.tolist() == [10, 20, 30, 40] and m.device_indices.dtype == torch.int64
    assert m.last_device_node is m.last_host_node is m.best_match_node
    assert cache.match_prefix(RadixKey([1, 2])).device_indices.tolist() == [10, 20]
    other = cache.match_prefix(MatchPrefixParams(key=RadixKey([1, 2], "x")))
    assert other.device_indices.numel() == 0
    assert cache.insert(InsertParams(key=RadixKey([7, 8]))) == 0  # value None: the token ids
    assert cache.total_size() == 6 == cache.evictable_size()


def test_page_alignment_and_eviction_order() -> None:
    alloc = TokenToKVPoolAllocator(64)
    cache = RadixCache(None, alloc, 2)
    first = alloc.alloc(5)
    assert cache.insert(InsertParams(key=RadixKey([1, 2, 3, 4, 5]), value=first)) == 0
    alloc.free(first[4:])  # the unaligned tail is the caller's
    assert cache.total_size() == 4
    second = alloc.alloc(4)
    cache.insert(InsertParams(key=RadixKey([9, 9, 8, 8]), value=second))
    cache.match_prefix(MatchPrefixParams(key=RadixKey([1, 2, 3, 4])))  # [1..4] most recent
    res = cache.evict(EvictParams(num_tokens=1))
    assert isinstance(res, EvictResult) and res.num_tokens_evicted == 4
    assert cache.match_prefix(RadixKey([9, 9])).device_indices.numel() == 0  # LRU went
    assert cache.match_prefix(RadixKey([1, 2, 3])).device_indices.tolist() == first[:2].tolist()
    assert alloc.available_size() == 64 - 4


def test_locks_receipts_and_sizes() -> None:
    cache = RadixCache.create_simulated()
    cache.insert(InsertParams(key=RadixKey([1, 2, 3]), value=torch.tensor([1, 2, 3])))
    node = cache.match_prefix(MatchPrefixParams(key=RadixKey([1, 2, 3]))).last_device_node
    receipt = cache.inc_lock_ref(node)
    assert receipt == -3 and receipt.delta == -3
    assert cache.protected_size() == 3 and cache.evictable_size() == 0
    assert cache.evict(EvictParams(num_tokens=3)).num_tokens_evicted == 0
    assert cache.dec_lock_ref(node, receipt.to_dec_params()) == 3
    with pytest.raises(ValueError):
        cache.dec_lock_ref(node)  # not locked any more: nothing changes
    assert cache.evictable_size() + cache.protected_size() == cache.total_size() == 3


def test_request_lifecycle() -> None:
    """match, allocate, insert on finish (duplicates freed), evict: no slot leaks."""
    alloc = TokenToKVPoolAllocator(128)
    rows = ReqToTokenPool(4, 64)
    cache = RadixCache(rows, alloc, 1)
    for prompt, output in (([1, 2, 3, 4], [5, 6]), ([1, 2, 3, 9], [7]), ([1, 2, 3, 4, 5], [8])):
        req = Req(prompt, req_pool_idx=rows.alloc(1)[0])
        m = cache.match_prefix(MatchPrefixParams(key=RadixKey(prompt)))
        cache.inc_lock_ref(m.last_device_node)
        req.last_node, req.prefix_indices = m.last_device_node, m.device_indices
        req.cache_protected_len = len(m.device_indices)
        n = len(prompt) + len(output)
        new = alloc.alloc(n - len(m.device_indices))
        rows.write((req.req_pool_idx, slice(0, n)), torch.cat([m.device_indices, new]))
        req.output_ids = list(output)
        cache.cache_finished_req(req)
        alloc.free(rows.req_to_token[req.req_pool_idx, n - 1 : n])  # the last token's slot
        rows.free(req.req_pool_idx)
        assert cache.protected_size() == 0
        assert alloc.available_size() + cache.total_size() == 128
        cache._check()
    assert cache.total_size() == 6  # committed tokens: 1,2,3,4,5 and the branch 9
    cache.evict(EvictParams(num_tokens=100))
    assert alloc.available_size() == 128


def test_unfinished_req_repoints_row() -> None:
    alloc = TokenToKVPoolAllocator(64)
    rows = ReqToTokenPool(2, 32)
    cache = RadixCache(rows, alloc, 1)
    cache.insert(InsertParams(key=RadixKey([1, 2]), value=alloc.alloc(2)))
    req = Req([1, 2, 3, 4], req_pool_idx=0)
    kv = alloc.alloc(4)
    rows.write((0, slice(0, 4)), kv)
    req.cache_protected_len = 0
    cache.cache_unfinished_req(req)
    m = cache.match_prefix(RadixKey([1, 2, 3, 4]))
    assert rows.req_to_token[0, :4].tolist() == m.device_indices.tolist()
    assert req.last_node is m.last_device_node and req.cache_protected_len == 4
    assert cache.protected_size() == 4
    assert alloc.available_size() + cache.total_size() == 64  # duplicates of [1, 2] freed


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["insert", "match"]),
                          st.lists(st.integers(0, 3), max_size=8)), max_size=25),
       st.sampled_from([1, 2]))
def test_against_naive_model(ops: list, page_size: int) -> None:
    alloc = TokenToKVPoolAllocator(4096)
    cache = RadixCache(None, alloc, page_size)
    model = NaivePrefixCache(page_size)
    for op, toks in ops:
        if op == "insert":
            vals = alloc.alloc(len(toks))
            got = cache.insert(InsertParams(key=RadixKey(toks), value=vals))
            assert got == model.insert(toks, vals.tolist())
            alloc.free(vals[: got.prefix_len])
            alloc.free(vals[len(toks) - len(toks) % page_size :])
        else:
            m = cache.match_prefix(MatchPrefixParams(key=RadixKey(toks)))
            length, indices = model.match(toks)
            assert m.device_indices.tolist() == indices and len(indices) == length
        cache._check()
        assert alloc.available_size() + cache.total_size() == 4096


def test_swa_facade() -> None:
    class SWAAlloc(TokenToKVPoolAllocator):
        def __init__(self, size: int) -> None:
            super().__init__(size)
            self.swa_freed: list[int] = []

        def free_swa(self, indices) -> None:  # type: ignore[no-untyped-def]
            self.swa_freed += indices.tolist()

    alloc = SWAAlloc(64)
    cache = SWARadixCache(None, alloc, 2, 1)  # SGLang's order: sliding_window_size, page_size
    assert cache.sliding_window_size == 2 and cache.supports_swa()
    cache.insert(InsertParams(key=RadixKey([1, 2, 3, 4]), value=alloc.alloc(4)))
    cache.insert(InsertParams(key=RadixKey([1, 2, 5, 6]), value=alloc.alloc(4)))
    node = cache.match_prefix(MatchPrefixParams(key=RadixKey([1, 2, 3, 4]))).last_device_node
    receipt = cache.inc_lock_ref(node)
    assert receipt.swa_uuid_for_lock is not None
    cache.dec_lock_ref(node, receipt.to_dec_params())
    res = cache.evict(EvictParams(num_tokens=0, swa_num_tokens=2))
    assert res.swa_num_tokens_evicted >= 2
    cache._check()


def test_mamba_and_chunk_facades() -> None:
    alloc = TokenToKVPoolAllocator(32)
    states = MambaPool(4)
    cache = MambaRadixCache(None, alloc, 1, mamba_pool=states)
    slot = states.alloc_track_slot()
    r = cache.insert(InsertParams(key=RadixKey([1, 2, 3]), value=alloc.alloc(3),
                                  mamba_value=torch.tensor([slot])))
    assert r.prefix_len == 0 and not r.mamba_exist
    m = cache.match_prefix(MatchPrefixParams(key=RadixKey([1, 2, 3, 4])))
    assert m.device_indices.numel() == 3
    res = cache.evict(EvictParams(num_tokens=3, mamba_num=1))
    assert res.num_tokens_evicted == 3 and res.mamba_num_evicted == 1
    assert states.num_free == 4 and alloc.available_size() == 32
    rows = ReqToTokenPool(1, 8)
    chunk = ChunkCache(rows, alloc, 1)
    assert chunk.is_chunk_cache() and chunk.match_prefix(
        MatchPrefixParams(key=RadixKey([1]))).device_indices.numel() == 0
    req = Req([1, 2, 3], req_pool_idx=0)
    rows.write((0, slice(0, 2)), alloc.alloc(2))
    chunk.cache_finished_req(req)
    assert alloc.available_size() == 32
    assert isinstance(DecLockRefParams(), DecLockRefParams)
