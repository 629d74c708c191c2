"""SGLang's pools as llmds sees them (internal to :mod:`llmds.integrations.sglang`).

* Minimal stand-ins for SGLang's request and KV-slot pools (re-exported by
  :mod:`llmds.integrations.sglang`), for tests and examples without SGLang:
  :class:`ReqToTokenPool`, :class:`TokenToKVPoolAllocator`.
* The adapters a facade puts between an SGLang pool and llmds's tree:
  :class:`TreePool` / :class:`TreeSWAPool` (indices freed as tensors on the pool's
  device) and :class:`TreeStatePool` (SGLang's Mamba pool as llmds's).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmds._torch import as_index_format, require_torch
from llmds._validate import check_int, is_int
from llmds.errors import CapacityError
from llmds.mem_cache.allocator import TokenToKVPoolAllocator as _Slots

__all__ = ["ReqToTokenPool", "TokenToKVPoolAllocator", "TreePool", "TreeSWAPool",
           "TreeStatePool"]

torch = require_torch("llmds.integrations.sglang")


class TokenToKVPoolAllocator:
    """SGLang's token-granular KV slot allocator interface, on a torch device.

    ``size`` usable slots with ids ``1..size``: slot 0 is reserved (SGLang writes
    padding there). ``alloc(n)`` returns an int64 tensor of ``n`` slots on
    ``device``, or ``None`` when fewer are free (SGLang's convention; nothing
    changes); ``free(indices)`` takes a tensor (or array) and rejects double frees
    and unknown slots with ``ValueError``; ``available_size()`` counts free slots.
    O(n) per call over llmds's :class:`~llmds.mem_cache.TokenToKVPoolAllocator`.

    Thread safety: not thread-safe; guard it (with its cache).
    """

    def __init__(self, size: int, device: Any = "cpu", page_size: int = 1) -> None:
        self.size = check_int(size, "size", minimum=0, maximum=(1 << 32) - 1)
        self.page_size = check_int(page_size, "page_size", minimum=1)
        self._slots = _Slots(self.size + 1, device=device)
        self.device = self._slots.device
        self._slots.alloc(1)  # slot 0, reserved

    def available_size(self) -> int:
        """Free slots. O(1)."""
        return self._slots.num_free

    def alloc(self, need_size: int) -> Any:
        """``need_size`` slots as an int64 tensor on ``device``, or None. O(n)."""
        try:
            return self._slots.alloc(need_size)
        except CapacityError:
            return None

    def free(self, free_index: Any) -> None:
        """Give slots back (a tensor or array; empty is fine). O(n)."""
        self._slots.free(free_index)

    def is_allocated(self, indices: Any) -> bool:
        """True if every slot is currently handed out. O(n)."""
        return self._slots.is_allocated(indices)

    def _check(self) -> None:
        self._slots._check()


class ReqToTokenPool:
    """SGLang's request-to-KV-index table: ``req_to_token`` is a ``(size,
    max_context_len)`` int32 tensor on ``device``, one row per running request.
    ``alloc(n)`` hands out ``n`` row ids (a list, or None when short), ``free``
    takes one back, ``write((row, slice), values)`` fills part of a row. O(n).

    Thread safety: not thread-safe.
    """

    def __init__(self, size: int, max_context_len: int, device: Any = "cpu") -> None:
        self.size = check_int(size, "size", minimum=1, maximum=1 << 20)
        self.max_context_len = check_int(max_context_len, "max_context_len", minimum=1,
                                         maximum=1 << 24)
        self.device = torch.device(device)
        self.req_to_token = torch.zeros((self.size, self.max_context_len), dtype=torch.int32,
                                        device=self.device)
        self._free = list(range(self.size - 1, -1, -1))

    def available_size(self) -> int:
        return len(self._free)

    def alloc(self, need_size: int = 1) -> list[int] | None:
        n = check_int(need_size, "need_size", minimum=0)
        if n > len(self._free):
            return None
        return [self._free.pop() for _ in range(n)]

    def free(self, free_index: Any) -> None:
        ids = [free_index] if isinstance(free_index, int) else list(free_index)
        for i in ids:
            i = check_int(i, "free_index", minimum=0, maximum=self.size - 1)
            if i in self._free:
                raise ValueError(f"request row {i} is not allocated (double free?)")
        self._free.extend(int(i) for i in ids)

    def write(self, indices: Any, values: Any) -> None:
        self.req_to_token[indices] = values


class TreePool:
    """The allocator as the llmds tree sees it: ``free`` in tensors on its device,
    and a slot bound of ``size + page_size`` (SGLang's allocators hand out slots
    ``1..size`` and, paged, up to ``size + page_size - 1``)."""

    __slots__ = ("device", "inner", "size")

    def __init__(self, inner: Any, page_size: int, device: Any) -> None:
        self.inner = inner
        self.device = device
        size: Any = getattr(inner, "size", None)
        self.size = int(size) + page_size if is_int(size) else None

    def _t(self, indices: Any) -> Any:
        if isinstance(indices, np.ndarray):
            return as_index_format(np.ascontiguousarray(indices, dtype=np.int64),
                                   (self.device, torch.int64))
        return indices

    def free(self, indices: Any) -> None:
        self.inner.free(self._t(indices))


class TreeSWAPool(TreePool):
    """:class:`TreePool` with ``free_swa`` (SGLang's ``SWATokenToKVPoolAllocator``)."""

    __slots__ = ()

    def free_swa(self, indices: Any) -> None:
        self.inner.free_swa(self._t(indices))


class TreeStatePool:
    """SGLang's Mamba pool (``free(indices)``) seen as llmds's (``free_track_slot``)."""

    __slots__ = ("device", "inner")

    def __init__(self, inner: Any, device: Any) -> None:
        self.inner = inner
        self.device = device

    def free_track_slot(self, slot: int) -> None:
        self.inner.free(torch.tensor([slot], dtype=torch.int64, device=self.device))
