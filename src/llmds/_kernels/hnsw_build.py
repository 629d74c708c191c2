"""HNSW construction (numba kernels): insert a batch of slots, on one thread or several.

Layout and scratch as in :mod:`llmds._kernels.hnsw`, whose greedy descent and beam
search the build shares. Several threads may run :func:`insert_batch` on the same
batch at once (``use_locks=True``), as hnswlib's ``addPoint`` does from its
``ParallelFor``:

* work: each thread takes the next slot of the batch with an atomic ``fetch_add`` on
  ``next_item``, so slots are inserted roughly in batch order;
* ``locks[s]`` (int32 spin lock) guards slot ``s``'s link rows at every layer: held
  while a thread scans them (greedy descent, beam search), while the new node writes
  its own rows, and while a neighbour's row gets the back link. A thread holds at most
  one such lock at a time, so no two threads can wait on each other;
* ``locks[-1]`` guards ``meta``: a node whose level tops the graph holds it for its
  whole insertion and only then becomes the entry point, so no thread starts from an
  entry point whose upper layers are not linked yet (hnswlib's global lock).

With one thread (``use_locks=False``) no lock is touched and the slots are inserted
in order: the same seed and insertion order give the same graph, bit for bit.
"""

from __future__ import annotations

import numba
import numpy as np

from llmds._kernels.atomics import fetch_add, spin_lock, spin_unlock
from llmds._kernels.hnsw import _FAST, _beam, _dist, _greedy, _next_tag, _pop

# Levels are drawn capped at this (ml = 1/ln(2) reaches ~53 at most); the build keeps
# one row of chosen neighbours per layer, and loaders refuse higher levels.
MAX_LEVEL = 64

__all__ = ["MAX_LEVEL", "insert_batch"]


@numba.njit(cache=True, nogil=True)
def _row(links0, upper_links, upper_start, node, lev):
    """The link row (count, neighbours...) of ``node`` at layer ``lev``."""
    if lev == 0:
        return links0[node]
    return upper_links[upper_start[node] + lev - 1]


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
            if _dist(vectors, si[b], vectors, cand, metric) < cand_d:
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
    The caller holds ``nb``'s lock when threads share the graph.
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
        d = _dist(vectors, node, vectors, nb, metric)
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
def _select(vectors, links, upper_start, lev, cur, ep, ep_d, ef_construction, visited,
            tag_state, cd, ci, td, ti, sd, si, m, metric, deleted, locks, use_locks):
    """Beam search for ``cur`` at layer ``lev``, then the heuristic: the count kept in ``si``.

    The search never admits deleted slots or ``cur`` itself; ``sd``/``si`` get the
    kept neighbours nearest first.
    """
    tag = _next_tag(visited, tag_state)
    nt = _beam(vectors, links, upper_start, lev, vectors, cur, ep, ep_d, ef_construction,
               visited, tag, cd, ci, td, ti, metric, deleted, True, cur, locks, use_locks)
    n = nt
    for r in range(n - 1, -1, -1):
        sd[r] = td[0]
        si[r] = ti[0]
        nt = _pop(td, ti, nt)
    return _heuristic(vectors, sd, si, n, m, metric)


@numba.njit(cache=True, nogil=True)
def _snapshot(links0, upper_links, upper_start, cur, top, old, num_old, locks, use_locks):
    """Copy ``cur``'s lists at layers ``0 .. top`` into ``old[lev]`` / ``num_old[lev]``."""
    if use_locks:
        spin_lock(locks, cur)
    for lev in range(top + 1):
        row = _row(links0, upper_links, upper_start, cur, lev)
        num_old[lev] = row[0]
        old[lev, : row[0]] = row[1 : row[0] + 1]
    if use_locks:
        spin_unlock(locks, cur)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _write_own(vectors, links0, upper_links, upper_start, cur, lev, chosen, num_chosen, old,
               num_old, maxm, metric, wd, wi):
    """Give ``cur`` its new list at layer ``lev``: drop the links it had when its insertion
    started (``old``: an updated or reused slot's former list), keep those other threads
    added since, then add ``chosen`` (re-selecting on overflow, as ``_connect`` does).

    One thread: the row still equals ``old``, so this is a plain replacement and the
    graph is the one a top-down, overwrite-in-place build gives. Several threads: a
    node inserted meanwhile may already link back here (it can start at ``cur`` once
    ``cur``'s upper layer is linked), and those links survive. Dropping a re-inserted
    node's lists when its insertion *starts* instead left hubs (even the entry point)
    empty while threads passed through them: 1 build in 4 lost 0.006 recall at ef=10.
    """
    row = _row(links0, upper_links, upper_start, cur, lev)
    n = 0
    for j in range(1, row[0] + 1):
        nb = row[j]
        gone = False
        for t in range(num_old[lev]):
            if old[lev, t] == nb:
                gone = True
                break
        if not gone:
            n += 1
            row[n] = nb
    row[0] = n
    for r in range(num_chosen[lev]):
        _connect(vectors, links0, upper_links, upper_start, cur, chosen[lev, r], lev, maxm,
                 metric, wd, wi)


@numba.njit(cache=True, nogil=True)
def _insert_one(vectors, links0, upper_links, upper_start, deleted, cur, level, entry, max_level,
                m, ef_construction, visited, tag_state, cd, ci, td, ti, sd, si, wd, wi, chosen,
                num_chosen, old, num_old, metric, locks, use_locks):
    """Link slot ``cur`` (level ``level``) into a graph whose entry point is ``entry``.

    Greedy descent to layer ``level``; then, from ``min(level, max_level)`` down to 0,
    :func:`_select` picks at most ``M`` neighbours per layer (``chosen[lev]``). Only
    then are the lists written, from layer 0 up: ``cur``'s own (:func:`_write_own`)
    and each neighbour's back link (``_connect``). Bottom-up, so when other threads can
    first reach ``cur`` through an upper layer its lower layers are linked already
    (linking top-down, a thread that started at a half-linked ``cur`` found nothing
    below it: up to 3% of nodes ended unreachable with 4 threads on 2 cores). A
    layer's search reads only that layer's lists, so one thread builds the same graph
    either way.
    """
    top = min(level, max_level)
    _snapshot(links0, upper_links, upper_start, cur, top, old, num_old, locks, use_locks)
    ep = entry
    ep_d = _dist(vectors, ep, vectors, cur, metric)
    if level < max_level:
        ep, ep_d = _greedy(vectors, upper_links, upper_start, vectors, cur, ep, ep_d,
                           max_level, level, metric, locks, use_locks)
    for lev in range(top, -1, -1):
        links = links0 if lev == 0 else upper_links
        kept = _select(vectors, links, upper_start, lev, cur, ep, ep_d, ef_construction,
                       visited, tag_state, cd, ci, td, ti, sd, si, m, metric, deleted, locks,
                       use_locks)
        if kept > 0:
            ep = si[0]
            ep_d = sd[0]
        num_chosen[lev] = kept
        chosen[lev, :kept] = si[:kept]
    for lev in range(top + 1):
        maxm = 2 * m if lev == 0 else m
        if use_locks:
            spin_lock(locks, cur)
        _write_own(vectors, links0, upper_links, upper_start, cur, lev, chosen, num_chosen, old,
                   num_old, maxm, metric, wd, wi)
        if use_locks:
            spin_unlock(locks, cur)
        for r in range(num_chosen[lev]):
            nb = chosen[lev, r]
            if use_locks:
                spin_lock(locks, nb)
            _connect(vectors, links0, upper_links, upper_start, nb, cur, lev, maxm, metric,
                     wd, wi)
            if use_locks:
                spin_unlock(locks, nb)


@numba.njit(cache=True, nogil=True)
def insert_batch(vectors, links0, upper_links, upper_start, levels, deleted, slots, meta, m,
                 ef_construction, visited, tag_state, cd, ci, td, ti, metric, locks, next_item,
                 use_locks):
    """Insert (or re-insert after an update) ``slots``: the whole build loop of one thread.

    Preconditions: each slot's vector is written, ``levels[s] >= 0`` and its upper rows
    are allocated; ``deleted[s] == 0``; ``td``/``ti`` hold ``ef_construction + 1``;
    ``cd``/``ci`` hold ``capacity``; ``next_item`` is int64 ``[0]`` shared by the threads
    of this batch; with ``use_locks`` ``locks`` is int32 ``(capacity + 1,)`` zeros shared
    by them (see the module docstring), else any int32 array (never touched).
    A re-inserted slot keeps its level and its incoming links, and gets a fresh
    neighbour list at every layer (hnswlib's update, without its probabilistic repair
    of second-degree neighbours). Updates ``meta``.
    Cost: O(ef_construction * M * dim * log n)-ish per node.
    """
    wd = np.empty(2 * m + 2, dtype=np.float32)
    wi = np.empty(2 * m + 2, dtype=np.int32)
    sd = np.empty(ef_construction + 1, dtype=np.float32)
    si = np.empty(ef_construction + 1, dtype=np.int32)
    chosen = np.empty((MAX_LEVEL + 1, m), dtype=np.int32)
    num_chosen = np.empty(MAX_LEVEL + 1, dtype=np.int64)
    old = np.empty((MAX_LEVEL + 1, 2 * m), dtype=np.int32)
    num_old = np.empty(MAX_LEVEL + 1, dtype=np.int64)
    top = locks.shape[0] - 1  # the lock that guards meta
    while True:
        item = fetch_add(next_item, 0, 1)
        if item >= slots.shape[0]:
            break
        cur = slots[item]
        level = levels[cur]
        if use_locks:
            spin_lock(locks, top)
        entry = meta[0]
        max_level = meta[1]
        new_top = entry < 0 or level > max_level
        if use_locks and not new_top:
            spin_unlock(locks, top)
        if entry >= 0:
            _insert_one(vectors, links0, upper_links, upper_start, deleted, cur, level, entry,
                        max_level, m, ef_construction, visited, tag_state, cd, ci, td, ti, sd,
                        si, wd, wi, chosen, num_chosen, old, num_old, metric, locks, use_locks)
        if new_top:
            meta[0] = cur
            meta[1] = level
            if use_locks:
                spin_unlock(locks, top)
