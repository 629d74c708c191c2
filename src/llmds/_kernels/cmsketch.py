"""Count-Min sketch kernels (numba): hashing, batch update, batch estimate.

Kernel rules: arguments are NumPy arrays and scalars, no Python
objects, no exceptions; outputs are allocated once. Preconditions are documented
here and enforced by :class:`llmds.cmsketch.CountMinSketch`:

* ``table`` is a C-contiguous ``int64`` array of shape ``(depth, width)`` with
  ``1 <= width < 2**32``;
* ``seeds`` is a ``uint64`` array of length ``depth`` (one seed per row);
* ``keys`` is a ``uint64`` array of 64-bit item keys (integers taken modulo
  2**64, or the FNV-1a hash of an item's bytes);
* ``buf``/``offsets``: the UTF-8/raw bytes of all items concatenated as ``uint8``
  and ``int64`` offsets of length ``n + 1`` (item ``j`` is
  ``buf[offsets[j]:offsets[j + 1]]``);
* counts are ``>= 0`` and ``<= 2**63 - 1`` (int64).

Counters saturate at ``INT64_MAX`` instead of wrapping: a cell raised by ``count``
becomes ``min(cell, INT64_MAX - count) + count``, which never overflows because both
operands are in ``[0, INT64_MAX]``. Saturation keeps the one-sided guarantee (an
estimate is never below ``min(true count, INT64_MAX)``); a wrapped counter would turn
a heavy hitter into a negative count.

Row hash: ``col_i(key) = ((fmix64(key ^ seed_i) >> 32) * width) >> 32``, where
``fmix64`` is MurmurHash3's 64-bit finaliser (a bijection with full avalanche)
and ``seed_i`` are independent 64-bit seeds. Each row gets its own mixing of the
key, so two keys that collide in one row are no more likely to collide in
another (unlike ``h1 + i * h2`` double hashing, where one collision of ``h1`` and
``h2`` collides in every row). The reduction to ``[0, width)`` is Lemire's
multiply-shift, which avoids a 64-bit division per row.

All arithmetic is on ``np.uint64`` scalars so the kernels also run (slowly, with
overflow warnings that are harmless: wrap-around is intended) under
``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import numba
import numpy as np

_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_INT64_MAX = np.int64(0x7FFFFFFFFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def fmix64(h):
    """MurmurHash3 64-bit finaliser: a bijection on uint64 with full avalanche."""
    h ^= h >> _S33
    h *= _C1
    h ^= h >> _S33
    h *= _C2
    h ^= h >> _S33
    return h


@numba.njit(cache=True, nogil=True, inline="always")
def _column(key, seed, width):
    """Column of ``key`` in the row with ``seed``; ``width`` is a uint64 < 2**32."""
    return np.int64(((fmix64(key ^ seed) >> _S32) * width) >> _S32)


@numba.njit(cache=True, nogil=True)
def fnv1a64(buf, start, stop):
    """FNV-1a 64-bit hash of ``buf[start:stop]`` (uint8), as uint64. O(stop - start)."""
    h = _FNV_OFFSET
    for i in range(start, stop):
        h ^= np.uint64(buf[i])
        h *= _FNV_PRIME
    return h


@numba.njit(cache=True, nogil=True)
def hash_bytes(buf, offsets):
    """FNV-1a 64 keys of every item in a concatenated byte buffer. O(len(buf))."""
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    for j in range(n):
        out[j] = fnv1a64(buf, offsets[j], offsets[j + 1])
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _add_one(table, seeds, cols, key, count, conservative):
    # Branchless min/max: the data-dependent ``if v < low`` / ``if cell < target``
    # branches mispredict on skewed streams; min/max compile to cmov and took
    # conservative add_many from 44M to 63M items/s (5 x 2719, Zipf 1.1).
    # Saturation: starting the row minimum at ``INT64_MAX - count`` instead of
    # ``INT64_MAX`` makes ``target = min(cells..., MAX - count) + count``, the
    # saturating sum, at no extra cost (a separate ``min`` after the loop cost 25%).
    depth = table.shape[0]
    width = np.uint64(table.shape[1])
    room = _INT64_MAX - count
    if conservative:
        low = room
        for i in range(depth):
            c = _column(key, seeds[i], width)
            cols[i] = c
            low = min(low, table[i, c])
        target = low + count
        for i in range(depth):
            c = cols[i]
            table[i, c] = max(table[i, c], target)
    else:
        for i in range(depth):
            c = _column(key, seeds[i], width)
            table[i, c] = min(table[i, c], room) + count


@numba.njit(cache=True, nogil=True)
def add_keys(table, seeds, keys, counts, count, conservative):
    """Add ``counts[j]`` (or ``count`` when ``counts`` is empty) for each key, in order.

    Conservative update raises each of the key's cells only up to
    ``min(cells) + count``; the standard update adds ``count`` to every cell.
    O(len(keys) * depth).
    """
    cols = np.empty(table.shape[0], dtype=np.int64)
    use_counts = counts.shape[0] > 0
    for j in range(keys.shape[0]):
        c = counts[j] if use_counts else count
        _add_one(table, seeds, cols, keys[j], c, conservative)


@numba.njit(cache=True, nogil=True)
def add_bytes(table, seeds, buf, offsets, counts, count, conservative):
    """As :func:`add_keys` for items given as a concatenated byte buffer + offsets."""
    cols = np.empty(table.shape[0], dtype=np.int64)
    use_counts = counts.shape[0] > 0
    for j in range(offsets.shape[0] - 1):
        c = counts[j] if use_counts else count
        key = fnv1a64(buf, offsets[j], offsets[j + 1])
        _add_one(table, seeds, cols, key, c, conservative)


@numba.njit(cache=True, nogil=True, inline="always")
def _estimate_one(table, seeds, key):
    depth = table.shape[0]
    width = np.uint64(table.shape[1])
    low = _INT64_MAX
    for i in range(depth):
        low = min(low, table[i, _column(key, seeds[i], width)])
    return low


@numba.njit(cache=True, nogil=True)
def estimate_keys(table, seeds, keys):
    """Min over rows of each key's cells, as int64. O(len(keys) * depth)."""
    out = np.empty(keys.shape[0], dtype=np.int64)
    for j in range(keys.shape[0]):
        out[j] = _estimate_one(table, seeds, keys[j])
    return out


@numba.njit(cache=True, nogil=True)
def estimate_bytes(table, seeds, buf, offsets):
    """As :func:`estimate_keys` for a concatenated byte buffer + offsets."""
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.int64)
    for j in range(n):
        out[j] = _estimate_one(table, seeds, fnv1a64(buf, offsets[j], offsets[j + 1]))
    return out


# Single-item entry points: one dispatch per call, no output allocation. The
# key arrives in a 1-element uint64 array (``one``) so numba sees one type for
# every key (a Python int above 2**63 would otherwise type as uint64 and below
# it as int64).
@numba.njit(cache=True, nogil=True)
def add_one(table, seeds, one, count, conservative):
    """Add ``count`` for the key ``one[0]``. O(depth)."""
    cols = np.empty(table.shape[0], dtype=np.int64)
    _add_one(table, seeds, cols, one[0], count, conservative)


@numba.njit(cache=True, nogil=True)
def estimate_one(table, seeds, one):
    """Estimate of the key ``one[0]``. O(depth)."""
    return _estimate_one(table, seeds, one[0])


@numba.njit(cache=True, nogil=True)
def add_one_bytes(table, seeds, buf, count, conservative):
    """Add ``count`` for the item whose bytes are ``buf``. O(len(buf) + depth)."""
    cols = np.empty(table.shape[0], dtype=np.int64)
    key = fnv1a64(buf, 0, buf.shape[0])
    _add_one(table, seeds, cols, key, count, conservative)


@numba.njit(cache=True, nogil=True)
def estimate_one_bytes(table, seeds, buf):
    """Estimate of the item whose bytes are ``buf``. O(len(buf) + depth)."""
    return _estimate_one(table, seeds, fnv1a64(buf, 0, buf.shape[0]))
