"""Where :class:`~llmds.inverted_index.InvertedIndex` keeps its postings.

Two stores, both over internal doc ids (dense, in insertion order):

* :class:`WriteBuffer`: the forward index of the newest, unsealed documents
  ``base .. base + ndocs - 1`` (per document: its term ids and tfs). Appending is
  O(|doc|); a search scans all of it, so the owner seals it into a segment once it
  holds ``seal_postings`` postings.
* :class:`SegmentStore`: immutable, varint-compressed segments (see
  :mod:`llmds._kernels.bm25` for the byte layout) in one ``arena`` with one term
  directory ``dir``, plus ``table``, the ``(m, 4)`` copy of the segment rows the
  kernels read. The merge policy is a binary counter: after a seal the last two
  segments are merged while the older is at most ``merge_factor`` times larger, so
  there are O(log n) segments and each posting is rewritten O(log n) times. Merges
  purge deleted documents; merged-away bytes are garbage until :meth:`compact`
  copies the live segments into fresh arrays (automatic when garbage exceeds half).

Memory: about 1.5 bytes per sealed posting plus 4 bytes per (segment, vocabulary
term) of directory; the buffer costs 8 bytes per posting.

Neither class locks: the owning index calls every mutating method under its write
lock, and readers only read ``arena[:arena_used]`` / ``dir[:dir_used]`` regions,
which are never written again (appends go past them; :meth:`compact` and growth
build new arrays).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from llmds._kernels import bm25 as _k

__all__ = ["SEGMENT_LIMIT", "Segment", "SegmentStore", "WriteBuffer", "grown"]

SEGMENT_LIMIT = 2**32 - 1  # directory offsets are uint32


def grown(arr: np.ndarray, need: int, zero: bool = True) -> np.ndarray:
    """``arr`` if it has ``need`` entries, else a copy with room for ``max(need, 2 * len)``.

    The new tail is zero (or uninitialised with ``zero=False``). O(len) when it grows,
    amortised O(1) per appended entry. The old array is left as it was.
    """
    if need <= arr.shape[0]:
        return arr
    cap = max(need, 2 * arr.shape[0], 16)
    out = np.zeros(cap, dtype=arr.dtype) if zero else np.empty(cap, dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    return out


@dataclass(slots=True)
class Segment:
    """One immutable run of postings for internal docs ``[doc_base, doc_end)``."""

    data_start: int  # its bytes are arena[data_start : data_start + nbytes]
    dir_start: int  # its directory is dir[dir_start : dir_start + nterms + 1]
    nterms: int  # vocabulary size when it was written (later terms have no postings)
    doc_base: int
    doc_end: int
    nbytes: int
    num_postings: int  # tombstoned ones included until a merge purges them

    def row(self) -> npt.NDArray[np.int64]:
        """The kernels' view: ``[data_start, dir_start, nterms, doc_base]``."""
        return np.array([self.data_start, self.dir_start, self.nterms, self.doc_base],
                        dtype=np.int64)

    def as_list(self) -> list[int]:
        return [self.data_start, self.dir_start, self.nterms, self.doc_base, self.doc_end,
                self.nbytes, self.num_postings]


class WriteBuffer:
    """Forward index of the unsealed documents ``base .. base + ndocs - 1``.

    Document ``base + i`` owns ``terms[ptr[i]:ptr[i + 1]]`` (unique term ids) and the
    matching ``tfs``. Invariant: ``ptr[ndocs] == npost``. Thread safety: not thread-safe;
    its owner serialises writers with readers.
    """

    __slots__ = ("base", "ndocs", "npost", "ptr", "terms", "tfs")

    def __init__(self, base: int = 0) -> None:
        self.base = base
        self.ndocs = 0
        self.npost = 0
        self.ptr = np.zeros(1024, dtype=np.int64)
        self.terms = np.zeros(4096, dtype=np.int32)
        self.tfs = np.zeros(4096, dtype=np.int32)

    def append(self, tids: npt.NDArray[np.int64], tfs: list[int]) -> None:
        """Add the next document (its unique term ids and their tfs). Amortised O(|doc|)."""
        lo, n = self.npost, tids.shape[0]
        self.terms = grown(self.terms, lo + n, zero=False)
        self.tfs = grown(self.tfs, lo + n, zero=False)
        self.ptr = grown(self.ptr, self.ndocs + 2, zero=False)
        self.terms[lo : lo + n] = tids
        self.tfs[lo : lo + n] = tfs
        self.ptr[self.ndocs] = lo
        self.ptr[self.ndocs + 1] = lo + n
        self.ndocs += 1
        self.npost = lo + n

    def doc(self, internal: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Term ids and tfs of buffered internal doc ``internal``. O(|doc|)."""
        i = internal - self.base
        lo, hi = self.ptr[i], self.ptr[i + 1]
        return self.terms[lo:hi].astype(np.int64), self.tfs[lo:hi].astype(np.int64)

    def seal(self, live: np.ndarray, num_terms: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The buffer's live documents inverted into one segment's bytes and directory.

        Returns ``(data, term_ptr, num_postings)`` and leaves the buffer as it was.
        O(buffer postings + num_terms).
        """
        data, ptr, npost = _k.seal_buffer(self.ptr, self.terms, self.tfs, self.ndocs,
                                          self.base, live, num_terms)
        return data, ptr, int(npost)

    def restart(self, base: int) -> None:
        """Empty the buffer; the next document appended is internal id ``base``. O(1)."""
        self.base = base
        self.ndocs = 0
        self.npost = 0

    def export(self) -> dict[str, np.ndarray | int]:
        """Copies of the used parts (for pickling). O(buffer postings)."""
        return {"base": self.base, "ptr": self.ptr[: self.ndocs + 1].copy(),
                "terms": self.terms[: self.npost].copy(), "tfs": self.tfs[: self.npost].copy()}

    @classmethod
    def from_export(cls, parts: dict[str, np.ndarray | int]) -> WriteBuffer:
        buf = cls(int(parts["base"]))
        ptr = np.asarray(parts["ptr"], dtype=np.int64)
        buf.ndocs = ptr.shape[0] - 1
        buf.npost = int(ptr[-1])
        buf.ptr = grown(ptr.copy(), buf.ndocs + 2)
        buf.terms = grown(np.array(parts["terms"], dtype=np.int32), 16)
        buf.tfs = grown(np.array(parts["tfs"], dtype=np.int32), 16)
        return buf

    def add_df(self, live: np.ndarray, df: np.ndarray) -> None:
        """For ``_check``: assert each document's terms are unique; count live ones in ``df``."""
        assert self.ptr[self.ndocs] == self.npost or self.ndocs == 0
        for i in range(self.ndocs):
            t = self.terms[self.ptr[i] : self.ptr[i + 1]]
            assert np.unique(t).shape[0] == t.shape[0]
            if live[self.base + i]:
                df[t] += 1


class SegmentStore:
    """The sealed segments: bytes in ``arena``, term directories in ``dir``, rows in ``table``.

    Invariants (asserted by :meth:`add_df`): segments cover disjoint, increasing
    internal-id ranges; each lies inside ``arena[:arena_used]`` and
    ``dir[:dir_used]``; each directory slice runs from 0 to its ``nbytes``; each
    posting list is strictly increasing; ``table`` equals the segments' rows.
    Thread safety: not thread-safe; its owner serialises writers with readers.
    """

    __slots__ = ("arena", "arena_garbage", "arena_used", "dir", "dir_garbage", "dir_used",
                 "segments", "table")

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self.table = np.zeros((0, 4), dtype=np.int64)
        self.arena = np.zeros(0, dtype=np.uint8)
        self.arena_used = 0
        self.arena_garbage = 0
        self.dir = np.zeros(0, dtype=np.uint32)
        self.dir_used = 0
        self.dir_garbage = 0

    @classmethod
    def from_arrays(cls, arena: np.ndarray, dirs: np.ndarray, rows: np.ndarray) -> SegmentStore:
        """A store over validated file arrays (``rows``: the ``(m, 7)`` segment table)."""
        store = cls()
        store.arena, store.arena_used = arena, int(arena.shape[0])
        store.dir, store.dir_used = dirs, int(dirs.shape[0])
        store.segments = [Segment(*r) for r in rows.tolist()]
        store._refresh_table()
        return store

    def _refresh_table(self) -> None:
        # The kernels read segment offsets from ``table``, not from the Segment
        # objects: a stale copy points past a compacted arena (the SIGSEGV of issue 12).
        rows = [s.as_list()[:4] for s in self.segments]
        self.table = np.array(rows, dtype=np.int64).reshape(-1, 4)

    # ------------------------------------------------------------------ writing
    def _append(self, data: np.ndarray, ptr: np.ndarray) -> tuple[int, int]:
        a, d = self.arena_used, self.dir_used
        self.arena = grown(self.arena, a + data.shape[0], zero=False)
        self.arena[a : a + data.shape[0]] = data
        self.arena_used = a + data.shape[0]
        self.dir = grown(self.dir, d + ptr.shape[0], zero=False)
        self.dir[d : d + ptr.shape[0]] = ptr
        self.dir_used = d + ptr.shape[0]
        return a, d

    def add(self, data: np.ndarray, ptr: np.ndarray, num_postings: int, doc_base: int,
            doc_end: int) -> None:
        """Append a sealed segment (nothing when it has no postings). O(its bytes)."""
        if num_postings:
            a, d = self._append(data, ptr)
            self.segments.append(Segment(a, d, ptr.shape[0] - 1, doc_base, doc_end,
                                         int(data.shape[0]), num_postings))
        self._refresh_table()

    def merge_by_policy(self, merge_factor: float, live: np.ndarray, num_terms: int) -> None:
        """Merge the last two segments while the older is <= ``merge_factor`` x the newer."""
        while (len(self.segments) >= 2  # not bound to a local: a merge may compact
               and self.segments[-2].nbytes <= merge_factor * self.segments[-1].nbytes):
            if not self._merge(len(self.segments) - 2, len(self.segments), live, num_terms):
                break
        self._refresh_table()

    def merge_all(self, live: np.ndarray, num_terms: int) -> None:
        """Merge every segment into one if there are several or any holds a tombstone."""
        segs = self.segments
        if segs and (len(segs) > 1 or any(live[s.doc_base : s.doc_end].min() == 0
                                          for s in segs)):
            self._merge(0, len(segs), live, num_terms)
            self._refresh_table()

    def _merge(self, i: int, j: int, live: np.ndarray, num_terms: int) -> bool:
        segs = self.segments[i:j]
        if sum(s.nbytes for s in segs) + 20 * num_terms * len(segs) > SEGMENT_LIMIT:
            return False  # the merged directory offsets would overflow uint32
        rows = np.array([s.as_list()[:4] for s in segs], dtype=np.int64)
        data, ptr, npost = _k.merge_segments(self.arena, self.dir, rows, live, num_terms)
        self.arena_garbage += sum(s.nbytes for s in segs)
        self.dir_garbage += sum(s.nterms + 1 for s in segs)
        merged = []
        if npost:
            a, d = self._append(data, ptr)
            merged = [Segment(a, d, num_terms, segs[0].doc_base, segs[-1].doc_end,
                              int(data.shape[0]), int(npost))]
        self.segments[i:j] = merged
        if self.arena_garbage > self.arena_used // 2 or self.dir_garbage > self.dir_used // 2:
            self.compact()
        return True

    def export(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(arena, dir, rows)`` holding only the live segments, as new arrays.

        ``rows`` is the ``(m, 7)`` table of the file format, offsets into the new
        arrays. The store is unchanged. O(segment bytes + directory entries).
        """
        arena = np.empty(sum(s.nbytes for s in self.segments), dtype=np.uint8)
        dirs = np.empty(sum(s.nterms + 1 for s in self.segments), dtype=np.uint32)
        rows = []
        pos = dpos = 0
        for s in self.segments:
            arena[pos : pos + s.nbytes] = self.arena[s.data_start : s.data_start + s.nbytes]
            dirs[dpos : dpos + s.nterms + 1] = self.dir[s.dir_start : s.dir_start + s.nterms + 1]
            rows.append([pos, dpos, *s.as_list()[2:]])
            pos += s.nbytes
            dpos += s.nterms + 1
        return arena, dirs, np.array(rows, dtype=np.int64).reshape(-1, 7)

    def compact(self) -> None:
        """Copy the live segments into fresh arrays (drops merged-away bytes). O(bytes)."""
        arena, dirs, rows = self.export()
        self.arena, self.arena_used, self.arena_garbage = arena, arena.shape[0], 0
        self.dir, self.dir_used, self.dir_garbage = dirs, dirs.shape[0], 0
        self.segments = [Segment(*r) for r in rows.tolist()]
        self._refresh_table()

    # ------------------------------------------------------------------ reading
    def segment_of(self, internal: int) -> Segment | None:
        """The segment holding internal doc ``internal``, if any. O(log segments)."""
        segs = self.segments
        i = bisect.bisect_right([s.doc_base for s in segs], internal) - 1
        if i >= 0 and internal < segs[i].doc_end:
            return segs[i]
        return None

    def doc(self, internal: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Term ids and tfs of sealed internal doc ``internal``. O(postings of its segment)."""
        seg = self.segment_of(internal)
        if seg is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return _k.doc_postings_in_segment(self.arena, self.dir, seg.row(), internal)

    def term_frequency(self, tid: int, internal: int) -> int:
        """tf of term ``tid`` in sealed internal doc ``internal``. O(df)."""
        seg = self.segment_of(internal)
        if seg is None:
            return 0
        return int(_k.term_frequency_in_segment(self.arena, self.dir, seg.row(), tid,
                                                internal))

    def sizes(self) -> tuple[int, int, int]:
        """``(postings, bytes, directory bytes)`` of the segments. O(segments)."""
        return (sum(s.num_postings for s in self.segments),
                sum(s.nbytes for s in self.segments),
                4 * sum(s.nterms + 1 for s in self.segments))

    def add_df(self, live: np.ndarray, df: np.ndarray, buf_base: int) -> None:
        """For ``_check``: assert the invariants; count live postings per term in ``df``."""
        assert self.table.tolist() == [s.as_list()[:4] for s in self.segments]
        prev_end = 0
        for s in self.segments:
            assert s.data_start + s.nbytes <= self.arena_used <= self.arena.shape[0]
            assert s.dir_start + s.nterms + 1 <= self.dir_used <= self.dir.shape[0]
            assert prev_end <= s.doc_base < s.doc_end <= buf_base
            prev_end = s.doc_end
            d = self.dir[s.dir_start : s.dir_start + s.nterms + 1].astype(np.int64)
            assert d[0] == 0 and d[-1] == s.nbytes and np.all(np.diff(d) >= 0)
            terms, docs, _tfs = _k.decode_segment(self.arena, self.dir, s.row())
            assert terms.shape[0] == s.num_postings
            same = terms[1:] == terms[:-1]
            assert np.all(docs[1:][same] > docs[:-1][same])
            assert np.all((docs >= s.doc_base) & (docs < s.doc_end))
            np.add.at(df, terms[live[docs] != 0], 1)
