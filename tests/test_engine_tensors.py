"""Torch tensors in and out of the mem_cache caches and pools (issue 15).

Every cache method that takes token ids or KV indices takes int32/int64 tensors,
and what it hands back (match indices, indices freed into the pool, the flattened
values) is a tensor of the cache's index format. Bad tensors fail with a clear
error and change nothing. ``import llmds`` never imports torch.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmds.mem_cache import (  # noqa: E402
    ChunkCache,
    MambaPool,
    MambaRadixCache,
    RadixCache,
    RadixKey,
    SWARadixCache,
    TokenToKVPoolAllocator,
)
from tests.prefix_rules import snapshot  # noqa: E402


class RecordingPool(TokenToKVPoolAllocator):
    """A token pool that remembers what ``free``/``free_swa`` received."""

    __slots__ = ("got",)

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.got: list = []

    def free(self, indices):  # type: ignore[override]
        self.got.append(indices)
        super().free(indices)

    def free_swa(self, indices):
        self.got.append(indices)


def _caches(pool):
    return [RadixCache(token_to_kv_pool_allocator=pool),
            SWARadixCache(sliding_window_size=2, token_to_kv_pool_allocator=pool),
            MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=MambaPool(8))]


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_tensor_in_tensor_out(which: int, dtype: str) -> None:
    dt = getattr(torch, dtype)
    pool = RecordingPool(64)
    cache = _caches(pool)[which]
    vals = torch.from_numpy(pool.alloc(4)).to(dt)
    kw = {"mamba_value": cache.mamba_pool.alloc_track_slot()} if which == 2 else {}
    res = cache.insert(RadixKey(torch.tensor([1, 2, 3, 4], dtype=dt)), vals, **kw)
    assert res.prefix_len == 0
    m = cache.match_prefix(RadixKey(torch.tensor([1, 2, 3, 4], dtype=dt)))
    assert isinstance(m.indices, torch.Tensor)
    assert m.indices.dtype == dt and m.indices.device == vals.device
    assert m.indices.tolist() == vals.tolist()
    m = cache.match_prefix(RadixKey([1, 2, 9]))  # a list key: the cache's format still
    assert isinstance(m.indices, torch.Tensor) and m.indices.dtype == dt
    flat = cache.all_values_flatten()
    assert isinstance(flat, torch.Tensor) and sorted(flat.tolist()) == sorted(vals.tolist())
    cache.evict(100, 100)
    assert cache.total_size() == 0 and pool.num_free == 64
    assert pool.got and all(isinstance(g, torch.Tensor) and g.dtype == dt for g in pool.got)
    cache._check()


def test_numpy_stays_numpy_and_tensor_key_alone_gives_int64() -> None:
    cache = RadixCache()
    cache.insert(RadixKey([1, 2, 3]), np.array([5, 6, 7]))
    assert isinstance(cache.match_prefix(RadixKey([1, 2])).indices, np.ndarray)
    m = cache.match_prefix(RadixKey(torch.tensor([1, 2], dtype=torch.int32)))
    assert isinstance(m.indices, torch.Tensor) and m.indices.dtype == torch.int64
    assert m.indices.tolist() == [5, 6]
    m = cache.match_prefix(torch.tensor([1, 2, 3]))  # a bare tensor key
    assert m.indices.tolist() == [5, 6, 7]


def test_chunk_cache_tensors() -> None:
    pool = TokenToKVPoolAllocator(8)
    cache = ChunkCache(pool)
    m = cache.match_prefix(RadixKey(torch.tensor([1, 2])))
    assert isinstance(m.indices, torch.Tensor) and m.indices.numel() == 0
    assert cache.insert(RadixKey([1, 2]), torch.from_numpy(pool.alloc(2))).prefix_len == 0
    with pytest.raises(TypeError, match="integer"):
        cache.insert(RadixKey([1, 2]), torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("kind", ["float", "bfloat16", "bool", "2-D key", "2-D value",
                                  "length", "negative", "float key"])
def test_bad_tensors_change_nothing(which: int, kind: str) -> None:
    pool = TokenToKVPoolAllocator(32)
    cache = _caches(pool)[which]
    cache.insert(RadixKey([1, 2, 3]), torch.from_numpy(pool.alloc(3)))
    good = torch.from_numpy(pool.alloc(3))
    key: object = RadixKey(torch.tensor([7, 8, 9]))
    value: object = good
    if kind == "float":
        value = good.to(torch.float32)
    elif kind == "bfloat16":
        value = good.to(torch.bfloat16)
    elif kind == "bool":
        value = torch.ones(3, dtype=torch.bool)
    elif kind == "2-D key":
        key = RadixKey(torch.tensor([[7, 8, 9]]))
    elif kind == "2-D value":
        value = good.reshape(1, 3)
    elif kind == "length":
        value = good[:2]
    elif kind == "negative":
        value = torch.tensor([-1, 0, 1])
    else:
        key = RadixKey(torch.tensor([7.0, 8.0, 9.0]))
    before = snapshot(cache, pool)
    with pytest.raises((TypeError, ValueError)) as err:
        cache.insert(key, value)
    assert any(w in str(err.value) for w in ("value", "token_ids")), err.value
    assert snapshot(cache, pool) == before
    cache._check()


def test_value_on_another_device_is_refused() -> None:
    cache = RadixCache()
    cache.insert(RadixKey([1]), torch.tensor([3]))
    meta = torch.tensor([4], device="meta")
    with pytest.raises(ValueError, match="device"):
        cache.insert(RadixKey([2]), meta)
    assert cache.total_size() == 1


def test_pools_with_torch() -> None:
    pool = TokenToKVPoolAllocator(8, device="cpu")
    idx = pool.alloc(3)
    assert isinstance(idx, torch.Tensor) and idx.dtype == torch.int64
    assert pool.is_allocated(idx)
    pool.free(idx.to(torch.int32))
    assert pool.num_free == 8
    with pytest.raises(ValueError, match="device"):
        TokenToKVPoolAllocator(4, device="not-a-device")
    states = MambaPool(3, state_shape=(2,), dtype=torch.bfloat16)
    assert states.states.dtype == torch.bfloat16
    a = states.alloc_track_slot()
    b = states.alloc_track_slot()
    states.states[a] = 2.5
    states.copy_states(a, b)
    assert states.states[b].tolist() == [2.5, 2.5]
    cache = MambaRadixCache(token_to_kv_pool_allocator=pool, mamba_pool=states)
    res = cache.insert(RadixKey([1, 2]), pool.alloc(2), mamba_value=torch.tensor([a]))
    assert res.prefix_len == 0 and cache.mamba_total_size() == 1


def test_import_llmds_never_imports_torch() -> None:
    code = ("import sys, numpy as np, llmds, llmds.mem_cache, llmds.kv_cache, "
            "llmds.integrations, llmds.integrations.vllm; "
            "from llmds import RadixCache, KVCache; from llmds.mem_cache import MambaPool; "
            "RadixCache(); KVCache(page_size=4, max_pages=4); "
            "c = KVCache(page_size=2, max_pages=4, dtype=np.float16, token_shape=2); "
            "c.attach(1, [[1, 2], [3, 4], [5, 6]], prefix_tokens=[1, 2]); c.get_array(1); "
            "MambaPool(2, dtype='float32'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"
