"""Varint (LEB128) and zigzag codecs over NumPy arrays (numba kernels).

A varint stores an unsigned integer 7 bits per byte, least significant group first;
the high bit of a byte says "another byte follows". Values below 128 take one byte,
``2**64 - 1`` takes ten. Zigzag maps signed to unsigned so small magnitudes stay
small: ``0, -1, 1, -2, 2 -> 0, 1, 2, 3, 4`` (``(n << 1) ^ (n >> 63)``).

The posting codec in :mod:`llmds._kernels.bm25` uses the int64 fast path
(:func:`write_uvarint` / :func:`read_uvarint`); its scoring loop alone writes
:func:`read_uvarint` out inline, for the reason measured in
``llmds._kernels.bm25._accumulate_segments``. The array functions here are the
general uint64 codec used by :mod:`llmds.postings` and the property tests.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "decode_uvarints",
    "encode_uvarints",
    "read_uvarint",
    "uvarint_size",
    "write_uvarint",
    "zigzag_decode",
    "zigzag_encode",
]

_U7 = np.uint64(7)
_U127 = np.uint64(0x7F)
_U128 = np.uint64(0x80)
_U1 = np.uint64(1)
_U63 = np.uint64(63)


@numba.njit(cache=True, nogil=True)
def uvarint_size(value):
    """Bytes a non-negative int64 ``value`` takes as a varint (1..9). O(1)."""
    n = 1
    while value >= 128:
        value >>= 7
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def write_uvarint(buf, pos, value):
    """Write non-negative int64 ``value`` at ``buf[pos]``; return the next position.

    Precondition: ``buf`` (uint8) has at least ``uvarint_size(value)`` bytes free.
    """
    while value >= 128:
        buf[pos] = (value & 127) | 128
        value >>= 7
        pos += 1
    buf[pos] = value
    return pos + 1


@numba.njit(cache=True, nogil=True)
def read_uvarint(buf, pos):
    """Read one varint starting at ``buf[pos]``; return ``(value, next_pos)`` as int64."""
    byte = np.int64(buf[pos])
    pos += 1
    if byte < 128:
        return byte, pos
    value = byte & 127
    shift = 7
    while True:
        byte = np.int64(buf[pos])
        pos += 1
        value |= (byte & 127) << shift
        if byte < 128:
            return value, pos
        shift += 7


@numba.njit(cache=True, nogil=True)
def encode_uvarints(values, out):
    """Encode uint64 ``values`` into ``out`` (uint8, >= 10 bytes per value); return bytes used.

    O(total bytes). Handles the whole uint64 range (``2**64 - 1`` is ten bytes).
    """
    pos = 0
    for i in range(values.shape[0]):
        v = np.uint64(values[i])
        while v >= _U128:
            out[pos] = np.uint8((v & _U127) | _U128)
            v = v >> _U7
            pos += 1
        out[pos] = np.uint8(v)
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def decode_uvarints(data, nbytes, out):
    """Decode varints from ``data[:nbytes]`` into ``out`` (uint64); return how many.

    Returns -1 when the bytes end inside a value or a value exceeds 64 bits (corrupt
    input), so callers can raise instead of reading garbage. O(nbytes).
    """
    pos = 0
    count = 0
    while pos < nbytes:
        value = np.uint64(0)
        shift = np.uint64(0)
        while True:
            if pos >= nbytes or shift > _U63 or count >= out.shape[0]:
                return -1
            byte = np.uint64(data[pos])
            pos += 1
            value = value | ((byte & _U127) << shift)
            if byte < _U128:
                break
            shift = shift + _U7
        out[count] = value
        count += 1
    return count


@numba.njit(cache=True, nogil=True)
def zigzag_encode(values, out):
    """Map int64 ``values`` to uint64 ``out``: ``(n << 1) ^ (n >> 63)``. O(n)."""
    for i in range(values.shape[0]):
        n = np.int64(values[i])
        out[i] = np.uint64(n << np.int64(1)) ^ np.uint64(n >> np.int64(63))


@numba.njit(cache=True, nogil=True)
def zigzag_decode(values, out):
    """Inverse of :func:`zigzag_encode`: uint64 ``values`` to int64 ``out``. O(n)."""
    for i in range(values.shape[0]):
        u = np.uint64(values[i])
        out[i] = np.int64(u >> _U1) ^ -np.int64(u & _U1)
