"""Hierarchical Navigable Small World graph index (Malkov & Yashunin 2018) over NumPy arrays.

The class validates input and owns the arrays; the search and build loops are numba
kernels in :mod:`llmds._kernels.hnsw` (layout documented there).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import hnsw as _k
from llmds.errors import CorruptFileError

__all__ = ["HNSW"]

_METRICS = {"l2": 0, "ip": 1, "cosine": 1}
_F32 = np.dtype(np.float32)
_FORMAT = "llmds.hnsw"
_VERSION = 1
_ARRAYS = ("vectors", "links0", "levels", "upper_start", "upper_links", "deleted", "labels",
           "free")
# A filter that admits at most this many items is answered exactly by brute force: a
# graph search would have to walk most of the graph to find that few admitted nodes.
_BRUTE_FORCE_MAX = 512


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


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

    Invariants (asserted by ``_check``):
      * every live id maps to exactly one non-deleted slot and back (``labels``);
      * link counts are within ``[0, 2M]`` at layer 0 and ``[0, M]`` above; every link
        points to a used slot other than the node itself, at a layer that slot has;
      * deleted slots are never returned; they stay in the graph for navigation and are
        reused (re-inserted) by later adds; the entry point has the highest level.

    Complexity: ``add`` / ``add_items`` O(ef_construction * M * dim * log n) per vector
    (expected, as in the paper); ``search`` O(ef * M * dim * log n) expected;
    ``mark_deleted``, ``__contains__``, ``__len__`` O(1); ``save``/``load`` O(n * dim).
    Memory: ``4 * dim + 4 * (2M + 1) + 12`` bytes per slot plus ``4 * (M + 1)`` per
    upper-layer link list (about ``n / M`` of them) and the id map; ``stats()`` reports it.

    Same ``seed`` and same insertion order give an identical graph (per-instance RNG).
    Not thread-safe: searches share scratch buffers.

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
        if not _is_int(dim) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        if not _is_int(M) or M < 2:
            raise ValueError(f"M must be an int >= 2, got {M!r}")
        if not _is_int(ef_construction) or ef_construction < 1:
            raise ValueError(f"ef_construction must be an int >= 1, got {ef_construction!r}")
        if not _is_int(ef_search) or ef_search < 1:
            raise ValueError(f"ef_search must be an int >= 1, got {ef_search!r}")
        if ml is None:
            ml = 1.0 / math.log(M)
        if not isinstance(ml, (int, float)) or not math.isfinite(ml) or ml <= 0:
            raise ValueError(f"ml must be a finite number > 0, got {ml!r}")
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {sorted(_METRICS)}, got {metric!r}")
        if seed is not None and not _is_int(seed):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
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
        try:
            arr = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a numeric array, got {type(x).__name__}") from None
        if ndim == 1 and arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.ndim != ndim or arr.shape[-1] != self._dim:
            want = f"({self._dim},)" if ndim == 1 else f"(n, {self._dim})"
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf")
        if self._metric == "cosine":
            norms = np.linalg.norm(arr, axis=-1, keepdims=True)
            if (norms == 0).any():
                raise ValueError(f"{name} has a zero vector, which has no cosine direction")
            arr = arr / norms
        return np.ascontiguousarray(arr, dtype=np.float32)

    @staticmethod
    def _check_k(k: Any) -> int:
        if not _is_int(k) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        return int(k)

    def _check_ef(self, ef: Any, k: int) -> int:
        if ef is None:
            ef = self._ef_search
        elif not _is_int(ef) or ef < 1:
            raise ValueError(f"ef must be an int >= 1 or None, got {ef!r}")
        return max(int(ef), k)

    # --------------------------------------------------------------------- add
    def add(self, vec: npt.ArrayLike, vec_id: int) -> None:
        """Insert ``vec`` under ``vec_id`` (an existing id is updated). See ``add_items``."""
        if not _is_int(vec_id):
            raise TypeError(f"vec_id must be an int, got {vec_id!r}")
        self.add_items(self._coerce(vec, "vec", 1)[None, :], [int(vec_id)])

    def add_items(self, vectors: npt.ArrayLike, ids: npt.ArrayLike) -> None:
        """Insert rows of ``vectors`` under ``ids`` in order; the whole loop runs in one kernel.

        An id already present is updated (its slot gets the new vector and fresh links);
        new ids reuse the slots of deleted items first. Raises ``ValueError`` (shape,
        NaN/inf, duplicate ids) or ``TypeError`` before anything changes.
        O(n * ef_construction * M * dim * log N) expected.
        """
        x = self._coerce(vectors, "vectors", 2)
        ids_arr = np.asarray(ids)
        if ids_arr.ndim != 1 or ids_arr.shape[0] != x.shape[0]:
            raise ValueError(f"ids must be a 1-D sequence of {x.shape[0]} ints, got shape "
                             f"{ids_arr.shape}")
        if ids_arr.size and not np.issubdtype(ids_arr.dtype, np.integer):
            raise TypeError(f"ids must be ints, got dtype {ids_arr.dtype}")
        n = x.shape[0]
        if n == 0:
            return
        id_list = [int(i) for i in ids_arr]
        if len(set(id_list)) != n:
            raise ValueError("ids contains duplicates")
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
        levels = (-np.log1p(-self._rng.random(num_fresh)) * self._ml).astype(np.int32)
        first = self._num_slots
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
        self._scratch_top(self._ef_construction)
        _k.insert_batch(self._vectors, self._links0, self._upper_links, self._upper_start,
                        self._levels, self._deleted, slots, self._meta, self._M,
                        self._ef_construction, self._visited, self._tag, self._cd, self._ci,
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
        # dispatch); anything unusual takes the general, fully validated route.
        q = query
        if (type(q) is not np.ndarray or q.dtype != _F32 or q.shape != self._qshape
                or self._metric == "cosine" or not q.flags.c_contiguous):
            q = self._coerce(query, "query", 1)
        if type(k) is not int or k < 1:
            k = self._check_k(k)
        if ef is None:
            ef = self._ef_search
        elif type(ef) is not int or ef < 1:
            ef = self._check_ef(ef, k)
        if ef < k:
            ef = k
        if filter is not None or not self._id_to_slot:
            ids, dists = self._search(q[None, :], k, ef, filter)
            n = int((ids[0] != -1).sum())
            return list(zip(ids[0, :n].tolist(), dists[0, :n].tolist(), strict=True))
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
            raise ValueError("query contains NaN or inf")
        return list(zip(out_ids[:n].tolist(), out_d[:n].tolist(), strict=True))

    def search_batch(self, queries: npt.ArrayLike, k: int, ef: int | None = None,
                     filter: npt.ArrayLike | None = None,
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """``search`` for every row: ``(ids, distances)`` of shape ``(n, k)``, -1 / inf padded."""
        q = self._coerce(queries, "queries", 2)
        return self._search(q, self._check_k(k), ef, filter)

    def _search(self, q: npt.NDArray[np.float32], k: int, ef: Any, filt: Any,
                ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        ef = self._check_ef(ef, k)
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
                return self._brute_force(q, k, np.flatnonzero(blocked == 0), out_d)
            use_blocked = True
        if nq and self._meta[0] >= 0 and len(self._id_to_slot) > 0:
            self._scratch_top(ef)
            _k.search_batch(self._vectors, self._links0, self._upper_links, self._upper_start,
                            self._meta, q, k, ef, blocked, use_blocked, self._visited,
                            self._tag, self._cd, self._ci, self._td, self._ti,
                            self._metric_code, self._labels, out_ids, out_d)
        return out_ids, out_d

    def _allowed_slots(self, filt: Any) -> npt.NDArray[np.bool_]:
        arr = np.asarray(filt)
        labels = self._labels[: self._num_slots]
        if arr.dtype == np.bool_:
            if arr.ndim != 1:
                raise ValueError(f"filter mask must be 1-D, got shape {arr.shape}")
            inside = (labels >= 0) & (labels < arr.shape[0])
            allowed = np.zeros(labels.shape[0], dtype=bool)
            allowed[inside] = arr[labels[inside]]
            return allowed
        if arr.size == 0:
            return np.zeros(labels.shape[0], dtype=bool)
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise TypeError("filter must be a 1-D boolean mask indexed by id or a 1-D array "
                            f"of ids, got dtype {arr.dtype} shape {arr.shape}")
        return np.isin(labels, arr)

    def _brute_force(self, q: npt.NDArray[np.float32], k: int, slots: npt.NDArray[np.intp],
                     out_d: npt.NDArray[np.float32],
                     ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        nq = q.shape[0]
        ids = np.full((nq, k), -1, dtype=np.int64)
        if slots.size == 0 or nq == 0:
            return ids, out_d
        v = self._vectors[slots]
        if self._metric_code == 0:
            d = ((q[:, None, :] - v[None, :, :]) ** 2).sum(-1, dtype=np.float32)
        else:
            d = (1.0 - q @ v.T).astype(np.float32)
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        kk = order.shape[1]
        ids[:, :kk] = self._labels[slots[order]]
        out_d[:, :kk] = np.take_along_axis(d, order, axis=1)
        return ids, out_d

    # ------------------------------------------------------------- id operations
    def _slot_of(self, vec_id: Any) -> int:
        if not _is_int(vec_id):
            raise TypeError(f"vec_id must be an int, got {vec_id!r}")
        try:
            return self._id_to_slot[int(vec_id)]
        except KeyError:
            raise KeyError(f"vec_id {vec_id} is not in the index") from None

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
        return _is_int(vec_id) and int(vec_id) in self._id_to_slot  # type: ignore[call-overload]

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
        if not _is_int(value) or value < 1:
            raise ValueError(f"ef_search must be an int >= 1, got {value!r}")
        self._ef_search = int(value)

    # ------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a folder: one ``.npy`` per array plus ``header.json`` with sha256 sums. O(n * dim).

        No pickle; ``load(path, mmap=True)`` maps the arrays instead of reading them.
        """
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        n = self._num_slots
        arrays = {
            "vectors": self._vectors[:n], "links0": self._links0[:n],
            "levels": self._levels[:n], "upper_start": self._upper_start[:n],
            "upper_links": self._upper_links[: self._upper_rows],
            "deleted": self._deleted[:n], "labels": self._labels[:n],
            "free": np.asarray(self._free, dtype=np.int64),
        }
        sums = {}
        for name, arr in arrays.items():
            file = folder / f"{name}.npy"
            np.save(file, np.ascontiguousarray(arr), allow_pickle=False)
            sums[name] = hashlib.sha256(file.read_bytes()).hexdigest()
        state = self._rng.bit_generator.state
        header = {
            "format": _FORMAT, "version": _VERSION,
            "params": {"dim": self._dim, "M": self._M, "ef_construction": self._ef_construction,
                       "ef_search": self._ef_search, "ml": self._ml, "seed": self._seed,
                       "metric": self._metric},
            "meta": [int(v) for v in self._meta], "num_slots": n,
            "upper_rows": self._upper_rows, "rng_state": state, "sha256": sums,
        }
        (folder / "header.json").write_text(json.dumps(header, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str], mmap: bool = False) -> HNSW:
        """Read an index written by ``save``; checks the format, version and every checksum.

        Raises ``FileNotFoundError`` if ``path`` is missing, ``CorruptFileError`` if any
        part is truncated, altered or inconsistent. O(n * dim).
        """
        folder = Path(path)
        if not (folder / "header.json").exists():
            raise FileNotFoundError(f"no HNSW index at {str(folder)!r} (header.json missing)")
        try:
            header = json.loads((folder / "header.json").read_text(encoding="utf-8"))
            if header.get("format") != _FORMAT:
                raise CorruptFileError(f"{folder}: not an llmds HNSW index")
            if header.get("version") != _VERSION:
                raise CorruptFileError(f"{folder}: unsupported version {header.get('version')}")
            p = header["params"]
            self = cls(p["dim"], M=p["M"], ef_construction=p["ef_construction"],
                       ef_search=p["ef_search"], ml=p["ml"], seed=p["seed"],
                       metric=p["metric"])
            arrays = {}
            for name in _ARRAYS:
                file = folder / f"{name}.npy"
                if hashlib.sha256(file.read_bytes()).hexdigest() != header["sha256"][name]:
                    raise CorruptFileError(f"{file}: checksum mismatch")
                arrays[name] = np.load(file, mmap_mode="c" if mmap else None,
                                       allow_pickle=False)
            self._restore(header, arrays)
        except CorruptFileError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise CorruptFileError(f"{folder}: corrupt HNSW index ({exc})") from None
        return self

    def _restore(self, header: dict[str, Any], a: dict[str, np.ndarray]) -> None:
        n, rows, m = int(header["num_slots"]), int(header["upper_rows"]), self._M
        expect = {
            "vectors": ((n, self._dim), np.float32), "links0": ((n, 2 * m + 1), np.int32),
            "levels": ((n,), np.int32), "upper_start": ((n,), np.int32),
            "upper_links": ((rows, m + 1), np.int32), "deleted": ((n,), np.uint8),
            "labels": ((n,), np.int64),
        }
        for name, (shape, dtype) in expect.items():
            if a[name].shape != shape or a[name].dtype != dtype:
                raise CorruptFileError(f"{name}.npy has shape {a[name].shape} dtype "
                                       f"{a[name].dtype}, expected {shape} {np.dtype(dtype)}")
        counts0 = a["links0"][:, 0]
        if n and (counts0.min() < 0 or counts0.max() > 2 * m or a["links0"].min() < 0
                  or a["links0"][:, 1:].max() >= n or a["levels"].min() < 0):
            raise CorruptFileError("links0.npy or levels.npy out of range")
        if rows and (a["upper_links"].min() < 0 or a["upper_links"][:, 1:].max() >= n
                     or a["upper_links"][:, 0].max() > m):
            raise CorruptFileError("upper_links.npy out of range")
        if n and (a["upper_start"] + a["levels"] > rows).any():
            raise CorruptFileError("upper_start.npy out of range")
        meta = header["meta"]
        if not (-1 <= meta[0] < n) or (n > 0) != (meta[0] >= 0):
            raise CorruptFileError(f"entry point {meta[0]} out of range")
        free = [int(s) for s in a["free"]]
        live = np.flatnonzero(a["deleted"] == 0)
        if sorted(free) != np.flatnonzero(a["deleted"] != 0).tolist():
            raise CorruptFileError("free.npy does not match deleted.npy")
        self._vectors, self._links0 = a["vectors"], a["links0"]
        self._levels, self._upper_start = a["levels"], a["upper_start"]
        self._deleted, self._labels = a["deleted"], a["labels"]
        self._upper_links, self._upper_rows = a["upper_links"], rows
        self._num_slots = n
        self._visited = np.zeros(n, dtype=np.uint16)
        self._cd = np.empty(n, dtype=np.float32)
        self._ci = np.empty(n, dtype=np.int32)
        self._free = free
        self._meta = np.array(meta, dtype=np.int64)
        self._id_to_slot = {int(self._labels[s]): int(s) for s in live}
        if len(self._id_to_slot) != live.size:
            raise CorruptFileError("labels.npy has duplicate live ids")
        self._rng.bit_generator.state = header["rng_state"]

    # -------------------------------------------------------------- invariants
    def _check(self) -> None:
        """Assert the class invariants. O(n * M); tests only."""
        n, m = self._num_slots, self._M
        assert len(self._id_to_slot) + len(self._free) == n
        for vec_id, s in self._id_to_slot.items():
            assert 0 <= s < n and self._labels[s] == vec_id and self._deleted[s] == 0
        assert sorted(self._free) == np.flatnonzero(self._deleted[:n]).tolist()
        if n == 0:
            assert self._meta[0] == -1
            return
        levels = self._levels[:n]
        assert (levels >= 0).all()
        assert levels[self._meta[0]] == self._meta[1] == levels.max()
        for s in range(n):
            for lev in range(int(levels[s]) + 1):
                if lev == 0:
                    row, cap = self._links0[s], 2 * m
                else:
                    row, cap = self._upper_links[self._upper_start[s] + lev - 1], m
                c = int(row[0])
                assert 0 <= c <= cap, (s, lev, c)
                nbs = row[1 : 1 + c]
                assert len(set(nbs.tolist())) == c and s not in nbs
                assert ((nbs >= 0) & (nbs < n)).all() and (levels[nbs] >= lev).all()
