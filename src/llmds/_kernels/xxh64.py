"""XXH64 (xxHash, 64-bit) of a byte buffer: the payload checksum of remote KV pages.

Kernel rules: arrays and scalars in, a scalar out, no exceptions. The
caller (:mod:`llmds.dist.redis_store`) passes two views of one buffer: ``data``
(``uint8``) and ``words`` (little-endian ``uint64``, ``len(data) // 8`` entries,
8-byte aligned), so the 32-byte stripes read whole words.

This is the reference algorithm (Yann Collet's XXH64 specification), checked
against the reference implementation's outputs in ``tests/test_redis_store.py``
(``XXH64("") == 0xEF46DB3751D8E999`` with seed 0). It is a checksum, not a
cryptographic hash: it finds torn, truncated and foreign values, not forgeries.
It was chosen over ``zlib.crc32`` by measurement: 64 KiB in 7 us against 16 us
(4 GB/s), on the loopback MGET path where a 64 KiB page costs ~50 us.

All arithmetic is on ``uint64`` and wraps modulo 2**64, in numba as in the
pure-Python mode (``NUMBA_DISABLE_JIT=1``, where the caller silences NumPy's
scalar overflow warnings).
"""

import numba
import numpy as np

__all__ = ["xxh64"]

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
_ZERO = np.uint64(0)


@numba.njit(inline="always")
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@numba.njit(inline="always")
def _round(acc, lane):
    acc = acc + lane * _P2
    return _rotl(acc, 31) * _P1


@numba.njit(inline="always")
def _merge(acc, val):
    acc ^= _round(_ZERO, val)
    return acc * _P1 + _P4


@numba.njit(cache=True, nogil=True)
def xxh64(words, data, seed):
    """XXH64 of ``data`` with ``seed``. O(len(data)).

    Preconditions: ``data`` is a 1-D ``uint8`` array; ``words`` is the same memory
    as 1-D ``uint64`` with ``len(data) // 8`` entries (little-endian host);
    ``seed`` is a ``uint64``. Returns a ``uint64``.
    """
    n = data.shape[0]
    i = 0
    if n >= 32:
        v1 = seed + _P1 + _P2
        v2 = seed + _P2
        v3 = seed
        v4 = seed - _P1
        num_stripes = n // 32
        for s in range(num_stripes):
            w = 4 * s
            v1 = _round(v1, words[w])
            v2 = _round(v2, words[w + 1])
            v3 = _round(v3, words[w + 2])
            v4 = _round(v4, words[w + 3])
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
        i = num_stripes * 32
    else:
        h = seed + _P5
    h += np.uint64(n)
    while i + 8 <= n:
        h ^= _round(_ZERO, words[i // 8])
        h = _rotl(h, 27) * _P1 + _P4
        i += 8
    if i + 4 <= n:
        k = (np.uint64(data[i]) | (np.uint64(data[i + 1]) << np.uint64(8))
             | (np.uint64(data[i + 2]) << np.uint64(16))
             | (np.uint64(data[i + 3]) << np.uint64(24)))
        h ^= k * _P1
        h = _rotl(h, 23) * _P2 + _P3
        i += 4
    while i < n:
        h ^= np.uint64(data[i]) * _P5
        h = _rotl(h, 11) * _P1
        i += 1
    h ^= h >> np.uint64(33)
    h *= _P2
    h ^= h >> np.uint64(29)
    h *= _P3
    h ^= h >> np.uint64(32)
    return h
