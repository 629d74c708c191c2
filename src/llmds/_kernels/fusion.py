"""Score fusion of two ranked candidate lists (numba kernels). API: llmds/retrieval_pipeline.py.

Inputs are the two sides' candidates in rank order: ``lex_ids``/``lex_scores`` (BM25)
and ``dense_ids``/``dense_scores`` (similarity, higher is better), int64 and float64,
ids unique within a side. ``w_lex``/``w_dense`` are the sides' weights; a side with
weight 0 contributes no candidates. Output: the union of the ids, ascending, and the
fused scores, written into preallocated arrays of length ``len(lex) + len(dense)``;
the kernel returns how many entries it wrote.

Modes: 0 = weighted relative-score fusion, ``w * (s - min) / (max - min)`` per side
(1.0 for every candidate of a flat side; computed on halves when ``max - min``
overflows float64, so finite scores always give finite results); 1 = reciprocal rank fusion,
``w / (k + rank)`` with ranks from 1. Each document's score is accumulated as
``0.0 + lexical + dense`` in that order, so the result is bit-for-bit the plain
Python reference's (no fastmath: the order of float operations is the contract).
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _contributions(ids, scores, weight, mode, rrf_k, out_ids, out_c, pos):
    n = ids.shape[0]
    if n == 0 or weight == 0.0:
        return pos
    if mode == 0:
        lo = scores[0]
        hi = scores[0]
        for i in range(1, n):
            s = scores[i]
            if s < lo:
                lo = s
            if s > hi:
                hi = s
        span = hi - lo
        wide = span - span != 0.0  # inf or NaN: the span overflows float64, so halve
        if wide:
            span = hi / 2.0 - lo / 2.0
        for i in range(n):
            out_ids[pos] = ids[i]
            if span == 0.0:
                out_c[pos] = weight * 1.0
            elif wide:
                out_c[pos] = weight * ((scores[i] / 2.0 - lo / 2.0) / span)
            else:
                out_c[pos] = weight * ((scores[i] - lo) / span)
            pos += 1
    else:
        for i in range(n):
            out_ids[pos] = ids[i]
            out_c[pos] = weight / (rrf_k + (i + 1))
            pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def fuse(lex_ids, lex_scores, dense_ids, dense_scores, w_lex, w_dense, mode, rrf_k,
         out_ids, out_scores):
    """Fuse both sides into ``out_ids`` (ascending) / ``out_scores``; return the count.

    O((n + m) log(n + m)) for the sort of the n + m contributions.
    """
    total = lex_ids.shape[0] + dense_ids.shape[0]
    ids = np.empty(total, dtype=np.int64)
    contrib = np.empty(total, dtype=np.float64)
    pos = _contributions(lex_ids, lex_scores, w_lex, mode, rrf_k, ids, contrib, 0)
    pos = _contributions(dense_ids, dense_scores, w_dense, mode, rrf_k, ids, contrib, pos)
    if pos == 0:
        return 0
    # stable: a document's lexical contribution stays before its dense one
    order = np.argsort(ids[:pos], kind="mergesort")
    count = 0
    prev = ids[order[0]]
    acc = 0.0
    for j in range(pos):
        i = order[j]
        if ids[i] != prev:
            out_ids[count] = prev
            out_scores[count] = acc
            count += 1
            prev = ids[i]
            acc = 0.0
        acc = acc + contrib[i]
    out_ids[count] = prev
    out_scores[count] = acc
    return count + 1


@numba.njit(cache=True, nogil=True)
def top_candidates(scores, n, k):
    """Indices (ascending) of the entries of ``scores[:n]`` that can be in the top ``k``.

    Every entry whose score is at least the ``k``-th largest, so ties at the cut are
    all kept (the caller's heap breaks them). O(n log n).
    """
    if n <= k:
        return np.arange(n)
    cut = np.sort(scores[:n])[n - k]
    keep = 0
    for i in range(n):
        if scores[i] >= cut:
            keep += 1
    out = np.empty(keep, dtype=np.int64)
    j = 0
    for i in range(n):
        if scores[i] >= cut:
            out[j] = i
            j += 1
    return out
