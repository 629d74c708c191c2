"""InvertedIndex: BM25 over varint-compressed, segmented postings with incremental updates."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from llmds._index_docs import DocTable
from llmds._index_file import (
    IndexParts,
    check_settings,
)
from llmds._index_persist import IndexFiles
from llmds._index_search import (
    MIN_QUERIES_PER_THREAD,
    CollectionStats,
    QueryTerms,
    ScratchPool,
    analyze,
    check_allowed_mask,
    internal_ids_of,
    mask_of_ids,
    search_rows,
    stats_arrays,
    stats_of,
)
from llmds._index_segments import SegmentStore, WriteBuffer
from llmds._kernels import bm25 as _k
from llmds._threads import RWLock, num_threads_for
from llmds._validate import (
    INT64_MAX,
    INT64_MIN,
    check_bool,
    check_int,
    check_sequence,
    check_text,
    check_top_k,
    is_int,
    show,
)
from llmds.analysis import Analyzer

__all__ = ["CollectionStats", "InvertedIndex"]

_search_one: Any = _k.search_one  # typed Any: mypy misreads numba's dispatcher signature


def _doc_id(value: object, name: str = "doc_id") -> int:
    return check_int(value, name, minimum=INT64_MIN, maximum=INT64_MAX)


class InvertedIndex(IndexFiles):
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

    Scoring (the BM25 variant of Lucene and of bm25s' default ``method="lucene"``;
    the constant ``k1 + 1`` factor of the textbook formula is dropped, which does
    not change rankings)::

        score(q, d) = sum over query terms t (with repetition) of
                      idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))
        idf(t) = log(1 + (N - df + 0.5) / (df + 0.5))

    ``N``, ``df`` and ``avgdl`` count live documents only (deleted ones drop out at
    once). ``k1`` is in [0, 1000] (larger values would let a contribution underflow
    to 0, which the kernels read as "untouched"), ``b`` in [0, 1]. The defaults
    ``k1=1.5, b=0.75`` are bm25s's defaults, so scores match bm25s's out of the box;
    Anserini defaults to ``k1=0.9, b=0.4`` and Lucene's ``BM25Similarity`` to
    ``k1=1.2, b=0.75``. ``search`` returns exactly the ``top_k`` best scores, ties by
    smaller doc id, only documents that contain a query term.

    Invariants (asserted by ``_check``): ``df[t]`` is the number of live documents
    containing ``t``; ``N`` and the total length sum over live documents; segments
    cover disjoint, increasing internal-id ranges below the buffer's; each posting
    list is strictly increasing; every pooled search scratch is all zero.

    Complexity: ``add_document`` O(|doc|) amortised (+ seal/merge work, O(log n) per
    posting amortised); ``search`` O(sum of the query terms' posting lists + buffer
    postings + hits * log k); ``delete_document`` O(|doc|) in the buffer, O(postings
    of its segment) once sealed; ``get_term_frequency`` O(df). Memory: about 1.5
    bytes per posting, plus 4 bytes per (segment, vocabulary term) of directory and
    ~25 bytes per document; the buffer costs 8 bytes per posting; each search
    running at that moment holds 12 bytes per document and 4 per term of scratch.

    Thread safety: safe for concurrent readers (``search``, ``search_batch``, the
    statistics, ``save``, pickling); writers (``add_document(s)``, ``update_document``,
    ``delete_document``, ``seal``, ``merge``) are serialised with readers by an
    internal readers-writer lock, so a search sees the index before or after a
    write, never a mix. Cost: about 0.3 us per search for the lock; a writer waits
    for the searches in flight and holds new ones back while it applies (analysis
    runs before it takes the lock). Searches work in per-call scratch from a pool
    and the kernels release the GIL, so threads search in parallel;
    ``search_batch(num_threads=-1)`` spreads one batch over all cores. A custom
    analyzer must itself be thread-safe and must not call back into the index.

    Files (:meth:`save` / :meth:`load`) are untrusted: ``load`` checks every
    structural fact the kernels rely on before any search (see
    :mod:`llmds._index_file`) and takes the analyzer only by name and options from
    fixed sets, so a hostile file gives CorruptFileError, never a crash, a hang or
    a regex of its choosing. ``pickle`` and ``copy.deepcopy`` give an independent
    index with identical results (a custom analyzer must then be picklable).

    >>> index = InvertedIndex()
    >>> index.add_document(1, "The quick brown fox")
    >>> index.add_document(2, "Foxes and dogs are running")
    >>> [doc_id for doc_id, _ in index.search("fox")]
    [1, 2]
    >>> index.get_term_frequency("foxes", 2), index.get_document_frequency("Fox")
    (1, 2)
    """

    __slots__ = ("_analyzer", "_b", "_buffer", "_docs", "_dummy_mask", "_ints", "_k1", "_lock",
                 "_merge_factor", "_params", "_query", "_scratch", "_seal_postings", "_store",
                 "_view")
    if not TYPE_CHECKING:  # written in the IndexFiles mixin; named here so the class (and
        # its API reference) lists them as its own; mypy reads the mixin's typed ones
        save = IndexFiles.save
        load = IndexFiles.__dict__["load"]

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
        empty = np.zeros(0, np.uint8)
        self._install(IndexParts(
            k1, b, seal_postings, merge_factor, analyzer if analyzer is not None else Analyzer(),
            [], np.zeros(0, np.int32), empty, np.zeros(0, np.int32), np.zeros(0, np.int64),
            empty, np.zeros(0, np.uint32), np.zeros((0, 7), np.int64)))

    def _install(self, parts: IndexParts) -> None:
        """Set every attribute from validated parts (constructor, load, unpickling)."""
        self._k1, self._b, self._seal_postings, self._merge_factor = parts.settings
        # seal_postings (default 16,384): every search scans the whole buffer, so it stays
        # small; with 65,536 the SciFact "90% bulk + 10% one at a time" index answered
        # 6.0k queries/CPU-s (50k postings unsealed) against 12.9k for a sealed one.
        self._analyzer = parts.analyzer
        self._docs = docs = DocTable(parts.terms, parts.df, parts.live, parts.doc_len,
                                     parts.ext_ids)
        self._query = QueryTerms(parts.analyzer, docs.vocab)
        self._store = SegmentStore.from_arrays(parts.arena, parts.dir, parts.segments)
        self._buffer = (WriteBuffer.from_export(parts.buffer) if parts.buffer is not None
                        else WriteBuffer(docs.num_ids))
        self._dummy_mask = np.zeros(1, dtype=np.uint8)
        self._params = np.zeros(4, dtype=np.float64)
        self._ints = np.zeros(4, dtype=np.int64)
        self._lock = RWLock()
        self._scratch = ScratchPool(docs.live.shape[0], docs.df.shape[0])
        self._publish()

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
        return self._docs.num_live

    def __contains__(self, doc_id: object) -> bool:
        """True if ``doc_id`` is indexed (False for anything that is not an int). O(1)."""
        return is_int(doc_id) and doc_id in self._docs.ext2int

    @property
    def num_segments(self) -> int:
        return len(self._store.segments)

    def _publish(self) -> None:
        """After every write (under the write lock): the statistics the kernels read, the
        scratch size and ``_view``, the index arrays of the kernels' signature (``arena``
        to ``params``), kept as one tuple because searches pass it ~1 us faster."""
        docs, store, buf = self._docs, self._store, self._buffer
        self._params[:] = (self._k1, self._b, docs.avgdl, float(docs.num_live))
        # ints[3]: any deleted ids (else the kernel skips the per-posting tombstone check)
        self._ints[:] = (buf.base, buf.ndocs, 0, int(docs.num_ids != docs.num_live))
        self._scratch.resize(docs.live.shape[0], docs.df.shape[0])
        self._view = (store.arena, store.dir, store.table, buf.ptr, buf.terms, buf.tfs,
                      docs.live, docs.doc_len, docs.ext_ids, docs.df, self._params)

    # ------------------------------------------------------------------ adding
    def _prepare(self, text: str, what: str) -> tuple[list[str], list[int], int]:
        """Analyse ``text`` into (unique terms, their tfs, length); no state is read."""
        terms = analyze(self._analyzer, text)
        if len(terms) > 2**31 - 1:
            raise ValueError(f"{what} must have fewer than 2**31 terms, got {len(terms)}")
        counts: dict[str, int] = {}
        for t in terms:
            counts[t] = counts.get(t, 0) + 1
        return list(counts), list(counts.values()), len(terms)

    def _append(self, doc_id: int, terms: list[str], tfs: list[int], length: int) -> None:
        """Apply one analysed document (under the write lock; cannot fail)."""
        if doc_id in self._docs.ext2int:
            self._delete(doc_id)
        tids = self._docs.term_ids(terms)
        self._docs.add(doc_id, tids, length)
        self._buffer.append(tids, tfs)

    def _finish_writes(self) -> None:
        """After adds (under the write lock): publish, and seal by policy."""
        self._publish()
        if self._buffer.npost >= self._seal_postings:
            self._seal()

    def add_document(self, doc_id: int, text: str, *, update: bool = False) -> None:
        """Index ``text`` under ``doc_id``. O(|text|) amortised.

        A ``doc_id`` already present raises ``ValueError`` unless ``update=True``
        (then the old version is replaced, as :meth:`update_document`).
        """
        doc_id = _doc_id(doc_id)
        text = check_text(text, "text", nonempty=True)
        self._add(doc_id, text, "upsert" if check_bool(update, "update") else "add")

    def update_document(self, doc_id: int, text: str) -> None:
        """Replace the text of an indexed ``doc_id`` (delete + add). O(|text|) + delete.

        Raises KeyError if ``doc_id`` is not indexed.
        """
        doc_id = _doc_id(doc_id)
        text = check_text(text, "text", nonempty=True)
        self._add(doc_id, text, "update")

    def _add(self, doc_id: int, text: str, mode: str) -> None:
        # checked before analysis (the error a caller sees first) and again under the lock
        self._check_presence(doc_id, mode)
        terms, tfs, length = self._prepare(text, "text")
        with self._lock.writing():
            self._check_presence(doc_id, mode)
            self._append(doc_id, terms, tfs, length)
            self._finish_writes()

    def _check_presence(self, doc_id: int, mode: str) -> None:
        if mode == "add" and doc_id in self._docs.ext2int:
            raise ValueError(
                f"doc_id {doc_id} is already indexed; pass update=True or call update_document")
        if mode == "update" and doc_id not in self._docs.ext2int:
            raise KeyError(f"doc_id {doc_id} is not indexed")

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
        check_sequence(documents, "documents", "(doc_id, text) pairs")
        prepared = []
        seen: set[int] = set()
        for pos, item in enumerate(documents):
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise TypeError(f"documents[{pos}] must be a (doc_id, text) pair, "
                                f"got {show(item)}")
            doc_id = _doc_id(item[0], f"documents[{pos}] doc_id")
            text = check_text(item[1], f"documents[{pos}] text", nonempty=True)
            if doc_id in seen:
                raise ValueError(f"documents[{pos}] doc_id {doc_id} appears twice in documents")
            seen.add(doc_id)
            self._check_new(pos, doc_id, update)
            prepared.append((doc_id, *self._prepare(text, f"documents[{pos}] text")))
        with self._lock.writing():
            for pos, (doc_id, *_) in enumerate(prepared):
                self._check_new(pos, doc_id, update)  # another thread may have added it
            for doc_id, terms, tfs, length in prepared:
                self._append(doc_id, terms, tfs, length)
            self._finish_writes()
        return len(prepared)

    def _check_new(self, pos: int, doc_id: int, update: bool) -> None:
        if not update and doc_id in self._docs.ext2int:
            raise ValueError(f"documents[{pos}] doc_id {doc_id} is already indexed; pass "
                             "update=True to replace it")

    # ------------------------------------------------------------------ deleting
    def _doc_postings(self, internal: int) -> tuple[np.ndarray, np.ndarray]:
        if internal >= self._buffer.base:
            return self._buffer.doc(internal)
        return self._store.doc(internal)

    def _delete(self, doc_id: int) -> None:
        terms, _ = self._doc_postings(self._docs.ext2int[doc_id])
        self._docs.remove(doc_id, terms)

    def delete_document(self, doc_id: int) -> None:
        """Remove ``doc_id`` (a tombstone until the next merge). O(|doc|) in the buffer,
        O(postings of its segment) once sealed.

        Raises KeyError if ``doc_id`` is not indexed.
        """
        doc_id = _doc_id(doc_id)
        with self._lock.writing():
            if doc_id not in self._docs.ext2int:
                raise KeyError(f"doc_id {doc_id} is not indexed")
            self._delete(doc_id)
            self._publish()

    # ------------------------------------------------------------------ segments
    def seal(self) -> None:
        """Turn the in-memory buffer into an immutable segment, then merge by policy.

        O(buffer postings + vocabulary). A no-op when the buffer is empty.
        """
        with self._lock.writing():
            self._seal()

    def _seal(self) -> None:
        buf = self._buffer
        if buf.ndocs == 0:
            return
        live, v = self._docs.live, len(self._docs.terms)
        data, ptr, npost = buf.seal(live, v)
        end = buf.base + buf.ndocs
        self._store.add(data, ptr, npost, buf.base, end)
        buf.restart(end)
        self._store.merge_by_policy(self._merge_factor, live, v)
        self._publish()

    def merge(self) -> None:
        """Merge every segment into one, dropping deleted documents. O(index bytes).

        The buffer is not sealed (call :meth:`seal` first for a single segment).
        """
        with self._lock.writing():
            self._store.merge_all(self._docs.live, len(self._docs.terms))
            self._publish()

    def _compact(self) -> None:
        """Copy live segments into fresh arrays (drops merged-away bytes). O(index bytes)."""
        with self._lock.writing():
            self._store.compact()
            self._publish()

    # ------------------------------------------------------------------ searching
    def _mask(self, allowed_ids: Iterable[int] | None,
              allowed_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The kernels' ``allowed`` mask and ``ints`` (flag 2 set when filtering)."""
        if allowed_ids is None and allowed_mask is None:
            return self._dummy_mask, self._ints
        if allowed_mask is not None:
            if allowed_ids is not None:
                raise ValueError("pass allowed_ids or allowed_mask, not both")
            mask = check_allowed_mask(allowed_mask, self._docs.num_ids)
        else:
            mask = mask_of_ids(allowed_ids, self._docs.ext2int,  # type: ignore[arg-type]
                               self._docs.num_ids)
        ints = self._ints.copy()
        ints[2] = 1
        return mask, ints

    def _scoring_view(self, stats: CollectionStats | None, queries: Sequence[str],
                      ) -> tuple[Any, ...]:
        """``_view`` with the df and params of ``stats`` when given (under the read lock)."""
        if stats is None:
            return self._view
        df, params = stats_arrays(stats, self._query, queries, self._docs, self._k1, self._b)
        return (*self._view[:9], df, params)

    def search(
        self, query: str, top_k: int = 10, *, allowed_ids: Iterable[int] | None = None,
        allowed_mask: np.ndarray | None = None, collection_stats: CollectionStats | None = None,
    ) -> list[tuple[int, float]]:
        """The ``top_k`` best ``(doc_id, score)`` for ``query``, best first, ties by doc id.

        Only documents containing a query term are returned (so possibly fewer than
        ``top_k``). ``allowed_ids`` restricts results to those doc ids (unknown ids are
        ignored; a Python loop, O(len)); ``allowed_mask`` does the same with a bool or
        uint8 array over internal ids (see :meth:`internal_ids`; no loop, for wide
        filters). ``collection_stats`` scores with those N, avgdl and df instead of
        this index's own (a shard of a bigger collection; see :class:`CollectionStats`).
        O(postings of the query terms + buffer + hits * log top_k).
        """
        if type(query) is not str or not query.isascii():
            check_text(query, "query")
        k = check_top_k(top_k)
        lock = self._lock
        lock.acquire_read()
        try:
            mask, ints = self._mask(allowed_ids, allowed_mask)
            view = self._scoring_view(collection_stats, [query])
            q_terms, q_counts = self._query.arrays(query)
            if q_terms.shape[0] == 0 or self._docs.num_live == 0:
                return []
            s = self._scratch.take()
            out_ids, out_scores = s.out(min(k, self._docs.num_ids))
            n = _search_one(q_terms, q_counts, ints, mask, *view, s.scores, s.touched,
                            s.qmark, out_ids.shape[0], out_ids, out_scores)
            hits = list(zip(out_ids[:n].tolist(), out_scores[:n].tolist(), strict=True))
            self._scratch.give(s)
        finally:
            lock.release_read()
        return hits

    def search_batch(
        self, queries: Sequence[str], top_k: int = 10, *,
        allowed_ids: Iterable[int] | None = None, allowed_mask: np.ndarray | None = None,
        collection_stats: CollectionStats | None = None, as_arrays: bool = False,
        num_threads: int = -1,
    ) -> Any:
        """:meth:`search` for many queries, spread over ``num_threads`` threads.

        Returns one ``[(doc_id, score), ...]`` list per query, or with
        ``as_arrays=True`` the arrays ``(doc_ids, scores, counts)``: row ``i`` of the
        ``(len(queries), w)`` int64/float64 arrays holds query ``i``'s results in its
        first ``counts[i]`` entries (the rest is padding: id -1, score 0.0). The width
        is ``w = min(top_k, max(len(index), 1))``: no query has more hits than the
        index has documents, so a huge ``top_k`` allocates nothing extra.
        Building Python tuples costs about as much as scoring on SciFact, so bulk
        callers should prefer arrays. ``num_threads`` follows hnswlib: -1 (the
        default) uses every core, 1 runs in the calling thread; results are the
        same either way. ``allowed_ids``/``allowed_mask``/``collection_stats`` as in
        :meth:`search` (one mask and one set of statistics for the whole batch).
        O(sum of the per-query costs / threads).
        """
        check_sequence(queries, "queries", "str")
        k = check_top_k(top_k)
        as_arrays = check_bool(as_arrays, "as_arrays")
        queries = list(queries)
        threads = num_threads_for(num_threads, len(queries), MIN_QUERIES_PER_THREAD)
        for i, q in enumerate(queries):
            if type(q) is not str or not q.isascii():
                check_text(q, f"queries[{i}]")
        with self._lock.reading():
            mask, ints = self._mask(allowed_ids, allowed_mask)
            view = self._scoring_view(collection_stats, queries)
            return search_rows(self._query, queries, (ints, mask, *view),
                               self._scratch, min(k, max(self._docs.num_live, 1)), threads,
                               lists=not as_arrays)

    # ------------------------------------------------------------------ internal ids
    @property
    def num_internal_ids(self) -> int:
        """Internal ids handed out so far (live and tombstoned): ``allowed_mask``'s length."""
        return self._docs.num_ids

    def internal_ids(self, doc_ids: Iterable[int]) -> np.ndarray:
        """The internal id of each indexed doc id (int64 array). O(len(doc_ids)).

        Internal ids are dense, in insertion order, and stay the same while the
        document is indexed (seal, merge, save/load and pickling keep them; replacing
        a document gives it a new one), so a caller can build ``allowed_mask`` arrays
        from them. Raises KeyError naming a doc id that is not indexed.
        """
        with self._lock.reading():
            return internal_ids_of(doc_ids, self._docs.ext2int)

    # ------------------------------------------------------------------ statistics
    def _single_term(self, term: str) -> int | None:
        terms = analyze(self._analyzer, check_text(term, "term"))
        if not terms:
            return None
        if len(set(terms)) > 1:
            raise ValueError(f"term {term!r} analyses to several terms {terms}; pass one word")
        return self._docs.vocab.get(terms[0])

    def get_term_frequency(self, term: str, doc_id: int) -> int:
        """How often (analysed) ``term`` occurs in ``doc_id``. O(df(term)).

        Raises KeyError if ``doc_id`` is not indexed.
        """
        doc_id = _doc_id(doc_id)
        with self._lock.reading():
            tid = self._single_term(term)
            internal = self._docs.ext2int.get(doc_id)
            if internal is None:
                raise KeyError(f"doc_id {doc_id} is not indexed")
            if tid is None:
                return 0
            if internal >= self._buffer.base:
                terms, tfs = self._buffer.doc(internal)
                hit = np.flatnonzero(terms == tid)
                return int(tfs[hit[0]]) if hit.size else 0
            return self._store.term_frequency(tid, internal)

    def get_document_frequency(self, term: str) -> int:
        """Number of live documents containing (analysed) ``term``. O(|term|)."""
        with self._lock.reading():
            tid = self._single_term(term)
            return 0 if tid is None else int(self._docs.df[tid])

    def collection_stats(self, terms: Iterable[str] | None = None) -> CollectionStats:
        """This index's BM25 statistics: N, total length and the df of ``terms``.

        ``terms`` are analysed terms (as :meth:`document_terms` gives them; unknown
        ones get 0); None gives every term with df > 0. Sum these over the shards of
        a collection for the statistics :meth:`search` takes. O(vocabulary) or
        O(len(terms)).
        """
        with self._lock.reading():
            return stats_of(self._docs, terms)

    def document_terms(self, doc_id: int) -> dict[str, int]:
        """The analysed terms of ``doc_id`` and their frequencies (its length is the sum).

        O(|doc|) in the buffer, O(postings of its segment) once sealed. Raises
        KeyError if ``doc_id`` is not indexed.
        """
        doc_id = _doc_id(doc_id)
        with self._lock.reading():
            internal = self._docs.ext2int.get(doc_id)
            if internal is None:
                raise KeyError(f"doc_id {doc_id} is not indexed")
            tids, tfs = self._doc_postings(internal)
            names = self._docs.terms
            return {names[t]: f for t, f in zip(tids.tolist(), tfs.tolist(), strict=True)}

    def stats(self) -> dict[str, Any]:
        """Sizes and compression. O(number of segments + vocabulary).

        ``num_docs`` live documents, ``num_terms`` terms in at least one of them,
        ``num_postings`` live postings; ``bytes_per_posting`` is (segment bytes +
        segment directories) / postings stored in segments (tombstoned ones included
        until a merge purges them).
        """
        with self._lock.reading():
            seg_postings, seg_bytes, dir_bytes = self._store.sizes()
            docs = self._docs
            df = docs.df[: len(docs.terms)]
            return {
                "num_docs": docs.num_live,
                # internal ids of deleted or replaced versions (merges purge their postings)
                "num_dead_ids": docs.num_ids - docs.num_live,
                "num_terms": int(np.count_nonzero(df)),
                "vocabulary_size": df.shape[0],
                "num_postings": int(df.sum()),
                "num_segments": len(self._store.segments),
                "segment_postings": seg_postings,
                "buffer_docs": self._buffer.ndocs,
                "buffer_postings": self._buffer.npost,
                "postings_bytes": seg_bytes,
                "directory_bytes": dir_bytes,
                "bytes_per_posting": ((seg_bytes + dir_bytes) / seg_postings
                                      if seg_postings else 0.0),
                "avgdl": docs.avgdl if docs.num_live else 0.0,
                "k1": self._k1,
                "b": self._b,
            }

    # ------------------------------------------------------------------ persistence
    def _parts(self) -> IndexParts:
        """Everything the index holds, as new arrays (under the read or write lock)."""
        return IndexParts(
            self._k1, self._b, self._seal_postings, self._merge_factor, self._analyzer,
            *self._docs.export(), *self._store.export(),
            self._buffer.export() if self._buffer.ndocs else None)

    # ------------------------------------------------------------------ invariants
    def _check(self) -> None:
        """Assert every invariant (O(index size)); for tests."""
        with self._lock.reading():
            docs = self._docs
            docs.check()
            df = np.zeros(len(docs.terms), dtype=np.int64)
            self._store.add_df(docs.live, df, self._buffer.base)
            assert self._buffer.base + self._buffer.ndocs == docs.num_ids
            self._buffer.add_df(docs.live, df)
            assert np.array_equal(df, docs.df[: len(docs.terms)]), "df out of sync"
            assert self._scratch.num_docs >= docs.num_ids
            assert all(s.is_clean() for s in self._scratch.sets()), "dirty search scratch"
