"""A pool of Mamba / SSM state slots, NumPy- or torch-backed (the ``mamba_pool`` interface).

:class:`~llmds.mem_cache.mamba_radix_cache.MambaRadixCache` takes any object with
``alloc_track_slot()``, ``free_track_slot(slot)`` and ``copy_states(src, dst)``;
:class:`MambaPool` is the one this library ships.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from llmds._torch import pool_spec, pool_zeros
from llmds._validate import check_int, show
from llmds.errors import CapacityError

__all__ = ["MambaPool"]

_MAX_BYTES = 1 << 40  # the states array is made with np.zeros (mapped lazily)


class MambaPool:
    """Fixed pool of ``size`` state slots, each an array of ``state_shape``.

    ``states`` is a NumPy array, or a torch tensor when ``dtype`` is a torch dtype
    (``torch.bfloat16`` included) or a ``device`` is given (e.g. ``"cuda:0"``; the
    tensor is allocated there; the slot bookkeeping stays on the host).

    ``alloc_track_slot()`` takes a free slot (LIFO free stack, O(1)),
    ``free_track_slot(slot)`` returns it (O(1); double free / unknown slot raise
    ``ValueError``, nothing changes), ``copy_states(src, dst)`` copies slot contents
    (O(state size)). ``states`` is the ``(size, *state_shape)`` array. ``size``
    is the pool size in slots (SGLang's name). Memory: the states array (made with
    ``np.zeros``, mapped lazily) plus ~9 bytes per slot.

    Thread safety: not thread-safe; guard it (with the cache that frees into it).

    >>> pool = MambaPool(2, state_shape=(3,))
    >>> a = pool.alloc_track_slot(); pool.states[a] = 1.0
    >>> b = pool.alloc_track_slot(); pool.copy_states(a, b); pool.states[b].tolist()
    [1.0, 1.0, 1.0]
    >>> pool.free_track_slot(a); pool.num_free
    1
    """

    __slots__ = ("_free", "_in_use", "states")

    def __init__(
        self, size: int, state_shape: tuple[int, ...] = (1,), dtype: Any = np.float32,
        device: Any = None,
    ) -> None:
        size = check_int(size, "size", minimum=0, maximum=1 << 32)
        if not isinstance(state_shape, tuple | list):
            raise TypeError(f"state_shape must be a tuple of ints, got {show(state_shape)}")
        state_shape = tuple(check_int(d, f"state_shape[{i}]", minimum=1, maximum=1 << 40)
                            for i, d in enumerate(state_shape))
        spec = pool_spec(dtype, device, "MambaPool with a torch dtype or device")
        if spec is None:
            try:
                dt = np.dtype(dtype)
            except (TypeError, ValueError):
                raise TypeError(f"dtype must be a NumPy dtype, got {show(dtype)}") from None
            itemsize = dt.itemsize
        else:
            itemsize = spec[0].itemsize
        nbytes = size * math.prod(state_shape) * itemsize
        if nbytes > _MAX_BYTES:
            raise ValueError(f"the state pool would take {nbytes} bytes (size={size} * "
                             f"state_shape={state_shape} * {dtype}), more than {_MAX_BYTES}")
        if spec is not None:
            self.states: Any = pool_zeros((size, *state_shape), spec)
        else:
            self.states = np.zeros((size, *state_shape), dtype=dt)
        self._free = list(range(int(size) - 1, -1, -1))
        self._in_use = bytearray(int(size))  # indexing it costs a third of a NumPy bool's

    @property
    def size(self) -> int:
        """Number of slots. O(1)."""
        return len(self._in_use)

    @property
    def num_free(self) -> int:
        """Free slots. O(1)."""
        return len(self._free)

    def alloc_track_slot(self) -> int:
        """Take a free slot; ``CapacityError`` when none is left. O(1)."""
        if not self._free:
            raise CapacityError(f"no free Mamba state slot (size {self.size})")
        slot = self._free.pop()
        self._in_use[slot] = 1
        return slot

    def is_allocated(self, slot: Any) -> bool:
        """True if ``slot`` is an int slot id that is currently allocated. O(1).

        :class:`~llmds.mem_cache.mamba_radix_cache.MambaRadixCache` checks it before
        taking a state slot (``insert``) and before freeing the slots it evicts.
        """
        if isinstance(slot, bool | np.bool_) or not isinstance(slot, int | np.integer):
            return False
        return 0 <= int(slot) < len(self._in_use) and bool(self._in_use[int(slot)])

    def _valid(self, slot: Any, name: str) -> int:
        if type(slot) is not int or not 0 <= slot < len(self._in_use):
            slot = check_int(slot, name, minimum=0, maximum=len(self._in_use) - 1)
        if not self._in_use[slot]:
            raise ValueError(f"{name} {slot} is not allocated")
        return slot

    def free_track_slot(self, slot: int) -> None:
        """Return ``slot`` to the pool. O(1)."""
        s = self._valid(slot, "slot")
        self._in_use[s] = 0
        self._free.append(s)

    def copy_states(self, src: int, dst: int) -> None:
        """Copy the state in slot ``src`` into slot ``dst``. O(state size)."""
        s, d = self._valid(src, "src"), self._valid(dst, "dst")
        self.states[d] = self.states[s]
