"""InvertedIndex: BM25 over varint-compressed, segmented postings with incremental updates."""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._index_file import SEGMENT_LIMIT, check_settings, read_index, write_index
from llmds._kernels import bm25 as _k
from llmds._validate import (
    INT64_MAX,
    INT64_MIN,
    check_bool,
    check_int,
    check_text,
    check_top_k,
    is_int,
    show,
)
from llmds.analysis import Analyzer
from llmds.errors import CorruptFileError

__all__ = ["InvertedIndex"]


class _Segment:
    """An immutable run of postings for internal docs ``[doc_base, doc_end)``."""

    __slots__ = ("data_start", "dir_start", "doc_base", "doc_end", "nbytes", "nterms",
                 "num_postings")

    def __init__(self, data_start: int, dir_start: int, nterms: int, doc_base: int,
                 doc_end: int, nbytes: int, num_postings: int) -> None:
        self.data_start = data_start
        self.dir_start = dir_start
        self.nterms = nterms
        self.doc_base = doc_base
        self.doc_end = doc_end
        self.nbytes = nbytes
        self.num_postings = num_postings


class InvertedIndex:
    """BM25 full-text index over compressed, immutable segments (Robertson et al. 1994).

    Documents get dense internal ids in insertion order; the user's int ``doc_id``
    maps to them. Postings (doc-id gaps + term frequencies, varint-encoded, see
    :mod:`llmds.postings`) live in immutable segments; new documents go to an
    in-memory forward buffer that is *sealed* into a segment once it holds
    ``seal_postings`` postings, and the last segments are *merged* whenever the one
    before them is at most ``merge_factor`` times larger (a binary-counter policy:
    O(log n) segments, each posting rewritten O(log n) times). Merges purge
    deleted documents. Search scores the buffer and every segment, so results are
    exact at every moment.

    Scoring (Lucene's BM25, the default of bm25s; the constant ``k1 + 1`` factor of
    the textbook formula is dropped, which does not change rankings)::

        score(q, d) = sum over query terms t (with repetition) of
                      idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
        idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))

    ``N``, ``df`` and ``avgdl`` count live documents only (deleted ones drop out at
    once). ``k1`` is in [0, 1000] (larger values would let a contribution underflow
    to 0, which the kernels read as "untouched"), ``b`` in [0, 1]. Defaults
    ``k1=1.5, b=0.75`` are bm25s's, with which the reference
    figures in the datasets README were measured (Lucene itself defaults to 0.9/0.4).
    ``search`` returns exactly the ``top_k`` best scores, ties by smaller doc id,
    only documents that contain a query term.

    Invariants (asserted by ``_check``): ``df[t]`` is the number of live documents
    containing ``t``; ``N`` and the total length sum over live documents; segments
    cover disjoint, increasing internal-id ranges below the buffer's; each posting
    list is strictly increasing; the score accumulator is all zero between calls.

    Complexity: ``add_document`` O(|doc|) amortised (+ seal/merge work, O(log n) per
    posting amortised); ``search`` O(sum of the query terms' posting lists + buffer
    postings + hits * log k); ``delete_document`` O(|doc|) in the buffer, O(postings
    of its segment) once sealed; ``get_term_frequency`` O(df). Memory: about 1.5
    bytes per posting, plus 4 bytes per (segment, vocabulary term) of directory and
    ~25 bytes per document; the buffer costs 8 bytes per posting.

    Files (:meth:`save` / :meth:`load`) are untrusted: ``load`` checks every
    structural fact the kernels rely on before any search (see
    :mod:`llmds._index_file`) and takes the analyzer only by name and options from
    fixed sets, so a hostile file gives CorruptFileError, never a crash, a hang or
    a regex of its choosing.

    Not thread-safe: searches share one score accumulator (the kernels release the
    GIL, so use one index per thread, or a lock).

    >>> index = InvertedIndex()
    >>> index.add_document(1, "The quick brown fox")
    >>> index.add_document(2, "Foxes and dogs are running")
    >>> [doc_id for doc_id, _ in index.search("fox")]
    [1, 2]
    >>> index.get_term_frequency("foxes", 2), index.get_document_frequency("Fox")
    (1, 2)
    """

    __slots__ = (
        "_analyzer", "_arena", "_arena_garbage", "_arena_used", "_b", "_buf_base",
        "_buf_ndocs", "_buf_npost", "_buf_ptr", "_buf_terms", "_buf_tfs", "_df", "_dir",
        "_dir_garbage", "_dir_used", "_doc_len", "_dummy_mask", "_ext2int", "_ext_ids",
        "_ints", "_k1", "_live", "_merge_factor", "_num_ids", "_num_live", "_params",
        "_qmark", "_scores", "_seal_postings", "_segments", "_segs_arr", "_terms",
        "_token_cache", "_total_len", "_touched", "_vocab",
    )

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        *,
        analyzer: Analyzer | Callable[[str], Sequence[str]] | None = None,
        seal_postings: int = 16_384,
        merge_factor: float = 2.0,
    ) -> None:
        k1, b, seal_postings, merge_factor = check_settings(k1, b, seal_postings, merge_factor)
        if analyzer is not None and not callable(analyzer):
            raise TypeError(f"analyzer must be callable or None, got {show(analyzer)}")
        self._k1 = k1
        self._b = b
        self._analyzer: Callable[[str], Sequence[str]] = (
            analyzer if analyzer is not None else Analyzer())
        # Every search scans the whole buffer, so it stays small: with 65,536 the
        # SciFact "90% bulk + 10% one at a time" index answered 6.0k queries/CPU-s
        # (50k postings unsealed) against 12.9k for a sealed one.
        self._seal_postings = seal_postings
        self._merge_factor = merge_factor
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []
        self._token_cache: dict[str, int] = {}
        self._df = np.zeros(1024, dtype=np.int32)
        self._qmark = np.zeros(1024, dtype=np.int32)
        self._ext2int: dict[int, int] = {}
        self._num_ids = 0
        self._num_live = 0
        self._total_len = 0
        self._live = np.zeros(1024, dtype=np.uint8)
        self._doc_len = np.zeros(1024, dtype=np.int32)
        self._ext_ids = np.zeros(1024, dtype=np.int64)
        self._scores = np.zeros(1024, dtype=np.float64)
        self._touched = np.zeros(1025, dtype=np.int32)
        self._segments: list[_Segment] = []
        self._segs_arr = np.zeros((0, 4), dtype=np.int64)
        self._arena = np.zeros(0, dtype=np.uint8)
        self._arena_used = 0
        self._arena_garbage = 0
        self._dir = np.zeros(0, dtype=np.uint32)
        self._dir_used = 0
        self._dir_garbage = 0
        self._buf_base = 0
        self._buf_ndocs = 0
        self._buf_npost = 0
        self._buf_ptr = np.zeros(1024, dtype=np.int64)
        self._buf_terms = np.zeros(4096, dtype=np.int32)
        self._buf_tfs = np.zeros(4096, dtype=np.int32)
        self._dummy_mask = np.zeros(1, dtype=np.uint8)
        self._params = np.zeros(4, dtype=np.float64)
        self._ints = np.zeros(4, dtype=np.int64)
        self._refresh_scalars()

    # ------------------------------------------------------------------ properties
    @property
    def k1(self) -> float:
        return self._k1

    @property
    def b(self) -> float:
        return self._b

    @property
    def analyzer(self) -> Callable[[str], Sequence[str]]:
        return self._analyzer

    def __len__(self) -> int:
        """Number of live documents. O(1)."""
        return self._num_live

    def __contains__(self, doc_id: object) -> bool:
        """True if ``doc_id`` is indexed (False for anything that is not an int). O(1)."""
        return is_int(doc_id) and doc_id in self._ext2int

    @property
    def num_segments(self) -> int:
        return len(self._segments)

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _check_doc_id(doc_id: object, name: str = "doc_id") -> int:
        return check_int(doc_id, name, minimum=INT64_MIN, maximum=INT64_MAX)

    @staticmethod
    def _check_path(path: object) -> str | os.PathLike[str]:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"path must be a str or os.PathLike, got {show(path)}")
        return path

    @staticmethod
    def _check_sequence(values: object, name: str, what: str, *, ordered: bool = True) -> None:
        """Reject a str, a non-iterable and (if ``ordered``) a dict or set."""
        if isinstance(values, str | bytes) or not isinstance(values, Iterable) or (
                ordered and isinstance(values, Mapping | Set)):
            kind = "sequence" if ordered else "iterable"
            raise TypeError(f"{name} must be a {kind} of {what}, got {show(values)}")

    def _analyze(self, text: str) -> list[str]:
        """Terms of ``text``; a custom analyzer's output is checked (list of UTF-8 str)."""
        out = self._analyzer(text)
        if type(self._analyzer) is Analyzer:
            return out  # type: ignore[return-value]
        self._check_sequence(out, "the analyzer's output", "str")
        terms = list(out)
        try:
            joined = "".join(terms)
        except TypeError:
            bad = next(t for t in terms if not isinstance(t, str))
            raise TypeError(f"the analyzer must return a sequence of str, got an item "
                            f"{show(bad)}") from None
        check_text(joined, "the analyzer's output")
        return terms

    # ------------------------------------------------------------------ growth helpers
    @staticmethod
    def _grown(arr: np.ndarray, need: int, zero: bool = True) -> np.ndarray:
        if need <= arr.shape[0]:
            return arr
        cap = max(need, 2 * arr.shape[0], 16)
        out = np.zeros(cap, dtype=arr.dtype) if zero else np.empty(cap, dtype=arr.dtype)
        out[: arr.shape[0]] = arr
        return out

    def _ensure_docs(self, need: int) -> None:
        if need <= self._live.shape[0]:
            return
        self._live = self._grown(self._live, need)
        self._doc_len = self._grown(self._doc_len, need)
        self._ext_ids = self._grown(self._ext_ids, need)
        self._scores = np.zeros(self._live.shape[0], dtype=np.float64)
        # one spare slot: the kernel's branch-free bookkeeping may write touched[num_ids]
        self._touched = np.zeros(self._live.shape[0] + 1, dtype=np.int32)

    def _ensure_terms(self, need: int) -> None:
        if need > self._df.shape[0]:
            self._df = self._grown(self._df, need)
            self._qmark = np.zeros(self._df.shape[0], dtype=np.int32)

    def _refresh_scalars(self) -> None:
        n = self._num_live
        self._params[0] = self._k1
        self._params[1] = self._b
        self._params[2] = self._total_len / n if n and self._total_len else 1.0
        self._params[3] = float(n)
        self._ints[0] = self._buf_base
        self._ints[1] = self._buf_ndocs
        self._ints[2] = 0
        # no deleted ids: the kernel may skip the per-posting tombstone check
        self._ints[3] = int(self._num_ids != self._num_live)

    # ------------------------------------------------------------------ adding
    def _term_counts(self, terms: list[str]) -> tuple[list[str], list[int]]:
        counts: dict[str, int] = {}
        for t in terms:
            counts[t] = counts.get(t, 0) + 1
        return list(counts), list(counts.values())

    def _append(self, doc_id: int, terms: list[str], tfs: list[int], length: int) -> None:
        """Apply one validated, analysed document (no checks, cannot fail)."""
        vocab = self._vocab
        tids = []
        for t in terms:
            tid = vocab.get(t)
            if tid is None:
                tid = len(self._terms)
                vocab[t] = tid
                self._terms.append(t)
            tids.append(tid)
        self._ensure_terms(len(self._terms))
        internal = self._num_ids
        self._ensure_docs(internal + 1)
        n = len(tids)
        lo = self._buf_npost
        self._buf_terms = self._grown(self._buf_terms, lo + n, zero=False)
        self._buf_tfs = self._grown(self._buf_tfs, lo + n, zero=False)
        self._buf_ptr = self._grown(self._buf_ptr, self._buf_ndocs + 2, zero=False)
        if n:
            tid_arr = np.array(tids, dtype=np.int64)
            self._buf_terms[lo : lo + n] = tid_arr
            self._buf_tfs[lo : lo + n] = tfs
            self._df[tid_arr] += 1
        self._buf_ptr[self._buf_ndocs] = lo
        self._buf_ptr[self._buf_ndocs + 1] = lo + n
        self._buf_ndocs += 1
        self._buf_npost = lo + n
        self._live[internal] = 1
        self._doc_len[internal] = length
        self._ext_ids[internal] = doc_id
        self._ext2int[doc_id] = internal
        self._num_ids = internal + 1
        self._num_live += 1
        self._total_len += length

    def add_document(self, doc_id: int, text: str, *, update: bool = False) -> None:
        """Index ``text`` under ``doc_id``. O(|text|) amortised.

        A ``doc_id`` already present raises ``ValueError`` unless ``update=True``
        (then the old version is replaced, as :meth:`update_document`).
        """
        doc_id = self._check_doc_id(doc_id)
        text = check_text(text, "text", nonempty=True)
        update = check_bool(update, "update")
        if doc_id in self._ext2int and not update:
            raise ValueError(
                f"doc_id {doc_id} is already indexed; pass update=True or call update_document")
        terms = self._analyze(text)
        if len(terms) > 2**31 - 1:
            raise ValueError(f"text must have fewer than 2**31 terms, got {len(terms)}")
        uniq, tfs = self._term_counts(terms)
        if doc_id in self._ext2int:
            self._delete(doc_id)
        self._append(doc_id, uniq, tfs, len(terms))
        self._refresh_scalars()
        if self._buf_npost >= self._seal_postings:
            self.seal()

    def update_document(self, doc_id: int, text: str) -> None:
        """Replace the text of an indexed ``doc_id`` (delete + add). O(|text|) + delete.

        Raises KeyError if ``doc_id`` is not indexed.
        """
        doc_id = self._check_doc_id(doc_id)
        check_text(text, "text", nonempty=True)
        if doc_id not in self._ext2int:
            raise KeyError(f"doc_id {doc_id} is not indexed")
        self.add_document(doc_id, text, update=True)

    def add_documents(
        self, documents: Iterable[tuple[int, str]], *, update: bool = False
    ) -> int:
        """Bulk add ``(doc_id, text)`` pairs; all or nothing. Returns how many were added.

        Everything is validated and analysed before the index changes, so a bad pair
        (or a duplicate id, within the batch or against the index unless
        ``update=True``) raises and leaves the index as it was. The batch is sealed
        once at the end instead of every ``seal_postings``.
        """
        update = check_bool(update, "update")
        self._check_sequence(documents, "documents", "(doc_id, text) pairs")
        prepared = []
        seen: set[int] = set()
        for pos, item in enumerate(documents):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise TypeError(f"documents[{pos}] must be a (doc_id, text) pair, "
                                f"got {show(item)}")
            doc_id = self._check_doc_id(item[0], f"documents[{pos}] doc_id")
            text = check_text(item[1], f"documents[{pos}] text", nonempty=True)
            if doc_id in seen:
                raise ValueError(f"documents[{pos}] doc_id {doc_id} appears twice in documents")
            if doc_id in self._ext2int and not update:
                raise ValueError(f"documents[{pos}] doc_id {doc_id} is already indexed; pass "
                                 "update=True to replace it")
            seen.add(doc_id)
            terms = self._analyze(text)
            if len(terms) > 2**31 - 1:
                raise ValueError(f"documents[{pos}] text must have fewer than 2**31 terms")
            uniq, tfs = self._term_counts(terms)
            prepared.append((doc_id, uniq, tfs, len(terms)))
        for doc_id, uniq, tfs, length in prepared:
            if doc_id in self._ext2int:
                self._delete(doc_id)
            self._append(doc_id, uniq, tfs, length)
        self._refresh_scalars()
        if self._buf_npost >= self._seal_postings:
            self.seal()
        return len(prepared)

    # ------------------------------------------------------------------ deleting
    def _segment_of(self, internal: int) -> _Segment | None:
        segs = self._segments
        i = bisect.bisect_right([s.doc_base for s in segs], internal) - 1
        if i >= 0 and internal < segs[i].doc_end:
            return segs[i]
        return None

    def _seg_row(self, seg: _Segment) -> npt.NDArray[np.int64]:
        return np.array([seg.data_start, seg.dir_start, seg.nterms, seg.doc_base], dtype=np.int64)

    def _doc_postings(self, internal: int) -> tuple[np.ndarray, np.ndarray]:
        if internal >= self._buf_base:
            i = internal - self._buf_base
            lo, hi = self._buf_ptr[i], self._buf_ptr[i + 1]
            return (self._buf_terms[lo:hi].astype(np.int64), self._buf_tfs[lo:hi].astype(np.int64))
        seg = self._segment_of(internal)
        if seg is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return _k.doc_postings_in_segment(
            self._arena, self._dir, self._seg_row(seg), internal)

    def _delete(self, doc_id: int) -> None:
        internal = self._ext2int.pop(doc_id)
        terms, _ = self._doc_postings(internal)
        self._df[terms] -= 1
        self._live[internal] = 0
        self._num_live -= 1
        self._total_len -= int(self._doc_len[internal])

    def delete_document(self, doc_id: int) -> None:
        """Remove ``doc_id`` (a tombstone until the next merge). O(|doc|) in the buffer,
        O(postings of its segment) once sealed.

        Raises KeyError if ``doc_id`` is not indexed.
        """
        doc_id = self._check_doc_id(doc_id)
        if doc_id not in self._ext2int:
            raise KeyError(f"doc_id {doc_id} is not indexed")
        self._delete(doc_id)
        self._refresh_scalars()

    # ------------------------------------------------------------------ segments
    def _append_arena(self, data: np.ndarray) -> int:
        start = self._arena_used
        self._arena = self._grown(self._arena, start + data.shape[0], zero=False)
        self._arena[start : start + data.shape[0]] = data
        self._arena_used = start + data.shape[0]
        return start

    def _append_dir(self, ptr: np.ndarray) -> int:
        start = self._dir_used
        self._dir = self._grown(self._dir, start + ptr.shape[0], zero=False)
        self._dir[start : start + ptr.shape[0]] = ptr
        self._dir_used = start + ptr.shape[0]
        return start

    def _rebuild_segs_arr(self) -> None:
        rows = [[s.data_start, s.dir_start, s.nterms, s.doc_base] for s in self._segments]
        self._segs_arr = np.array(rows, dtype=np.int64).reshape(-1, 4)

    def seal(self) -> None:
        """Turn the in-memory buffer into an immutable segment, then merge by policy.

        O(buffer postings + vocabulary). A no-op when the buffer is empty.
        """
        if self._buf_ndocs == 0:
            return
        v = len(self._terms)
        data, ptr, npost = _k.seal_buffer(
            self._buf_ptr, self._buf_terms, self._buf_tfs, self._buf_ndocs, self._buf_base,
            self._live, v)
        base, end = self._buf_base, self._buf_base + self._buf_ndocs
        if npost:
            seg = _Segment(self._append_arena(data), self._append_dir(ptr), v, base, end,
                           int(data.shape[0]), int(npost))
            self._segments.append(seg)
        self._buf_base = end
        self._buf_ndocs = 0
        self._buf_npost = 0
        while (len(self._segments) >= 2 and self._segments[-2].nbytes
               <= self._merge_factor * self._segments[-1].nbytes):
            if not self._merge_range(len(self._segments) - 2, len(self._segments)):
                break
        self._rebuild_segs_arr()
        self._refresh_scalars()

    def merge(self) -> None:
        """Merge every segment into one, dropping deleted documents. O(index bytes).

        The buffer is not sealed (call :meth:`seal` first for a single segment).
        """
        if self._segments and (len(self._segments) > 1 or any(
                self._live[s.doc_base : s.doc_end].min() == 0 for s in self._segments)):
            self._merge_range(0, len(self._segments))
            self._rebuild_segs_arr()

    def _merge_range(self, i: int, j: int) -> bool:
        segs = self._segments[i:j]
        if sum(s.nbytes for s in segs) + 20 * len(self._terms) * len(segs) > SEGMENT_LIMIT:
            return False  # the merged directory offsets would overflow uint32
        rows = np.array([[s.data_start, s.dir_start, s.nterms, s.doc_base] for s in segs],
                        dtype=np.int64)
        v = len(self._terms)
        data, ptr, npost = _k.merge_segments(self._arena, self._dir, rows, self._live, v)
        self._arena_garbage += sum(s.nbytes for s in segs)
        self._dir_garbage += sum(s.nterms + 1 for s in segs)
        merged = []
        if npost:
            merged = [_Segment(self._append_arena(data), self._append_dir(ptr), v,
                               segs[0].doc_base, segs[-1].doc_end, int(data.shape[0]),
                               int(npost))]
        self._segments[i:j] = merged
        if (self._arena_garbage > self._arena_used // 2
                or self._dir_garbage > self._dir_used // 2):
            self._compact()
        return True

    def _compact(self) -> None:
        """Copy live segments into fresh arena/directory arrays (drops merged-away bytes)."""
        total = sum(s.nbytes for s in self._segments)
        arena = np.empty(max(total, 16), dtype=np.uint8)
        dirs = np.empty(max(sum(s.nterms + 1 for s in self._segments), 16), dtype=np.uint32)
        pos = dpos = 0
        for s in self._segments:
            arena[pos : pos + s.nbytes] = self._arena[s.data_start : s.data_start + s.nbytes]
            dirs[dpos : dpos + s.nterms + 1] = self._dir[s.dir_start : s.dir_start + s.nterms + 1]
            s.data_start, s.dir_start = pos, dpos
            pos += s.nbytes
            dpos += s.nterms + 1
        self._arena, self._arena_used, self._arena_garbage = arena, pos, 0
        self._dir, self._dir_used, self._dir_garbage = dirs, dpos, 0
        # The kernels read segment offsets from ``_segs_arr``, not from the _Segment
        # objects: a stale copy points past the new arena (the SIGSEGV of issue 12).
        self._rebuild_segs_arr()

    # ------------------------------------------------------------------ searching
    def _query_arrays(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """Unique known term ids of ``query`` and their counts, as two int64 arrays."""
        counts = self._query_counts(query)
        m = len(counts)
        # one allocation for both halves (views): ~1 us less per query than two fromiter
        both = np.array([*counts, *counts.values()], dtype=np.int64)
        return both[:m], both[m:]

    def _query_counts(self, query: str) -> dict[int, int]:
        """Unique known term ids of ``query`` (first-appearance order) -> their counts.

        With an :class:`Analyzer` the stop/stem step is per raw token, so raw token ->
        term id is cached (ids never change; stopwords map to -1; tokens not in the
        vocabulary are not cached since a later add may bring them in). SciFact:
        analysis 7 -> 3 us per query.
        """
        counts: dict[int, int] = {}
        analyzer = self._analyzer
        if type(analyzer) is Analyzer:  # a subclass may override __call__
            cache = self._token_cache
            for raw in analyzer.split(query):
                tid = cache.get(raw)
                if tid is None:
                    terms = analyzer.normalize([raw])
                    tid = self._vocab.get(terms[0], -1) if terms else -1
                    if tid >= 0 or not terms:
                        if len(cache) >= 1_000_000:
                            cache.clear()
                        cache[raw] = tid
                if tid >= 0:
                    counts[tid] = counts.get(tid, 0) + 1
        else:
            get = self._vocab.get
            for t in self._analyze(query):
                tid = get(t, -1)
                if tid >= 0:
                    counts[tid] = counts.get(tid, 0) + 1
        return counts

    def _mask(self, allowed_ids: Iterable[int] | None) -> tuple[np.ndarray, np.ndarray]:
        if allowed_ids is None:
            return self._dummy_mask, self._ints
        self._check_sequence(allowed_ids, "allowed_ids", "ints (or None)", ordered=False)
        mask = np.zeros(max(self._num_ids, 1), dtype=np.uint8)
        get = self._ext2int.get
        for i, doc_id in enumerate(allowed_ids):
            if not is_int(doc_id):
                raise TypeError(f"allowed_ids[{i}] must be an int, got {show(doc_id)}")
            internal = get(doc_id)
            if internal is not None:
                mask[internal] = 1
        ints = self._ints.copy()
        ints[2] = 1
        return mask, ints

    def search(
        self, query: str, top_k: int = 10, *, allowed_ids: Iterable[int] | None = None
    ) -> list[tuple[int, float]]:
        """The ``top_k`` best ``(doc_id, score)`` for ``query``, best first, ties by doc id.

        Only documents containing a query term are returned (so possibly fewer than
        ``top_k``). ``allowed_ids`` restricts results to those doc ids (unknown ids are
        ignored). O(postings of the query terms + buffer + hits * log top_k).
        """
        if type(query) is not str or not query.isascii():
            check_text(query, "query")
        k = check_top_k(top_k)
        mask, ints = self._mask(allowed_ids)
        q_terms, q_counts = self._query_arrays(query)
        if q_terms.shape[0] == 0 or self._num_live == 0:
            return []
        k = min(k, self._num_ids)
        out_ids = np.empty(k, dtype=np.int64)
        out_scores = np.empty(k, dtype=np.float64)
        n = _k.search_one(
            q_terms, q_counts, self._arena, self._dir, self._segs_arr, self._buf_ptr,
            self._buf_terms, self._buf_tfs, ints, self._live, mask, self._doc_len,
            self._ext_ids, self._df, self._params, self._scores, self._touched, self._qmark,
            k, out_ids, out_scores)
        return list(zip(out_ids[:n].tolist(), out_scores[:n].tolist(), strict=True))

    def search_batch(
        self, queries: Sequence[str], top_k: int = 10, *,
        allowed_ids: Iterable[int] | None = None, as_arrays: bool = False,
    ) -> Any:
        """:meth:`search` for many queries in one kernel call (analysis stays per query).

        Returns one ``[(doc_id, score), ...]`` list per query, or with
        ``as_arrays=True`` the arrays ``(doc_ids, scores, counts)``: row ``i`` of the
        ``(len(queries), w)`` int64/float64 arrays holds query ``i``'s results in its
        first ``counts[i]`` entries (the rest is padding: id -1, score 0.0). The width
        is ``w = min(top_k, max(len(index), 1))``: no query has more hits than the
        index has documents, so a huge ``top_k`` allocates nothing extra.
        Building Python tuples costs about as much as scoring on SciFact, so bulk
        callers should prefer arrays. O(sum of the per-query costs).
        """
        self._check_sequence(queries, "queries", "str")
        k = check_top_k(top_k)
        as_arrays = check_bool(as_arrays, "as_arrays")
        queries = list(queries)
        for i, q in enumerate(queries):
            if type(q) is not str or not q.isascii():
                check_text(q, f"queries[{i}]")
        mask, ints = self._mask(allowed_ids)
        nq = len(queries)
        k_out = min(k, max(self._num_live, 1))
        if nq == 0 or self._num_live == 0:
            if as_arrays:
                return (np.full((nq, k_out), -1, dtype=np.int64), np.zeros((nq, k_out)),
                        np.zeros(nq, dtype=np.int64))
            return [[] for _ in queries]
        # Plain lists, one conversion at the end (no per-query arrays).
        tids: list[int] = []
        cnts: list[int] = []
        ptr = [0]
        for q in queries:
            counts = self._query_counts(q)
            tids.extend(counts)
            cnts.extend(counts.values())
            ptr.append(len(tids))
        q_ptr = np.array(ptr, dtype=np.int64)
        q_terms = np.array(tids, dtype=np.int64)
        q_counts = np.array(cnts, dtype=np.int64)
        k = k_out
        out_ids = np.full((nq, k_out), -1, dtype=np.int64)
        out_scores = np.zeros((nq, k_out), dtype=np.float64)
        out_n = np.zeros(nq, dtype=np.int64)
        _k.search_batch(
            q_ptr, q_terms, q_counts, self._arena, self._dir, self._segs_arr, self._buf_ptr,
            self._buf_terms, self._buf_tfs, ints, self._live, mask, self._doc_len,
            self._ext_ids, self._df, self._params, self._scores, self._touched, self._qmark,
            k, out_ids, out_scores, out_n)
        if as_arrays:  # the kernel writes only the first out_n[i] entries of row i
            return out_ids, out_scores, out_n
        ids, scores, counts = out_ids.tolist(), out_scores.tolist(), out_n.tolist()
        return [list(zip(ids[i][: counts[i]], scores[i][: counts[i]], strict=True))
                for i in range(nq)]

    # ------------------------------------------------------------------ statistics
    def _single_term(self, term: str) -> int | None:
        terms = self._analyze(check_text(term, "term"))
        if not terms:
            return None
        if len(set(terms)) > 1:
            raise ValueError(f"term {term!r} analyses to several terms {terms}; pass one word")
        return self._vocab.get(terms[0])

    def get_term_frequency(self, term: str, doc_id: int) -> int:
        """How often (analysed) ``term`` occurs in ``doc_id``. O(df(term)).

        Raises KeyError if ``doc_id`` is not indexed.
        """
        doc_id = self._check_doc_id(doc_id)
        tid = self._single_term(term)
        internal = self._ext2int.get(doc_id)
        if internal is None:
            raise KeyError(f"doc_id {doc_id} is not indexed")
        if tid is None:
            return 0
        if internal >= self._buf_base:
            terms, tfs = self._doc_postings(internal)
            hit = np.flatnonzero(terms == tid)
            return int(tfs[hit[0]]) if hit.size else 0
        seg = self._segment_of(internal)
        if seg is None:
            return 0
        return int(_k.term_frequency_in_segment(
            self._arena, self._dir, self._seg_row(seg), tid, internal))

    def get_document_frequency(self, term: str) -> int:
        """Number of live documents containing (analysed) ``term``. O(|term|)."""
        tid = self._single_term(term)
        return 0 if tid is None else int(self._df[tid])

    def stats(self) -> dict[str, Any]:
        """Sizes and compression. O(number of segments + vocabulary).

        ``num_docs`` live documents, ``num_terms`` terms in at least one of them,
        ``num_postings`` live postings; ``bytes_per_posting`` is (segment bytes +
        segment directories) / postings stored in segments (tombstoned ones included
        until a merge purges them).
        """
        seg_postings = sum(s.num_postings for s in self._segments)
        seg_bytes = sum(s.nbytes for s in self._segments)
        dir_bytes = 4 * sum(s.nterms + 1 for s in self._segments)
        v = len(self._terms)
        return {
            "num_docs": self._num_live,
            # internal ids of deleted or replaced versions (merges purge their postings)
            "num_dead_ids": self._num_ids - self._num_live,
            "num_terms": int(np.count_nonzero(self._df[:v])),
            "vocabulary_size": v,
            "num_postings": int(self._df[:v].sum()),
            "num_segments": len(self._segments),
            "segment_postings": seg_postings,
            "buffer_docs": self._buf_ndocs,
            "buffer_postings": self._buf_npost,
            "postings_bytes": seg_bytes,
            "directory_bytes": dir_bytes,
            "bytes_per_posting": (seg_bytes + dir_bytes) / seg_postings if seg_postings else 0.0,
            "avgdl": float(self._params[2]) if self._num_live else 0.0,
            "k1": self._k1,
            "b": self._b,
        }

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the index to ``path`` atomically (seals the buffer first); return the size.

        O(index bytes). Format: an :mod:`llmds._persist` container (see
        :mod:`llmds._index_file`): versioned, checksummed, no pickle, written to a
        temporary file, fsynced and renamed, so saving over a file another index
        has open with ``mmap=True`` is safe. The analyzer is stored by name and
        options (:meth:`Analyzer.spec`); one that cannot be named (a custom callable,
        tokenizer or token pattern, or an Analyzer subclass) is not stored: pass it
        again to :meth:`load`.
        """
        target = Path(self._check_path(path))
        # fail before sealing: a save that cannot happen leaves the index as it was
        if target.is_dir():
            raise IsADirectoryError(f"cannot save to {os.fspath(path)!r}: it is a folder")
        if not (target.parent if str(target.parent) else Path(".")).is_dir():
            raise FileNotFoundError(f"cannot save to {os.fspath(path)!r}: no folder "
                                    f"{os.fspath(target.parent)!r}")
        self.seal()
        self._compact()
        n, v = self._num_ids, len(self._terms)
        blob = "".join(self._terms).encode("utf-8")
        lens = np.fromiter((len(t.encode("utf-8")) for t in self._terms), dtype=np.int64, count=v)
        segs = np.array([[s.data_start, s.dir_start, s.nterms, s.doc_base, s.doc_end, s.nbytes,
                          s.num_postings] for s in self._segments], dtype=np.int64).reshape(-1, 7)
        analyzer = self._analyzer
        meta = {
            "k1": self._k1, "b": self._b, "seal_postings": self._seal_postings,
            "merge_factor": self._merge_factor,
            "analyzer": analyzer.spec() if type(analyzer) is Analyzer else None,
            "num_ids": n, "num_live": self._num_live, "total_len": self._total_len,
            "num_terms": v,
        }
        arrays: dict[str, np.ndarray] = {
            "arena": self._arena[: self._arena_used], "dir": self._dir[: self._dir_used],
            "segments": segs, "live": self._live[:n], "doc_len": self._doc_len[:n],
            "ext_ids": self._ext_ids[:n], "df": self._df[:v],
            "vocab_blob": np.frombuffer(blob, dtype=np.uint8), "vocab_lens": lens,
        }
        return write_index(path, meta, arrays)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, mmap: bool = False,
        analyzer: Analyzer | Callable[[str], Sequence[str]] | None = None,
    ) -> InvertedIndex:
        """Read an index written by :meth:`save`, trusting nothing in it. O(file size).

        ``mmap=True`` maps the big arrays copy-on-write instead of reading them. The
        file's checksums and then every structural fact the kernels rely on are
        checked before any search can run (see :mod:`llmds._index_file`); the
        analyzer comes from fixed named options, never a regex or code from the
        file. ``analyzer`` replaces the stored one and is required when the index
        was saved with a custom analyzer. Only regular files are opened.

        Raises CorruptFileError (a ValueError) for a truncated, corrupted, hostile
        or foreign file, or a FIFO, device or folder; FileNotFoundError if missing.
        """
        cls._check_path(path)
        mmap = check_bool(mmap, "mmap")
        if analyzer is not None and not callable(analyzer):
            raise TypeError(f"analyzer must be callable or None, got {show(analyzer)}")
        f = read_index(path, mmap=mmap, analyzer=analyzer)
        if f.analyzer is None:
            raise CorruptFileError(f"{os.fspath(path)!r} was saved with a custom analyzer; "
                                   "pass analyzer= to load")
        self = cls(f.k1, f.b, analyzer=f.analyzer, seal_postings=f.seal_postings,
                   merge_factor=f.merge_factor)
        n, v = f.num_ids, len(f.terms)
        self._terms = f.terms
        self._vocab = {t: i for i, t in enumerate(f.terms)}
        self._df = np.array(f.df, dtype=np.int32)
        self._ensure_terms(max(v, 1))
        self._qmark = np.zeros(self._df.shape[0], dtype=np.int32)
        self._live, self._doc_len, self._ext_ids = f.live, f.doc_len, f.ext_ids
        self._num_ids, self._num_live, self._total_len = n, f.num_live, f.total_len
        self._scores = np.zeros(max(n, 1), dtype=np.float64)
        self._touched = np.zeros(max(n, 1) + 1, dtype=np.int32)
        self._ext2int = {e: i for i, e in enumerate(self._ext_ids.tolist()) if self._live[i]}
        self._arena, self._arena_used = f.arena, int(f.arena.shape[0])
        self._dir, self._dir_used = f.dir, int(f.dir.shape[0])
        self._segments = [_Segment(ds, dr, nt, base, end, nb, np_)
                          for ds, dr, nt, base, end, nb, np_ in f.segments.tolist()]
        self._rebuild_segs_arr()
        self._buf_base = n
        self._refresh_scalars()
        return self

    # ------------------------------------------------------------------ invariants
    def _check(self) -> None:
        """Assert every invariant (O(index size)); for tests."""
        n, v = self._num_ids, len(self._terms)
        live = self._live[:n].astype(bool)
        assert int(live.sum()) == self._num_live == len(self._ext2int)
        assert int(self._doc_len[:n][live].sum()) == self._total_len
        for e, i in self._ext2int.items():
            assert live[i] and self._ext_ids[i] == e
        assert len(self._vocab) == v and all(self._vocab[t] == i for i, t in enumerate(self._terms))
        df = np.zeros(v, dtype=np.int64)
        # the kernels' copy of the segment table agrees with the segments
        assert self._segs_arr.tolist() == [
            [s.data_start, s.dir_start, s.nterms, s.doc_base] for s in self._segments]
        for s in self._segments:
            assert s.data_start + s.nbytes <= self._arena_used <= self._arena.shape[0]
            assert s.dir_start + s.nterms + 1 <= self._dir_used <= self._dir.shape[0]
        prev_end = 0
        for s in self._segments:
            assert prev_end <= s.doc_base < s.doc_end <= self._buf_base
            prev_end = s.doc_end
            d = self._dir[s.dir_start : s.dir_start + s.nterms + 1].astype(np.int64)
            assert d[0] == 0 and d[-1] == s.nbytes and np.all(np.diff(d) >= 0)
            terms, docs, _tfs = _k.decode_segment(self._arena, self._dir, self._seg_row(s))
            assert terms.shape[0] == s.num_postings
            same = terms[1:] == terms[:-1]
            assert np.all(docs[1:][same] > docs[:-1][same])
            assert np.all((docs >= s.doc_base) & (docs < s.doc_end))
            np.add.at(df, terms[live[docs]], 1)
        assert self._buf_base + self._buf_ndocs == n
        for i in range(self._buf_ndocs):
            lo, hi = self._buf_ptr[i], self._buf_ptr[i + 1]
            t = self._buf_terms[lo:hi]
            assert np.unique(t).shape[0] == t.shape[0]
            if live[self._buf_base + i]:
                df[t] += 1
        assert np.array_equal(df, self._df[:v]), "df out of sync"
        assert not self._scores.any() and not self._qmark.any()
