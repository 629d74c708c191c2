"""BM25 kernels over varint-compressed postings (numba; arrays in, arrays out).

Layout (owned by :class:`llmds.inverted_index.InvertedIndex`):

* ``arena`` (uint8): the bytes of every sealed segment, back to back.
* ``dir_flat`` (uint32): per segment, ``nterms + 1`` byte offsets (relative to the
  segment's start in ``arena``) indexed by global term id: term ``t``'s postings in
  segment ``s`` are ``arena[start + dir[t] : start + dir[t + 1]]``.
* ``segs`` (int64, ``(num_segments, 4)``): ``data_start, dir_start, nterms, doc_base``.
* A posting is ``v = (gap << 2) | (tf if tf <= 3 else 0)`` as a varint, then
  ``tf - 4`` as a varint when ``tf >= 4``. ``gap`` is the internal doc id minus the
  previous one in the list (minus ``doc_base`` for the first). Nearly all postings
  have tf <= 3, so they cost one varint and the decoder's rare-tf branch predicts
  well (SciFact: 1.64 bytes/posting with the directory; the scoring loop went from
  40 to 32 us per query against a ``(gap << 1) | (tf == 1)`` layout).
* The unsealed buffer is a forward index: documents ``buf_base + i`` own
  ``buf_terms/buf_tfs[buf_ptr[i]:buf_ptr[i + 1]]``.
* ``live`` (uint8 per internal doc): 0 marks a tombstone; skipped when scoring.

Score of document ``d`` for query terms ``t`` (with multiplicity ``c_t``)::

    sum_t c_t * idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
    idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))          (Lucene)

``N``, ``df`` and ``avgdl`` count live documents only. The score accumulator
``scores`` is dense over internal ids, all zero between calls; a call resets only
the entries it touched. Every BM25 contribution is > 0, so ``scores[d] == 0``
means "not touched yet".
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
    "validate_segments",
]


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
def seal_buffer(buf_ptr, buf_terms, buf_tfs, ndocs, base, live, num_terms):
    """Invert the forward buffer into one segment; drop tombstoned documents.

    Returns ``(data uint8, term_ptr uint32[num_terms + 1], num_postings)``.
    O(buffer postings + num_terms): one pass sizes every term's list, a second
    writes it (a counting sort by term that keeps doc order).
    """
    size = np.zeros(num_terms, dtype=np.int64)
    last = np.full(num_terms, base, dtype=np.int64)
    n = 0
    for i in range(ndocs):
        doc = base + i
        if live[doc] == 0:
            continue
        for p in range(buf_ptr[i], buf_ptr[i + 1]):
            t = buf_terms[p]
            size[t] += _posting_size(doc - last[t], np.int64(buf_tfs[p]))
            last[t] = doc
            n += 1
    ptr = np.zeros(num_terms + 1, dtype=np.int64)
    for t in range(num_terms):
        ptr[t + 1] = ptr[t] + size[t]
    data = np.empty(ptr[num_terms], dtype=np.uint8)
    cursor = ptr[:num_terms].copy()
    last[:] = base
    for i in range(ndocs):
        doc = base + i
        if live[doc] == 0:
            continue
        for p in range(buf_ptr[i], buf_ptr[i + 1]):
            t = buf_terms[p]
            cursor[t] = _write_posting(data, cursor[t], doc - last[t], np.int64(buf_tfs[p]))
            last[t] = doc
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
        start = segs[s, 1]
        cap += np.int64(dir_flat[start + segs[s, 2]]) + 20 * min(segs[s, 2], num_terms)
    out = np.empty(cap, dtype=np.uint8)
    ptr = np.zeros(num_terms + 1, dtype=np.int64)
    base = segs[0, 3]
    pos = 0
    n = 0
    for t in range(num_terms):
        prev = base
        for s in range(m):
            nterms = segs[s, 2]
            if t >= nterms:
                continue
            data_start = segs[s, 0]
            dstart = segs[s, 1]
            p = data_start + np.int64(dir_flat[dstart + t])
            end = data_start + np.int64(dir_flat[dstart + t + 1])
            doc = segs[s, 3]
            while p < end:
                v, p = read_uvarint(arena, p)
                doc += v >> 2
                tf = v & 3
                if tf == 0:
                    tf, p = read_uvarint(arena, p)
                    tf += 4
                if live[doc] == 0:
                    continue
                pos = _write_posting(out, pos, doc - prev, tf)
                prev = doc
                n += 1
        ptr[t + 1] = pos
    return out[:pos].copy(), ptr.astype(np.uint32), n


@numba.njit(cache=True, nogil=True)
def decode_segment(arena, dir_flat, seg):
    """All postings of one segment as ``(terms, docs, tfs)`` int64 arrays, term-major.

    Tombstoned documents are included. O(segment bytes). For ``_check`` and tests.
    """
    data_start, dstart, nterms, base = seg[0], seg[1], seg[2], seg[3]
    total = np.int64(dir_flat[dstart + nterms])
    terms = np.empty(total, dtype=np.int64)
    docs = np.empty(total, dtype=np.int64)
    tfs = np.empty(total, dtype=np.int64)
    n = 0
    for t in range(nterms):
        p = data_start + np.int64(dir_flat[dstart + t])
        end = data_start + np.int64(dir_flat[dstart + t + 1])
        doc = base
        while p < end:
            v, p = read_uvarint(arena, p)
            doc += v >> 2
            tf = v & 3
            if tf == 0:
                tf, p = read_uvarint(arena, p)
                tf += 4
            terms[n] = t
            docs[n] = doc
            tfs[n] = tf
            n += 1
    return terms[:n].copy(), docs[:n].copy(), tfs[:n].copy()


@numba.njit(cache=True, nogil=True)
def term_frequency_in_segment(arena, dir_flat, seg, term, target):
    """tf of ``term`` in internal doc ``target`` within one segment (0 if absent). O(df)."""
    data_start, dstart, nterms, base = seg[0], seg[1], seg[2], seg[3]
    if term >= nterms:
        return 0
    p = data_start + np.int64(dir_flat[dstart + term])
    end = data_start + np.int64(dir_flat[dstart + term + 1])
    doc = base
    while p < end:
        v, p = read_uvarint(arena, p)
        doc += v >> 2
        tf = v & 3
        if tf == 0:
            tf, p = read_uvarint(arena, p)
            tf += 4
        if doc == target:
            return tf
        if doc > target:
            return 0
    return 0


@numba.njit(cache=True, nogil=True)
def doc_postings_in_segment(arena, dir_flat, seg, target):
    """Term ids and tfs of internal doc ``target`` in one segment (for deletes).

    Scans each term's list only up to ``target`` (lists are doc-ordered):
    O(segment postings) in the worst case.
    """
    data_start, dstart, nterms, base = seg[0], seg[1], seg[2], seg[3]
    terms = np.empty(64, dtype=np.int64)
    tfs = np.empty(64, dtype=np.int64)
    n = 0
    for t in range(nterms):
        p = data_start + np.int64(dir_flat[dstart + t])
        end = data_start + np.int64(dir_flat[dstart + t + 1])
        doc = base
        while p < end:
            v, p = read_uvarint(arena, p)
            doc += v >> 2
            tf = v & 3
            if tf == 0:
                tf, p = read_uvarint(arena, p)
                tf += 4
            if doc >= target:
                if doc == target:
                    if n == terms.shape[0]:
                        terms = np.concatenate((terms, np.empty(n, dtype=np.int64)))
                        tfs = np.concatenate((tfs, np.empty(n, dtype=np.int64)))
                    terms[n] = t
                    tfs[n] = tf
                    n += 1
                break
    return terms[:n].copy(), tfs[:n].copy()


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


# fastmath only on the scoring kernels (score arithmetic): SciFact batch 38.6 -> 36 us per query;
# tests compare scores with a tolerance.
@numba.njit(cache=True, nogil=True, fastmath=True)
def _score_and_select(
    q_terms, q_counts, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs, ints, live,
    allowed, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores,
):
    """Accumulate one query into ``scores``, select the top ``k``, reset; return count.

    ``ints = [buf_base, buf_ndocs, use_allowed, any_dead]``; ``params = [k1, b, avgdl, N]``.
    Results go to ``out_ids`` (external ids) / ``out_scores``, best first, ties by id.
    O(postings of the query terms + buffer postings + touched * log k).
    """
    k1 = params[0]
    b = params[1]
    avgdl = params[2]
    num_docs = params[3]
    norm_a = k1 * (1.0 - b)
    norm_c = k1 * b / avgdl
    use_allowed = ints[2] != 0
    # Only check tombstones/filters per posting when there are any.
    filtered = use_allowed or ints[3] != 0
    nq = q_terms.shape[0]
    weights = np.empty(nq, dtype=np.float64)
    for j in range(nq):
        d = np.float64(df[q_terms[j]])
        weights[j] = q_counts[j] * np.log(1.0 + (num_docs - d + 0.5) / (d + 0.5))
    nt = 0
    for s in range(segs.shape[0]):
        data_start = segs[s, 0]
        dstart = segs[s, 1]
        nterms = segs[s, 2]
        base = segs[s, 3]
        for j in range(nq):
            t = q_terms[j]
            if t >= nterms:
                continue
            p = data_start + np.int64(dir_flat[dstart + t])
            end = data_start + np.int64(dir_flat[dstart + t + 1])
            w = weights[j]
            doc = base
            while p < end:
                # Inlined varint decode: one byte covers most gaps.
                byte = np.int64(arena[p])
                p += 1
                if byte < 128:
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
                tf = np.float64(tfi)
                if filtered and (live[doc] == 0 or (use_allowed and allowed[doc] == 0)):
                    continue
                contrib = w * tf / (tf + (norm_a + norm_c * doc_len[doc]))
                # Branch-free "first touch" bookkeeping: the write is harmless when
                # the doc was already touched (nt does not move). Measured on SciFact:
                # 36 -> 22 us per query for the accumulate loop (the branch mispredicts).
                touched[nt] = doc
                nt += np.int64(scores[doc] == 0.0)
                scores[doc] += contrib
    buf_ndocs = ints[1]
    if buf_ndocs > 0:
        buf_base = ints[0]
        tfq = np.zeros(nq, dtype=np.int64)
        for j in range(nq):
            qmark[q_terms[j]] = j + 1
        for i in range(buf_ndocs):
            doc = buf_base + i
            if live[doc] == 0 or (use_allowed and allowed[doc] == 0):
                continue
            # Sum in query-term order, as the sealed path does, so a document scores
            # the same bits before and after it is sealed.
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
    # Top-k: min-heap of (score, ext_id) whose root is the worst kept result.
    kk = min(k, nt)
    hs = out_scores
    he = out_ids
    n = 0
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
    # Many hits: a 1024-bin histogram of the scores finds a bin edge below which no
    # top-k result can lie, so only about k candidates reach the heap. SciFact, k=100:
    # heap-only 20 us, np.partition threshold 19 us, histogram ~5 us per query.
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
    for i in range(nt):
        sc = buf[i]
        if np.int64(sc * scale) < min_bin:
            continue
        doc = touched[i]
        e = ext_ids[doc]
        if n < kk:
            # sift up
            c = n
            hs[c] = sc
            he[c] = e
            n += 1
            while c > 0:
                parent = (c - 1) >> 1
                if _worse(hs[c], he[c], hs[parent], he[parent]):
                    hs[c], hs[parent] = hs[parent], hs[c]
                    he[c], he[parent] = he[parent], he[c]
                    c = parent
                else:
                    break
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
def search_one(
    q_terms, q_counts, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs, ints, live,
    allowed, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores,
):
    """One query (unique term ids + counts): fill ``out_*[:n]``, return ``n``."""
    return _score_and_select(
        q_terms, q_counts, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs, ints, live,
        allowed, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores,
    )


@numba.njit(cache=True, nogil=True, fastmath=True)
def search_batch(
    q_ptr, q_terms, q_counts, arena, dir_flat, segs, buf_ptr, buf_terms, buf_tfs, ints, live,
    allowed, doc_len, ext_ids, df, params, scores, touched, qmark, k, out_ids, out_scores,
    out_n,
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
            q_terms[lo:hi], q_counts[lo:hi], arena, dir_flat, segs, buf_ptr, buf_terms,
            buf_tfs, ints, live, allowed, doc_len, ext_ids, df, params, scores, touched,
            qmark, k, out_ids[i], out_scores[i],
        )


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
    na = arena.shape[0]
    nd = dir_flat.shape[0]
    if live.shape[0] < num_ids or tf_sum.shape[0] < num_ids or df_live.shape[0] < num_terms \
            or counts.shape[0] < segs.shape[0] or segs.shape[1] < 6:
        return SEG_TABLE, -1, -1, -1
    for s in range(segs.shape[0]):
        data_start = segs[s, 0]
        dstart = segs[s, 1]
        nterms = segs[s, 2]
        base = segs[s, 3]
        end = segs[s, 4]
        nbytes = segs[s, 5]
        if (data_start < 0 or nbytes < 0 or nbytes > na or data_start > na - nbytes
                or dstart < 0 or nterms < 0 or nterms > num_terms or dstart >= nd
                or nterms > nd - dstart - 1 or base < 0 or end > num_ids or base >= end):
            return SEG_TABLE, s, -1, -1
        if dir_flat[dstart] != 0 or np.int64(dir_flat[dstart + nterms]) != nbytes:
            return SEG_DIRECTORY, s, -1, -1
        n = 0
        for t in range(nterms):
            lo = np.int64(dir_flat[dstart + t])
            hi = np.int64(dir_flat[dstart + t + 1])
            if hi < lo or hi > nbytes:
                return SEG_DIRECTORY, s, t, -1
            p = data_start + lo
            stop = data_start + hi
            doc = base
            first = True
            while p < stop:
                v, p = _read_bounded(arena, p, stop)
                if v < 0:
                    return SEG_VARINT, s, t, p
                gap = v >> 2
                if gap == 0 and not first:
                    return SEG_ORDER, s, t, p
                if gap >= end - doc:
                    return SEG_DOC_RANGE, s, t, p
                doc += gap
                first = False
                tf = v & 3
                if tf == 0:
                    tf, p = _read_bounded(arena, p, stop)
                    if tf < 0:
                        return SEG_VARINT, s, t, p
                    if tf > 2**31 - 5:
                        return SEG_TF, s, t, p
                    tf += 4
                n += 1
                if live[doc] != 0:
                    df_live[t] += 1
                    tf_sum[doc] += tf
        counts[s] = n
    return SEG_OK, -1, -1, -1
