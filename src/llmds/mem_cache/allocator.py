"""A minimal token-granular KV index pool for prefix caches (tests and benchmarks).

The prefix caches hold NumPy int64 arrays of KV-slot indices and hand evicted ones
back through ``token_to_kv_pool_allocator.free(indices)``. This pool is the smallest
thing with that interface: a free stack of slot ids, all-or-nothing ``alloc(n)``,
and ``free(indices)`` that rejects double frees and unknown ids. The paged,
reference-counted allocator for the KV cache itself is
:class:`llmds.paged_allocator.PagedAllocator`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import kv as _kv
from llmds._torch import as_array, torch_device, torch_or_none
from llmds._validate import check_int
from llmds.errors import CapacityError

__all__ = ["TokenToKVPoolAllocator"]


class TokenToKVPoolAllocator:
    """Fixed pool of ``size`` KV slots, ids ``0..size-1``, one slot per token.

    Invariants (asserted by ``_check``): the free stack ``_free[:_num_free]`` holds
    each free slot exactly once; ``_in_use[i]`` is True exactly for slots not on it;
    ``num_free + num_used == size``.

    Complexity: ``alloc(n)`` and ``free(indices)`` O(n) NumPy work (a slice of the
    stack, a vectorised validity check), no per-slot Python loop; ``num_free`` O(1).
    Memory: 17 bytes per slot (+ 512 KiB at most for a position table).

    Names: ``size`` (the pool size in slots), ``free(indices)`` and
    ``available_size()`` (= ``num_free``) are SGLang's names for this interface.

    Tensors: with ``device`` (a torch device or its name, e.g. ``"cuda:0"``),
    ``alloc`` returns int64 tensors on that device, as SGLang's allocator does;
    ``device`` is then a ``torch.device``. ``free`` and ``is_allocated`` take NumPy
    arrays or tensors on any device either way. The free stack stays on the host:
    a CUDA pool pays one host-to-device copy per ``alloc`` and one
    device-to-host copy per ``free``.
    Pickles and deep-copies like any object of NumPy arrays.

    Thread safety: not thread-safe; guard it (with the cache that frees into it).

    >>> pool = TokenToKVPoolAllocator(8)
    >>> idx = pool.alloc(3)
    >>> idx.dtype, pool.num_free
    (dtype('int64'), 5)
    >>> pool.free(idx); pool.num_free
    8
    """

    __slots__ = ("_free", "_in_use", "_num_free", "_positions", "_scratch", "_tensors", "device")

    def __init__(self, size: int, device: Any = None) -> None:
        size = check_int(size, "size", minimum=0, maximum=1 << 32)
        self._tensors = False  # alloc returns tensors on ``device``
        dev: Any = "cpu"
        if device is not None:
            dev = torch_device(device, "TokenToKVPoolAllocator(device=...)")
            self._tensors = True
        # LIFO: the most recently freed slots are handed out first (cache-warm).
        self._free = np.arange(size - 1, -1, -1, dtype=np.int64)
        self._in_use = np.zeros(size, dtype=np.bool_)
        self._scratch = np.zeros(size, dtype=np.int64)
        self._positions = np.arange(min(size, 1 << 16), dtype=np.int64)
        self._num_free = size
        self.device = dev

    @property
    def size(self) -> int:
        """Number of slots. O(1)."""
        return int(self._in_use.shape[0])

    @property
    def num_free(self) -> int:
        """Free slots. O(1)."""
        return self._num_free

    def available_size(self) -> int:
        """Free slots (SGLang's name). O(1)."""
        return self._num_free

    def can_allocate(self, n: int) -> bool:
        """True if ``alloc(n)`` would succeed. O(1)."""
        return check_int(n, "n", minimum=0) <= self._num_free

    def is_allocated(self, indices: npt.ArrayLike) -> bool:
        """True if every index is in range and currently allocated. O(n).

        The prefix caches call it before taking ownership of indices (``insert``).
        """
        idx = indices if isinstance(indices, np.ndarray) else as_array(indices, "indices")
        if idx.dtype.kind not in "iu":
            return idx.size == 0
        return bool(_kv.all_set(idx.reshape(-1), self._in_use))

    def alloc(self, n: int) -> npt.NDArray[np.int64]:
        """Take ``n`` free slots (a tensor on ``device`` when the pool has one); all or
        nothing. O(n).

        Raises ``CapacityError`` when fewer than ``n`` are free (nothing changes).
        """
        n = check_int(n, "n", minimum=0)
        top = self._num_free
        if n > top:
            raise CapacityError(f"requested {n} KV slots, {top} free")
        out = self._free[top - n : top].copy()
        self._num_free = top - n
        self._in_use[out] = True
        if self._tensors:
            t = torch_or_none().from_numpy(out)  # loaded: the pool made its device with it
            return t if self.device.type == "cpu" else t.to(self.device)
        return out

    def free(self, indices: npt.ArrayLike) -> None:
        """Return slots to the pool. O(n).

        Raises ``ValueError`` for an id out of range, a slot that is not allocated,
        or an id repeated in ``indices`` (a double free); nothing changes then.
        """
        idx = indices if isinstance(indices, np.ndarray) else as_array(indices, "indices")
        if idx.dtype != np.int64:
            if idx.size == 0:
                return
            if idx.dtype.kind not in "iu":
                raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
            idx = idx.astype(np.int64)
        if idx.ndim != 1:
            idx = idx.reshape(-1)
        n = idx.shape[0]
        if n == 0:
            return
        size = self._in_use.shape[0]
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= size:
            raise ValueError(f"indices must be in [0, {size}), got {lo if lo < 0 else hi}")
        in_use = self._in_use
        used = in_use[idx]
        if not used.all():
            bad = int(idx[~used][0])
            raise ValueError(f"slot {bad} is not allocated (double free?)")
        # Duplicate check without a sort: scatter positions, read them back; a
        # repeated id keeps only its last position, so an earlier one mismatches.
        pos = self._positions[:n] if n <= self._positions.shape[0] else np.arange(n)
        scratch = self._scratch
        scratch[idx] = pos
        if (scratch[idx] != pos).any():
            raise ValueError("indices contain a repeated slot id (double free)")
        in_use[idx] = False
        top = self._num_free
        self._free[top : top + n] = idx
        self._num_free = top + n

    def _check(self) -> None:
        """Assert the invariants. O(size); tests only."""
        free = self._free[: self._num_free]
        assert np.unique(free).size == free.size, "a slot is on the free stack twice"
        assert not self._in_use[free].any(), "a free slot is marked in use"
        assert int(np.count_nonzero(~self._in_use)) == free.size, "a slot was lost"
