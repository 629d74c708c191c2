"""Hostile-value probe of the prefix caches (RadixCache, SWARadixCache, MambaRadixCache,
ChunkCache) and their pools: every public method and argument against the values of
tests/test_kv_probe.py. A case expects success (a meaningful value) or a clear error
naming the argument, with the cache and its pools unchanged and ``_check()`` clean.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from llmds.mem_cache import (
    ChunkCache,
    MambaPool,
    MambaRadixCache,
    RadixCache,
    RadixKey,
    SWARadixCache,
    TokenToKVPoolAllocator,
)
from tests.prefix_rules import snapshot
from tests.test_kv_probe import VALUES, _count, _extra_key, _hashable, _names, run_case


def _tokens_ok(v: Any) -> bool:
    return _names("[1]", "[]")(v)


def _radix() -> Any:
    pool = TokenToKVPoolAllocator(16)
    c = RadixCache(token_to_kv_pool_allocator=pool)
    c.insert(RadixKey([1, 2, 3]), pool.alloc(3))
    return c


def _swa() -> Any:
    pool = TokenToKVPoolAllocator(16)
    c = SWARadixCache(sliding_window_size=2, token_to_kv_pool_allocator=pool)
    c.insert(RadixKey([1, 2, 3]), pool.alloc(3))
    return c


def _mamba() -> Any:
    pool = TokenToKVPoolAllocator(16)
    states = MambaPool(4)
    c = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
    c.insert(RadixKey([1, 2, 3]), pool.alloc(3), mamba_value=states.alloc_track_slot())
    pool.alloc(1)  # slot 3: allocated, held by the caller (the mamba_value cases use it)
    return c


def _state(c: Any) -> Any:
    return snapshot(c, c.token_to_kv_pool_allocator)


def _insert_value(c: Any, v: Any) -> Any:
    return c.insert(RadixKey([7]), v)


def _value_ok(v: Any) -> bool:
    return False  # the only free-and-allocated index is made by the caller, never these


Case = tuple[str, str, Any, Any, Callable[[Any, Any], Any], Callable[[Any], bool]]
CASES: list[Case] = []
for label, make in (("radix", _radix), ("swa", _swa), ("mamba", _mamba)):
    CASES += [
        (label, "key", make, _state, lambda c, v: c.match_prefix(v), _tokens_ok),
        (label, "token_ids", make, _state, lambda c, v: c.match_prefix(RadixKey(v)),
         _tokens_ok),
        (label, "extra_key", make, _state, lambda c, v: c.match_prefix(RadixKey([1], v)),
         _extra_key),
        (label, "token_ids", make, _state, lambda c, v: c.insert(RadixKey(v)), _tokens_ok),
        (label, "value", make, _state, _insert_value, _value_ok),
        (label, "num_tokens", make, _state, lambda c, v: c.evict(v), _count),
        (label, "swa_num_tokens", make, _state, lambda c, v: c.evict(0, v), _count),
        (label, "node", make, _state, lambda c, v: c.inc_lock_ref(v), lambda v: v is None),
        (label, "node", make, _state, lambda c, v: c.dec_lock_ref(v), lambda v: v is None),
    ]
CASES += [
    ("mamba", "mamba_value", _mamba, _state,
     lambda c, v: c.insert(RadixKey([5]), np.array([3]), mamba_value=v), lambda v: v is None),
    ("swa", "swa_boundary_id", _swa, _state,
     lambda c, v: c.dec_lock_ref(next(iter(c.root_node.children.values())), v),
     lambda v: False),
    ("radix()", "page_size", None, None, lambda _, v: RadixCache(page_size=v),
     lambda v: _count(v, 1, 2**20)),
    ("radix()", "token_to_kv_pool_allocator", None, None,
     lambda _, v: RadixCache(token_to_kv_pool_allocator=v), lambda v: v is None),
    ("radix()", "on_node_evict", None, None, lambda _, v: RadixCache(on_node_evict=v),
     lambda v: v is None),
    ("swa()", "sliding_window_size", None, None,
     lambda _, v: SWARadixCache(sliding_window_size=v), lambda v: _count(v, 1, 2**40)),
    ("mamba()", "mamba_cache_chunk_size", None, None,
     lambda _, v: MambaRadixCache(mamba_cache_chunk_size=v), lambda v: _count(v, 1, 2**40)),
    ("mamba()", "mamba_pool", None, None, lambda _, v: MambaRadixCache(mamba_pool=v),
     lambda v: v is None),
    ("chunk", "value", None, None,
     lambda _, v: ChunkCache(TokenToKVPoolAllocator(4)).insert(RadixKey([1]), v),
     lambda v: v is None),
    ("chunk", "num_tokens", None, None, lambda _, v: ChunkCache().evict(v), _count),
    ("TokenToKVPoolAllocator()", "size", None, None, lambda _, v: TokenToKVPoolAllocator(v),
     lambda v: _count(v, 0, 2**32)),
    ("TokenToKVPoolAllocator", "n", None, None,
     lambda _, v: TokenToKVPoolAllocator(4).alloc(v), lambda v: _count(v, 0, 4)),
    ("TokenToKVPoolAllocator", "n", None, None,
     lambda _, v: TokenToKVPoolAllocator(4).can_allocate(v), _count),
    ("TokenToKVPoolAllocator", "indices", None, None,
     lambda _, v: TokenToKVPoolAllocator(4).free(v), _names("[]")),
    ("MambaPool()", "size", None, None, lambda _, v: MambaPool(v),
     lambda v: _count(v, 0, 2**32)),
    ("MambaPool()", "state_shape", None, None, lambda _, v: MambaPool(2, state_shape=v),
     _names("[1]", "[]")),
    ("MambaPool", "slot", None, None, lambda _, v: MambaPool(2).free_track_slot(v),
     lambda v: False),
    ("RadixKey", "idx", None, None, lambda _, v: RadixKey([1, 2])[v],
     lambda v: _count(v, -2, 1) or isinstance(v, slice)),
]

PARAMS = [
    pytest.param(case, label, id=f"{case[0]}-{case[1]}-{i}-{label}")
    for i, case in enumerate(CASES)
    for label in VALUES
]


@pytest.mark.parametrize(("case", "label"), PARAMS)
def test_hostile_value(case: Case, label: str) -> None:
    run_case(case, label, ("node", "key", "slot", "index", "indices", "value", "token_ids"))


def test_values_are_the_shared_set() -> None:
    assert len(VALUES) >= 25 and math.isnan(VALUES["nan"])
    assert not _hashable([1]) and np.asarray(VALUES["uint64 max"]).dtype == np.uint64
