"""HNSW hot loops (numba kernels) over plain arrays. The owning class is ``llmds.hnsw.HNSW``.

Layout (struct of arrays; "slot" = row number of a stored vector):

- ``vectors``: float32 ``(capacity, dim)``, C-contiguous; row ``s`` is slot ``s``'s vector
  (unit length for the cosine metric).
- ``links0``: int32 ``(capacity, 2M + 1)``; ``links0[s, 0]`` is the level-0 neighbour count
  ``c <= 2M`` and ``links0[s, 1:1 + c]`` the neighbour slots. A separate array from the
  vectors: an hnswlib-style interleaved block measured slower in numba.
- ``levels``: int32 ``(capacity,)``, the top layer of each slot (-1 = never used).
- ``upper_start`` / ``upper_links``: a node with level ``L >= 1`` owns rows
  ``upper_start[s] .. upper_start[s] + L - 1`` of the int32 ``(rows, M + 1)`` matrix
  ``upper_links`` (same count-then-neighbours format, at most ``M``); about one node in
  ``M`` has any, so the upper layers stay small.
- ``deleted``: uint8 ``(capacity,)``; deleted slots stay in the graph for navigation
  but are never admitted to a result or to a new node's neighbour list.
- ``visited``: uint16 ``(capacity,)`` with ``tag_state`` (uint16, 1 element): node ``s``
  counts as visited iff ``visited[s] == tag``; every search bumps the tag, and the array
  is cleared only when the tag wraps (once every 65535 searches).
- ``meta``: int64 ``[entry_point_slot, max_level]`` (entry -1 when the graph is empty).
- Heaps are preallocated arrays: a min-heap of candidates ``(cd, ci)`` with room for
  every slot (each node is pushed at most once per search) and a max-heap of the best
  results ``(td, ti)`` with room for ``ef + 1``.

Distances are ``metric`` 0: squared L2, 1: ``1 - dot`` (inner product / cosine), computed
in float32 with fast-math reassociation (no ``nnan``/``ninf``: a NaN or inf distance
compares as IEEE says, so no loop depends on finiteness) and non-negative (unsigned)
indices so LLVM vectorises them.
The search and insertion rules are those of hnswlib's ``searchBaseLayerST``,
``searchBaseLayer``, ``getNeighborsByHeuristic2`` and ``mutuallyConnectNewElement``
(Malkov & Yashunin 2018, algorithms 1-4), reimplemented here.
"""

from __future__ import annotations

import numba
import numpy as np

from llmds._kernels.prefetch import prefetch_row

__all__ = ["insert_batch", "search_batch", "search_one"]

# LLVM's fast-math flags minus ``nnan`` and ``ninf``: reassociation is what lets the
# distance loops vectorise, while comparisons keep their IEEE meaning. With plain
# ``fastmath=True`` a NaN distance (a NaN vector in a hostile file) made ``d < ep_d``
# true forever in ``_greedy``: an endless loop. Measured on 20k x 48 random vectors,
# M=16, one query per call: the same queries per second within noise (+-5%).
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}

@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _dist(vectors, node, q, metric):
    """Distance from slot ``node`` to query ``q``: squared L2 (0) or ``1 - dot`` (1). O(dim).

    Indexes ``vectors`` directly with unsigned indices: a row view would cost two atomic
    reference-count updates per call, and a possibly-negative index blocks vectorisation.
    """
    nu = np.uint64(node)
    n = np.uint64(q.shape[0])
    s = np.float32(0.0)
    if metric == 0:
        for j in range(n):
            t = vectors[nu, j] - q[j]
            s += t * t
        return s
    for j in range(n):
        s += vectors[nu, j] * q[j]
    return np.float32(1.0) - s


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _dist2(vectors, a, b, metric):
    """Distance between stored slots ``a`` and ``b`` (see ``_dist``). O(dim)."""
    au = np.uint64(a)
    bu = np.uint64(b)
    n = np.uint64(vectors.shape[1])
    s = np.float32(0.0)
    if metric == 0:
        for j in range(n):
            t = vectors[au, j] - vectors[bu, j]
            s += t * t
        return s
    for j in range(n):
        s += vectors[au, j] * vectors[bu, j]
    return np.float32(1.0) - s


@numba.njit(cache=True, nogil=True)
def _minpush(hd, hi, n, d, i):
    """Push ``(d, i)`` on the min-heap ``hd[:n], hi[:n]``; return the new size. O(log n)."""
    pos = n
    while pos > 0:
        parent = (pos - 1) >> 1
        if hd[parent] <= d:
            break
        hd[pos] = hd[parent]
        hi[pos] = hi[parent]
        pos = parent
    hd[pos] = d
    hi[pos] = i
    return n + 1


@numba.njit(cache=True, nogil=True)
def _minpop(hd, hi, n):
    """Drop the root of the min-heap of size ``n`` (read it first); return ``n - 1``."""
    n -= 1
    d = hd[n]
    i = hi[n]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and hd[child + 1] < hd[child]:
            child += 1
        if hd[child] >= d:
            break
        hd[pos] = hd[child]
        hi[pos] = hi[child]
        pos = child
    hd[pos] = d
    hi[pos] = i
    return n


@numba.njit(cache=True, nogil=True)
def _maxpush(hd, hi, n, d, i):
    """Push ``(d, i)`` on the max-heap ``hd[:n], hi[:n]``; return the new size. O(log n)."""
    pos = n
    while pos > 0:
        parent = (pos - 1) >> 1
        if hd[parent] >= d:
            break
        hd[pos] = hd[parent]
        hi[pos] = hi[parent]
        pos = parent
    hd[pos] = d
    hi[pos] = i
    return n + 1


@numba.njit(cache=True, nogil=True)
def _maxpop(hd, hi, n):
    """Drop the root of the max-heap of size ``n`` (read it first); return ``n - 1``."""
    n -= 1
    d = hd[n]
    i = hi[n]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= n:
            break
        if child + 1 < n and hd[child + 1] > hd[child]:
            child += 1
        if hd[child] <= d:
            break
        hd[pos] = hd[child]
        hi[pos] = hi[child]
        pos = child
    hd[pos] = d
    hi[pos] = i
    return n


@numba.njit(cache=True, nogil=True)
def _next_tag(visited, tag_state):
    """Bump the visited tag (clearing ``visited`` when it wraps) and return it. O(1) amortised."""
    t = np.int64(tag_state[0]) + 1
    if t > 65535:
        visited[:] = 0
        t = 1
    tag_state[0] = t
    return np.uint16(t)


@numba.njit(cache=True, nogil=True)
def _row(links0, upper_links, upper_start, node, lev):
    """The link row (count, neighbours...) of ``node`` at layer ``lev``."""
    if lev == 0:
        return links0[node]
    return upper_links[upper_start[node] + lev - 1]


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _greedy(vectors, upper_links, upper_start, q, ep, ep_d, top, stop, metric):
    """Greedy descent through layers ``top .. stop + 1``; return the closest node and distance.

    Every hop moves to a strictly nearer node, so a layer takes fewer hops than there
    are slots; the hop cap only makes that bound explicit (a guard, never reached).
    """
    max_hops = vectors.shape[0]
    for lev in range(top, stop, -1):
        changed = True
        hops = 0
        while changed and hops <= max_hops:
            changed = False
            hops += 1
            r = np.uint64(upper_start[ep] + lev - 1)
            cnt = upper_links[r, 0]
            for j in range(1, cnt + 1):
                nb = upper_links[r, j]
                d = _dist(vectors, nb, q, metric)
                if d < ep_d:
                    ep_d = d
                    ep = nb
                    changed = True
    return ep, ep_d


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _search_l0_fast(vectors, links0, q, ep, ep_d, ef, visited, tag, cd, ci, td, ti, metric):
    """Layer-0 beam search, no filter and no deletions (hnswlib's fast path).

    Stops when the closest unexpanded candidate is farther than the worst of the
    ``ef`` best found; returns the size of the result max-heap ``(td, ti)``.
    """
    visited[ep] = tag
    nc = _minpush(cd, ci, 0, ep_d, ep)
    nt = _maxpush(td, ti, 0, ep_d, ep)
    lower = ep_d
    while nc > 0:
        c_d = cd[0]
        c = ci[0]
        if c_d > lower:
            break
        nc = _minpop(cd, ci, nc)
        cu = np.uint64(c)
        cnt = links0[cu, 0]
        if cnt > 0:
            prefetch_row(vectors, links0[cu, 1])
        for j in range(1, cnt + 1):
            nb = links0[cu, j]
            if j < cnt:
                prefetch_row(vectors, links0[cu, j + 1])
            if visited[nb] == tag:
                continue
            visited[nb] = tag
            d = _dist(vectors, nb, q, metric)
            if nt < ef or d < lower:
                nc = _minpush(cd, ci, nc, d, nb)
                prefetch_row(links0, ci[0])
                nt = _maxpush(td, ti, nt, d, nb)
                if nt > ef:
                    nt = _maxpop(td, ti, nt)
                lower = td[0]
    return nt


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _search_l0_blocked(vectors, links0, q, ep, ep_d, ef, visited, tag, cd, ci, td, ti, metric,
                       blocked):
    """Layer-0 beam search that never admits a slot with ``blocked[s] != 0`` to the results.

    Blocked nodes are still expanded (they keep the graph connected); the search only
    stops early once ``ef`` admitted results exist, hnswlib's rule for filters/deletions.
    """
    visited[ep] = tag
    nc = _minpush(cd, ci, 0, ep_d, ep)
    nt = 0
    lower = np.float32(np.inf)
    if blocked[ep] == 0:
        nt = _maxpush(td, ti, 0, ep_d, ep)
        lower = ep_d
    while nc > 0:
        c_d = cd[0]
        c = ci[0]
        if c_d > lower and nt == ef:
            break
        nc = _minpop(cd, ci, nc)
        cu = np.uint64(c)
        cnt = links0[cu, 0]
        if cnt > 0:
            prefetch_row(vectors, links0[cu, 1])
        for j in range(1, cnt + 1):
            nb = links0[cu, j]
            if j < cnt:
                prefetch_row(vectors, links0[cu, j + 1])
            if visited[nb] == tag:
                continue
            visited[nb] = tag
            d = _dist(vectors, nb, q, metric)
            if nt < ef or d < lower:
                nc = _minpush(cd, ci, nc, d, nb)
                if blocked[nb] == 0:
                    nt = _maxpush(td, ti, nt, d, nb)
                    if nt > ef:
                        nt = _maxpop(td, ti, nt)
                if nt > 0:
                    lower = td[0]
    return nt


@numba.njit(cache=True, nogil=True)
def _knn_one(vectors, links0, upper_links, upper_start, meta, q, k, ef, blocked, use_blocked,
             visited, tag_state, cd, ci, td, ti, metric, labels, out_ids, out_d):
    """k-NN of one query into ``out_ids`` (labels) / ``out_d``, nearest first; returns the count."""
    entry = meta[0]
    tag = _next_tag(visited, tag_state)
    ep_d = _dist(vectors, entry, q, metric)
    ep, ep_d = _greedy(vectors, upper_links, upper_start, q, entry, ep_d, meta[1], 0, metric)
    if use_blocked:
        nt = _search_l0_blocked(vectors, links0, q, ep, ep_d, ef, visited, tag, cd, ci,
                                td, ti, metric, blocked)
    else:
        nt = _search_l0_fast(vectors, links0, q, ep, ep_d, ef, visited, tag, cd, ci,
                             td, ti, metric)
    while nt > k:
        nt = _maxpop(td, ti, nt)
    found = nt
    for r in range(nt - 1, -1, -1):
        out_d[r] = td[0]
        out_ids[r] = labels[ti[0]]
        nt = _maxpop(td, ti, nt)
    return found


@numba.njit(cache=True, nogil=True)
def search_one(vectors, links0, upper_links, upper_start, meta, q, k, ef, blocked, use_blocked,
               visited, tag_state, cd, ci, td, ti, metric, labels, out_ids, out_d):
    """k-NN of one query (the per-call path: checks ``q`` is finite here, cheaper than NumPy).

    Returns the number of results written to ``out_ids`` (labels) / ``out_d``, or -1
    if ``q`` has a NaN or inf (nothing else is touched then). Preconditions as in
    ``search_batch``.
    """
    s = np.float32(0.0)
    for j in range(q.shape[0]):
        s += q[j] * np.float32(0.0)
    if s != s:  # NaN * 0 and inf * 0 are NaN
        return -1
    return _knn_one(vectors, links0, upper_links, upper_start, meta, q, k, ef, blocked,
                    use_blocked, visited, tag_state, cd, ci, td, ti, metric, labels, out_ids,
                    out_d)


@numba.njit(cache=True, nogil=True)
def search_batch(vectors, links0, upper_links, upper_start, meta, queries, k, ef, blocked,
                 use_blocked, visited, tag_state, cd, ci, td, ti, metric, labels, out_ids,
                 out_d):
    """k-NN of every row of ``queries``; fills ``out_ids`` (labels) and ``out_d``, nearest first.

    Preconditions: the graph is non-empty (``meta[0] >= 0``); ``ef >= k >= 1``;
    ``td``/``ti`` hold ``ef + 1``; ``cd``/``ci`` hold ``capacity``; ``out_*`` are
    ``(len(queries), k)`` and pre-filled with -1 / inf (rows with fewer than ``k``
    admitted results keep the fill). Returns the number of results per query (int64).
    Cost: O(ef * 2M * dim * log n)-ish per query (the HNSW bound; not guaranteed).
    """
    nq = queries.shape[0]
    found = np.zeros(nq, dtype=np.int64)
    for qi in range(nq):
        found[qi] = _knn_one(vectors, links0, upper_links, upper_start, meta, queries[qi], k,
                             ef, blocked, use_blocked, visited, tag_state, cd, ci, td, ti,
                             metric, labels, out_ids[qi], out_d[qi])
    return found


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _search_layer_build(vectors, links0, upper_links, upper_start, q, ep, ep_d, lev, ef,
                        visited, tag, cd, ci, td, ti, deleted, cur, metric):
    """Construction-time beam search at layer ``lev`` (hnswlib's ``searchBaseLayer``).

    Never admits deleted slots or ``cur`` (the node being inserted) to the results.
    """
    visited[ep] = tag
    nc = _minpush(cd, ci, 0, ep_d, ep)
    nt = 0
    lower = np.float32(np.inf)
    if deleted[ep] == 0 and ep != cur:
        nt = _maxpush(td, ti, 0, ep_d, ep)
        lower = ep_d
    while nc > 0:
        c_d = cd[0]
        c = ci[0]
        if c_d > lower and nt == ef:
            break
        nc = _minpop(cd, ci, nc)
        if lev == 0:
            links = links0
            r = np.uint64(c)
        else:
            links = upper_links
            r = np.uint64(upper_start[c] + lev - 1)
        cnt = links[r, 0]
        if cnt > 0:
            prefetch_row(vectors, links[r, 1])
        for j in range(1, cnt + 1):
            nb = links[r, j]
            if j < cnt:
                prefetch_row(vectors, links[r, j + 1])
            if visited[nb] == tag:
                continue
            visited[nb] = tag
            d = _dist(vectors, nb, q, metric)
            if nt < ef or d < lower:
                nc = _minpush(cd, ci, nc, d, nb)
                if deleted[nb] == 0 and nb != cur:
                    nt = _maxpush(td, ti, nt, d, nb)
                    if nt > ef:
                        nt = _maxpop(td, ti, nt)
                if nt > 0:
                    lower = td[0]
    return nt


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _heuristic(vectors, sd, si, n, m, metric):
    """Neighbour-selection heuristic over candidates sorted nearest first; returns the count kept.

    A candidate is kept only if it is closer to the base node than to every neighbour
    kept so far (so links spread over directions); at most ``m`` are kept, compacted to
    the front of ``sd``/``si``. With fewer than ``m`` candidates all are kept (hnswlib).
    O(n * m * dim).
    """
    if n < m:
        return n
    kept = 0
    for a in range(n):
        if kept >= m:
            break
        cand = si[a]
        cand_d = sd[a]
        good = True
        for b in range(kept):
            if _dist2(vectors, si[b], cand, metric) < cand_d:
                good = False
                break
        if good:
            si[kept] = cand
            sd[kept] = cand_d
            kept += 1
    return kept


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _connect(vectors, links0, upper_links, upper_start, nb, cur, lev, maxm, metric, wd, wi):
    """Add the link ``nb -> cur`` at layer ``lev``; on overflow re-select ``nb``'s list.

    The re-selection runs the heuristic over ``nb``'s current neighbours plus ``cur``
    (``wd``/``wi`` are scratch of size >= 2M + 2). O(M^2 * dim) on overflow, else O(M).
    """
    row = _row(links0, upper_links, upper_start, nb, lev)
    cnt = row[0]
    for j in range(1, cnt + 1):
        if row[j] == cur:
            return
    if cnt < maxm:
        row[cnt + 1] = cur
        row[0] = cnt + 1
        return
    # candidates: the existing neighbours plus cur, sorted by distance to nb (insertion sort)
    n = 0
    for j in range(cnt + 1):
        node = cur if j == cnt else row[j + 1]
        d = _dist2(vectors, node, nb, metric)
        pos = n
        while pos > 0 and wd[pos - 1] > d:
            wd[pos] = wd[pos - 1]
            wi[pos] = wi[pos - 1]
            pos -= 1
        wd[pos] = d
        wi[pos] = node
        n += 1
    kept = _heuristic(vectors, wd, wi, n, maxm, metric)
    for j in range(kept):
        row[j + 1] = wi[j]
    row[0] = kept


@numba.njit(cache=True, nogil=True)
def insert_batch(vectors, links0, upper_links, upper_start, levels, deleted, slots, meta, m,
                 ef_construction, visited, tag_state, cd, ci, td, ti, metric):
    """Insert (or re-insert after an update) ``slots`` in order; the whole build loop.

    Preconditions: each slot's vector is written, ``levels[s] >= 0`` and its upper rows
    are allocated; ``deleted[s] == 0``; ``td``/``ti`` hold ``ef_construction + 1``;
    ``cd``/``ci`` hold ``capacity``. A re-inserted slot keeps its level and its incoming
    links, and gets a fresh neighbour list at every layer (hnswlib's update, without
    its probabilistic repair of second-degree neighbours). Updates ``meta``.
    Cost: O(ef_construction * M * dim * log n)-ish per node.
    """
    m0 = 2 * m
    wd = np.empty(m0 + 2, dtype=np.float32)
    wi = np.empty(m0 + 2, dtype=np.int32)
    sd = np.empty(ef_construction + 1, dtype=np.float32)
    si = np.empty(ef_construction + 1, dtype=np.int32)
    for s_i in range(slots.shape[0]):
        cur = slots[s_i]
        level = levels[cur]
        entry = meta[0]
        max_level = meta[1]
        if entry < 0:
            meta[0] = cur
            meta[1] = level
            continue
        q = vectors[cur]
        ep = entry
        ep_d = _dist(vectors, ep, q, metric)
        if level < max_level:
            ep, ep_d = _greedy(vectors, upper_links, upper_start, q, ep, ep_d, max_level,
                               level, metric)
        for lev in range(min(level, max_level), -1, -1):
            tag = _next_tag(visited, tag_state)
            nt = _search_layer_build(vectors, links0, upper_links, upper_start, q, ep, ep_d,
                                     lev, ef_construction, visited, tag, cd, ci, td, ti,
                                     deleted, cur, metric)
            n = nt
            for r in range(n - 1, -1, -1):
                sd[r] = td[0]
                si[r] = ti[0]
                nt = _maxpop(td, ti, nt)
            kept = _heuristic(vectors, sd, si, n, m, metric)
            if kept > 0:
                ep = si[0]
                ep_d = sd[0]
            row = _row(links0, upper_links, upper_start, cur, lev)
            for r in range(kept):
                row[r + 1] = si[r]
            row[0] = kept
            maxm = m0 if lev == 0 else m
            for r in range(kept):
                _connect(vectors, links0, upper_links, upper_start, si[r], cur, lev, maxm,
                         metric, wd, wi)
        if level > max_level:
            meta[0] = cur
            meta[1] = level
