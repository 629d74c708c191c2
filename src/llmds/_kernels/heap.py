"""Indexed binary heap kernels (numba). See :mod:`llmds.indexed_heap` for the Python API.

Layout (struct-of-arrays, capacity ``cap``; the owning class keeps the arrays):

* ``ints``: int64 matrix of shape (4, cap)

  - ``ints[0, i]`` slot of the entry at heap position ``i`` (``0 <= i < size``);
  - ``ints[1, i]`` insertion sequence number of the entry at heap position ``i``;
  - ``ints[2, s]`` heap position of slot ``s`` (only meaningful for live slots);
  - ``ints[3, :nfree]`` stack of free slots (top at ``nfree - 1``).

* ``scores``: float64 array, ``scores[i]`` is the score of the entry at heap position ``i``.
* ``meta``: int64 array ``[size, next_seq, nfree]``.

Order: an entry ``a`` comes before ``b`` iff ``(score_a, seq_a) < (score_b, seq_b)``
(a min-heap; the Python class negates scores for a max-heap), so equal scores
leave in insertion (FIFO) order.

Preconditions (enforced by the Python caller, no checks here): scores are not
NaN; ``push`` only when ``nfree > 0``; ``pop`` only when ``size > 0``; ``slot``
arguments name live slots. Kernels never raise; conditional operations return a
status flag instead.

Scores and sequence numbers are kept in heap order next to the slot ids so the
sift loops compare contiguous memory without an indirection per level.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def _sift_up(ints, scores, i, slot, score, seq):  # pragma: no cover - jitted
    """Move the hole at position ``i`` up until ``(score, seq)`` fits, then fill it."""
    hslot = ints[0]
    hseq = ints[1]
    pos = ints[2]
    while i > 0:
        p = (i - 1) >> 1
        ps = scores[p]
        if ps < score or (ps == score and hseq[p] < seq):
            break
        s = hslot[p]
        hslot[i] = s
        scores[i] = ps
        hseq[i] = hseq[p]
        pos[s] = i
        i = p
    hslot[i] = slot
    scores[i] = score
    hseq[i] = seq
    pos[slot] = i


@numba.njit(cache=True, nogil=True)
def _sift_down(ints, scores, i, n, slot, score, seq):  # pragma: no cover - jitted
    """Move the hole at position ``i`` down (heap of ``n`` entries), then fill it."""
    hslot = ints[0]
    hseq = ints[1]
    pos = ints[2]
    c = 2 * i + 1
    while c < n:
        cs = scores[c]
        cq = hseq[c]
        r = c + 1
        if r < n:
            rs = scores[r]
            rq = hseq[r]
            if rs < cs or (rs == cs and rq < cq):
                c = r
                cs = rs
                cq = rq
        if score < cs or (score == cs and seq < cq):
            break
        s = hslot[c]
        hslot[i] = s
        scores[i] = cs
        hseq[i] = cq
        pos[s] = i
        i = c
        c = 2 * i + 1
    hslot[i] = slot
    scores[i] = score
    hseq[i] = seq
    pos[slot] = i


@numba.njit(cache=True, nogil=True)
def push_tie(ints, scores, meta, score, tie):  # pragma: no cover - jitted
    """Insert ``score`` with caller-chosen tie-break ``tie``; return its slot. O(log n)."""
    n = meta[0]
    nfree = meta[2] - 1
    slot = ints[3, nfree]
    meta[0] = n + 1
    meta[2] = nfree
    _sift_up(ints, scores, n, slot, score, tie)
    return slot


@numba.njit(cache=True, nogil=True)
def push(ints, scores, meta, score):  # pragma: no cover - jitted
    """Insert ``score`` with the next sequence number; return its slot. O(log n)."""
    seq = meta[1]
    meta[1] = seq + 1
    return push_tie(ints, scores, meta, score, seq)


@numba.njit(cache=True, nogil=True)
def push_many(ints, scores, meta, new_scores, out_slots):  # pragma: no cover - jitted
    """``push`` every entry of ``new_scores`` in order, writing slots to ``out_slots``."""
    for j in range(new_scores.shape[0]):
        out_slots[j] = push(ints, scores, meta, new_scores[j])


@numba.njit(cache=True, nogil=True)
def _remove_at(ints, scores, meta, i):  # pragma: no cover - jitted
    """Remove the entry at heap position ``i``; free its slot; return (score, slot)."""
    slot = ints[0, i]
    score = scores[i]
    n = meta[0] - 1
    meta[0] = n
    nfree = meta[2]
    ints[3, nfree] = slot
    meta[2] = nfree + 1
    if i < n:
        lslot = ints[0, n]
        lscore = scores[n]
        lseq = ints[1, n]
        if i > 0:
            p = (i - 1) >> 1
            ps = scores[p]
            if lscore < ps or (lscore == ps and lseq < ints[1, p]):
                _sift_up(ints, scores, i, lslot, lscore, lseq)
                return score, slot
        _sift_down(ints, scores, i, n, lslot, lscore, lseq)
    return score, slot


@numba.njit(cache=True, nogil=True)
def pop(ints, scores, meta):  # pragma: no cover - jitted
    """Remove the front entry; return ``(score, slot)``. O(log n)."""
    return _remove_at(ints, scores, meta, 0)


@numba.njit(cache=True, nogil=True)
def pop_many(ints, scores, meta, k, out_scores, out_slots):  # pragma: no cover - jitted
    """Pop ``k`` entries (``k <= size``) into ``out_scores``/``out_slots``, front first."""
    for j in range(k):
        s, slot = _remove_at(ints, scores, meta, 0)
        out_scores[j] = s
        out_slots[j] = slot


@numba.njit(cache=True, nogil=True)
def delete(ints, scores, meta, slot):  # pragma: no cover - jitted
    """Remove live ``slot``; return its score. O(log n)."""
    s, _ = _remove_at(ints, scores, meta, ints[2, slot])
    return s


@numba.njit(cache=True, nogil=True)
def move_front(ints, scores, slot, score):  # pragma: no cover - jitted
    """Lower live ``slot``'s score to ``score`` and sift up; False (no change) if higher."""
    i = ints[2, slot]
    if score > scores[i]:
        return False
    _sift_up(ints, scores, i, slot, score, ints[1, i])
    return True


@numba.njit(cache=True, nogil=True)
def move_back(ints, scores, meta, slot, score):  # pragma: no cover - jitted
    """Raise live ``slot``'s score to ``score`` and sift down; False (no change) if lower."""
    i = ints[2, slot]
    if score < scores[i]:
        return False
    _sift_down(ints, scores, i, meta[0], slot, score, ints[1, i])
    return True


@numba.njit(cache=True, nogil=True)
def score_of(ints, scores, slot):  # pragma: no cover - jitted
    """Score of live ``slot``. O(1)."""
    return scores[ints[2, slot]]
