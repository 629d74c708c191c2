"""Validation of an untrusted InvertedIndex file's postings (numba; arrays in, codes out).

:func:`validate_segments` decodes every posting of a loaded file with bounds checks
before any other kernel of :mod:`llmds._kernels.bm25` may read it, and answers with
an error code and where it found the fault instead of reading out of bounds. The
posting format is the one described in :mod:`llmds._kernels.bm25`; this decoder is
separate from the trusted one because every read here is checked against the end of
its term's bytes and every value against the range the search kernels rely on.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "SEG_DIRECTORY",
    "SEG_DOC_RANGE",
    "SEG_OK",
    "SEG_ORDER",
    "SEG_TABLE",
    "SEG_TF",
    "SEG_VARINT",
    "validate_segments",
]

# Error codes of validate_segments (0 = valid); the owning class names them.
SEG_OK = 0
SEG_TABLE = 1  # a segment row points outside the arena / directory or the doc ids
SEG_DIRECTORY = 2  # directory offsets not monotone, not starting at 0 or not ending at nbytes
SEG_VARINT = 3  # a varint runs past its term's byte range or exceeds 63 bits
SEG_DOC_RANGE = 4  # a doc id falls outside the segment's [doc_base, doc_end)
SEG_ORDER = 5  # doc ids of a term are not strictly increasing
SEG_TF = 6  # a term frequency above 2**31 - 1


@numba.njit(cache=True, nogil=True)
def _read_bounded(buf, pos, stop):
    """Read one varint in ``buf[pos:stop]``: ``(value, next_pos)``, value -1 if corrupt.

    Corrupt: the bytes end before the value does, or the value needs more than 63
    bits (so ``value`` is a non-negative int64). Never reads at or past ``stop``.
    """
    value = np.int64(0)
    shift = 0
    while True:
        if pos >= stop or shift > 56:
            return np.int64(-1), pos
        byte = np.int64(buf[pos])
        pos += 1
        if shift == 56 and byte >= 128:
            return np.int64(-1), pos
        value |= (byte & 127) << shift
        if byte < 128:
            return value, pos
        shift += 7


@numba.njit(cache=True, nogil=True)
def _next_posting_checked(arena, p, stop, doc, end, first):
    """Decode one untrusted posting after doc ``doc``: ``(code, doc, tf, next p)``.

    ``code`` is :data:`SEG_OK` or the first broken fact: a varint past ``stop`` or over
    63 bits, a zero gap after the first posting, a doc at or past ``end``, a tf above
    ``2**31 - 1``. Reads only ``arena[p:stop]``.
    """
    v, p = _read_bounded(arena, p, stop)
    if v < 0:
        return SEG_VARINT, doc, 0, p
    gap = v >> 2
    if gap == 0 and not first:
        return SEG_ORDER, doc, 0, p
    if gap >= end - doc:
        return SEG_DOC_RANGE, doc, 0, p
    tf = v & 3
    if tf == 0:
        tf, p = _read_bounded(arena, p, stop)
        if tf < 0:
            return SEG_VARINT, doc, 0, p
        if tf > 2**31 - 5:
            return SEG_TF, doc, 0, p
        tf += 4
    return SEG_OK, doc + gap, tf, p


@numba.njit(cache=True, nogil=True)
def _bad_row(segs, s, na, nd, num_ids, num_terms):
    """True if segment row ``s`` points outside the arena, the directory or the ids."""
    data_start, dstart, nterms, base, end, nbytes = (segs[s, 0], segs[s, 1], segs[s, 2],
                                                      segs[s, 3], segs[s, 4], segs[s, 5])
    return (data_start < 0 or nbytes < 0 or nbytes > na or data_start > na - nbytes
            or dstart < 0 or nterms < 0 or nterms > num_terms or dstart >= nd
            or nterms > nd - dstart - 1 or base < 0 or end > num_ids or base >= end)


@numba.njit(cache=True, nogil=True)
def validate_segments(arena, dir_flat, segs, num_ids, num_terms, live, df_live, tf_sum,
                      counts):
    """Check every posting of a loaded index before any other kernel reads it.

    ``segs`` is the file's ``(m, 7)`` table (``data_start, dir_start, nterms, doc_base,
    doc_end, nbytes, num_postings``). Checks that each row lies inside ``arena`` /
    ``dir_flat`` / ``[0, num_ids)``; that each directory slice starts at 0, ends at
    ``nbytes`` and never decreases; that every term's varint stream decodes
    entirely inside its byte range into doc ids inside ``[doc_base, doc_end)``,
    strictly increasing, with tf in ``[1, 2**31 - 1]``. While decoding it fills
    ``df_live[t]`` (live documents per term, zeroed by the caller), ``tf_sum[d]``
    (sum of the tfs of live doc ``d``) and ``counts[s]`` (postings of segment ``s``).

    Returns ``(code, segment, term, byte position)``; code 0 (:data:`SEG_OK`) means
    valid, otherwise one of the ``SEG_*`` codes and where it was found. Safe on any
    input of the right dtypes: every index is checked before it is read (``live``
    must have ``num_ids`` entries, ``tf_sum`` too, ``df_live`` ``num_terms``).
    O(arena bytes + directory entries).
    """
    if live.shape[0] < num_ids or tf_sum.shape[0] < num_ids or df_live.shape[0] < num_terms \
            or counts.shape[0] < segs.shape[0] or segs.shape[1] < 6:
        return SEG_TABLE, -1, -1, -1
    for s in range(segs.shape[0]):
        if _bad_row(segs, s, arena.shape[0], dir_flat.shape[0], num_ids, num_terms):
            return SEG_TABLE, s, -1, -1
        data_start, dstart, nterms, nbytes = segs[s, 0], segs[s, 1], segs[s, 2], segs[s, 5]
        if dir_flat[dstart] != 0 or np.int64(dir_flat[dstart + nterms]) != nbytes:
            return SEG_DIRECTORY, s, -1, -1
        n = 0
        for t in range(nterms):
            lo = np.int64(dir_flat[dstart + t])
            hi = np.int64(dir_flat[dstart + t + 1])
            if hi < lo or hi > nbytes:
                return SEG_DIRECTORY, s, t, -1
            p = data_start + lo
            doc = segs[s, 3]
            while p < data_start + hi:
                code, doc, tf, p = _next_posting_checked(arena, p, data_start + hi, doc,
                                                         segs[s, 4], p == data_start + lo)
                if code != SEG_OK:
                    return code, s, t, p
                n += 1
                if live[doc] != 0:
                    df_live[t] += 1
                    tf_sum[doc] += tf
        counts[s] = n
    return SEG_OK, -1, -1, -1
