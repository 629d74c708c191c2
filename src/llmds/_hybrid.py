"""The search half of :class:`~llmds.retrieval_pipeline.RetrievalPipeline`: query checks,
embedding, filtered candidates from both indexes, fusion, the cache and the results.

One code path answers ``search`` and ``search_batch``: a batch is checked, its filter
turned into one mask, its cache hits taken, the embedder called once for the misses
that need a vector, BM25 run as one batch and the graph as one batch (on
``num_threads`` threads), then each query fused and converted. A single search is a
batch of one.

Filters: a filter becomes one boolean mask over the document slots per batch
(:mod:`llmds.filters`); BM25 gets it as ``allowed_mask`` over its own internal ids
(one gather through the slots' stored internal ids), so any filter, narrow or wide,
is one kernel pass over the query terms' postings that skips non-admitted
documents; the graph search gets it as a mask over its rows.

The seams a sharded coordinator overrides (:mod:`llmds.dist.sharded`): ``_scope``
(what a batch searches: here the filter's mask), ``_has_vectors``, ``_candidates``
(both sides' candidate lists: here the two local searches) and ``_outputs``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from llmds._docstore import DocId, DocStore, Document, check_metadata
from llmds._pipeline_args import as_list, check_batch, check_hooks
from llmds._progress import Progress
from llmds._query_cache import QueryCache
from llmds._threads import RWLock, num_threads_for
from llmds._validate import (
    INT64_MAX,
    check_bool,
    check_choice,
    check_finite_array,
    check_int,
    check_str,
    check_text,
    show,
)
from llmds._vectors import VectorStore
from llmds.embed import embedder_identity
from llmds.filters import check_filter
from llmds.fusion import FUSIONS, NO_IDS, NO_SCORES, check_weight, fuse_top_k
from llmds.inverted_index import CollectionStats, InvertedIndex

if TYPE_CHECKING:
    from collections.abc import Callable

    from llmds.embed import Embedder

__all__ = ["HybridSearch", "VectorStore", "filter_key"]

Candidates = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
Results = tuple[tuple[int, float], ...]


def filter_key(filt: Mapping[str, Any]) -> str:
    """A filter's canonical JSON (equal filters, equal keys): the cache's key part."""
    return json.dumps(filt, sort_keys=True, default=lambda o: o.item())


class HybridSearch:
    """What RetrievalPipeline and the sharded coordinator share (a base holding no
    state): settings, argument checks, embedding, adds, the search engine and the
    cache. A subclass stores documents (``_insert``) and provides the seams above."""

    # the settings the setters below change (the subclass holds the rest)
    __slots__ = ("_dense_depth", "_embedder", "_embedder_identity", "_fusion", "_lexical_depth")
    _dense_depth: int
    _embedder: Embedder | None
    _embedder_identity: dict[str, Any] | None
    _fusion: str
    _lexical_depth: int
    # add_documents hands _insert prepared float32 vectors (True), or the checked
    # vectors as given (False: a coordinator whose shards prepare them)
    _PREPARE = True
    if TYPE_CHECKING:
        _brute_force_max: int
        _cache: QueryCache
        _dim: int
        _docs: DocStore
        _index: InvertedIndex
        _lock: RWLock
        _metric: str
        _normalize: Callable[[str], str]
        _rrf_k: int
        _vectors: VectorStore

    # ------------------------------------------------------------------ properties
    @property
    def embedding_dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._metric

    def _set(self, attr: str, value: object) -> None:
        """Change a search setting (already checked): results cached under the old one go."""
        with self._lock.writing():
            setattr(self, attr, value)
            self._cache.clear()

    @property
    def fusion(self) -> str:
        """Default fusion of ``search`` (``"weighted"`` or ``"rrf"``); settable."""
        return self._fusion

    @fusion.setter
    def fusion(self, value: str) -> None:
        self._set("_fusion", check_choice(value, "fusion", FUSIONS))

    @property
    def lexical_depth(self) -> int:
        """BM25 candidates fused per search (at least ``top_k``); settable."""
        return self._lexical_depth

    @lexical_depth.setter
    def lexical_depth(self, value: int) -> None:
        self._set("_lexical_depth",
                  check_int(value, "lexical_depth", minimum=1, maximum=INT64_MAX))

    @property
    def dense_depth(self) -> int:
        """Nearest vectors fused per search (at least ``top_k``); settable."""
        return self._dense_depth

    @dense_depth.setter
    def dense_depth(self, value: int) -> None:
        self._set("_dense_depth", check_int(value, "dense_depth", minimum=1, maximum=INT64_MAX))

    @property
    def embedder(self) -> Embedder | None:
        """The embedder of text-only documents and queries; settable (None: none).

        Setting one records its identity for :meth:`save` and empties the result cache;
        it must produce vectors comparable with the stored ones (nothing can check that).
        """
        return self._embedder

    @embedder.setter
    def embedder(self, value: Embedder | None) -> None:
        check_hooks(value)
        with self._lock.writing():
            self._embedder = value
            if value is not None:
                self._embedder_identity = embedder_identity(value, self._dim)
            self._cache.clear()

    @property
    def id_kind(self) -> str | None:
        """``"int"`` or ``"str"``: the kind of every id here (None before the first add)."""
        return self._docs.id_kind

    def __len__(self) -> int:
        """Number of documents. O(1)."""
        return len(self._docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    # ------------------------------------------------------------------ adding
    def add_document(self, doc_id: DocId, text: str, embedding: npt.ArrayLike | None = None,
                     metadata: Mapping[str, Any] | None = None) -> None:
        """Store and index one document (see :meth:`add_documents`). O(|text|) + one insert.

        Raises ValueError for a duplicate ``doc_id``, an empty text, a wrong-shaped,
        NaN/inf or (cosine) zero embedding, TypeError for an id of the other kind or
        metadata JSON cannot hold; nothing changes then. Empties the result cache.
        """
        d = self._new_single(doc_id, "doc_id")
        text = check_text(text, "text", nonempty=True)
        meta = check_metadata(metadata, "metadata")
        x: Any = None
        if embedding is not None:
            check = self._vector if self._PREPARE else self._checked
            x = check(embedding, "embedding")[None, :]
        elif self._embedder is not None:
            x = self._embed([text], "text", prepare=self._PREPARE)
        self._insert([d], [text], [meta], [0] if x is not None else [], x, 1)

    def add_documents(
        self,
        doc_ids: Sequence[DocId],
        texts: Sequence[str],
        embeddings: npt.ArrayLike | Sequence[npt.ArrayLike | None] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        batch_size: int = 256,
        show_progress: bool = False,
        num_threads: int = -1,
    ) -> int:
        """Add many documents at once, all or nothing; returns how many were added.

        ``embeddings`` is ``None`` (the embedder embeds every text, or all are
        lexical-only), an ``(n, dim)`` array, or a sequence of vectors and ``None``
        (the embedder, if any, fills the ``None`` ones). The embedder gets
        ``batch_size`` texts per call, with a progress bar on stderr when
        ``show_progress`` (tqdm's if installed, else a plain one). ``metadatas``: one
        JSON-serialisable dict (or None) per document. ``num_threads`` links the new
        vectors into the graph: -1 (the default) on all cores, which builds a graph of
        the same quality but not the same one from run to run (threads race for
        neighbours); pass 1 for a bit-identical graph (and so identical results) with
        a fixed ``seed``. Everything is validated and embedded before the pipeline
        changes. O(total text + n inserts).
        """
        ids, docs, metas = check_batch(self._docs, doc_ids, texts, metadatas)
        batch_size = check_int(batch_size, "batch_size", minimum=1, maximum=2**31 - 1)
        show_progress = check_bool(show_progress, "show_progress")
        threads = num_threads_for(num_threads, max(len(ids), 1), 1)
        rows, x = self._batch_vectors(embeddings, docs, batch_size, show_progress,
                                      self._PREPARE)
        if ids:
            self._insert(ids, docs, metas, rows, x, threads)
        return len(ids)

    def _new_single(self, doc_id: Any, name: str) -> DocId:
        d = self._docs.check_id(doc_id, name)
        if d in self._docs:
            raise ValueError(f"{name} {d!r} is already in the pipeline; delete_document it first")
        return d

    # ------------------------------------------------------------------ cache
    def clear_cache(self, invalidate: bool = False) -> None:
        """Drop every cached result (query counts stay). O(cached queries)."""
        self._cache.clear(check_bool(invalidate, "invalidate"))

    def reset_cache(self) -> None:
        """Empty the result cache, forget every query count and zero the hit/miss
        counters (a cold start, e.g. between benchmark runs). O(cached + sketch size)."""
        self._cache.reset()

    def _insert(self, ids: list[DocId], docs: list[str], metas: list[str | None],
                rows: list[int], x: Any, threads: int) -> None:
        """Store checked documents (``x``: the vectors of the documents ``rows``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ vectors
    def _vector(self, x: Any, name: str) -> npt.NDArray[np.float32]:
        """Validate one embedding: shape (dim,) or (1, dim), finite, non-zero for cosine."""
        return self._prepare(self._checked(x, name)[None, :], name)[0]

    def _checked(self, x: Any, name: str) -> npt.NDArray[np.float64]:
        """One embedding as given (float64, shape (dim,)), after every check of _vector."""
        arr = check_finite_array(x, name, dtype=np.float64)
        if arr.ndim == 2 and arr.shape[0] == 1:
            arr = arr[0]
        if arr.shape != (self._dim,):
            raise ValueError(f"{name} must have shape ({self._dim},), got {arr.shape}")
        self._prepare(arr[None, :], name)
        return arr

    def _prepare(self, arr: npt.NDArray[np.float64], name: str) -> npt.NDArray[np.float32]:
        """Finite float64 rows as float32 (unit length for cosine); nothing may overflow."""
        if self._metric == "cosine":
            norms = np.linalg.norm(arr, axis=1, keepdims=True)
            if (norms == 0).any():
                raise ValueError(f"{name} has a zero vector, which has no cosine direction")
            arr = arr / norms
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(out).all():
            raise ValueError(f"{name} must fit in float32 (|x| < 3.4e38)")
        return out

    def _embed(self, texts: list[str], name: str, queries: bool = False, prepare: bool = True,
               ) -> Any:
        """The embedder's checked vectors of ``texts`` (queries go to its optional
        ``embed_queries`` when it has one: asymmetric models embed them differently);
        ``prepare=False``: as the embedder gave them (float64), see _batch_vectors."""
        assert self._embedder is not None
        embed = getattr(self._embedder, "embed_queries", None) if queries else None
        raw = (embed or self._embedder.embed)(texts)
        try:
            out = np.asarray(raw)
        except (TypeError, ValueError, OverflowError):
            out = np.asarray(None)
        if out.shape != (len(texts), self._dim):
            raise ValueError(f"embedder returned shape {out.shape} for {len(texts)} texts; "
                             f"expected ({len(texts)}, {self._dim})")
        checked = check_finite_array(out, f"embedder output for {name}", dtype=np.float64)
        ready = self._prepare(checked, f"embedder output for {name}")
        return ready if prepare else checked

    def _batch_vectors(self, embeddings: Any, docs: list[str], batch_size: int,
                       show_progress: bool, prepare: bool = True) -> tuple[list[int], Any]:
        """``(rows, vectors)`` of an ``add_documents`` batch: given ones checked, missing
        ones embedded ``batch_size`` texts per call. Changes nothing. ``prepare=False``
        returns the checked vectors as given (float64, not yet normalised): a sharded
        coordinator ships those, so that each shard prepares them bit for bit as one
        pipeline would (normalising twice changes the last bits)."""
        n = len(docs)
        rows: list[int] = []
        mats: list[Any] = []
        missing: list[int] = []
        if embeddings is None:
            missing = list(range(n))
        elif isinstance(embeddings, np.ndarray) and embeddings.ndim == 2:
            arr = check_finite_array(embeddings, "embeddings", dtype=np.float64)
            if arr.shape != (n, self._dim):
                raise ValueError(f"embeddings must have shape ({n}, {self._dim}), "
                                 f"got {arr.shape}")
            ready = self._prepare(arr, "embeddings")
            rows, mats = list(range(n)), [ready if prepare else arr]
        else:
            given = as_list(embeddings, "embeddings", "vectors or None")
            if len(given) != n:
                raise ValueError(f"embeddings has {len(given)} entries for {n} documents")
            present = [i for i, e in enumerate(given) if e is not None]
            missing = [i for i, e in enumerate(given) if e is None]
            if present:
                check = self._vector if prepare else self._checked
                mats.append(np.stack([check(given[i], f"embeddings[{i}]") for i in present]))
                rows.extend(present)
        if missing and self._embedder is not None:
            with Progress(len(missing), "embedding documents", show_progress) as bar:
                for start in range(0, len(missing), batch_size):
                    part = missing[start: start + batch_size]
                    mats.append(self._embed([docs[i] for i in part], "texts", prepare=prepare))
                    rows.extend(part)
                    bar.update(len(part))
        if not rows:
            return [], None
        return rows, np.concatenate(mats) if len(mats) > 1 else mats[0]

    # ------------------------------------------------------------------ public search
    def search(
        self,
        query: str,
        query_embedding: npt.ArrayLike | None = None,
        top_k: int = 10,
        fusion_weight: float = 0.5,
        *,
        fusion: str | None = None,
        use_cache: bool = True,
        filter: Mapping[str, Any] | None = None,
        return_documents: bool = False,
    ) -> list[Any]:
        """The ``top_k`` best ``(doc_id, fused score)``, best first (or :class:`Document`\\ s).

        ``fusion_weight`` is the dense side's share (``weighted``) or weight
        (``rrf``); ``fusion`` overrides the pipeline's default for this call;
        ``filter`` admits documents by metadata (:mod:`llmds.filters`);
        ``use_cache=False`` neither reads nor fills the hot-query cache (the query
        is still counted). See the class docstring for the cost.
        """
        query = check_str(query, "query")
        q = None if query_embedding is None else self._vector(query_embedding,
                                                              "query_embedding")
        return self._run([query], [q], top_k, fusion_weight, fusion, use_cache, filter,
                         return_documents, 1)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        query_embeddings: npt.ArrayLike | Sequence[npt.ArrayLike | None] | None = None,
        top_k: int = 10,
        fusion_weight: float = 0.5,
        *,
        fusion: str | None = None,
        use_cache: bool = True,
        filter: Mapping[str, Any] | None = None,
        return_documents: bool = False,
        num_threads: int = -1,
    ) -> list[list[Any]]:
        """:meth:`search` for every query: one result list per query, each equal to
        what ``search`` returns for it.

        ``query_embeddings``: None, an ``(n, dim)`` array, or one vector or None per
        query; queries without one are embedded in a single embedder call (when
        there is an embedder). Both searches run on ``num_threads`` threads (-1: all
        cores). O(sum of the per-query costs), divided among the threads.
        """
        qs = [check_str(q, f"queries[{i}]") for i, q in
              enumerate(as_list(queries, "queries", "str"))]
        vecs: list[npt.NDArray[np.float32] | None] = [None] * len(qs)
        if isinstance(query_embeddings, np.ndarray) and query_embeddings.ndim == 2:
            arr = check_finite_array(query_embeddings, "query_embeddings", dtype=np.float64)
            if arr.shape != (len(qs), self._dim):
                raise ValueError(f"query_embeddings must have shape ({len(qs)}, "
                                 f"{self._dim}), got {arr.shape}")
            vecs = list(self._prepare(arr, "query_embeddings"))
        elif query_embeddings is not None:
            given = as_list(query_embeddings, "query_embeddings", "vectors or None")
            if len(given) != len(qs):
                raise ValueError(f"query_embeddings has {len(given)} entries for {len(qs)} "
                                 "queries")
            vecs = [None if v is None else self._vector(v, f"query_embeddings[{i}]")
                    for i, v in enumerate(given)]
        threads = num_threads_for(num_threads, max(len(qs), 1), 1)
        return self._run(qs, vecs, top_k, fusion_weight, fusion, use_cache, filter,
                         return_documents, threads)

    # ------------------------------------------------------------------ the engine
    def _run(self, queries: list[str], vecs: list[Any], top_k: Any, fusion_weight: Any,
             fusion: Any, use_cache: Any, filt: Any, return_documents: Any,
             threads: int) -> list[list[Any]]:
        k = check_int(top_k, "top_k", minimum=1, maximum=INT64_MAX)
        w = check_weight(fusion_weight)
        mode = self._fusion if fusion is None else check_choice(fusion, "fusion", FUSIONS)
        use = check_bool(use_cache, "use_cache") and self._cache.enabled
        docs_out = check_bool(return_documents, "return_documents")
        filt = check_filter(filt)
        with self._lock.reading():
            scope = None if filt is None else self._scope(filt)
            fkey = () if filt is None else (filter_key(filt),)
            norms, keys, results = self._cached(queries, vecs, k, w, mode, fkey, use)
            need = [i for i, r in enumerate(results) if r is None and vecs[i] is None]
            if need and w > 0.0 and self._embedder is not None and self._has_vectors():
                found = self._embed([queries[i] for i in need],
                                    "query" if len(queries) == 1 else "queries", True)
                for j, i in enumerate(need):
                    vecs[i] = found[j]
            hot = [self._cache.count(norm, None if not use or norm is None else r is not None)
                   for norm, r in zip(norms, results, strict=True)]
            todo = [i for i, r in enumerate(results) if r is None]
            self._fill(todo, queries, vecs, k, w, mode, scope, threads, results)
            for i in todo:
                if hot[i] and keys[i] is not None:
                    self._cache.store(keys[i], results[i])  # type: ignore[arg-type]
            return self._outputs(results, docs_out)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ seams
    def _scope(self, filt: Mapping[str, Any]) -> Any:
        """What a filtered batch searches: the mask over slots (raises for a bad filter)."""
        return self._docs.filters.mask(filt, len(self._docs))

    def _has_vectors(self) -> bool:
        return self._vectors.n > 0

    def _candidates(self, queries: list[str], q: npt.NDArray[np.float32] | None, k: int,
                    scope: Any, threads: int) -> tuple[list[Candidates], list[Candidates]]:
        """BM25 candidates of ``queries`` and nearest vectors of the rows of ``q``."""
        lex = self._lexical(queries, max(self._lexical_depth, k), scope, threads)
        dense = ([] if q is None else
                 self._dense(q, max(self._dense_depth, k), scope, threads))
        return lex, dense

    def _outputs(self, results: list[Results], documents: bool) -> list[list[Any]]:
        return [self._output(r, documents) for r in results]

    def _cached(self, queries: list[str], vecs: list[Any], k: int, w: float, mode: str,
                fkey: tuple[str, ...], use: bool,
                ) -> tuple[list[str | None], list[Any], list[Results | None]]:
        """Normalised queries, cache keys and cache hits (None: a miss)."""
        m = len(queries)
        norms: list[str | None] = [None] * m
        keys: list[Any] = [None] * m
        results: list[Results | None] = [None] * m
        if not self._cache.enabled:
            return norms, keys, results
        for i, query in enumerate(queries):
            norm = self._normalize(query)
            if not isinstance(norm, str):
                raise TypeError(f"query_normalizer must return a str, got {show(norm)}")
            norms[i] = norm
            if use:
                q = vecs[i]
                digest = (None if q is None or w == 0.0
                          else hashlib.blake2b(q.tobytes(), digest_size=16).digest())
                keys[i] = (norm, digest, k, w, mode, *fkey)
                results[i] = self._cache.get(keys[i])
        return norms, keys, results

    def _fill(self, todo: list[int], queries: list[str], vecs: list[Any], k: int, w: float,
              mode: str, scope: Any, threads: int, results: list[Results | None]) -> None:
        """Search both sides for the queries ``todo`` and fuse each into ``results``."""
        weights = {i: 0.0 if vecs[i] is None else w for i in todo}
        lex_rows = [i for i in todo if weights[i] < 1.0]
        dense_rows = [i for i in todo if weights[i] > 0.0]
        q = np.stack([vecs[i] for i in dense_rows]) if dense_rows else None
        lex_found, dense_found = self._candidates([queries[i] for i in lex_rows], q, k, scope,
                                                  threads)
        lex = dict(zip(lex_rows, lex_found, strict=True))
        dense = dict(zip(dense_rows, dense_found, strict=True))
        empty = (NO_IDS, NO_SCORES)
        for i in todo:
            lk, ls = lex.get(i, empty)
            dk, ds = dense.get(i, empty)
            results[i] = tuple(fuse_top_k(lk, ls, dk, ds, weights[i], mode, self._rrf_k, k))

    def _lexical(self, queries: list[str], depth: int, mask: Any, threads: int,
                 stats: CollectionStats | None = None) -> list[Candidates]:
        """BM25 top ``depth`` (keys, scores) per query among the documents ``mask`` admits
        (scored with ``stats`` when given: a shard scoring with its collection's)."""
        n = len(self._docs)
        empty = [(NO_IDS, NO_SCORES)] * len(queries)
        if not queries or n == 0:
            return empty
        allowed = None
        if mask is not None:
            if not mask.any():
                return empty
            if not mask.all():
                allowed = np.zeros(self._index.num_internal_ids, dtype=np.bool_)
                allowed[self._docs.lex_ids()[mask]] = True
        ids, scores, counts = self._index.search_batch(
            queries, min(depth, n), allowed_mask=allowed, collection_stats=stats,
            as_arrays=True, num_threads=threads)
        return [(ids[i, :c], scores[i, :c]) for i, c in enumerate(counts.tolist())]

    def _dense(self, q: npt.NDArray[np.float32], depth: int, mask: Any,
               threads: int) -> list[Candidates]:
        """Nearest ``depth`` (keys, scores) per row, best first, ties by key."""
        store = self._vectors
        found = store.search(q, depth, mask, self._brute_force_max, threads)
        keys_of = self._docs.keys()
        out = []
        for slots, scores in found:
            keys = keys_of[slots]
            order = np.lexsort((keys, -scores))[:depth]
            out.append((keys[order], scores[order]))
        return out

    def _output(self, results: Results, documents: bool) -> list[Any]:
        docs = self._docs
        if not documents:
            if docs.id_kind != "str":
                return list(results)
            ids = docs.ids_of_keys([key for key, _ in results])
            return [(d, s) for d, (_, s) in zip(ids, results, strict=True)]
        out = []
        for key, score in results:
            slot = docs.slot_of_key(key)
            out.append(Document(docs.doc_id(slot), score, docs.text(slot), docs.metadata(slot)))
        return out
