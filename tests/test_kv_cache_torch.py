"""KVCache and MambaPool backed by torch (issue 15): ``KVCache(dtype=torch.bfloat16)``.

A torch dtype or a ``device`` gives a torch pool of that dtype on that device; the
sequences, page identity, LRU and copy-on-write behave exactly as with the NumPy
pool (the stateful model test runs again on a bfloat16 pool). Bad dtypes, devices
and values fail with errors naming the argument and change nothing; the NumPy
default never imports torch (tests/test_engine_tensors.py runs the NumPy pools in a
fresh interpreter).
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

torch = pytest.importorskip("torch")

from llmds.errors import CapacityError  # noqa: E402
from llmds.kv_cache import KVCache  # noqa: E402
from llmds.mem_cache import MambaPool  # noqa: E402
from tests.reference.remote import DictPageStore  # noqa: E402
from tests.test_kv_cache import KVCacheAgainstModel, snapshot  # noqa: E402
from tests.test_mem_copies import _kv_state, _kv_workload  # noqa: E402

FLOAT8 = [getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32,
                                   torch.float64, torch.int8, torch.int32, torch.int64,
                                   torch.uint8, *FLOAT8])
def test_torch_dtype_gives_a_torch_pool(dtype: Any) -> None:
    cache = KVCache(page_size=4, max_pages=6, dtype=dtype, token_shape=(2, 3))
    assert isinstance(cache.pool, torch.Tensor)
    assert cache.pool.dtype == dtype and cache.pool.device.type == "cpu"
    assert tuple(cache.pool.shape) == (6, 4, 2, 3)
    assert not cache.pool.any() if dtype not in FLOAT8 else True
    assert cache.stats()["bytes_per_page"] == 4 * 6 * dtype.itemsize
    vals = torch.arange(5 * 6).reshape(5, 2, 3).to(dtype)
    cache.attach("a", vals, prefix_tokens=[1, 2, 3, 4])
    out = cache.get_array("a")
    assert isinstance(out, torch.Tensor) and out.dtype == dtype
    assert torch.equal(out.float(), vals.float())
    assert cache.get("a") == vals.float().tolist()
    table = cache.block_table("a").tolist()
    assert torch.equal(cache.pool[table[0]].float(), vals[:4].float())  # the engine's view
    cache._check()


def test_numpy_dtype_with_a_device_is_its_torch_twin() -> None:
    for np_dtype, want in ((np.float32, torch.float32), ("int16", torch.int16),
                           (np.dtype(np.uint8), torch.uint8)):
        cache = KVCache(page_size=2, max_pages=2, dtype=np_dtype, device="cpu")
        assert cache.pool.dtype == want and cache.pool.device == torch.device("cpu")
    cache = KVCache(page_size=2, max_pages=2, device=torch.device("cpu"))
    assert cache.pool.dtype == torch.float64  # the default dtype, on the device


def test_numpy_default_is_unchanged() -> None:
    cache = KVCache(page_size=2, max_pages=2)
    assert isinstance(cache.pool, np.ndarray) and cache.pool.dtype == np.float64
    cache = KVCache(page_size=2, max_pages=2, dtype=np.float16)
    assert isinstance(cache.pool, np.ndarray) and cache.pool.dtype == np.float16


def test_cpu_pool_is_lazily_mapped_numpy_memory() -> None:
    """The CPU tensor is a view of ``np.zeros`` memory (not written at construction)."""
    cache = KVCache(page_size=4, max_pages=3, dtype=torch.bfloat16)
    cache.pool[1, 2] = 1.5
    raw = cache.pool.view(torch.int16).numpy()  # shares the memory
    assert raw[1, 2] == torch.tensor(1.5, dtype=torch.bfloat16).view(torch.int16).item()


def test_values_from_lists_arrays_and_tensors_agree() -> None:
    cache = KVCache(page_size=3, max_pages=12, dtype=torch.bfloat16)
    forms = [[1, 2.5, -3, 4], np.array([1, 2.5, -3, 4], dtype=np.float32),
             torch.tensor([1, 2.5, -3, 4], dtype=torch.float64), torch.tensor([1, 2, -3, 4]),
             torch.tensor([1, 2.5, -3, 4], dtype=torch.bfloat16)]
    for i, vals in enumerate(forms):
        cache.attach(i, vals)
    assert all(cache.get(i) == [1.0, 2.5, -3.0, 4.0] for i in (0, 1, 2, 4))
    assert cache.get(3) == [1.0, 2.0, -3.0, 4.0]  # the int tensor holds 2
    cache.append(0, 7)  # one token
    cache.append(0, torch.tensor([8.0, 9.0]))
    assert cache.get(0) == [1.0, 2.5, -3.0, 4.0, 7.0, 8.0, 9.0]
    cache._check()


def test_prefix_sharing_and_copy_on_write_on_a_torch_pool() -> None:
    cache = KVCache(page_size=2, max_pages=8, dtype=torch.bfloat16, token_shape=(2,))
    a = torch.tensor([[1, 2], [3, 4], [5, 6]], dtype=torch.bfloat16)
    cache.attach(1, a, prefix_tokens=[7, 8])
    cache.attach(2, a, prefix_tokens=[7, 8])  # same values, same chain: shared
    assert cache.block_table(1)[0] == cache.block_table(2)[0]
    cache.attach(3, a + 1, prefix_tokens=[7, 8])  # other values: a private page
    assert cache.block_table(3)[0] != cache.block_table(1)[0]
    assert cache.stats()["cow_copies"] == 1
    cache.fork(1, 4)  # shares the partial last page
    assert cache.block_table(4).tolist() == cache.block_table(1).tolist()
    cache.append(4, [[9, 9]])  # copies it first
    assert cache.block_table(4)[-1] != cache.block_table(1)[-1]
    assert cache.get(1) == a.float().tolist()
    assert cache.get(4) == [*a.float().tolist(), [9.0, 9.0]]
    assert cache.stats()["cow_copies"] == 2
    cache._check()
    for sid in (1, 2, 3, 4):
        cache.detach(sid)
    cache.evict()
    assert cache.stats()["free_pages"] == 8
    cache._check()


def test_token_level_path_on_a_torch_pool() -> None:
    cache = KVCache(page_size=4, max_pages=6, dtype=torch.float16)
    assert cache.allocate("a", list(range(10))) == 0
    cache.append_tokens("a", [10, 11])
    cache.free("a")
    assert cache.allocate("b", list(range(13))) == 12
    with pytest.raises(CapacityError):
        cache.allocate("c", list(range(100, 140)))
    cache._check()


@pytest.mark.parametrize(
    ("dtype", "exc", "match"),
    [(torch.bool, TypeError, "dtype"), (torch.complex64, TypeError, "dtype"),
     (torch.uint16, TypeError, "dtype"), (torch.quint8, TypeError, "dtype"),
     (3, TypeError, "dtype"), ("bfloat16", TypeError, "dtype"), (np.bool_, TypeError, "dtype")],
)
def test_bad_dtypes(dtype: Any, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        KVCache(page_size=2, max_pages=2, dtype=dtype)


def test_bad_devices_and_remote() -> None:
    for device in ("not-a-device", 3.5, object()):
        with pytest.raises(ValueError, match="device must be a torch device"):
            KVCache(page_size=2, max_pages=2, device=device)
    with pytest.raises((ValueError, TypeError), match="dtype"):
        KVCache(page_size=2, max_pages=2, device="cpu", dtype=np.complex64)
    with pytest.raises(ValueError, match="remote= needs a NumPy pool"):
        KVCache(page_size=2, max_pages=2, dtype=torch.float32,
                remote=DictPageStore(2, (2,), np.float32))


@pytest.mark.parametrize(
    ("dtype", "value", "exc", "match"),
    [(torch.bfloat16, [1e39], ValueError, "magnitude"),
     (torch.float16, torch.tensor([70000.0]), ValueError, "magnitude"),
     (torch.float16, torch.tensor([70000]), ValueError, "magnitude"),
     (torch.bfloat16, [float("nan")], ValueError, "finite"),
     (torch.bfloat16, torch.tensor([float("inf")], dtype=torch.bfloat16), ValueError, "finite"),
     (torch.float32, torch.tensor([True]), TypeError, "must hold"),
     (torch.float32, torch.tensor([1j]), TypeError, "must hold"),
     (torch.float32, ["x"], TypeError, "kv"),
     (torch.float32, None, TypeError, "kv"),
     (torch.float32, torch.ones(1, 2), ValueError, "shape"),
     (torch.int16, torch.tensor([1.5]), TypeError, "integers"),
     (torch.int16, [1.5], TypeError, "integers"),
     (torch.int16, torch.tensor([70000]), ValueError, "values in"),
     (torch.int16, [70000], ValueError, "values in"),
     (torch.int16, torch.tensor([2**40], dtype=torch.uint64), TypeError, "uint64"),
     (torch.uint8, torch.tensor([-1], dtype=torch.int8), ValueError, "values in"),
     *[(d, [500.0], ValueError, "magnitude") for d in FLOAT8 if d.itemsize == 1][:1]],
)
def test_bad_values_change_nothing(dtype: Any, value: Any, exc: type, match: str) -> None:
    cache = KVCache(page_size=2, max_pages=4, dtype=dtype)
    cache.attach("a", [1, 2, 3])
    before = snapshot(cache)
    with pytest.raises(exc, match=match):
        cache.append("a", value)
    with pytest.raises(exc, match=match):
        cache.attach("b", value if not isinstance(value, list) else [*value, 1])
    after = snapshot(cache)
    assert after[:6] == before[:6] and torch.equal(after[6], before[6])
    cache._check()


def test_wide_unsigned_sources_are_read_exactly() -> None:
    cache = KVCache(page_size=2, max_pages=2, dtype=torch.int64)
    cache.attach("a", torch.tensor([2**31 + 5], dtype=torch.uint32))
    assert cache.get("a") == [2**31 + 5]


@pytest.mark.parametrize("trip", [lambda c: pickle.loads(pickle.dumps(c)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_torch_pool_round_trip(trip: Any) -> None:
    cache = KVCache(page_size=4, max_pages=24, dtype=torch.bfloat16)
    _kv_workload(cache, 0)
    twin = trip(cache)
    twin._check()
    assert _kv_state(twin) == _kv_state(cache)
    assert twin.pool.dtype == torch.bfloat16 and torch.equal(twin.pool, cache.pool)
    assert _kv_workload(twin, 50) == _kv_workload(cache, 50)
    twin.pool[:] = -1
    assert not torch.equal(twin.pool, cache.pool)
    cache._check()


def test_mamba_pool_shares_the_torch_pool_rules() -> None:
    pool = MambaPool(3, state_shape=(2,), dtype=np.float32, device="cpu")
    assert pool.states.dtype == torch.float32
    for bad in (torch.bool, torch.complex64):
        with pytest.raises(TypeError, match="dtype"):
            MambaPool(2, dtype=bad)
    with pytest.raises(ValueError, match="device must be a torch device"):
        MambaPool(2, dtype=torch.float32, device="nowhere")
    assert isinstance(MambaPool(2).states, np.ndarray)


class TorchKVCacheAgainstModel(KVCacheAgainstModel):
    """The KVCache model test on a bfloat16 torch pool (0, 1, 2 are exact)."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = KVCache(page_size=3, max_pages=12, dtype=torch.bfloat16)

    def _put(self, page, off, vals):
        self.cache.pool[page, off : off + len(vals)] = torch.tensor(vals, dtype=torch.bfloat16)


TorchKVCacheAgainstModel.TestCase.settings = settings(
    max_examples=20, stateful_step_count=25, deadline=None
)
TestTorchKVCacheAgainstModel = pytest.mark.slow(TorchKVCacheAgainstModel.TestCase)
