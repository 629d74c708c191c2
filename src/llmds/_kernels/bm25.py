"""BM25 kernels over varint-compressed postings (numba; arrays in, arrays out).

Layout (owned by :class:`llmds.inverted_index.InvertedIndex`):

* ``arena`` (uint8): the bytes of every sealed segment, back to back.
* ``dir_flat`` (uint32): per segment, ``nterms + 1`` byte offsets (relative to the
  segment's start in ``arena``) indexed by global term id: term ``t``'s postings in
  segment ``s`` are ``arena[start + dir[t] : start + dir[t + 1]]``.
* ``segs`` (int64, ``(num_segments, 4)``): ``data_start, dir_start, nterms, doc_base``;
  a single segment is passed as one such row.
* A posting is ``v = (gap << 2) | (tf if tf <= 3 else 0)`` as a varint, then
  ``tf - 4`` as a varint when ``tf >= 4``. ``gap`` is the internal doc id minus the
  previous one in the list (minus ``doc_base`` for the first). Nearly all postings
  have tf <= 3, so they cost one varint and the decoder's rare-tf branch predicts
  well (SciFact: 1.64 bytes/posting with the directory; the scoring loop went from
  40 to 32 us per query against a ``(gap << 1) | (tf == 1)`` layout).
  :func:`_next_posting` is the one decoder of trusted postings (the scoring loop
  writes it out, for the reason measured in :func:`_accumulate_segments`); the loader
  checks untrusted bytes with :func:`llmds._kernels.bm25_validate.validate_segments`.
* The unsealed buffer is a forward index: documents ``buf_base + i`` own
  ``buf_terms/buf_tfs[buf_ptr[i]:buf_ptr[i + 1]]``.
* ``live`` (uint8 per internal doc): 0 marks a tombstone; skipped when scoring.

Score of document ``d`` for query terms ``t`` (with multiplicity ``c_t``)::

    sum_t c_t * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))          (Lucene's idf)

``N``, ``df`` and ``avgdl`` count live documents only.

Scratch: a search works in three arrays its caller owns for the duration of the
call (one set per concurrent call, never shared): ``scores`` (float64 per internal
doc) and ``touched`` (int32, one more than the docs) accumulate, ``qmark`` (int32
per term) marks query terms for the buffer scan. All are zero between calls: a call
resets the entries it wrote. Every BM25 contribution is > 0, so ``scores[d] == 0``
means "not touched yet". Every kernel is ``nogil``: concurrent calls on different
scratch run in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

from llmds._kernels.varint import read_uvarint, uvarint_size, write_uvarint

__all__ = [
    "decode_segment",
    "doc_postings_in_segment",
    "merge_segments",
    "seal_buffer",
    "search_batch",
    "search_one",
    "term_frequency_in_segment",
]


# ------------------------------------------------------------------ the posting codec
@numba.njit(cache=True, nogil=True)
def _posting_size(gap, tf):
    if tf <= 3:
        return uvarint_size((gap << 2) | tf)
    return uvarint_size(gap << 2) + uvarint_size(tf - 4)


@numba.njit(cache=True, nogil=True)
def _write_posting(buf, pos, gap, tf):
    if tf <= 3:
        return write_uvarint(buf, pos, (gap << 2) | tf)
    pos = write_uvarint(buf, pos, gap << 2)
    return write_uvarint(buf, pos, tf - 4)


@numba.njit(cache=True, nogil=True)
def _next_posting(arena, p, doc):
    """Decode the posting at ``arena[p]`` that follows doc ``doc``: ``(doc, tf, next p)``.

    The one decoder of trusted postings, except the scoring loop (see
    :func:`_accumulate_segments` for why it decodes inline). Example: byte ``0x09``
    after doc 10 is gap 2, tf 1 (``9 = 2 << 2 | 1``): ``(12, 1, p + 1)``. O(1).
    """
    v, p = read_uvarint(arena, p)
    tf = v & 3
    if tf == 0:  # tf >= 4 follows as its own varint
        tf, p = read_uvarint(arena, p)
        tf += 4
    return doc + (v >> 2), tf, p


@numba.njit(cache=True, nogil=True)
def _postings(dir_flat, seg, t):
    """Byte range ``(p, end)`` of term ``t``'s list in segment row ``seg`` (``t < nterms``)."""
    start = seg[0]
    return (start + np.int64(dir_flat[seg[1] + t]), start + np.int64(dir_flat[seg[1] + t + 1]))


@numba.njit(cache=True, nogil=True)
def _tf_of(arena, p, end, doc, target):
    """tf of doc ``target`` in the list ``arena[p:end]`` starting after ``doc``; 0 if absent.

    Lists are doc-ordered, so the scan stops at the first doc >= ``target``. O(list).
    """
    while p < end:
        doc, tf, p = _next_posting(arena, p, doc)
        if doc >= target:
            return tf if doc == target else 0
    return 0


# ------------------------------------------------------------------ building segments
@numba.njit(cache=True, nogil=True)
def _invert_pass(buf_ptr, buf_terms, buf_tfs, ndocs, base, live, cursor, data, write):
    """One pass over the live buffer documents, in doc order, posting by posting.

    With ``write`` it encodes each posting of term ``t`` at ``data[cursor[t]]`` and
    advances ``cursor[t]``; without, it adds the posting's size to ``cursor[t]``.
    Returns the number of postings. O(buffer postings + len(cursor)).
    """
    last = np.full(cursor.shape[0], base, dtype=np.int64)
    n = 0
    for i in range(ndocs):
        doc = base + i
        if live[doc] == 0:
            continue
        for p in range(buf_ptr[i], buf_ptr[i + 1]):
            t = buf_terms[p]
            gap = doc - last[t]
            tf = np.int64(buf_tfs[p])
            if write:
                cursor[t] = _write_posting(data, cursor[t], gap, tf)
            else:
                cursor[t] += _posting_size(gap, tf)
            last[t] = doc
            n += 1
    return n


@numba.njit(cache=True, nogil=True)
def seal_buffer(buf_ptr, buf_terms, buf_tfs, ndocs, base, live, num_terms):
    """Invert the forward buffer into one segment; drop tombstoned documents.

    Returns ``(data uint8, term_ptr uint32[num_terms + 1], num_postings)``.
    O(buffer postings + num_terms): one pass sizes every term's list, a second
    writes it (a counting sort by term that keeps doc order).
    """
    size = np.zeros(num_terms, dtype=np.int64)
    no_data = np.empty(0, dtype=np.uint8)
    n = _invert_pass(buf_ptr, buf_terms, buf_tfs, ndocs, base, live, size, no_data, False)
    ptr = np.zeros(num_terms + 1, dtype=np.int64)
    ptr[1:] = np.cumsum(size)
    data = np.empty(ptr[num_terms], dtype=np.uint8)
    cursor = ptr[:num_terms].copy()
    _invert_pass(buf_ptr, buf_terms, buf_tfs, ndocs, base, live, cursor, data, True)
    return data, ptr.astype(np.uint32), n


@numba.njit(cache=True, nogil=True)
def merge_segments(arena, dir_flat, segs, live, num_terms):
    """Merge consecutive segments ``segs`` (rows in doc order) into one; purge tombstones.

    Returns ``(data uint8, term_ptr uint32[num_terms + 1], num_postings)``; the new
    segment's ``doc_base`` is ``segs[0, 3]``. O(input bytes + num_terms * len(segs)).
    """
    m = segs.shape[0]
    cap = 16
    for s in range(m):
        cap += np.int64(dir_flat[segs[s, 1] + segs[s, 2]]) + 20 * min(segs[s, 2], num_terms)
    out = np.empty(cap, dtype=np.uint8)
    ptr = np.zeros(num_terms + 1, dtype=np.int64)
    pos = 0
    n = 0
    for t in range(num_terms):
        prev = segs[0, 3]
        for s in range(m):
            if t >= segs[s, 2]:
                continue
            p, end = _postings(dir_flat, segs[s], t)
            doc = segs[s, 3]
            while p < end:
                doc, tf, p = _next_posting(arena, p, doc)
                if live[doc] != 0:
                    pos = _write_posting(out, pos, doc - prev, tf)
                    prev = doc
                    n += 1
        ptr[t + 1] = pos
    return out[:pos].copy(), ptr.astype(np.uint32), n


# ------------------------------------------------------------------ reading one segment
@numba.njit(cache=True, nogil=True)
def decode_segment(arena, dir_flat, seg):
    """All postings of one segment as ``(terms, docs, tfs)`` int64 arrays, term-major.

    Tombstoned documents are included. O(segment bytes). For ``_check`` and tests.
    """
    total = np.int64(dir_flat[seg[1] + seg[2]])
    terms = np.empty(total, dtype=np.int64)
    docs = np.empty(total, dtype=np.int64)
    tfs = np.empty(total, dtype=np.int64)
    n = 0
    for t in range(seg[2]):
        p, end = _postings(dir_flat, seg, t)
        doc = seg[3]
        while p < end:
            doc, tfs[n], p = _next_posting(arena, p, doc)
            terms[n] = t
            docs[n] = doc
            n += 1
    return terms[:n].copy(), docs[:n].copy(), tfs[:n].copy()


@numba.njit(cache=True, nogil=True)
def term_frequency_in_segment(arena, dir_flat, seg, term, target):
    """tf of ``term`` in internal doc ``target`` within one segment (0 if absent). O(df)."""
    if term >= seg[2]:
        return 0
    p, end = _postings(dir_flat, seg, term)
    return _tf_of(arena, p, end, seg[3], target)


@numba.njit(cache=True, nogil=True)
def doc_postings_in_segment(arena, dir_flat, seg, target):
    """Term ids and tfs of internal doc ``target`` in one segment (for deletes).

    Scans each term's list only up to ``target`` (lists are doc-ordered):
    O(segment postings) in the worst case.
    """
    terms = np.empty(64, dtype=np.int64)
    tfs = np.empty(64, dtype=np.int64)
    n = 0
    for t in range(seg[2]):
        p, end = _postings(dir_flat, seg, t)
        tf = _tf_of(arena, p, end, seg[3], target)
        if tf == 0:
            continue
        if n == terms.shape[0]:
            terms = np.concatenate((terms, np.empty(n, dtype=np.int64)))
            tfs = np.concatenate((tfs, np.empty(n, dtype=np.int64)))
        terms[n] = t
        tfs[n] = tf
        n += 1
    return terms[:n].copy(), tfs[:n].copy()


# ------------------------------------------------------------------ search
@numba.njit(cache=True, nogil=True, fastmath=True)
def _idf_weights(q_terms, q_counts, df, num_docs):
    """``c_t * idf(t)`` per query term. O(query terms)."""
    weights = np.empty(q_terms.shape[0], dtype=np.float64)
    for j in range(q_terms.shape[0]):
        d = np.float64(df[q_terms[j]])
        weights[j] = q_counts[j] * np.log(1.0 + (num_docs - d + 0.5) / (d + 0.5))
    return weights


# fastmath only on the scoring kernels (distance/score arithmetic): SciFact batch 38.6 ->
# 36 us per query; tests compare scores with a tolerance.
@numba.njit(cache=True, nogil=True, fastmath=True)
def _accumulate_segments(q_terms, weights, arena, dir_flat, segs, live, allowed, use_allowed,
                         filtered, doc_len, norm_a, norm_c, scores, touched):
    """Add every sealed posting of the query terms to ``scores``; return the touched count.

    The hot loop: O(postings of the query terms). It decodes postings inline instead
    of calling :func:`_next_posting`, the one place the posting format is written
    twice. Measured on SciFact (kernel only, one batch of 300 queries, top-100):
    27.5 us per query inline; 30.5 with a per-posting call even when numba inlines
    it (numba increments and decrements the arena's reference count around every
    call, two atomic operations per posting, which also contend between threads
    searching one index); 31.8 decoding 64-256 postings at a time into a buffer.
    """
    nt = 0
    for s in range(segs.shape[0]):
        for j in range(q_terms.shape[0]):
            t = q_terms[j]
            if t >= segs[s, 2]:
                continue
            p = segs[s, 0] + np.int64(dir_flat[segs[s, 1] + t])
            end = segs[s, 0] + np.int64(dir_flat[segs[s, 1] + t + 1])
            w = weights[j]
            doc = segs[s, 3]
            while p < end:
                byte = np.int64(arena[p])
                p += 1
                if byte < 128:  # one byte covers most postings
                    v = byte
                else:
                    v = byte & 127
                    shift = 7
                    while True:
                        byte = np.int64(arena[p])
                        p += 1
                        v |= (byte & 127) << shift
                        if byte < 128:
                            break
                        shift += 7
                doc += v >> 2
                tfi = v & 3
                if tfi == 0:  # tf >= 4: rare, so this branch predicts well
                    tfi, p = read_uvarint(arena, p)
                    tfi += 4
                # Only check tombstones/filters per posting when there are any.
                if filtered and (live[doc] == 0 or (use_allowed and allowed[doc] == 0)):
                    continue
                tf = np.float64(tfi)
                contrib = w * tf / (tf + (norm_a + norm_c * doc_len[doc]))
                # Branch-free "first touch" bookkeeping: the write is harmless when
                # the doc was already touched (nt does not move). Measured on SciFact:
                # 36 -> 22 us per query for the accumulate loop (the branch mispredicts).
                touched[nt] = doc
                nt += np.int64(scores[doc] == 0.0)
                scores[doc] += contrib
    return nt


@numba.njit(cache=True, nogil=True, fastmath=True)
def _accumulate_buffer(q_terms, weights, buf_ptr, buf_terms, buf_tfs, buf_base, buf_ndocs,
                       live, allowed, use_allowed, doc_len, norm_a, norm_c, scores, touched,
                       qmark, nt):
    """Add the unsealed documents' matches to ``scores``; return the touched count.

    O(buffer postings). Sums in query-term order, as the sealed path does, so a
    document scores the same bits before and after it is sealed.
    """
    nq = q_terms.shape[0]
    tfq = np.zeros(nq, dtype=np.int64)
    for j in range(nq):
        qmark[q_terms[j]] = j + 1
    for i in range(buf_ndocs):
        doc = buf_base + i
        if live[doc] == 0 or (use_allowed and allowed[doc] == 0):
            continue
        hit = False
        for p in range(buf_ptr[i], buf_ptr[i + 1]):
            m = qmark[buf_terms[p]]
            if m != 0:
                tfq[m - 1] = buf_tfs[p]
                hit = True
        if not hit:
            continue
        for j in range(nq):
            if tfq[j] == 0:
                continue
            tf = np.float64(tfq[j])
            tfq[j] = 0
            contrib = weights[j] * tf / (tf + (norm_a + norm_c * doc_len[doc]))
            if scores[doc] == 0.0:
                touched[nt] = doc
                nt += 1
            scores[doc] += contrib
    for j in range(nq):
        qmark[q_terms[j]] = 0
    return nt


@numba.njit(cache=True, nogil=True)
def _worse(s1, e1, s2, e2):
    # True if (s1, e1) ranks below (s2, e2): lower score, or equal score and larger id.
    return s1 < s2 or (s1 == s2 and e1 > e2)


@numba.njit(cache=True, nogil=True)
def _sift_down(hs, he, n, i):
    while True:
        left = 2 * i + 1
        if left >= n:
            return
        c = left
        right = left + 1
        if right < n and _worse(hs[right], he[right], hs[left], he[left]):
            c = right
        if _worse(hs[c], he[c], hs[i], he[i]):
            hs[i], hs[c] = hs[c], hs[i]
            he[i], he[c] = he[c], he[i]
            i = c
        else:
            return


@numba.njit(cache=True, nogil=True, fastmath=True)
def _select_top_k(scores, touched, nt, ext_ids, k, out_ids, out_scores):
    """Move the ``k`` best touched docs to ``out_*`` (best first, ties by id); reset scores.

    Returns how many results were written. O(nt + kk log kk) with the histogram cut.
    """
    # One random-access pass gathers the touched scores into a contiguous buffer and
    # resets the accumulator; the passes below are sequential.
    buf = np.empty(nt, dtype=np.float64)
    top = 0.0
    for i in range(nt):
        doc = touched[i]
        sc = scores[doc]
        scores[doc] = 0.0
        buf[i] = sc
        top = max(top, sc)
    kk = min(k, nt)
    # Many hits: a 1024-bin histogram of the scores finds a bin edge below which no
    # top-k result can lie, so only about k candidates reach the heap. SciFact, k=100:
    # heap-only 20 us, np.partition threshold 19 us, histogram ~5 us per query. (Inline:
    # as a function of its own it cost ~0.7 us per query.)
    scale = 0.0
    min_bin = 0
    if nt > 4 * kk:
        nbins = 1024
        scale = (nbins - 1) / top
        hist = np.zeros(nbins, dtype=np.int64)
        for i in range(nt):
            hist[np.int64(buf[i] * scale)] += 1
        cum = 0
        min_bin = nbins - 1
        while min_bin > 0:
            cum += hist[min_bin]
            if cum >= kk:
                break
            min_bin -= 1
    # Min-heap of (score, ext_id) whose root is the worst kept result; sift up inline.
    hs = out_scores
    he = out_ids
    n = 0
    for i in range(nt):
        sc = buf[i]
        if np.int64(sc * scale) < min_bin:
            continue
        e = ext_ids[touched[i]]
        if n < kk:
            c = n
            hs[c] = sc
            he[c] = e
            n += 1
            while c > 0:
                parent = (c - 1) >> 1
                if not _worse(hs[c], he[c], hs[parent], he[parent]):
                    break
                hs[c], hs[parent] = hs[parent], hs[c]
                he[c], he[parent] = he[parent], he[c]
                c = parent
        elif _worse(hs[0], he[0], sc, e):
            hs[0] = sc
            he[0] = e
            _sift_down(hs, he, n, 0)
    # Heap sort in place: repeatedly move the worst to the end.
    m = n
    while m > 1:
        m -= 1
        hs[0], hs[m] = hs[m], hs[0]
        he[0], he[m] = he[m], he[0]
        _sift_down(hs, he, m, 0)
    return n


@numba.njit(cache=True, nogil=True, fastmath=True)
def _score_and_select(
    q_terms, q_counts, ints, allowed, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs,
    live, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores,
):
    """Accumulate one query into ``scores``, select the top ``k``, reset; return count.

    ``ints = [buf_base, buf_ndocs, use_allowed, any_dead]``; ``params = [k1, b, avgdl, N]``.
    Results go to ``out_ids`` (external ids) / ``out_scores``, best first, ties by id.
    O(postings of the query terms + buffer postings + touched * log k).
    """
    k1 = params[0]
    b = params[1]
    norm_a = k1 * (1.0 - b)
    norm_c = k1 * b / params[2]
    use_allowed = ints[2] != 0
    filtered = use_allowed or ints[3] != 0
    weights = _idf_weights(q_terms, q_counts, df, params[3])
    nt = _accumulate_segments(q_terms, weights, arena, dir_flat, segs, live, allowed,
                              use_allowed, filtered, doc_len, norm_a, norm_c, scores, touched)
    if ints[1] > 0:
        nt = _accumulate_buffer(q_terms, weights, buf_ptr, buf_terms, buf_tfs, ints[0],
                                ints[1], live, allowed, use_allowed, doc_len, norm_a, norm_c,
                                scores, touched, qmark, nt)
    return _select_top_k(scores, touched, nt, ext_ids, k, out_ids, out_scores)


@numba.njit(cache=True, nogil=True, fastmath=True)
def search_one(
    q_terms, q_counts, ints, allowed, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs,
    live, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores,
):
    """One query (unique term ids + counts): fill ``out_*[:n]``, return ``n``."""
    return _score_and_select(
        q_terms, q_counts, ints, allowed, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs,
        live, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores,
    )


@numba.njit(cache=True, nogil=True, fastmath=True)
def search_batch(
    q_ptr, q_terms, q_counts, ints, allowed, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs,
    live, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores, out_n,
):
    """Many queries in one call: query ``i`` is ``q_terms[q_ptr[i]:q_ptr[i + 1]]``.

    Row ``i`` of ``out_ids``/``out_scores`` (shape ``(nq, k)``) gets its results,
    ``out_n[i]`` their number.
    """
    for i in range(q_ptr.shape[0] - 1):
        lo = q_ptr[i]
        hi = q_ptr[i + 1]
        if hi == lo:
            out_n[i] = 0
            continue
        out_n[i] = _score_and_select(
            q_terms[lo:hi], q_counts[lo:hi], ints, allowed, arena, dir_flat, segs, buf_ptr,
            buf_terms, buf_tfs, live, doc_len, ext_ids, df, params, scores, touched, qmark, k,
            out_ids[i], out_scores[i],
        )
