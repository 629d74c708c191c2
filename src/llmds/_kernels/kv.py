"""Chained page hashes for the KV cache's prefix sharing (numba kernels).

Kernel rules: arrays and scalars in, arrays out, no exceptions.
Preconditions are enforced by the caller, :class:`llmds.kv_cache.KVCache`.

The hash is a 64-bit chained hash built from xxHash64's round function and
MurmurHash3's 64-bit finaliser (``fmix64``): page ``i``'s hash is
``H(hash[i-1], tokens of page i)`` where ``hash[-1]`` is a seed derived from the
namespace. It is stable across processes and machines (no salting), so the
same tokens in the same namespace always give the same chain. It is **not** a
cryptographic hash and it is invertible: with ``n`` cached pages the chance of an
accidental collision is about ``n**2 / 2**65``, but a tenant who chooses token ids
can construct a page whose hash equals another prefix's (``tests/test_page_hash.py``
does it). ``KVCache`` therefore uses it only when asked (``hash_algorithm="chain64"``,
trusted token ids); its default identity is SHA-256 (:mod:`llmds.page_hash`).

All arithmetic is on ``uint64`` and wraps modulo 2**64, in numba as in the
pure-Python mode (``NUMBA_DISABLE_JIT=1``, where the caller silences NumPy's
scalar overflow warnings).
"""

import numba
import numpy as np

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_R31 = np.uint64(31)
_R33 = np.uint64(33)


@numba.njit(cache=True, nogil=True)
def chain_hashes(tokens, page_size, num_pages, seed):
    """Chained 64-bit hashes of the first ``num_pages`` full pages of ``tokens``.

    Preconditions: ``tokens`` is a 1-D unsigned integer array (``uint32`` token ids
    from ``KVCache``) with at least ``num_pages * page_size`` entries;
    ``page_size >= 1``; ``seed`` is a ``uint64`` (the parent hash, or the
    namespace seed for the first page). O(num_pages * page_size).

    Returns a ``uint64`` array of ``num_pages`` hashes; entry ``i`` depends on
    ``seed`` and every token of pages ``0..i``.
    """
    out = np.empty(num_pages, dtype=np.uint64)
    h = seed
    size = np.uint64(page_size)
    for p in range(num_pages):
        acc = h ^ _P4
        base = p * page_size
        for j in range(page_size):
            acc = acc + tokens[base + j] * _P2
            acc = ((acc << _R31) | (acc >> _R33)) * _P1
        acc ^= size
        # fmix64: full avalanche so nearby chains do not collide
        acc ^= acc >> _R33
        acc *= _M1
        acc ^= acc >> _R33
        acc *= _M2
        acc ^= acc >> _R33
        out[p] = acc
        h = acc
    return out


@numba.njit(cache=True, nogil=True)
def all_set(idx, flags):
    """True if every ``idx[i]`` is in ``[0, len(flags))`` with ``flags[idx[i]]`` set.

    Preconditions: ``idx`` is a 1-D integer array, ``flags`` a 1-D bool array.
    O(len(idx)); one pass, no temporaries (the NumPy form costs ~5 us per call).
    """
    n = flags.shape[0]
    for i in range(idx.shape[0]):
        x = idx[i]
        if x < 0 or x >= n or not flags[x]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def claim(idx, held):
    """Set ``held[idx]``, all or nothing; return -1, or the position of the first
    index already set (held before, or repeated in ``idx``) after undoing the rest.

    Preconditions: every ``idx[i]`` is in ``[0, len(held))``. O(len(idx)).
    """
    for i in range(idx.shape[0]):
        x = idx[i]
        if held[x]:
            for j in range(i):
                held[idx[j]] = False
            return i
        held[x] = True
    return -1
