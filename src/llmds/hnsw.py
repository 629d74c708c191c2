"""Hierarchical Navigable Small World graph index (Malkov & Yashunin 2018) over NumPy arrays.

The class validates input and owns the arrays; the search and build loops are numba
kernels in :mod:`llmds._kernels.hnsw` (layout documented there).
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._hnsw_file import MAX_LEVEL, check_graph, check_path, check_rng_state
from llmds._kernels import hnsw as _k
from llmds._persist import read_container, write_container
from llmds._validate import (
    INT64_MAX,
    check_bool,
    check_choice,
    check_finite_array,
    check_int,
    check_int_array,
    check_number,
    is_int,
    show,
)
from llmds.errors import CorruptFileError

__all__ = ["HNSW"]

_METRICS = {"l2": 0, "ip": 1, "cosine": 1}
_F32 = np.dtype(np.float32)
_KIND = "llmds.HNSW"
_VERSION = 1
_PARAMS = ("dim", "M", "ef_construction", "ef_search", "ml", "seed", "metric")
_META = frozenset({"params", "num_slots", "upper_rows", "entry_point", "max_level",
                   "rng_state"})
# Size caps checked before anything is allocated (the largest embedding models have a
# few thousand dimensions; hnswlib suggests M in 2..100).
MAX_DIM = 2**16
MAX_M = 1024
MAX_EF = 2**31 - 1  # also the largest k
_MAX_RESULTS = 2**28  # len(queries) * k of one search_batch (3 GiB of results)
_MAX_SEED = 2**64 - 1
# A filter that admits at most this many items is answered exactly by brute force: a
# graph search would have to walk most of the graph to find that few admitted nodes.
_BRUTE_FORCE_MAX = 512


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
    Memory: ``4 * dim + 4 * (2M + 1) + 12`` bytes per slot plus ``4 * (M + 1)`` per
    upper-layer link list (about ``n / M`` of them) and the id map; ``stats()`` reports it.
    Caps checked before allocating: ``dim <= 65536``, ``M <= 1024``.

    Same ``seed`` and same insertion order give an identical graph (per-instance RNG).
    Every method validates its arguments before changing anything, so a call that
    raises leaves the index as it was.

    Files: :meth:`save` writes one checksummed container file (atomic: temporary
    file, fsync, rename); :meth:`load` trusts nothing in it (see :mod:`llmds._hnsw_file`).

    Thread safety: not thread-safe (searches share scratch buffers); guard it.

    >>> import numpy as np
    >>> index = HNSW(dim=4, seed=0)
    >>> index.add_items(np.eye(4, dtype=np.float32), [10, 11, 12, 13])
    >>> index.search(np.array([1, 0, 0, 0.1], dtype=np.float32), k=2)[0]
    (10, 0.01...)
    """

    __slots__ = (
        "_M",
        "_cd",
        "_ci",
        "_deleted",
        "_dim",
        "_ef_construction",
        "_ef_search",
        "_free",
        "_id_to_slot",
        "_labels",
        "_levels",
        "_links0",
        "_meta",
        "_metric",
        "_metric_code",
        "_ml",
        "_num_slots",
        "_out_d",
        "_out_ids",
        "_qshape",
        "_rng",
        "_seed",
        "_tag",
        "_td",
        "_ti",
        "_upper_links",
        "_upper_rows",
        "_upper_start",
        "_vectors",
        "_visited",
    )

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
        dim = check_int(dim, "dim", minimum=1, maximum=MAX_DIM)
        M = check_int(M, "M", minimum=2, maximum=MAX_M)
        ef_construction = check_int(ef_construction, "ef_construction", minimum=1,
                                    maximum=MAX_EF)
        ef_search = check_int(ef_search, "ef_search", minimum=1, maximum=MAX_EF)
        ml = 1.0 / math.log(M) if ml is None else check_number(ml, "ml", minimum=0.0,
                                                               exclusive_minimum=True)
        metric = check_choice(metric, "metric", _METRICS)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0, maximum=_MAX_SEED)
        self._dim = int(dim)
        self._M = int(M)
        self._ef_construction = int(ef_construction)
        self._ef_search = int(ef_search)
        self._ml = float(ml)
        self._metric = metric
        self._metric_code = _METRICS[metric]
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._num_slots = 0
        self._id_to_slot: dict[int, int] = {}
        self._free: list[int] = []
        self._meta = np.array([-1, -1], dtype=np.int64)
        self._tag = np.zeros(1, dtype=np.uint16)
        self._upper_rows = 0
        self._upper_links = np.zeros((0, self._M + 1), dtype=np.int32)
        self._allocate(0)
        self._td = np.empty(0, dtype=np.float32)
        self._ti = np.empty(0, dtype=np.int32)
        self._out_ids = np.empty(0, dtype=np.int64)
        self._out_d = np.empty(0, dtype=np.float32)
        self._qshape = (self._dim,)

    # ------------------------------------------------------------------ storage
    def _allocate(self, capacity: int) -> None:
        d, m0 = self._dim, 2 * self._M + 1
        self._vectors = np.zeros((capacity, d), dtype=np.float32)
        self._links0 = np.zeros((capacity, m0), dtype=np.int32)
        self._levels = np.full(capacity, -1, dtype=np.int32)
        self._upper_start = np.full(capacity, -1, dtype=np.int32)
        self._deleted = np.zeros(capacity, dtype=np.uint8)
        self._labels = np.full(capacity, -1, dtype=np.int64)
        self._visited = np.zeros(capacity, dtype=np.uint16)
        self._cd = np.empty(capacity, dtype=np.float32)
        self._ci = np.empty(capacity, dtype=np.int32)

    @property
    def capacity(self) -> int:
        """Slots allocated; grows (doubling) automatically."""
        return int(self._vectors.shape[0])

    def _reserve(self, num_slots: int) -> None:
        """Grow every per-slot array to hold ``num_slots`` slots. O(n * dim) when it grows."""
        cap = self.capacity
        if num_slots <= cap:
            return
        new_cap = max(num_slots, 2 * cap, 16)
        old: list[np.ndarray] = [self._vectors, self._links0, self._levels, self._upper_start,
                                 self._deleted, self._labels]
        self._allocate(new_cap)
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

    def _scratch_top(self, ef: int) -> None:
        if self._td.shape[0] < ef + 1:
            self._td = np.empty(ef + 1, dtype=np.float32)
            self._ti = np.empty(ef + 1, dtype=np.int32)

    # --------------------------------------------------------------- validation
    def _coerce(self, x: Any, name: str, ndim: int) -> npt.NDArray[np.float32]:
        """``x`` as a C-contiguous float32 array of ``ndim`` dimensions and ``dim`` columns.

        A 1-D request also takes one row ``(1, dim)``; a 2-D request takes an empty
        sequence as an empty batch. Finite values only; cosine rows are normalised
        (in float64, so large finite values cannot overflow to a zero vector).
        """
        out = check_finite_array(x, name)
        if ndim == 1 and out.ndim == 2 and out.shape[0] == 1:
            out = out[0]
        elif ndim == 2 and out.ndim == 1 and out.size == 0:
            out = out.reshape(0, self._dim)
        if out.ndim != ndim or out.shape[-1] != self._dim:
            want = f"({self._dim},)" if ndim == 1 else f"(n, {self._dim})"
            raise ValueError(f"{name} must have shape {want}, got {out.shape}")
        if self._metric == "cosine":
            x64 = out.astype(np.float64)
            norms = np.linalg.norm(x64, axis=-1, keepdims=True)
            if (norms == 0).any():
                raise ValueError(f"{name} has a zero vector, which has no cosine direction")
            out = np.ascontiguousarray(x64 / norms, dtype=np.float32)
        return out

    @staticmethod
    def _check_k(k: Any) -> int:
        return check_int(k, "k", minimum=1, maximum=MAX_EF)

    def _check_ef(self, ef: Any) -> int:
        if ef is None:
            return self._ef_search
        return check_int(ef, "ef", minimum=1, maximum=MAX_EF)

    def _check_ids(self, ids: Any, n: int) -> npt.NDArray[np.int64]:
        arr = check_int_array(ids, "ids", maximum=INT64_MAX)  # uint64 is never wrapped
        if arr.shape[0] != n:
            raise ValueError(f"ids must hold one id per vector ({n}), got {arr.shape[0]}")
        if n and arr.min() < 0:
            raise ValueError(f"ids must be in [0, {INT64_MAX}] (-1 pads search results), "
                             f"got {int(arr.min())}")
        return arr

    # --------------------------------------------------------------------- add
    def add(self, vec: npt.ArrayLike, vec_id: int) -> None:
        """Insert ``vec`` under ``vec_id`` (an existing id is updated). See ``add_items``."""
        vec_id = check_int(vec_id, "vec_id", minimum=0, maximum=INT64_MAX)
        self.add_items(self._coerce(vec, "vec", 1)[None, :], [vec_id])

    def add_items(self, vectors: npt.ArrayLike, ids: npt.ArrayLike) -> None:
        """Insert rows of ``vectors`` under ``ids`` in order; the whole loop runs in one kernel.

        An id already present is updated (its slot gets the new vector and fresh links);
        new ids reuse the slots of deleted items first. Raises ``ValueError`` (shape,
        NaN/inf, duplicate or negative ids) or ``TypeError`` before anything changes.
        O(n * ef_construction * M * dim * log N) expected.
        """
        x = self._coerce(vectors, "vectors", 2)
        n = x.shape[0]
        ids_arr = self._check_ids(ids, n)
        if n == 0:
            return
        id_list = ids_arr.tolist()
        if len(set(id_list)) != n:
            raise ValueError("ids must be unique within one call, got a repeated id")
        # slots: updates keep theirs; new ids take freed slots (LIFO), then fresh ones
        id_to_slot, free = self._id_to_slot, self._free
        slots = np.empty(n, dtype=np.int32)
        num_free = len(free)
        fresh_ids = []
        for j, i in enumerate(id_list):
            s = id_to_slot.get(i)
            if s is None:
                if num_free > 0:
                    num_free -= 1
                    s = free[num_free]
                else:
                    s = -1
                    fresh_ids.append(j)
            slots[j] = s
        num_fresh = len(fresh_ids)
        first = self._num_slots
        if first + num_fresh > 2**31 - 1:
            raise ValueError(f"an HNSW holds at most {2**31 - 1} slots (int32 links)")
        draws = -np.log1p(-self._rng.random(num_fresh)) * self._ml
        levels = np.minimum(draws, MAX_LEVEL).astype(np.int32)
        self._reserve(first + num_fresh)
        need_rows = int(levels.sum())
        self._reserve_upper(self._upper_rows + need_rows)
        fresh = np.arange(first, first + num_fresh, dtype=np.int32)
        slots[fresh_ids] = fresh
        starts = np.full(num_fresh, -1, dtype=np.int32)
        up = levels > 0
        starts[up] = self._upper_rows + np.concatenate(([0], np.cumsum(levels[up])[:-1]))
        self._levels[fresh] = levels
        self._upper_start[fresh] = starts
        self._links0[fresh, 0] = 0
        self._upper_rows += need_rows
        self._num_slots = first + num_fresh
        del free[num_free:]
        self._vectors[slots] = x
        self._deleted[slots] = 0
        self._labels[slots] = ids_arr
        for j, i in enumerate(id_list):
            id_to_slot[i] = int(slots[j])
        # a beam wider than the graph behaves exactly like one as wide as the graph
        ef_c = min(self._ef_construction, self.capacity)
        self._scratch_top(ef_c)
        _k.insert_batch(self._vectors, self._links0, self._upper_links, self._upper_start,
                        self._levels, self._deleted, slots, self._meta, self._M,
                        ef_c, self._visited, self._tag, self._cd, self._ci,
                        self._td, self._ti, self._metric_code)

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
            k = self._check_k(k)
        if ef is None:
            ef = self._ef_search
        elif type(ef) is not int or ef < 1 or ef > MAX_EF:
            ef = self._check_ef(ef)
        if filter is not None or not self._id_to_slot:
            ids, dists, counts = self._search(q[None, :], k, ef, filter)
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
        if self._td.shape[0] <= ef:
            self._scratch_top(ef)
        out_ids, out_d = self._out_ids, self._out_d
        if out_ids.shape[0] != k:
            out_ids = self._out_ids = np.empty(k, dtype=np.int64)
            out_d = self._out_d = np.empty(k, dtype=np.float32)
        n = _k.search_one(self._vectors, self._links0, self._upper_links, self._upper_start,
                          self._meta, q, k, ef, self._deleted, len(self._free) > 0,
                          self._visited, self._tag, self._cd, self._ci, self._td, self._ti,
                          self._metric_code, self._labels, out_ids, out_d)
        if n == k:
            return list(zip(out_ids.tolist(), out_d.tolist(), strict=True))
        if n < 0:
            raise ValueError("query must be finite (no NaN or inf)")
        return list(zip(out_ids[:n].tolist(), out_d[:n].tolist(), strict=True))

    def search_batch(self, queries: npt.ArrayLike, k: int, ef: int | None = None,
                     filter: npt.ArrayLike | None = None,
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``search`` for every row: ``(ids, distances)`` of shape ``(n, k)``, -1 / inf padded.

        ``len(queries) * k`` is capped at 2**28 results (the arrays are allocated).
        """
        q = self._coerce(queries, "queries", 2)
        k = self._check_k(k)
        if q.shape[0] * k > _MAX_RESULTS:
            raise ValueError(f"len(queries) * k must be <= {_MAX_RESULTS}, got "
                             f"{q.shape[0]} * {k}")
        ids, dists, _ = self._search(q, k, ef, filter)
        return ids, dists

    def _search(self, q: npt.NDArray[np.float32], k: int, ef: Any, filt: Any,
                ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(ids, distances, counts)``: -1 / inf padded ``(nq, k)`` results, found per row."""
        ef = self._check_ef(ef)
        nq = q.shape[0]
        out_ids = np.full((nq, k), -1, dtype=np.int64)
        out_d = np.full((nq, k), np.inf, dtype=np.float32)
        n = self._num_slots
        blocked = self._deleted
        use_blocked = len(self._free) > 0
        if filt is not None:
            allowed = self._allowed_slots(filt)
            blocked = (~allowed | (self._deleted[:n] != 0)).view(np.uint8)
            admitted = n - int(blocked.sum())
            if admitted <= _BRUTE_FORCE_MAX:
                return self._brute_force(q, k, np.flatnonzero(blocked == 0), out_ids, out_d)
            use_blocked = True
        if nq == 0 or self._meta[0] < 0 or not self._id_to_slot:
            return out_ids, out_d, np.zeros(nq, dtype=np.int64)
        kk = min(k, n)
        ef = max(min(ef, n), kk)
        self._scratch_top(ef)
        counts = _k.search_batch(self._vectors, self._links0, self._upper_links,
                                 self._upper_start, self._meta, q, kk, ef, blocked, use_blocked,
                                 self._visited, self._tag, self._cd, self._ci, self._td,
                                 self._ti, self._metric_code, self._labels, out_ids, out_d)
        return out_ids, out_d, counts

    def _allowed_slots(self, filt: Any) -> npt.NDArray[np.bool_]:
        expected = "filter must be a 1-D boolean mask indexed by id or a 1-D array of ids"
        arr = None
        with contextlib.suppress(TypeError, ValueError, OverflowError):
            arr = None if isinstance(filt, str | bytes) else np.asarray(filt)
        if arr is None:
            raise TypeError(f"{expected}, got {show(filt)}")
        labels = self._labels[: self._num_slots]
        if arr.dtype == np.bool_:
            if arr.ndim != 1:
                raise ValueError(f"{expected}, got a mask of shape {arr.shape}")
            inside = labels < arr.shape[0]
            allowed = np.zeros(labels.shape[0], dtype=bool)
            allowed[inside] = arr[labels[inside]]
            return allowed
        if arr.ndim == 1 and arr.size == 0:
            return np.zeros(labels.shape[0], dtype=bool)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise TypeError(f"{expected}, got dtype {arr.dtype} shape {arr.shape}")
        return np.isin(labels, arr)

    def _brute_force(self, q: npt.NDArray[np.float32], k: int, slots: npt.NDArray[np.intp],
                     ids: npt.NDArray[np.int64], out_d: npt.NDArray[np.float32],
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32],
                                npt.NDArray[np.int64]]:
        nq = q.shape[0]
        if slots.size == 0 or nq == 0:
            return ids, out_d, np.zeros(nq, dtype=np.int64)
        v = self._vectors[slots]
        with np.errstate(over="ignore", invalid="ignore"):
            if self._metric_code == 0:
                d = ((q[:, None, :] - v[None, :, :]) ** 2).sum(-1, dtype=np.float32)
            else:
                d = (1.0 - q @ v.T).astype(np.float32)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        kk = order.shape[1]
        ids[:, :kk] = self._labels[slots[order]]
        out_d[:, :kk] = np.take_along_axis(d, order, axis=1)
        return ids, out_d, np.full(nq, kk, dtype=np.int64)

    # ------------------------------------------------------------- id operations
    def _slot_of(self, vec_id: Any) -> int:
        key = check_int(vec_id, "vec_id")
        try:
            return self._id_to_slot[key]
        except KeyError:
            raise KeyError(f"vec_id {key} is not in the index") from None

    def _slots_of(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Slots of live ``ids`` (all present; for the pipeline). O(len(ids))."""
        get = self._id_to_slot.__getitem__
        return np.fromiter((get(i) for i in ids.tolist()), dtype=np.int64, count=ids.shape[0])

    def _relabel(self, old_id: int, new_id: int) -> None:
        """Give the live item ``old_id`` the free id ``new_id``; graph unchanged. O(1).

        For :class:`~llmds.retrieval_pipeline.RetrievalPipeline`, whose ids here are rows
        of its vector store (rows move when a document is deleted).
        """
        slot = self._id_to_slot.pop(old_id)
        self._id_to_slot[new_id] = slot
        self._labels[slot] = new_id

    def mark_deleted(self, vec_id: int) -> None:
        """Delete ``vec_id``: never returned again, its slot reused by a later add. O(1)."""
        slot = self._slot_of(vec_id)
        del self._id_to_slot[int(vec_id)]
        self._deleted[slot] = 1
        self._free.append(slot)

    def get_vector(self, vec_id: int) -> npt.NDArray[np.float32]:
        """A copy of the stored vector (unit length for cosine). O(dim)."""
        return self._vectors[self._slot_of(vec_id)].copy()

    def __len__(self) -> int:
        return len(self._id_to_slot)

    def __contains__(self, vec_id: object) -> bool:
        return is_int(vec_id) and int(vec_id) in self._id_to_slot  # type: ignore[call-overload]

    def stats(self) -> dict[str, Any]:
        """Counts, layers, entry point, memory bytes and mean degree. O(n)."""
        n = self._num_slots
        live = self._deleted[:n] == 0
        entry = int(self._meta[0])
        memory = sum(a.nbytes for a in (self._vectors, self._links0, self._levels,
                                        self._upper_start, self._deleted, self._labels,
                                        self._visited, self._cd, self._ci, self._upper_links))
        degree = float(self._links0[:n, 0][live].mean()) if live.any() else 0.0
        return {
            "num_vectors": len(self._id_to_slot),
            "num_deleted": len(self._free),
            "num_layers": int(self._meta[1]) + 1,
            "entry_point": int(self._labels[entry]) if entry >= 0 else None,
            "memory_bytes": int(memory),
            "mean_degree": degree,
            "capacity": self.capacity,
            "dim": self._dim,
            "M": self._M,
            "ef_construction": self._ef_construction,
            "ef_search": self._ef_search,
            "ml": self._ml,
            "metric": self._metric,
        }

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

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index to the file ``path`` atomically; return its size. O(n * dim).

        One :mod:`llmds._persist` container (kind ``llmds.HNSW``, version 1): the
        parameters, entry point, counts and RNG state in its checksummed header, the
        arrays after it. No pickle. Saving over the file an index was loaded from
        (even with ``mmap=True``) is safe: the new file replaces it by rename.
        """
        path = check_path(path)
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
        return write_container(path, _KIND, _VERSION, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> HNSW:
        """Read an index written by :meth:`save`, trusting nothing in the file. O(n * M + n * dim).

        After the checksums, every fact the search and insert kernels rely on is
        checked (parameters, shapes, finite vectors, levels, entry point, link counts,
        bounds, self-links, repeats, layer membership, ids, free list, RNG state; see
        :mod:`llmds._hnsw_file`), so a hostile file raises instead of crashing, hanging
        or loading a graph that breaks the invariants. ``mmap=True`` maps the arrays
        copy-on-write (the file must not be rewritten in place while mapped; ``save``
        never does that). A folder saved by llmds 0.2 (``header.json`` + ``.npy``
        files) is refused with a CorruptFileError saying so: rebuild the index and
        save it again.

        Raises ``FileNotFoundError`` if ``path`` is missing and ``CorruptFileError``
        if it is not an intact, consistent HNSW file.
        """
        path = check_path(path)
        mmap = check_bool(mmap, "mmap")
        if os.path.isdir(path) and os.path.exists(os.path.join(path, "header.json")):
            raise CorruptFileError(
                f"{os.fspath(path)!r} is an HNSW folder of llmds 0.2 (header.json + .npy "
                "files), a format this llmds no longer reads: rebuild the index and save it "
                "again (one checksummed file)")
        c = read_container(path, _KIND, (_VERSION,), mmap=mmap)
        meta = c.meta
        if set(meta) != _META:
            raise c.fail(f"the header must hold exactly {sorted(_META)}, got {sorted(meta)}")
        p = meta["params"]
        if not isinstance(p, dict) or set(p) != set(_PARAMS):
            raise c.fail(f"params must hold exactly {list(_PARAMS)}")
        try:
            self = cls(**p)
        except (TypeError, ValueError) as exc:
            raise c.fail(f"bad parameter: {exc}") from None
        g = check_graph(c, self._dim, self._M, self._metric)
        state = check_rng_state(c, meta["rng_state"])
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
        self._visited = np.zeros(n, dtype=np.uint16)
        self._cd = np.empty(n, dtype=np.float32)
        self._ci = np.empty(n, dtype=np.int32)
        self._free = a["free"].tolist()
        self._meta = np.array([g["entry_point"], g["max_level"]], dtype=np.int64)
        live = np.flatnonzero(self._deleted == 0)
        self._id_to_slot = dict(zip(self._labels[live].tolist(), live.tolist(), strict=True))
        return self

    # -------------------------------------------------------------- invariants
    def _check(self) -> None:
        """Assert the class invariants. O(n * M); tests only."""
        n, m = self._num_slots, self._M
        assert len(self._id_to_slot) + len(self._free) == n
        for vec_id, s in self._id_to_slot.items():
            assert 0 <= s < n and self._labels[s] == vec_id and self._deleted[s] == 0
            assert 0 <= vec_id <= INT64_MAX
        assert sorted(self._free) == np.flatnonzero(self._deleted[:n]).tolist()
        assert set(self._deleted[:n].tolist()) <= {0, 1}
        assert np.isfinite(self._vectors[:n]).all()
        if self._metric == "cosine" and n:
            norms = np.linalg.norm(self._vectors[:n].astype(np.float64), axis=1)
            assert np.allclose(norms, 1.0, atol=1e-4)
        if n == 0:
            assert self._meta[0] == -1
            return
        levels = self._levels[:n]
        assert (levels >= 0).all() and (levels <= MAX_LEVEL).all()
        assert levels[self._meta[0]] == self._meta[1] == levels.max()
        owner = np.full(self._upper_rows, -1, dtype=np.int64)
        for s in range(n):
            if levels[s] == 0:
                assert self._upper_start[s] == -1
            for lev in range(int(levels[s]) + 1):
                if lev == 0:
                    row, cap = self._links0[s], 2 * m
                else:
                    r = int(self._upper_start[s]) + lev - 1
                    assert 0 <= r < self._upper_rows and owner[r] == -1, (s, lev, r)
                    owner[r] = s
                    row, cap = self._upper_links[r], m
                c = int(row[0])
                assert 0 <= c <= cap, (s, lev, c)
                nbs = row[1 : 1 + c]
                assert len(set(nbs.tolist())) == c and s not in nbs
                assert ((nbs >= 0) & (nbs < n)).all() and (levels[nbs] >= lev).all()
