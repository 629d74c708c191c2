"""Atomic operations on array elements for numba kernels that share arrays across threads.

numba has no locks or atomics in nopython mode; these emit LLVM's atomic instructions
on one element of an integer array, which is what lets several threads run one
``nogil`` kernel over shared arrays (the parallel HNSW build):

* ``fetch_add(arr, i, v)``: ``arr[i] += v`` atomically, returning the old value
  (sequentially consistent). Threads hand out work with it (the next item to do).
* ``spin_lock(locks, i)`` / ``spin_unlock(locks, i)``: a test-and-set spin lock on the
  int32 ``locks[i]`` (0 = free). Acquire/release ordering: what one thread writes while
  holding lock ``i`` is seen by the next thread that takes lock ``i``. Only for short
  critical sections (a few microseconds), never held while waiting for another lock.
  After ``_SPINS`` failed attempts the waiter calls ``sched_yield``: on a machine with
  more busy threads than cores the holder may have lost its core, and spinning on
  would only keep it from getting one back.

Under ``NUMBA_DISABLE_JIT=1`` they are plain Python functions made atomic by one
``threading.Lock``, so the kernels keep working (slowly) without the JIT.

Preconditions: ``arr`` is a 1-D integer array, ``0 <= i < len(arr)`` (not checked).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from typing import Any

import numba
import numpy as np

__all__ = ["fetch_add", "spin_lock", "spin_unlock"]

_SPINS = 100  # ~2-5 us of failed compare-and-swaps, about one critical section

if getattr(numba.config, "DISABLE_JIT", False):  # pragma: no cover - the no-JIT test
    _GUARD = threading.Lock()

    def fetch_add(arr: Any, i: Any, v: Any) -> Any:
        """``arr[i] += v``; return the old value (made atomic by a lock)."""
        with _GUARD:
            old = arr[i]
            arr[i] = old + v
        return old

    def _cas(arr: Any, i: Any, old: Any, new: Any) -> Any:
        """If ``arr[i] == old`` set it to ``new``; return the value found (under a lock)."""
        with _GUARD:
            found = arr[i]
            if found == old:
                arr[i] = new
        return found

    def _store_release(arr: Any, i: Any, v: Any) -> None:
        with _GUARD:
            arr[i] = v

    def _yield_cpu() -> None:
        """Give up the CPU (``os.sched_yield`` where it exists)."""
        if hasattr(os, "sched_yield"):
            os.sched_yield()

else:
    import llvmlite.binding as llvm
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    # The JIT's linker does not see libc's sched_yield by itself: register its address
    # (on every import, so kernels loaded from numba's cache link too).
    _SCHED_YIELD = getattr(ctypes.CDLL(ctypes.util.find_library("c")), "sched_yield", None)
    if _SCHED_YIELD is not None:
        llvm.add_symbol("sched_yield", ctypes.cast(_SCHED_YIELD, ctypes.c_void_p).value)

    def _pointer(context: Any, builder: Any, arrty: Any, arrval: Any, idxty: Any,
                 idxval: Any) -> Any:
        ary = context.make_array(arrty)(context, builder, arrval)
        idx = context.cast(builder, idxval, idxty, types.intp)
        return cgutils.get_item_pointer2(
            context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape, 1),
            strides=cgutils.unpack_tuple(builder, ary.strides, 1), layout=arrty.layout,
            inds=[idx], wraparound=False, boundscheck=False)

    def _int_array(arr: Any, i: Any) -> bool:
        return (isinstance(arr, types.Array) and arr.ndim == 1
                and isinstance(arr.dtype, types.Integer) and isinstance(i, types.Integer))

    @intrinsic
    def fetch_add(typingctx: Any, arr: Any, i: Any, v: Any) -> Any:
        """``atomicrmw add`` on ``arr[i]`` (seq_cst); returns the old value."""
        if not _int_array(arr, i) or not isinstance(v, types.Integer):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ptr = _pointer(context, builder, arr, args[0], i, args[1])
            val = context.cast(builder, args[2], v, arr.dtype)
            return builder.atomic_rmw("add", ptr, val, "seq_cst")

        return arr.dtype(arr, i, v), codegen

    @intrinsic
    def _cas(typingctx: Any, arr: Any, i: Any, old: Any, new: Any) -> Any:
        """``cmpxchg`` on ``arr[i]`` (acquire on success); returns the value found."""
        if not _int_array(arr, i):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ptr = _pointer(context, builder, arr, args[0], i, args[1])
            expected = context.cast(builder, args[2], old, arr.dtype)
            desired = context.cast(builder, args[3], new, arr.dtype)
            pair = builder.cmpxchg(ptr, expected, desired, "acquire", "monotonic")
            return builder.extract_value(pair, 0)

        return arr.dtype(arr, i, old, new), codegen

    @intrinsic
    def _store_release(typingctx: Any, arr: Any, i: Any, v: Any) -> Any:
        """``store atomic release`` of ``v`` to ``arr[i]``."""
        if not _int_array(arr, i):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            ptr = _pointer(context, builder, arr, args[0], i, args[1])
            val = context.cast(builder, args[2], v, arr.dtype)
            builder.store_atomic(val, ptr, "release", arr.dtype.bitwidth // 8)
            return context.get_dummy_value()

        return types.none(arr, i, v), codegen


    @intrinsic
    def _yield_cpu(typingctx: Any) -> Any:
        """Call libc's ``sched_yield()`` (nothing where libc has none)."""

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            if _SCHED_YIELD is not None:
                fnty = ir.FunctionType(ir.IntType(32), [])
                builder.call(cgutils.get_or_insert_function(builder.module, fnty,
                                                            "sched_yield"), [])
            return context.get_dummy_value()

        return types.none(), codegen


@numba.njit(cache=True, nogil=True)
def spin_lock(locks: Any, i: Any) -> None:
    """Take lock ``i`` (0 -> 1), spinning until it is free (yielding now and then)."""
    spins = 0
    while _cas(locks, i, 0, 1) != 0:
        spins += 1
        if spins == _SPINS:
            _yield_cpu()
            spins = 0


@numba.njit(cache=True, nogil=True)
def spin_unlock(locks: Any, i: Any) -> None:
    """Release lock ``i`` (1 -> 0)."""
    _store_release(locks, i, np.int32(0))
