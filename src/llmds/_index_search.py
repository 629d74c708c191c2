"""The search side of :class:`~llmds.inverted_index.InvertedIndex`: query terms, scratch, threads.

* :func:`analyze`: an analyzer's terms for a text, with a custom analyzer's output
  checked (a sequence of UTF-8 ``str``).
* :class:`QueryTerms`: query text -> unique known term ids and their counts. With an
  :class:`~llmds.analysis.Analyzer` the stop/stem step depends on one raw token at a
  time, so raw token -> term id is cached (SciFact: analysis 7 -> 3 us per query).
* :class:`Scratch` / :class:`ScratchPool`: the score accumulator, touched list and
  query-term marks one search works in. Each call takes a set from the pool and
  gives it back clean, so concurrent searches never share one; the pool holds at
  most as many sets as searches ever ran at once.
* :func:`search_rows`: a batch of queries in chunks on ``threads`` threads (the
  calling thread and pool workers running the ``nogil`` kernel), each with its own
  scratch, analysing its own chunk so that analysis overlaps other threads' scoring.
* Filters: :func:`mask_of_ids` (caller doc ids, a Python loop) and
  :func:`check_allowed_mask` (a mask over internal ids, checked and used as is).
* :class:`CollectionStats` and :func:`stats_arrays`: score with statistics supplied
  by the caller (a sharded index's whole-collection N, length sum and df) instead
  of this index's own; the kernels take them as their ``df`` and ``params`` arrays.

Thread safety: everything here is safe for concurrent readers; the owner calls
:meth:`ScratchPool.resize` only under its write lock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._index_docs import DocTable
from llmds._kernels import bm25 as _k
from llmds._threads import run_parallel
from llmds._validate import check_int, check_sequence, check_text, is_int, show
from llmds.analysis import Analyzer

__all__ = ["MIN_QUERIES_PER_THREAD", "CollectionStats", "QueryTerms", "Scratch", "ScratchPool",
           "analyze", "check_allowed_mask", "internal_ids_of", "mask_of_ids", "search_rows",
           "stats_arrays", "stats_of"]

_DF_MAX = 2**31 - 1  # df is int32 in the kernels

MIN_QUERIES_PER_THREAD = 16  # fewer than this per thread: the hand-off costs more than it saves
_search_batch: Any = _k.search_batch  # typed Any: mypy misreads numba's dispatcher signature
TOKEN_CACHE_MAX = 1_000_000  # raw tokens remembered per index (then the cache starts over)


def analyze(analyzer: Callable[[str], Sequence[str]], text: str) -> list[str]:
    """Terms of ``text``; a custom analyzer's output is checked (list of UTF-8 str). O(|text|)."""
    out = analyzer(text)
    if type(analyzer) is Analyzer:
        return out  # type: ignore[return-value]
    check_sequence(out, "the analyzer's output", "str")
    terms = list(out)
    try:
        joined = "".join(terms)
    except TypeError:
        bad = next(t for t in terms if not isinstance(t, str))
        raise TypeError(f"the analyzer must return a sequence of str, got an item "
                        f"{show(bad)}") from None
    check_text(joined, "the analyzer's output")
    return terms


def mask_of_ids(allowed_ids: Iterable[int], ext2int: dict[int, int],
                num_ids: int) -> npt.NDArray[np.uint8]:
    """uint8 per internal id: 1 for the live documents of ``allowed_ids`` (unknown ids are
    ignored). Raises ``TypeError`` naming ``allowed_ids`` for anything but ints. O(len)."""
    check_sequence(allowed_ids, "allowed_ids", "ints (or None)", ordered=False)
    mask = np.zeros(max(num_ids, 1), dtype=np.uint8)
    get = ext2int.get
    for i, doc_id in enumerate(allowed_ids):
        if not is_int(doc_id):
            raise TypeError(f"allowed_ids[{i}] must be an int, got {show(doc_id)}")
        internal = get(doc_id)
        if internal is not None:
            mask[internal] = 1
    return mask


def check_allowed_mask(mask: object, num_ids: int) -> npt.NDArray[np.uint8]:
    """``mask`` (bool or uint8, one entry per internal id) as the kernels' uint8 view. O(1)
    for a contiguous bool/uint8 array (no copy); nonzero admits the document."""
    if not isinstance(mask, np.ndarray) or mask.dtype not in (np.bool_, np.uint8):
        raise TypeError(f"allowed_mask must be a bool or uint8 NumPy array, got {show(mask)}")
    if mask.shape != (num_ids,):
        raise ValueError(f"allowed_mask must have shape ({num_ids},) (one entry per internal "
                         f"id, see internal_ids()), got {mask.shape}")
    if num_ids == 0:
        return np.zeros(1, dtype=np.uint8)
    return np.ascontiguousarray(mask).view(np.uint8)


def internal_ids_of(doc_ids: Iterable[int], ext2int: dict[int, int]) -> npt.NDArray[np.int64]:
    """Internal ids of indexed ``doc_ids``; KeyError naming one that is not. O(len)."""
    check_sequence(doc_ids, "doc_ids", "ints", ordered=False)
    get = ext2int.get
    out = []
    for i, d in enumerate(doc_ids):
        internal = get(d) if is_int(d) else None
        if internal is None:
            if not is_int(d):
                raise TypeError(f"doc_ids[{i}] must be an int, got {show(d)}")
            raise KeyError(f"doc_id {d} is not indexed")
        out.append(internal)
    return np.array(out, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class CollectionStats:
    """BM25's collection statistics, to score with figures other than the index's own.

    ``num_docs`` (N) live documents, ``total_length`` the sum of their lengths in
    terms (``avgdl = total_length / num_docs``) and ``df``: analysed term -> number of
    live documents containing it, for at least every query term the index knows. A
    sharded index passes the whole collection's, so that every shard scores exactly
    as one index holding every document would (per-shard IDF is the classic sharding
    error). :meth:`InvertedIndex.collection_stats` gives an index's own.
    """

    num_docs: int
    total_length: int
    df: Mapping[str, int]

    def __post_init__(self) -> None:
        check_int(self.num_docs, "collection_stats.num_docs", minimum=0, maximum=_DF_MAX)
        check_int(self.total_length, "collection_stats.total_length", minimum=0,
                  maximum=2**63 - 1)
        if not isinstance(self.df, Mapping):
            raise TypeError(f"collection_stats.df must be a dict of term -> count, "
                            f"got {show(self.df)}")

    @property
    def avgdl(self) -> float:
        """Mean document length, exactly as the index computes its own (1.0 when empty)."""
        n, total = self.num_docs, self.total_length
        return total / n if n and total else 1.0


def stats_arrays(stats: object, terms: QueryTerms, queries: Sequence[str], docs: DocTable,
                 k1: float, b: float) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]]:
    """The kernels' ``df`` and ``params`` for scoring ``queries`` with ``stats``.

    ``df`` holds the supplied frequency of every query term this index knows (other
    entries are never read); ``params = [k1, b, avgdl, N]``. The supplied figures
    must be at least this index's own (the collection contains it): otherwise, or
    when a query term has no ``df`` entry, ``ValueError`` names the term.
    O(query terms) + an O(1) zeroed allocation.
    """
    if not isinstance(stats, CollectionStats):
        raise TypeError(f"collection_stats must be a CollectionStats or None, got {show(stats)}")
    if stats.num_docs < docs.num_live or stats.total_length < docs.total_len:
        raise ValueError(f"collection_stats (num_docs {stats.num_docs}, total_length "
                         f"{stats.total_length}) must cover this index's {docs.num_live} "
                         f"documents of total length {docs.total_len}")
    df = np.zeros(max(docs.df.shape[0], 1), dtype=np.int32)  # calloc: pages are lazy
    own, names, given = docs.df, docs.terms, stats.df
    for query in queries:
        for tid in terms.counts(query):
            term = names[tid]
            value = given.get(term)
            if value is None:
                if own[tid] == 0:  # no live document here has it: never scored
                    continue
                raise ValueError(f"collection_stats.df has no entry for the query term "
                                 f"{term!r}")
            if not is_int(value) or not own[tid] <= value <= stats.num_docs:
                raise ValueError(f"collection_stats.df[{term!r}] must be an int in "
                                 f"[{int(own[tid])}, {stats.num_docs}] (this index's df, N), "
                                 f"got {show(value)}")
            df[tid] = value
    return df, np.array([k1, b, stats.avgdl, float(stats.num_docs)], dtype=np.float64)


class QueryTerms:
    """Query text -> ``{term id: count}`` over a vocabulary the index keeps growing.

    Only ids already in ``vocab`` are returned (unknown terms cannot match). The
    raw-token cache holds stopwords (-1) and known terms, whose ids never change;
    an unknown token is not cached since a later document may bring it in. Thread
    safety: safe for concurrent readers (dict reads and writes are atomic, and a full
    cache is replaced by a new dict, never cleared under a reader).
    """

    __slots__ = ("_analyzer", "_cache", "_fast", "_vocab")

    def __init__(self, analyzer: Callable[[str], Sequence[str]], vocab: dict[str, int]) -> None:
        self._analyzer = analyzer
        self._vocab = vocab
        self._cache: dict[str, int] = {}
        self._fast = type(analyzer) is Analyzer  # a subclass may override __call__

    def counts(self, query: str) -> dict[int, int]:
        """Unique known term ids of ``query`` (first-appearance order) -> counts. O(|query|)."""
        counts: dict[int, int] = {}
        if not self._fast:
            get = self._vocab.get
            for t in analyze(self._analyzer, query):
                tid = get(t, -1)
                if tid >= 0:
                    counts[tid] = counts.get(tid, 0) + 1
            return counts
        analyzer: Analyzer = self._analyzer  # type: ignore[assignment]
        cache = self._cache
        for raw in analyzer.split(query):
            cached = cache.get(raw)
            if cached is not None:
                tid = cached
            else:
                terms = analyzer.normalize([raw])
                tid = self._vocab.get(terms[0], -1) if terms else -1
                if tid >= 0 or not terms:
                    if len(cache) >= TOKEN_CACHE_MAX:
                        self._cache = cache = {}
                    cache[raw] = tid
            if tid >= 0:
                counts[tid] = counts.get(tid, 0) + 1
        return counts

    def arrays(self, query: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """:meth:`counts` as two int64 arrays ``(term ids, counts)``."""
        counts = self.counts(query)
        m = len(counts)
        # one allocation for both halves (views): ~1 us less per query than two fromiter
        both = np.array([*counts, *counts.values()], dtype=np.int64)
        return both[:m], both[m:]

    def batch(self, queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q_ptr, q_terms, q_counts)``: query ``i`` is ``q_terms[q_ptr[i]:q_ptr[i + 1]]``."""
        tids: list[int] = []  # plain lists, one conversion at the end
        cnts: list[int] = []
        ptr = [0]
        for q in queries:
            counts = self.counts(q)
            tids.extend(counts)
            cnts.extend(counts.values())
            ptr.append(len(tids))
        return (np.array(ptr, dtype=np.int64), np.array(tids, dtype=np.int64),
                np.array(cnts, dtype=np.int64))


class Scratch:
    """One search's working arrays: ``scores`` (float64) and ``touched`` (int32, one
    spare slot for the kernel's branch-free bookkeeping) per internal doc, ``qmark``
    (int32) per term, all zero between searches; and a single search's result row.
    Memory: 12 bytes per doc slot and 4 per term slot. Thread safety: one search at a
    time (a :class:`ScratchPool` hands each set to one caller)."""

    __slots__ = ("_out_ids", "_out_scores", "num_docs", "num_terms", "qmark", "scores",
                 "touched")

    def __init__(self, num_docs: int, num_terms: int) -> None:
        self.num_docs = num_docs
        self.num_terms = num_terms
        self.scores = np.zeros(num_docs, dtype=np.float64)
        self.touched = np.zeros(num_docs + 1, dtype=np.int32)
        self.qmark = np.zeros(num_terms, dtype=np.int32)
        self._out_ids = np.empty(0, dtype=np.int64)
        self._out_scores = np.empty(0, dtype=np.float64)

    def out(self, k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Result arrays of length ``k`` (ids, scores), reused between searches
        (0.7 us less per search than two new arrays). O(k) when they grow."""
        if self._out_ids.shape[0] < k:
            self._out_ids = np.empty(k, dtype=np.int64)
            self._out_scores = np.empty(k, dtype=np.float64)
        return self._out_ids[:k], self._out_scores[:k]

    def is_clean(self) -> bool:
        return not self.scores.any() and not self.qmark.any()


class ScratchPool:
    """Scratch sets for ``num_docs`` doc slots and ``num_terms`` term slots. O(1) take/give.

    Thread safety: safe for concurrent ``take``/``give`` (``list.pop`` and
    ``list.append`` are atomic, so no lock is needed); :meth:`resize` (the index grew)
    runs only under the owner's write lock and drops the pooled sets.
    """

    __slots__ = ("_free", "num_docs", "num_terms")

    def __init__(self, num_docs: int, num_terms: int) -> None:
        self.num_docs = num_docs
        self.num_terms = num_terms
        self._free: list[Scratch] = []

    def take(self) -> Scratch:
        try:
            return self._free.pop()
        except IndexError:
            return Scratch(self.num_docs, self.num_terms)

    def give(self, scratch: Scratch) -> None:
        if scratch.num_docs == self.num_docs and scratch.num_terms == self.num_terms:
            self._free.append(scratch)

    def resize(self, num_docs: int, num_terms: int) -> None:
        if (num_docs, num_terms) != (self.num_docs, self.num_terms):
            self.num_docs = num_docs
            self.num_terms = num_terms
            self._free = []

    def sets(self) -> list[Scratch]:
        """The pooled sets (for ``_check``)."""
        return list(self._free)


def search_rows(terms: QueryTerms, queries: list[str], index_args: tuple[Any, ...],
                pool: ScratchPool, k: int, threads: int, lists: bool) -> Any:
    """Top-``k`` results of every query: arrays ``(ids, scores, counts)`` or, with
    ``lists``, one ``[(doc_id, score), ...]`` list per query.

    ``index_args`` are the arrays of the kernel's signature from ``ints`` to ``params``.
    Work is split into chunks taken from a shared counter by ``threads`` threads (see
    :func:`llmds._threads.run_parallel`); the caller holds the index's read lock
    throughout. O(sum of the per-query costs / threads).
    """
    nq = len(queries)
    out_ids = np.full((nq, k), -1, dtype=np.int64)
    out_scores = np.zeros((nq, k), dtype=np.float64)
    out_n = np.zeros(nq, dtype=np.int64)
    rows: list[Any] = [None] * nq if lists else []
    # a few chunks per thread balance uneven queries; one chunk when single-threaded
    size = nq if threads == 1 else max(8, min(64, -(-nq // (4 * threads))))
    chunks = itertools.count()

    def task(_: int) -> None:
        scratch = pool.take()
        try:
            while (lo := next(chunks) * size) < nq:
                hi = min(nq, lo + size)
                q_ptr, q_terms, q_counts = terms.batch(queries[lo:hi])
                _search_batch(q_ptr, q_terms, q_counts, *index_args, scratch.scores,
                                scratch.touched, scratch.qmark, k, out_ids[lo:hi],
                                out_scores[lo:hi], out_n[lo:hi])
                if lists:  # Python tuples cost about as much as scoring: build them here too
                    ids, scores, counts = (out_ids[lo:hi].tolist(), out_scores[lo:hi].tolist(),
                                           out_n[lo:hi].tolist())
                    rows[lo:hi] = [list(zip(i[:c], s[:c], strict=True))
                                   for i, s, c in zip(ids, scores, counts, strict=True)]
        finally:
            pool.give(scratch)  # clean: the kernel resets what it wrote before it returns

    run_parallel(task, threads)
    return rows if lists else (out_ids, out_scores, out_n)


def stats_of(docs: DocTable, terms: Iterable[str] | None) -> CollectionStats:
    """An index's own :class:`CollectionStats`: df of ``terms`` (analysed; unknown ones
    0), or of every term with df > 0 when None. O(len(terms)) or O(vocabulary)."""
    if terms is None:
        df = docs.df[: len(docs.terms)].tolist()
        return CollectionStats(docs.num_live, docs.total_len,
                               {t: c for t, c in zip(docs.terms, df, strict=True) if c})
    check_sequence(terms, "terms", "str", ordered=False)
    counts = {}
    for i, t in enumerate(terms):
        if not isinstance(t, str):
            raise TypeError(f"terms[{i}] must be a str, got {show(t)}")
        tid = docs.vocab.get(t)
        counts[t] = 0 if tid is None else int(docs.df[tid])
    return CollectionStats(docs.num_live, docs.total_len, counts)
