"""Hierarchical Navigable Small World graph index (Malkov & Yashunin 2018) over NumPy arrays.

The class validates input, owns the arrays and serialises writers with readers; the
search and build loops are numba kernels in :mod:`llmds._kernels.hnsw` and
:mod:`llmds._kernels.hnsw_build` (layout documented there). Saved-file checks live in
:mod:`llmds._hnsw_file`, filters in :mod:`llmds._hnsw_filter`, and the lock, scratch
pool in :mod:`llmds._hnsw_threads` (lock and workers from :mod:`llmds._threads`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds import _hnsw_file as _file
from llmds._hnsw_args import (
    MAX_DIM,
    MAX_EF,
    METRICS,
    check_ef,
    check_ids,
    check_k,
    check_params,
    check_results,
    coerce_vectors,
)
from llmds._hnsw_filter import BRUTE_FORCE_MAX, allowed_slots, exact_search
from llmds._hnsw_slots import assign_slots, draw_levels, upper_starts
from llmds._hnsw_threads import RWLock, ScratchPool, num_threads_for
from llmds._kernels import hnsw as _k
from llmds._kernels import hnsw_build as _kb
from llmds._persist import Container, write_container
from llmds._validate import INT64_MAX, check_int, check_int_array, check_path, is_int
from llmds.errors import CorruptFileError

__all__ = ["HNSW", "MAX_DIM"]  # MAX_DIM: RetrievalPipeline checks its dim

_F32 = np.dtype(np.float32)
# Below these a batch runs on one thread: waking a worker costs ~50 us, as much as a
# few inserts or queries. The build threshold also keeps small batches deterministic.
_MIN_INSERTS_PER_THREAD = 256
_MIN_QUERIES_PER_THREAD = 16


class HNSW:
    """Approximate k-nearest-neighbour index: a layered proximity graph (HNSW).

    Each vector lives in a *slot*; a node gets a random top layer
    ``floor(-ln(U) * ml)`` (default ``ml = 1/ln(M)``: about one node in ``M`` reaches
    layer 1). Search descends greedily through the upper layers and runs a beam search
    of width ``ef`` on layer 0. New nodes are linked to neighbours chosen by the
    heuristic of the paper (keep a candidate only if it is closer to the new node than
    to every neighbour already kept), at most ``M`` per layer; an existing node's list
    that overflows (``2M`` at layer 0, ``M`` above) is re-selected the same way.

    Metrics: ``"l2"`` squared Euclidean (the default), ``"ip"`` ``1 - dot`` and
    ``"cosine"`` (vectors and queries normalised to unit length, then ``ip``).
    Distances returned are those values (smaller is nearer).

    Ids are ints in ``[0, 2**63 - 1]``: ``-1`` is the padding of ``search_batch``
    results, so no stored id can be mistaken for it (a caller with other keys maps
    them, as :class:`~llmds.retrieval_pipeline.RetrievalPipeline` does).

    Invariants (asserted by ``_check``):
      * every live id maps to exactly one non-deleted slot and back (``labels``);
      * link counts are within ``[0, 2M]`` at layer 0 and ``[0, M]`` above; every link
        points to a used slot other than the node itself, at a layer that slot has;
      * a node of level ``L >= 1`` owns ``L`` rows of ``upper_links`` that no other
        node owns; levels are at most 64; vectors are finite (unit length for cosine);
      * deleted slots are never returned; they stay in the graph for navigation and are
        reused (re-inserted) by later adds; the entry point has the highest level.

    Complexity: ``add`` / ``add_items`` O(ef_construction * M * dim * log n) per vector
    (expected, as in the paper); ``search`` O(ef * M * dim * log n) expected;
    ``mark_deleted``, ``__contains__``, ``__len__`` O(1); ``save``/``load`` O(n * dim).
    Memory: ``4 * dim + 4 * (2M + 1) + 17`` bytes per slot, ``4 * (M + 1)`` per
    upper-layer link list (about ``n / M`` of them), the id map, and ``10`` bytes per
    slot per scratch set (one per search or build thread that ran at once, kept for
    reuse); ``stats()`` reports it. Caps checked before allocating: ``dim <= 65536``,
    ``M <= 1024``. Every method validates its arguments before changing anything, so
    a call that raises leaves the index as it was.

    Determinism: the same ``seed`` and insertion order give an identical graph
    (per-instance RNG) when it is built on one thread (``num_threads=1``, or batches
    under 256 items per thread); a parallel build links nodes in an order that
    depends on thread timing, with the serial build's recall.

    Files: :meth:`save` writes one checksummed container (atomic: temporary file,
    fsync, rename); :meth:`load` trusts nothing in it (:mod:`llmds._hnsw_file`).
    ``pickle`` and ``copy.deepcopy`` carry the same header and arrays through the same
    checks, to an independent index with identical results.

    Thread safety: safe for concurrent readers; writers are serialised with readers by
    an internal readers-writer lock. Any number of threads may call ``search``,
    ``search_batch``, ``get_vector``, ``stats``, ``save`` or pickle it at once and get
    a serial run's answers exactly (scratch arrays are per call, from a pool; kernels
    release the GIL, so they run in parallel). ``add``, ``add_items`` and
    ``mark_deleted`` hold the lock alone: a search sees the index before or after a
    write, never a mix, never arrays being reallocated. A lock rather than
    copy-on-write snapshots, because an insert rewrites link rows all over the graph
    (a snapshot would copy O(n * M) per add). Cost: ~0.3 us per call, and searches
    wait while a write runs (``add_items`` holds the lock for its whole batch).
    ``search_batch`` and ``add_items`` split a batch over ``num_threads`` threads
    (hnswlib's convention: -1 = all cores).

    >>> import numpy as np
    >>> index = HNSW(dim=4, seed=0)
    >>> index.add_items(np.eye(4, dtype=np.float32), [10, 11, 12, 13])
    >>> index.search(np.array([1, 0, 0, 0.1], dtype=np.float32), k=2)[0]
    (10, 0.01...)
    """

    __slots__ = ("_M", "_deleted", "_dim", "_ef_construction", "_ef_search", "_free",
                 "_id_to_slot", "_labels", "_levels", "_links0", "_lock", "_meta", "_metric",
                 "_metric_code", "_ml", "_num_slots", "_pool", "_qshape", "_rng", "_seed",
                 "_upper_links", "_upper_rows", "_upper_start", "_vectors")

    def __init__(
        self,
        dim: int,
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int = 50,
        ml: float | None = None,
        seed: int | None = None,
        metric: str = "l2",
    ) -> None:
        dim, M, ef_construction, ef_search, ml, seed, metric = check_params(
            dim, M, ef_construction, ef_search, ml, seed, metric)
        self._dim = int(dim)
        self._M = int(M)
        self._ef_construction = int(ef_construction)
        self._ef_search = int(ef_search)
        self._ml = float(ml)
        self._metric = metric
        self._metric_code = METRICS[metric]
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._num_slots = 0
        self._id_to_slot: dict[int, int] = {}
        self._free: list[int] = []
        self._meta = np.array([-1, -1], dtype=np.int64)
        self._upper_rows = 0
        self._upper_links = np.zeros((0, self._M + 1), dtype=np.int32)
        self._qshape = (self._dim,)
        self._lock = RWLock()
        self._pool = ScratchPool(0)
        self._allocate(0)

    # ------------------------------------------------------------------ storage
    def _allocate(self, capacity: int) -> None:
        d, m0 = self._dim, 2 * self._M + 1
        self._vectors = np.zeros((capacity, d), dtype=np.float32)
        self._links0 = np.zeros((capacity, m0), dtype=np.int32)
        self._levels = np.full(capacity, -1, dtype=np.int32)
        self._upper_start = np.full(capacity, -1, dtype=np.int32)
        self._deleted = np.zeros(capacity, dtype=np.uint8)
        self._labels = np.full(capacity, -1, dtype=np.int64)
        self._pool.resize(capacity)

    @property
    def capacity(self) -> int:
        """Slots allocated; grows (doubling) automatically."""
        return int(self._vectors.shape[0])

    def _reserve(self, num_slots: int) -> None:
        """Grow every per-slot array to hold ``num_slots`` slots. O(n * dim) when it grows."""
        cap = self.capacity
        if num_slots <= cap:
            return
        old: list[np.ndarray] = [self._vectors, self._links0, self._levels, self._upper_start,
                                 self._deleted, self._labels]
        self._allocate(max(num_slots, 2 * cap, 16))
        n = self._num_slots
        new: list[np.ndarray] = [self._vectors, self._links0, self._levels, self._upper_start,
                                 self._deleted, self._labels]
        for dst, src in zip(new, old, strict=True):
            dst[:n] = src[:n]

    def _reserve_upper(self, rows: int) -> None:
        if rows <= self._upper_links.shape[0]:
            return
        grown = np.zeros((max(rows, 2 * self._upper_links.shape[0], 16), self._M + 1),
                         dtype=np.int32)
        grown[: self._upper_rows] = self._upper_links[: self._upper_rows]
        self._upper_links = grown

    def _coerce(self, x: Any, name: str, ndim: int) -> npt.NDArray[np.float32]:
        return coerce_vectors(x, name, ndim, self._dim, self._metric == "cosine")

    # --------------------------------------------------------------------- add
    def add(self, vec: npt.ArrayLike, vec_id: int) -> None:
        """Insert ``vec`` under ``vec_id`` (an existing id is updated). See ``add_items``."""
        vec_id = check_int(vec_id, "vec_id", minimum=0, maximum=INT64_MAX)
        self.add_items(self._coerce(vec, "vec", 1)[None, :], [vec_id], num_threads=1)

    def add_items(self, vectors: npt.ArrayLike, ids: npt.ArrayLike,
                  num_threads: int = -1) -> None:
        """Insert rows of ``vectors`` under ``ids`` in order; the build loop runs in kernels.

        An id already present is updated (its slot gets the new vector and fresh links);
        new ids reuse the slots of deleted items first. ``num_threads`` threads link the
        batch (-1: all cores; batches under 256 items per thread use fewer); with
        one thread the graph is deterministic. Raises ``ValueError`` (shape, NaN/inf,
        duplicate or negative ids, ``num_threads``) or ``TypeError`` before anything
        changes. Holds the write lock for the whole batch.
        O(n * ef_construction * M * dim * log N) expected, divided among the threads.
        """
        x = self._coerce(vectors, "vectors", 2)
        n = x.shape[0]
        ids_arr = check_ids(ids, n)
        threads = num_threads_for(num_threads, n, _MIN_INSERTS_PER_THREAD)
        if n == 0:
            return
        self._lock.acquire_write()
        try:
            self._insert(self._place(x, ids_arr), threads)
        finally:
            self._lock.release_write()

    def _place(self, x: npt.NDArray[np.float32], ids: npt.NDArray[np.int64],
               ) -> npt.NDArray[np.int32]:
        """Give each row a slot (and new slots a level), write them; return the slots.

        See :mod:`llmds._hnsw_slots`. Raises before changing anything. O(n * dim).
        """
        id_list = ids.tolist()
        slots, fresh_ids, num_free = assign_slots(id_list, self._id_to_slot, self._free)
        first, num_fresh = self._num_slots, len(fresh_ids)
        if first + num_fresh > 2**31 - 1:
            raise ValueError(f"an HNSW holds at most {2**31 - 1} slots (int32 links)")
        levels = draw_levels(self._rng, num_fresh, self._ml)
        self._reserve(first + num_fresh)
        self._reserve_upper(self._upper_rows + int(levels.sum()))
        fresh = np.arange(first, first + num_fresh, dtype=np.int32)
        slots[fresh_ids] = fresh
        self._levels[fresh] = levels
        self._upper_start[fresh] = upper_starts(levels, self._upper_rows)
        self._links0[fresh, 0] = 0
        self._upper_rows += int(levels.sum())
        self._num_slots = first + num_fresh
        del self._free[num_free:]
        self._vectors[slots] = x
        self._deleted[slots] = 0
        self._labels[slots] = ids
        for j, i in enumerate(id_list):
            self._id_to_slot[i] = int(slots[j])
        return slots

    def _insert(self, slots: npt.NDArray[np.int32], threads: int) -> None:
        """Link ``slots`` into the graph on ``threads`` threads (write lock held)."""
        # a beam wider than the graph behaves exactly like one as wide as the graph
        ef_c = min(self._ef_construction, self.capacity)
        locks = np.zeros(self.capacity + 1 if threads > 1 else 1, dtype=np.int32)
        next_item = np.zeros(1, dtype=np.int64)
        self._pool.run(threads, ef_c, lambda s: _kb.insert_batch(
            self._vectors, self._links0, self._upper_links, self._upper_start, self._levels,
            self._deleted, slots, self._meta, self._M, ef_c, s.visited, s.tag, s.cd, s.ci,
            s.td, s.ti, self._metric_code, locks, next_item, threads > 1))

    # ------------------------------------------------------------------ search
    def search(self, query: npt.ArrayLike, k: int, ef: int | None = None,
               filter: npt.ArrayLike | None = None) -> list[tuple[int, float]]:
        """The ``k`` nearest items as ``[(vec_id, distance)]``, nearest first.

        ``ef`` (default ``ef_search``, raised to ``k``) is the beam width. ``filter`` is
        a boolean mask indexed by id or an array of admitted ids (unknown ids ignored);
        fewer than ``k`` pairs come back when fewer items qualify.
        O(ef * M * dim * log n) expected.
        """
        # The per-call path is kept lean (measured: ~2.5 us of Python around a ~2 us kernel
        # dispatch); anything unusual takes the general, fully validated route. The
        # kernel itself rejects a NaN/inf query (returns -1), cheaper than NumPy here.
        q = query
        if (type(q) is not np.ndarray or q.dtype != _F32 or q.shape != self._qshape
                or self._metric == "cosine" or not q.flags.c_contiguous):
            q = self._coerce(query, "query", 1)
        if type(k) is not int or k < 1 or k > MAX_EF:
            k = check_k(k)
        if ef is None:
            ef = self._ef_search
        elif type(ef) is not int or ef < 1 or ef > MAX_EF:
            ef = check_ef(ef, self._ef_search)
        lock = self._lock
        lock.acquire_read()
        try:
            if filter is not None or not self._id_to_slot:
                ids, dists, counts = self._query(q[None, :], k, ef, filter, 1)
                n = int(counts[0])
                return list(zip(ids[0, :n].tolist(), dists[0, :n].tolist(), strict=True))
            # no more results than slots, and a beam as wide as the graph is exhaustive
            slots = self._num_slots
            if k > slots:
                k = slots
            if ef < k:
                ef = k
            elif ef > slots:
                ef = slots
            s = self._pool.take()
            try:
                if s.td.shape[0] <= ef:
                    s.top(ef)
                if s.out_ids.shape[0] != k:
                    s.out(k)
                out_ids, out_d = s.out_ids, s.out_d
                n = _k.search_one(self._vectors, self._links0, self._upper_links,
                                  self._upper_start, self._meta, q, k, ef, self._deleted,
                                  len(self._free) > 0, s.visited, s.tag, s.cd, s.ci, s.td,
                                  s.ti, self._metric_code, self._labels, out_ids, out_d)
                if n == k:
                    return list(zip(out_ids.tolist(), out_d.tolist(), strict=True))
                if n < 0:
                    raise ValueError("query must be finite (no NaN or inf)")
                return list(zip(out_ids[:n].tolist(), out_d[:n].tolist(), strict=True))
            finally:
                self._pool.give(s)
        finally:
            lock.release_read()

    def search_batch(self, queries: npt.ArrayLike, k: int, ef: int | None = None,
                     filter: npt.ArrayLike | None = None, num_threads: int = -1,
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``search`` for every row: ``(ids, distances)`` of shape ``(n, k)``, -1 / inf padded.

        ``num_threads`` threads answer the rows (-1: all cores; batches under 16 rows
        per thread use fewer); the answers do not depend on it. ``len(queries) * k`` is
        capped at 2**28 results (the arrays are allocated).
        O(n * ef * M * dim * log N) expected, divided among the threads.
        """
        q = self._coerce(queries, "queries", 2)
        k = check_k(k)
        check_results(q.shape[0], k)
        ef = check_ef(ef, self._ef_search)
        threads = num_threads_for(num_threads, q.shape[0], _MIN_QUERIES_PER_THREAD)
        self._lock.acquire_read()
        try:
            ids, dists, _ = self._query(q, k, ef, filter, threads)
        finally:
            self._lock.release_read()
        return ids, dists

    def _query(self, q: npt.NDArray[np.float32], k: int, ef: int, filt: Any, threads: int,
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(ids, distances, counts)`` of ``search_batch`` plus the results found per row,
        on ``threads`` threads; the caller holds the read lock."""
        nq = q.shape[0]
        out_ids = np.full((nq, k), -1, dtype=np.int64)
        out_d = np.full((nq, k), np.inf, dtype=np.float32)
        n = self._num_slots
        blocked = self._deleted
        use_blocked = len(self._free) > 0
        if filt is not None:
            allowed = allowed_slots(filt, self._labels[:n])
            blocked = (~allowed | (self._deleted[:n] != 0)).view(np.uint8)
            if n - int(blocked.sum()) <= BRUTE_FORCE_MAX:
                counts = exact_search(q, k, np.flatnonzero(blocked == 0), self._vectors,
                                      self._labels, self._metric_code, out_ids, out_d)
                return out_ids, out_d, counts
            use_blocked = True
        counts = np.zeros(nq, dtype=np.int64)
        if nq == 0 or self._meta[0] < 0 or not self._id_to_slot:
            return out_ids, out_d, counts
        kk = min(k, n)
        ef = max(min(ef, n), kk)
        next_query = np.zeros(1, dtype=np.int64)
        self._pool.run(threads, ef, lambda s: _k.search_batch(
            self._vectors, self._links0, self._upper_links, self._upper_start, self._meta, q,
            kk, ef, blocked, use_blocked, s.visited, s.tag, s.cd, s.ci, s.td, s.ti,
            self._metric_code, self._labels, out_ids, out_d, counts, next_query))
        return out_ids, out_d, counts

    # ------------------------------------------------------------- id operations
    def _slot_of(self, vec_id: Any) -> int:
        key = check_int(vec_id, "vec_id")
        try:
            return self._id_to_slot[key]
        except KeyError:
            raise KeyError(f"vec_id {key} is not in the index") from None

    def relabel(self, vec_id: int, new_id: int) -> None:
        """Give the live item ``vec_id`` the unused id ``new_id``; the graph is unchanged. O(1).

        For owners that key the graph by a position of their own which moves (the
        pipeline's vector rows move when a document is deleted). Raises ``KeyError`` for
        an unknown ``vec_id`` and ``ValueError`` if ``new_id`` is already present.
        """
        old = check_int(vec_id, "vec_id", minimum=0, maximum=INT64_MAX)
        new = check_int(new_id, "new_id", minimum=0, maximum=INT64_MAX)
        with self._lock.writing():
            slot = self._slot_of(old)
            if new in self._id_to_slot:
                raise ValueError(f"new_id {new} is already in the index")
            del self._id_to_slot[old]
            self._id_to_slot[new] = slot
            self._labels[slot] = new

    def mark_deleted(self, vec_id: int) -> None:
        """Delete ``vec_id``: never returned again, its slot reused by a later add. O(1)."""
        with self._lock.writing():
            slot = self._slot_of(vec_id)
            del self._id_to_slot[int(vec_id)]
            self._deleted[slot] = 1
            self._free.append(slot)

    def get_vector(self, vec_id: int) -> npt.NDArray[np.float32]:
        """A copy of the stored vector (unit length for cosine). O(dim)."""
        with self._lock.reading():
            return self._vectors[self._slot_of(vec_id)].copy()

    def get_vectors(self, ids: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Copies of the stored vectors of ``ids`` as an ``(len(ids), dim)`` array. O(n * dim).

        Raises ``KeyError`` naming the first unknown id (nothing is returned then).
        """
        arr = check_int_array(ids, "ids")
        with self._lock.reading():
            get = self._id_to_slot.get
            slots = [get(i, -1) for i in arr.tolist()]
            if -1 in slots:
                raise KeyError(f"vec_id {arr[slots.index(-1)]} is not in the index")
            return self._vectors[np.asarray(slots, dtype=np.int64)]

    def __len__(self) -> int:
        return len(self._id_to_slot)

    def __contains__(self, vec_id: object) -> bool:
        return is_int(vec_id) and int(vec_id) in self._id_to_slot  # type: ignore[call-overload]

    def stats(self) -> dict[str, Any]:
        """Counts, layers, entry point, memory bytes and mean degree. O(n)."""
        with self._lock.reading():
            n = self._num_slots
            live = self._deleted[:n] == 0
            entry = int(self._meta[0])
            memory = self._pool.nbytes + sum(a.nbytes for a in (
                self._vectors, self._links0, self._levels, self._upper_start, self._deleted,
                self._labels, self._upper_links))
            degree = float(self._links0[:n, 0][live].mean()) if live.any() else 0.0
            return {"num_vectors": len(self._id_to_slot), "num_deleted": len(self._free),
                    "num_layers": int(self._meta[1]) + 1,
                    "entry_point": int(self._labels[entry]) if entry >= 0 else None,
                    "memory_bytes": int(memory), "mean_degree": degree,
                    "capacity": self.capacity, "dim": self._dim, "M": self._M,
                    "ef_construction": self._ef_construction, "ef_search": self._ef_search,
                    "ml": self._ml, "metric": self._metric}

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    @property
    def ef_search(self) -> int:
        """Default beam width of ``search``; settable."""
        return self._ef_search

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._ef_search = check_int(value, "ef_search", minimum=1, maximum=MAX_EF)

    # ------------------------------------------------------------- persistence
    def _params(self) -> dict[str, Any]:
        return {"dim": self._dim, "M": self._M, "ef_construction": self._ef_construction,
                "ef_search": self._ef_search, "ml": self._ml, "seed": self._seed,
                "metric": self._metric}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """``(header, arrays)`` of the container format; views (hold the lock). O(1)."""
        n = self._num_slots
        arrays: dict[str, np.ndarray] = {
            "vectors": self._vectors[:n], "links0": self._links0[:n],
            "levels": self._levels[:n], "upper_start": self._upper_start[:n],
            "upper_links": self._upper_links[: self._upper_rows],
            "deleted": self._deleted[:n], "labels": self._labels[:n],
            "free": np.asarray(self._free, dtype=np.int64),
        }
        meta = {"params": self._params(), "num_slots": n, "upper_rows": self._upper_rows,
                "entry_point": int(self._meta[0]), "max_level": int(self._meta[1]),
                "rng_state": self._rng.bit_generator.state}
        return meta, arrays

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index to the file ``path`` atomically; return its size. O(n * dim).

        One :mod:`llmds._persist` container (kind ``llmds.HNSW``, version 1): the
        parameters, entry point, counts and RNG state in its checksummed header, the
        arrays after it. No pickle. Saving over the file an index was loaded from
        (even with ``mmap=True``) is safe: the new file replaces it by rename.
        Searches run on while it writes; writers wait.
        """
        path = check_path(path)
        with self._lock.reading():
            meta, arrays = self._state()
            return write_container(path, _file.KIND, _file.VERSION, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> HNSW:
        """Read an index written by :meth:`save`, trusting nothing in the file. O(n * M + n * dim).

        After the checksums, every fact the kernels rely on is checked (see
        :mod:`llmds._hnsw_file`), so a hostile file raises instead of crashing, hanging
        or breaking the invariants. ``mmap=True`` maps the arrays copy-on-write (the
        file must not be rewritten in place while mapped; ``save`` never does that). A
        folder saved by llmds 0.2 is refused with a CorruptFileError saying so.

        Raises ``FileNotFoundError`` if ``path`` is missing and ``CorruptFileError``
        if it is not an intact, consistent HNSW file.
        """
        self = cls.__new__(cls)
        self._restore(_file.open_graph(path, mmap))
        return self

    def _restore(self, c: Container) -> None:
        """Become the index held by ``c`` (a header already checked by ``_hnsw_file``)."""
        try:
            HNSW.__init__(self, **c.meta["params"])
        except (TypeError, ValueError) as exc:
            raise c.fail(f"bad parameter: {exc}") from None
        g = _file.check_graph(c, self._dim, self._M, self._metric)
        state = _file.check_rng_state(c, c.meta["rng_state"])
        try:
            self._rng.bit_generator.state = state
        except (TypeError, ValueError, KeyError, OverflowError):
            raise c.fail("rng_state is not a NumPy PCG64 state") from None
        a, n = g["arrays"], g["num_slots"]
        self._vectors, self._links0 = a["vectors"], a["links0"]
        self._levels, self._upper_start = a["levels"], a["upper_start"]
        self._deleted, self._labels = a["deleted"], a["labels"]
        self._upper_links, self._upper_rows = a["upper_links"], g["upper_rows"]
        self._num_slots = n
        self._pool.resize(n)
        self._free = a["free"].tolist()
        self._meta = np.array([g["entry_point"], g["max_level"]], dtype=np.int64)
        live = np.flatnonzero(self._deleted == 0)
        self._id_to_slot = dict(zip(self._labels[live].tolist(), live.tolist(), strict=True))

    def __getstate__(self) -> dict[str, Any]:
        """What ``pickle`` and ``copy.deepcopy`` carry: the header and copies of the arrays."""
        with self._lock.reading():
            meta, arrays = self._state()
            return {"meta": meta, "arrays": {name: a.copy() for name, a in arrays.items()}}

    def __setstate__(self, state: Any) -> None:
        """Rebuild from ``__getstate__``'s output through the loader's checks. O(n * M)."""
        self._restore(_file.state_container(state, "<pickled HNSW>"))

    # -------------------------------------------------------------- invariants
    def _check(self) -> None:
        """Assert the class invariants. O(n * M); tests only.

        The graph facts are those :func:`llmds._hnsw_file.check_graph` checks on a
        loaded file, run on the live arrays; then the id map against the labels.
        """
        with self._lock.reading():
            meta, arrays = self._state()
            c = Container("<live HNSW>", _file.KIND, _file.VERSION, meta, arrays)
            try:
                _file.check_graph(c, self._dim, self._M, self._metric)
            except CorruptFileError as exc:
                raise AssertionError(str(exc)) from None
            n = self._num_slots
            assert len(self._id_to_slot) + len(self._free) == n
            for vec_id, s in self._id_to_slot.items():
                assert 0 <= s < n and self._labels[s] == vec_id and self._deleted[s] == 0
                assert 0 <= vec_id <= INT64_MAX
            assert self._pool.size == self.capacity
