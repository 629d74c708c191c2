"""ShardedRetrievalPipeline: one hybrid BM25 + HNSW index spread over shards (Ray actors
or in-process), with exactly the results of one :class:`~llmds.RetrievalPipeline`.

Documents go to shard ``shard_of(id) = SHA-256(type-tagged id) mod num_shards``
(:func:`llmds.dist._shards.shard_of`). A search is scattered to every shard and the
answers merged:

* **BM25 with the collection's statistics.** Each shard scores its documents with the
  whole collection's N, average length and per-term document frequency, not its
  own (per-shard IDF is the classic sharding error), through
  :class:`~llmds.inverted_index.CollectionStats`. The coordinator keeps those
  figures current from what every write reports (a shard answers an add with the
  df/length/field counts it added and a delete with what it removed), so a search
  needs *no extra round trip*: the coordinator analyses the query (a few us), sends
  the df of its terms with it, and each shard returns its top ``lexical_depth``.
  Cost: one dict entry per distinct term in the coordinator (SciFact: 27k terms), a
  few bytes per query term per shard call.
* **Dense**: each shard returns its ``dense_depth`` nearest vectors; the merged list is
  the best ``dense_depth`` by score, ties by key, as one pipeline sorts them.
* **Fusion after the merge**: weighted min-max or RRF runs once, in the coordinator,
  over the merged lists, so it sees exactly the candidates one pipeline would.

So for the same documents and queries the ids and scores are those of one
``RetrievalPipeline`` built the same way: bit for bit on the lexical side, and on the
dense side whenever both are exact (``brute_force_max`` at least the number of
vectors, or a graph ``ef`` that finds the true neighbours; the distance kernel
gives one document the same bits on any shard). Str ids get their keys (the tie
order) from the coordinator, in the order added, as in one pipeline.

Backends: ``"ray"`` puts each shard in a Ray actor (Ray's scheduler places them,
``SPREAD`` over the nodes by default, so a multi-node cluster works unchanged) that
runs up to ``max_concurrency`` calls at once on threads; ``"local"`` keeps the shards
in this process and calls them one after the other (small setups, tests).
``ray.init`` is the caller's: the class uses the Ray this process runs, else joins a
running cluster, else (``ray_init="local"``) starts a local one.

**Failures** (the policy): a shard whose actor died, that raised, or that did not
answer within ``timeout`` seconds makes the call fail with :class:`ShardError`
naming the shard; no search ever returns results from only some shards, and
nothing is retried (actors run with ``max_restarts=0``: a restarted actor would
come back empty). A dead shard's documents are gone from memory: ``load`` the last
save. A write that fails on one shard is undone on the others before ``ShardError``
is raised.

Thread safety: safe for concurrent readers; writers are serialised with readers by a
readers-writer lock in the coordinator, so a search sees the whole collection before
or after a write, never a write applied to some shards only. Many threads may search
at once: searches that arrive while a shard call is in flight are sent together as
one batch when it returns (:mod:`llmds.dist._batcher`; one client alone pays no
wait), so concurrent clients cost the shards several times fewer calls, and a
query's answer does not depend on its batch. With Ray the calls run concurrently in the
actors. One coordinator owns its actors: two processes must not share them; when the
coordinator is garbage collected or its process exits, Ray ends the actors.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds import _hybrid, _pipeline_args
from llmds._docstore import DocId, DocStore, Document
from llmds._index_search import analyze
from llmds._threads import RWLock
from llmds._validate import check_bool, check_choice, check_int, check_number, check_path, show
from llmds.dist._batcher import Batcher
from llmds.dist._shard import Delta, Packed
from llmds.dist._sharded_file import MAX_SHARDS, read_sharded, write_sharded
from llmds.dist._shards import LocalShards, RayShards, ShardFailures, shard_of
from llmds.errors import CorruptFileError, LLMDSError
from llmds.filters import FilterIndex
from llmds.inverted_index import CollectionStats
from llmds.retrieval_pipeline import RetrievalPipeline, normalize_query

__all__ = ["BACKENDS", "ShardError", "ShardedRetrievalPipeline"]

BACKENDS = ("ray", "local")
Candidates = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
# parameters a shard's own pipeline uses (the rest act in the coordinator only)
_SHARD_PARAMS = ("embedding_dim", "seed", "metric", "k1", "b", "M", "ef_construction",
                 "ef_search", "brute_force_max", "store_text")


class ShardError(LLMDSError, RuntimeError):
    """A shard failed a call (its actor died, it raised, or it did not answer in time).

    The message names the shard(s). Nothing partial was returned or kept.
    """


class _Totals:
    """The collection's figures, summed over the shards' write reports: documents, total
    length, df per term, vectors, documents per metadata field. Not thread-safe: the
    coordinator changes it under its write lock."""

    __slots__ = ("df", "fields", "num_docs", "num_vectors", "total_length")

    def __init__(self) -> None:
        self.num_docs = self.total_length = self.num_vectors = 0
        self.df: dict[str, int] = {}
        self.fields: dict[str, int] = {}

    def apply(self, delta: Delta, sign: int) -> None:
        """Add (``sign=1``) or subtract (``-1``) one shard's report. O(terms + fields)."""
        self.num_docs += sign * delta.num_docs
        self.total_length += sign * delta.total_length
        self.num_vectors += sign * delta.num_vectors
        for counts, change in ((self.df, delta.df), (self.fields, delta.fields)):
            for key, c in change.items():
                value = counts.get(key, 0) + sign * c
                if value:
                    counts[key] = value
                else:
                    del counts[key]

    def stats(self, terms: Iterable[str]) -> CollectionStats:
        df = self.df
        return CollectionStats(self.num_docs, self.total_length,
                               {t: df.get(t, 0) for t in terms})


def _merge(answers: list[Packed], nq: int, depth: int) -> list[Candidates]:
    """Per query, the best ``depth`` of the shards' candidates by score, ties by key."""
    out = []
    for j in range(nq):
        keys = np.concatenate([k[j, : c[j]] for k, _, c in answers])
        scores = np.concatenate([s[j, : c[j]] for _, s, c in answers])
        order = np.lexsort((keys, -scores))[:depth]
        out.append((keys[order], scores[order]))
    return out


class ShardedRetrievalPipeline(_hybrid.HybridSearch):
    """:class:`~llmds.RetrievalPipeline`'s API over ``num_shards`` shards; see the module
    docstring for the placement, the exact merge and the failure policy.

    ``ShardedRetrievalPipeline(num_shards, backend="ray", **pipeline_kwargs)`` takes
    every argument of ``RetrievalPipeline`` (each shard is one; the embedder, the
    analyzer for queries, fusion and the hot-query cache live in the coordinator),
    plus ``ray_init`` (None: use or join a running Ray; ``"local"``: start one; a dict
    of ``ray.init`` arguments), ``ray_options`` (Ray actor options, default
    ``{"num_cpus": 0, "scheduling_strategy": "SPREAD"}``), ``max_concurrency`` (calls
    an actor runs at once) and ``timeout`` (seconds a Ray call may take, None: no
    limit; the local backend runs calls in the caller's thread and has no timeout).

    Invariants (``_check``): the coordinator's ids and keys are exactly the union of
    the shards' documents, each on the shard its id hashes to; its statistics equal
    the sums of the shards' own; every shard passes its pipeline's ``_check``.

    Complexity: ``add_documents`` routes O(n) ids and costs each shard what its part
    costs one pipeline, the shards working in parallel with Ray; a search costs
    O(query length) in the coordinator, one round trip to every shard (each doing a
    pipeline search over its ~n/num_shards documents), an O(c log c) merge of the c
    candidates and the fusion; ``delete_document`` one shard call. Memory: the
    coordinator holds ~150 bytes per document (ids, keys), one dict entry per
    distinct term and the cache; each shard holds its part as one pipeline would.
    """

    __slots__ = ("_analyzer", "_batcher", "_cache", "_closed", "_dim", "_docs", "_lock", "_metric",
                 "_normalize", "_num_shards", "_params", "_rrf_k", "_shards", "_timeout",
                 "_totals")
    _PREPARE = False  # shards prepare vectors themselves, exactly as one pipeline does

    def __init__(
        self,
        num_shards: int,
        *,
        backend: str = "ray",
        ray_init: str | Mapping[str, Any] | None = None,
        ray_options: Mapping[str, Any] | None = None,
        max_concurrency: int = 8,
        timeout: float | None = None,
        **pipeline_kwargs: Any,
    ) -> None:
        num_shards = check_int(num_shards, "num_shards", minimum=1, maximum=MAX_SHARDS)
        template = RetrievalPipeline(**pipeline_kwargs)  # checks every pipeline argument
        self._setup(num_shards, template, backend, ray_init, ray_options, max_concurrency,
                    timeout)
        shard_params = {**template._params(), "cache_budget": 0}
        analyzer = pipeline_kwargs.get("analyzer")
        try:
            self._map("create", {i: (shard_params, analyzer) for i in range(num_shards)},
                      "creating the shards")
        except BaseException:
            self.close()
            raise

    def _setup(self, num_shards: int, template: RetrievalPipeline, backend: Any, ray_init: Any,
               ray_options: Any, max_concurrency: Any, timeout: Any) -> None:
        """Check the backend arguments, take the template's settings, start the shards."""
        backend = check_choice(backend, "backend", BACKENDS)
        max_concurrency = check_int(max_concurrency, "max_concurrency", minimum=1,
                                    maximum=4096)
        if timeout is not None:
            timeout = check_number(timeout, "timeout", minimum=0.0, exclusive_minimum=True)
        if ray_options is not None and not isinstance(ray_options, Mapping):
            raise TypeError(f"ray_options must be a dict or None, got {show(ray_options)}")
        if backend == "local" and (ray_init is not None or ray_options is not None):
            raise ValueError("ray_init and ray_options apply to backend='ray' only")
        # the coordinator's settings are a pipeline's (checked by its constructor)
        self._dim, self._metric, self._rrf_k = template._dim, template._metric, template._rrf_k
        self._fusion, self._lexical_depth = template._fusion, template._lexical_depth
        self._dense_depth, self._normalize = template._dense_depth, template._normalize
        self._embedder = template._embedder
        self._embedder_identity = template._embedder_identity
        self._cache = template._cache
        self._analyzer = template._index.analyzer
        self._params = template._params()
        self._docs = DocStore(store_text=False)
        self._lock = RWLock()
        self._totals = _Totals()
        self._batcher = Batcher(self._scatter)
        self._timeout = timeout
        self._num_shards = num_shards
        self._closed = False
        self._shards: LocalShards | RayShards = (
            LocalShards(num_shards) if backend == "local"
            else RayShards(num_shards, ray_init, ray_options, max_concurrency))

    # ------------------------------------------------------------------ shards
    def _map(self, method: str, calls: Mapping[int, tuple[Any, ...]], what: str,
             ) -> dict[int, Any]:
        try:
            return self._shards.map(method, calls, self._timeout)
        except ShardFailures as f:
            raise self._error(f, what) from None

    def _error(self, f: ShardFailures, what: str) -> ShardError:
        parts = []
        for i, (kind, cause) in sorted(f.failures.items()):
            where = self._shards.describe(i)
            if kind == "died":
                first = str(cause).strip().splitlines()[0][:200] if cause else ""
                parts.append(f"{where} is dead ({first}); its documents are lost: load() "
                             "the last save")
            elif kind == "timeout":
                parts.append(f"{where} did not answer within {self._timeout} s")
            else:
                parts.append(f"{where} raised {type(cause).__name__}: {str(cause)[:300]}")
        return ShardError(f"{what} failed on {len(parts)} of {self._num_shards} shards "
                          f"(nothing partial is returned): " + "; ".join(parts))

    @property
    def num_shards(self) -> int:
        return self._num_shards

    @property
    def backend(self) -> str:
        """``"ray"`` or ``"local"``."""
        return self._shards.kind

    def close(self) -> None:
        """Stop the shards (kills the Ray actors; their documents are gone). Idempotent."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._shards.close()

    def __enter__(self) -> ShardedRetrievalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("a ShardedRetrievalPipeline cannot be pickled (it owns its shards): "
                        "save() it and load() it elsewhere")

    # ------------------------------------------------------------------ writes
    def _insert(self, ids: list[DocId], docs: list[str], metas: list[str | None],
                rows: list[int], x: Any, threads: int) -> None:
        """Route checked documents to their shards (all or nothing)."""
        with self._lock.writing():
            if any(d in self._docs for d in ids):
                raise ValueError("a doc_id was added by another thread meanwhile")
            keys = self._docs.planned_keys(ids)
            vectors = dict(zip(rows, x, strict=True)) if rows else {}
            parts: dict[int, list[int]] = {}
            for j, d in enumerate(ids):
                parts.setdefault(shard_of(d, self._num_shards), []).append(j)
            calls = {s: ([keys[j] for j in js], [docs[j] for j in js],
                         [vectors.get(j) for j in js],
                         [None if metas[j] is None else json.loads(metas[j])  # type: ignore[arg-type]
                          for j in js], threads)
                     for s, js in parts.items()}
            try:
                deltas = self._shards.map("add", calls, self._timeout)
            except ShardFailures as f:
                undo = {s: (calls[s][0],) for s in f.results}
                with contextlib.suppress(ShardFailures):  # the error below names the shards
                    self._shards.map("remove", undo, self._timeout)
                raise self._error(f, "add_documents") from None
            self._docs.add(ids, docs, [None] * len(ids))
            for delta in deltas.values():
                self._totals.apply(delta, 1)
            self._cache.clear(invalidate=True)

    def delete_document(self, doc_id: DocId) -> None:
        """Remove ``doc_id`` (one shard call). Raises KeyError if it is not here."""
        with self._lock.writing():
            slot = self._docs.slot(doc_id)
            d, key = self._docs.doc_id(slot), self._docs.key(slot)
            s = shard_of(d, self._num_shards)
            delta = self._map("delete", {s: (key,)}, "delete_document")[s]
            self._docs.remove(slot)
            self._totals.apply(delta, -1)
            self._cache.clear(invalidate=True)

    # ------------------------------------------------------------------ reads
    def _shard_key(self, doc_id: DocId) -> tuple[DocId, int, int]:
        slot = self._docs.slot(doc_id)
        d = self._docs.doc_id(slot)
        return d, self._docs.key(slot), shard_of(d, self._num_shards)

    def get_document(self, doc_id: DocId) -> Document:
        """The stored document (``score=None``); one shard call. KeyError if unknown."""
        with self._lock.reading():
            d, key, s = self._shard_key(doc_id)
            text, meta = self._map("documents", {s: ([key],)}, "get_document")[s][0]
            return Document(d, None, text, {} if meta is None else json.loads(meta))

    def has_embedding(self, doc_id: DocId) -> bool:
        """True if ``doc_id`` has a vector; one shard call. KeyError if unknown."""
        with self._lock.reading():
            _, key, s = self._shard_key(doc_id)
            return bool(self._map("has_embedding", {s: (key,)}, "has_embedding")[s])

    # the search seams of HybridSearch (called under the read lock)
    def _scope(self, filt: Mapping[str, Any]) -> Any:
        """Check ``filt`` against the collection's fields (the pipeline's errors); the
        shards evaluate it."""
        FilterIndex().mask(filt, 0, list(self._totals.fields))
        return filt

    def _has_vectors(self) -> bool:
        return self._totals.num_vectors > 0

    def _candidates(self, queries: list[str], q: npt.NDArray[np.float32] | None, k: int,
                    scope: Any, threads: int) -> tuple[list[Candidates], list[Candidates]]:
        """Both sides' merged candidates, through the batcher: concurrent searches of
        the same depths and filter share one call to every shard."""
        key = (max(self._lexical_depth, k), max(self._dense_depth, k),
               None if scope is None else _hybrid.filter_key(scope))
        result: tuple[list[Candidates], list[Candidates]] = self._batcher.run(
            key, (queries, q, scope, threads))
        return result

    def _scatter(self, key: Any, items: list[Any]) -> list[Any]:
        """One call to every shard for the searches ``items`` (see :meth:`_candidates`),
        the shards' lists merged per query, split back per search."""
        lex_depth, dense_depth, _ = key
        queries = [text for it in items for text in it[0]]
        rows = [it[1] for it in items if it[1] is not None]
        q = np.concatenate(rows) if rows else None
        scope, threads = items[0][2], max(it[3] for it in items)
        stats = None
        if queries:
            terms: set[str] = set()
            for query in queries:
                terms.update(analyze(self._analyzer, query))
            stats = self._totals.stats(terms)
        fields = None if scope is None else list(self._totals.fields)
        args = (queries, q, lex_depth, dense_depth, scope, fields, stats, threads)
        try:
            answers = self._shards.broadcast("candidates", args, self._timeout)
        except ShardFailures as f:
            raise self._error(f, "search") from None
        ordered = [answers[i] for i in range(self._num_shards)]
        lex = _merge([a[0] for a in ordered], len(queries), lex_depth)
        dense = _merge([a[1] for a in ordered], 0 if q is None else q.shape[0], dense_depth)
        out = []
        li = di = 0
        for texts, vectors, _, _ in items:
            nl, nd = len(texts), 0 if vectors is None else vectors.shape[0]
            out.append((lex[li: li + nl], dense[di: di + nd]))
            li, di = li + nl, di + nd
        return out

    def _outputs(self, results: list[Any], documents: bool) -> list[list[Any]]:
        docs = self._docs
        if not documents:
            if docs.id_kind != "str":
                return [list(r) for r in results]
            return [[(d, s) for d, (_, s) in zip(docs.ids_of_keys([k for k, _ in r]), r,
                                                 strict=True)] for r in results]
        wanted: dict[int, list[int]] = {}
        ids: dict[int, DocId] = {}
        for r in results:
            for key, _ in r:
                d = docs.doc_id(docs.slot_of_key(key))
                ids[key] = d
                wanted.setdefault(shard_of(d, self._num_shards), []).append(key)
        found = self._map("documents", {s: (keys,) for s, keys in wanted.items()},
                          "return_documents")
        stored = {key: doc for s, keys in wanted.items()
                  for key, doc in zip(keys, found[s], strict=True)}
        return [[Document(ids[key], score, stored[key][0],
                          {} if stored[key][1] is None else json.loads(stored[key][1]))
                 for key, score in r] for r in results]

    # ------------------------------------------------------------------ figures
    def stats(self) -> dict[str, Any]:
        """Counts, configuration, cache figures and each shard's ``stats()`` (one call to
        every shard). ``shards[i]["search_seconds"]`` is the time shard ``i`` spent in
        searches, measured inside it."""
        with self._lock.reading():
            shards = self._map("stats", dict.fromkeys(range(self._num_shards), ()), "stats")
            t = self._totals
            return {
                "num_shards": self._num_shards, "backend": self.backend,
                "num_documents": len(self._docs), "num_embedded": t.num_vectors,
                "num_lexical_only": len(self._docs) - t.num_vectors,
                "embedding_dim": self._dim, "metric": self._metric, "fusion": self._fusion,
                "lexical_depth": self._lexical_depth, "dense_depth": self._dense_depth,
                "rrf_k": self._rrf_k,
                "embedder": repr(self._embedder) if self._embedder is not None else None,
                "embedder_identity": self._embedder_identity, "id_kind": self._docs.id_kind,
                "store_text": self._params["store_text"],
                "metadata_fields": sorted(t.fields), **self._cache.stats(),
                "lexical": {"num_docs": t.num_docs, "num_terms": len(t.df),
                            "total_length": t.total_length,
                            "avgdl": t.total_length / t.num_docs if t.num_docs else 0.0},
                "shards": [shards[i] for i in range(self._num_shards)],
            }

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the pipeline to the folder ``path``: one folder per shard, written by the
        shard itself (in parallel, on its node: on a multi-node cluster ``path`` must be
        on a filesystem every node sees), plus a manifest committed last. O(index size).
        See :mod:`llmds.dist._sharded_file`. Searches run on; writers wait."""
        path = check_path(path)
        with self._lock.reading():
            meta = {"params": {**self._params, "fusion": self._fusion,
                               "lexical_depth": self._lexical_depth,
                               "dense_depth": self._dense_depth},
                    "num_shards": self._num_shards, "num_documents": len(self._docs),
                    "num_vectors": self._totals.num_vectors, "embedder": self._embedder_identity}

            def save_shards(folders: list[str]) -> list[str]:
                done = self._map("save", {i: (f,) for i, f in enumerate(folders)}, "save")
                return [done[i] for i in range(self._num_shards)]

            write_sharded(path, meta, self._docs.state(), save_shards)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        backend: str = "ray",
        embedder: Any = _pipeline_args.AUTO,
        analyzer: Any = None,
        query_normalizer: Any = normalize_query,
        mmap: bool = False,
        ray_init: str | Mapping[str, Any] | None = None,
        ray_options: Mapping[str, Any] | None = None,
        max_concurrency: int = 8,
        timeout: float | None = None,
    ) -> ShardedRetrievalPipeline:
        """Read a pipeline written by :meth:`save` onto new shards, trusting nothing in it.

        The embedder follows :meth:`RetrievalPipeline.load`'s rules. Raises
        FileNotFoundError if ``path`` holds no sharded pipeline and CorruptFileError for
        a manifest, ids part or shard that is altered, missing (a shard count that
        disagrees with its folders) or disagrees with the others. O(index size).
        """
        path = check_path(path)
        mmap = check_bool(mmap, "mmap")
        _pipeline_args.check_hooks(None if embedder is _pipeline_args.AUTO else embedder, analyzer,
                            query_normalizer)
        saved = read_sharded(path)
        try:
            template = RetrievalPipeline(**saved.params, analyzer=analyzer,
                                         query_normalizer=query_normalizer)
        except (TypeError, ValueError) as exc:
            raise CorruptFileError(f"{os.fspath(path)!r}: bad parameter: {exc}") from None
        self = cls.__new__(cls)
        self._setup(len(saved.folders), template, backend, ray_init, ray_options,
                    max_concurrency, timeout)
        try:
            self._restore(path, saved, analyzer, mmap, embedder)
        except BaseException:
            self.close()
            raise
        return self

    def _restore(self, path: Any, saved: Any, analyzer: Any, mmap: bool, embedder: Any) -> None:
        """Load every shard, check the shards against the manifest, rebuild the totals."""
        n = self._num_shards
        calls = {i: (saved.folders[i], saved.digests[i], analyzer, mmap) for i in range(n)}
        try:
            self._shards.map("load", calls, self._timeout)
        except ShardFailures as f:
            for i, (_, cause) in sorted(f.failures.items()):
                if isinstance(cause, CorruptFileError | FileNotFoundError):
                    raise CorruptFileError(f"{os.fspath(path)!r}: shard {i}: {cause}") from None
            raise self._error(f, "load") from None
        summaries = self._map("summary", dict.fromkeys(range(n), ()), "load")
        self._docs.restore(saved.id_kind, saved.ids, saved.keys, [None] * len(saved.ids),
                           [None] * len(saved.ids), saved.next_key)
        owner = {int(k): shard_of(d, n) for k, d in zip(saved.keys.tolist(), saved.ids,
                                                         strict=True)}
        for i in range(n):
            self._check_shard(path, i, summaries[i], saved.params, owner)
        if sum(len(summaries[i]["keys"]) for i in range(n)) != len(owner):
            raise CorruptFileError(f"{os.fspath(path)!r}: the shards hold other documents "
                                   "than the manifest lists")
        if self._totals.num_vectors != saved.num_vectors:
            raise CorruptFileError(f"{os.fspath(path)!r}: the shards hold "
                                   f"{self._totals.num_vectors} vectors, the manifest says "
                                   f"{saved.num_vectors}")
        if analyzer is None:  # the saved analyzer, as every shard loaded it
            self._analyzer = summaries[0]["analyzer"]
        self._embedder_identity = saved.identity
        self._embedder = _pipeline_args.resolve_embedder(embedder, saved.identity, path, self._dim)

    def _check_shard(self, path: Any, i: int, summary: dict[str, Any], params: dict[str, Any],
                     owner: dict[int, int]) -> None:
        """CorruptFileError unless shard ``i`` agrees with the manifest; add its figures."""
        where = f"{os.fspath(path)!r}: shard {i}"
        got = summary["params"]
        for name in _SHARD_PARAMS:
            if got[name] != params[name]:
                raise CorruptFileError(f"{where} has {name} {got[name]!r}, the manifest "
                                       f"{params[name]!r}")
        if any(owner.get(k) != i for k in summary["keys"].tolist()):
            raise CorruptFileError(f"{where} holds a document that is not in the manifest "
                                   "or belongs on another shard")
        lexical: CollectionStats = summary["lexical"]
        self._totals.apply(Delta(lexical.num_docs, lexical.total_length, dict(lexical.df),
                                 summary["num_vectors"], summary["fields"]), 1)

    # ------------------------------------------------------------------ invariants
    def _check(self) -> None:
        """Assert the invariants (O(index size), one call to every shard); for tests."""
        with self._lock.reading():
            self._docs._check()
            n = self._num_shards
            every = dict.fromkeys(range(n), ())
            self._map("check", every, "_check")
            summaries = self._map("summary", every, "_check")
            total = _Totals()
            seen = 0
            for i in range(n):
                s = summaries[i]
                for key in s["keys"].tolist():
                    d = self._docs.doc_id(self._docs.slot_of_key(key))
                    assert shard_of(d, n) == i, f"key {key} is on shard {i}"
                seen += len(s["keys"])
                lex = s["lexical"]
                total.apply(Delta(lex.num_docs, lex.total_length, dict(lex.df),
                                  s["num_vectors"], s["fields"]), 1)
            assert seen == len(self._docs)
            t = self._totals
            assert (t.num_docs, t.total_length, t.num_vectors) == (
                total.num_docs, total.total_length, total.num_vectors)
            assert t.df == total.df and t.fields == total.fields
            self._cache._check()

