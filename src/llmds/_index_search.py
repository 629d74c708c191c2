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

Thread safety: everything here is safe for concurrent readers; the owner calls
:meth:`ScratchPool.resize` only under its write lock.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import bm25 as _k
from llmds._threads import run_parallel
from llmds._validate import check_sequence, check_text, is_int, show
from llmds.analysis import Analyzer

__all__ = ["MIN_QUERIES_PER_THREAD", "QueryTerms", "Scratch", "ScratchPool", "allowed_mask",
           "analyze", "search_rows"]

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


def allowed_mask(allowed_ids: Iterable[int], ext2int: dict[int, int],
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
