"""HNSW search loops (numba kernels) over plain arrays. The owning class is ``llmds.hnsw.HNSW``.

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
- ``meta``: int64 ``[entry_point_slot, max_level]`` (entry -1 when the graph is empty).

Scratch, owned by one thread for the length of a call (the class keeps a pool of them):

- ``visited``: uint16 ``(capacity,)`` with ``tag_state`` (uint16, 1 element): node ``s``
  counts as visited iff ``visited[s] == tag``; every search bumps the tag, and the array
  is cleared only when the tag wraps (once every 65535 searches), so a search does not
  pay O(n) to clear it.
- Heaps are preallocated arrays, all max-heaps (:func:`_push` / :func:`_pop`): the best
  results ``(td, ti)`` with room for ``ef + 1``, and the candidates ``(cd, ci)`` with
  room for every slot (each node is pushed at most once per search) holding *negated*
  distances, so their root is the nearest candidate. Negation is exact in IEEE
  arithmetic and reverses every comparison, so this orders ties exactly as a min-heap.

Distances are ``metric`` 0: squared L2, 1: ``1 - dot`` (inner product / cosine), computed
in float32 with fast-math reassociation (no ``nnan``/``ninf``: a NaN or inf distance
compares as IEEE says, so no loop depends on finiteness) and non-negative (unsigned)
indices so LLVM vectorises them.
The search and insertion rules are those of hnswlib's ``searchBaseLayerST``,
``searchBaseLayer``, ``getNeighborsByHeuristic2`` and ``mutuallyConnectNewElement``
(Malkov & Yashunin 2018, algorithms 1-4), reimplemented here; insertion lives in
:mod:`llmds._kernels.hnsw_build`.

Concurrency: every kernel is ``nogil``. Searches only read the graph, so any number may
run at once (each with its own scratch). The build passes ``use_locks=True`` when
several threads insert at once: a thread then holds the spin lock ``locks[s]`` while it
reads or writes slot ``s``'s link rows (:mod:`llmds._kernels.atomics`).
"""

from __future__ import annotations

import numba
import numpy as np

from llmds._kernels.atomics import fetch_add, spin_lock, spin_unlock
from llmds._kernels.prefetch import prefetch_row

__all__ = ["search_batch", "search_one"]

# LLVM's fast-math flags minus ``nnan`` and ``ninf``: reassociation is what lets the
# distance loops vectorise, while comparisons keep their IEEE meaning. With plain
# ``fastmath=True`` a NaN distance (a NaN vector in a hostile file) made ``d < ep_d``
# true forever in ``_greedy``: an endless loop. Measured on 20k x 48 random vectors,
# M=16, one query per call: the same queries per second within noise (+-5%).
_FAST = {"reassoc", "contract", "arcp", "nsz", "afn"}


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _dist(a, i, b, j, metric):
    """Distance between rows ``a[i]`` and ``b[j]``: squared L2 (0) or ``1 - dot`` (1). O(dim).

    Takes the matrices and row numbers, not row views: a view would cost two atomic
    reference-count updates per call, and a possibly-negative index blocks
    vectorisation, so the indices are unsigned.
    """
    iu = np.uint64(i)
    ju = np.uint64(j)
    n = np.uint64(a.shape[1])
    s = np.float32(0.0)
    if metric == 0:
        for t in range(n):
            x = a[iu, t] - b[ju, t]
            s += x * x
        return s
    for t in range(n):
        s += a[iu, t] * b[ju, t]
    return np.float32(1.0) - s


@numba.njit(cache=True, nogil=True)
def _push(hd, hi, n, d, i):
    """Push ``(d, i)`` on the max-heap ``hd[:n], hi[:n]``; return the new size. O(log n).

    The new entry sifts up from the end while its parent is smaller.
    """
    pos = n
    while pos > 0:
        parent = (pos - 1) >> 1
        if hd[parent] >= d:
            break
        hd[pos], hi[pos] = hd[parent], hi[parent]
        pos = parent
    hd[pos], hi[pos] = d, i
    return n + 1


@numba.njit(cache=True, nogil=True)
def _pop(hd, hi, n):
    """Drop the root of the max-heap of size ``n`` (read it first); return ``n - 1``.

    The last entry sifts down from the root while a child is larger. O(log n).
    """
    n -= 1
    d, i = hd[n], hi[n]
    pos, child = 0, 1
    while child < n:
        if child + 1 < n and hd[child + 1] > hd[child]:
            child += 1
        if hd[child] <= d:
            break
        hd[pos], hi[pos] = hd[child], hi[child]
        pos, child = child, 2 * child + 1
    hd[pos], hi[pos] = d, i
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


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _greedy(vectors, upper_links, upper_start, q, qi, ep, ep_d, top, stop, metric, locks,
            use_locks):
    """Greedy descent through layers ``top .. stop + 1``; return the closest node and distance.

    ``q[qi]`` is the query. Every hop moves to a strictly nearer node, so a layer takes
    fewer hops than there are slots; the hop cap only makes that bound explicit (a
    guard, never reached).
    """
    max_hops = vectors.shape[0]
    for lev in range(top, stop, -1):
        changed = True
        hops = 0
        while changed and hops <= max_hops:
            changed = False
            hops += 1
            node = ep
            if use_locks:
                spin_lock(locks, node)
            r = np.uint64(upper_start[node] + lev - 1)
            for j in range(1, upper_links[r, 0] + 1):
                nb = upper_links[r, j]
                d = _dist(vectors, nb, q, qi, metric)
                if d < ep_d:
                    ep_d = d
                    ep = nb
                    changed = True
            if use_locks:
                spin_unlock(locks, node)
    return ep, ep_d


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _beam(vectors, links, upper_start, lev, q, qi, ep, ep_d, ef, visited, tag, cd, ci, td, ti,
          metric, blocked, use_blocked, cur, locks, use_locks):
    """Beam search of width ``ef`` at layer ``lev`` from ``ep``; returns the size of ``(td, ti)``.

    ``links`` is ``links0`` at layer 0 and ``upper_links`` above (rows found through
    ``upper_start``). With ``use_blocked`` a slot with ``blocked[s] != 0`` and the slot
    ``cur`` (the node being inserted; -1 for a query) are never admitted to the
    results, but are still expanded, so they keep the graph connected. The search stops
    when the nearest unexpanded candidate is farther than the worst of ``ef`` admitted
    results (hnswlib's rule for filters and deletions; without blocked slots the results
    hold every node seen until ``ef`` are found, so this is hnswlib's unfiltered rule).

    One loop serves search (filtered or not) and construction, where there were three
    copies. The flags cost nothing measurable next to the distance computations:
    Fashion-MNIST 20k, M=16, one thread, interleaved with the copies it replaced,
    batch search ran 0 to +2% more queries per CPU-second at ef 10-50, with
    identical results and, built on one thread, identical graphs.
    """
    visited[ep] = tag
    nc = _push(cd, ci, 0, -ep_d, ep)
    nt = 0
    lower = np.float32(np.inf)
    if not use_blocked or (blocked[ep] == 0 and ep != cur):
        nt = _push(td, ti, 0, ep_d, ep)
        lower = ep_d
    while nc > 0:
        c = ci[0]
        if -cd[0] > lower and nt == ef:
            break
        nc = _pop(cd, ci, nc)
        r = np.uint64(c) if lev == 0 else np.uint64(upper_start[c] + lev - 1)
        if use_locks:
            spin_lock(locks, c)
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
            d = _dist(vectors, nb, q, qi, metric)
            if nt < ef or d < lower:
                nc = _push(cd, ci, nc, -d, nb)
                if lev == 0:
                    prefetch_row(links, ci[0])
                if not use_blocked or (blocked[nb] == 0 and nb != cur):
                    nt = _push(td, ti, nt, d, nb)
                    if nt > ef:
                        nt = _pop(td, ti, nt)
                if nt > 0:
                    lower = td[0]
        if use_locks:
            spin_unlock(locks, c)
    return nt


@numba.njit(cache=True, nogil=True)
def _knn_one(vectors, links0, upper_links, upper_start, meta, q, qi, k, ef, blocked,
             use_blocked, visited, tag_state, cd, ci, td, ti, metric, labels, out_ids, out_d):
    """k-NN of ``q[qi]`` into row ``qi`` of ``out_ids`` (labels) / ``out_d``; returns the count."""
    entry = meta[0]
    tag = _next_tag(visited, tag_state)
    ep_d = _dist(vectors, entry, q, qi, metric)
    # searches only read the graph: no locks (``tag_state`` stands in, never touched)
    ep, ep_d = _greedy(vectors, upper_links, upper_start, q, qi, entry, ep_d, meta[1], 0,
                       metric, tag_state, False)
    nt = _beam(vectors, links0, upper_start, 0, q, qi, ep, ep_d, ef, visited, tag, cd, ci,
               td, ti, metric, blocked, use_blocked, -1, tag_state, False)
    while nt > k:
        nt = _pop(td, ti, nt)
    found = nt
    for r in range(nt - 1, -1, -1):
        out_d[qi, r] = td[0]
        out_ids[qi, r] = labels[ti[0]]
        nt = _pop(td, ti, nt)
    return found


@numba.njit(cache=True, nogil=True)
def search_one(vectors, links0, upper_links, upper_start, meta, q, k, ef, blocked, use_blocked,
               visited, tag_state, cd, ci, td, ti, metric, labels, out_ids, out_d):
    """k-NN of one query (the per-call path: checks ``q`` is finite here, cheaper than NumPy).

    ``q`` is 1-D and ``out_ids`` / ``out_d`` hold ``k``. Returns the number of results
    written, or -1 if ``q`` has a NaN or inf (nothing else is touched then).
    Preconditions as in ``search_batch``.
    """
    s = np.float32(0.0)
    for j in range(q.shape[0]):
        s += q[j] * np.float32(0.0)
    if s != s:  # NaN * 0 and inf * 0 are NaN
        return -1
    return _knn_one(vectors, links0, upper_links, upper_start, meta, q.reshape((1, q.size)),
                    0, k, ef, blocked, use_blocked, visited, tag_state, cd, ci, td, ti, metric,
                    labels, out_ids.reshape((1, k)), out_d.reshape((1, k)))


@numba.njit(cache=True, nogil=True)
def search_batch(vectors, links0, upper_links, upper_start, meta, queries, k, ef, blocked,
                 use_blocked, visited, tag_state, cd, ci, td, ti, metric, labels, out_ids,
                 out_d, found, next_query):
    """k-NN of the rows of ``queries``; fills ``out_ids`` (labels), ``out_d`` and ``found``.

    Several threads may run this at once over the same batch, each with its own scratch
    (``visited`` ... ``ti``): each takes the next unanswered row with an atomic
    ``fetch_add`` on ``next_query`` (int64, 1 element, starting at 0), so a thread the
    machine slows down simply answers fewer rows; a single thread answers all in order.

    Preconditions: the graph is non-empty (``meta[0] >= 0``); ``ef >= k >= 1``;
    ``td``/``ti`` hold ``ef + 1``; ``cd``/``ci`` hold ``capacity``; ``out_*`` are
    ``(len(queries), k)`` and pre-filled with -1 / inf (rows with fewer than ``k``
    admitted results keep the fill); ``found`` is int64 ``(len(queries),)`` and gets
    the number of results per row. Cost: O(ef * 2M * dim * log n)-ish per query (the
    HNSW bound; not guaranteed).
    """
    nq = queries.shape[0]
    while True:
        qi = fetch_add(next_query, 0, 1)
        if qi >= nq:
            break
        found[qi] = _knn_one(vectors, links0, upper_links, upper_start, meta, queries, qi, k,
                             ef, blocked, use_blocked, visited, tag_state, cd, ci, td, ti,
                             metric, labels, out_ids, out_d)
