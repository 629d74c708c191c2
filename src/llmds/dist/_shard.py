"""One shard of a :class:`~llmds.dist.sharded.ShardedRetrievalPipeline`.

A :class:`Shard` owns a :class:`~llmds.retrieval_pipeline.RetrievalPipeline` whose int
ids are the collection's *keys* (the caller's int ids, or the coordinator's counters
for str ids), so ties break exactly as in one pipeline holding every document. It
answers the coordinator's calls, in the coordinator's process (``backend="local"``) or
inside a Ray actor (``backend="ray"``), with plain picklable values:

* writes return a :class:`Delta`, what the write changed in the shard's BM25
  statistics, document and vector counts and metadata fields, so the coordinator can
  keep the whole collection's figures without asking again;
* :meth:`Shard.candidates` returns the shard's BM25 candidates scored with the
  collection statistics the coordinator sends, and its nearest vectors, unfused (the
  coordinator merges the shards' lists and then fuses), plus the seconds it spent.

Thread safety: safe for concurrent callers (a Ray actor with ``max_concurrency > 1``
runs calls on several threads): the pipeline is itself thread-safe and the search
counters sit behind a mutex; the coordinator never sends a write while a search runs.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._index_search import analyze
from llmds._persist import MANIFEST
from llmds.errors import CorruptFileError
from llmds.inverted_index import CollectionStats
from llmds.retrieval_pipeline import RetrievalPipeline

__all__ = ["Delta", "Packed", "Shard", "pack"]

# one query's candidates: (keys, scores, counts) with row i = keys[i, :counts[i]]
Packed = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]


@dataclass(frozen=True, slots=True)
class Delta:
    """What one write changed in a shard: documents, their total length (terms), the
    documents per term and per metadata field, and vectors. A delete reports what it
    removed (the coordinator subtracts it)."""

    num_docs: int
    total_length: int
    df: dict[str, int]
    num_vectors: int
    fields: dict[str, int]


def pack(candidates: list[tuple[np.ndarray, np.ndarray]]) -> Packed:
    """Candidate lists as three arrays (one object each for pickling, whatever the count).

    >>> keys, scores, counts = pack([(np.array([4, 2]), np.array([0.9, 0.5])),
    ...                              (np.array([7]), np.array([0.3]))])
    >>> keys.tolist(), counts.tolist()
    ([[4, 2], [7, -1]], [2, 1])
    """
    width = max((k.shape[0] for k, _ in candidates), default=0)
    keys = np.full((len(candidates), width), -1, dtype=np.int64)
    scores = np.zeros((len(candidates), width), dtype=np.float64)
    counts = np.zeros(len(candidates), dtype=np.int64)
    for i, (k, s) in enumerate(candidates):
        keys[i, : k.shape[0]] = k
        scores[i, : k.shape[0]] = s
        counts[i] = k.shape[0]
    return keys, scores, counts


def _manifest_digest(path: str) -> str:
    with open(f"{path}/{MANIFEST}", "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


class Shard:
    """A pipeline over int keys plus the calls a coordinator makes. See the module docstring.

    Complexity: each call costs what the same pipeline call costs, plus O(text) to
    count terms on ``add`` and O(|doc|) (buffer) or O(segment postings) (sealed) to
    list a document's terms on ``delete``. Memory: the pipeline's.
    """

    __slots__ = ("_counter_lock", "_pipeline", "index", "num_searches", "search_seconds")

    def __init__(self, index: int) -> None:
        self.index = index
        self._pipeline: RetrievalPipeline | None = None
        self._counter_lock = threading.Lock()
        self.num_searches = 0
        self.search_seconds = 0.0

    @property
    def pipeline(self) -> RetrievalPipeline:
        if self._pipeline is None:
            raise RuntimeError(f"shard {self.index} holds no pipeline yet")
        return self._pipeline

    # ------------------------------------------------------------------ life cycle
    def create(self, params: dict[str, Any], analyzer: Any) -> None:
        """Start empty with ``params`` (checked by the coordinator)."""
        self._pipeline = RetrievalPipeline(**params, analyzer=analyzer)

    def load(self, path: str, digest: str, analyzer: Any, mmap: bool) -> None:
        """Load the pipeline saved at ``path`` whose MANIFEST has the SHA-256 ``digest``."""
        try:
            found = _manifest_digest(path)
        except OSError as exc:
            raise CorruptFileError(f"{path!r} holds no shard ({exc})") from None
        if found != digest:
            raise CorruptFileError(f"{path!r} is not the shard the manifest names (its "
                                   "MANIFEST does not match the recorded checksum)")
        self._pipeline = RetrievalPipeline.load(path, embedder=None, analyzer=analyzer,
                                                mmap=mmap)

    def save(self, path: str) -> str:
        """Save to the folder ``path``; returns the SHA-256 of its MANIFEST."""
        self.pipeline.save(path)
        return _manifest_digest(path)

    # ------------------------------------------------------------------ writes
    def add(self, keys: list[int], texts: list[str], embeddings: list[Any],
            metadatas: list[dict[str, Any] | None], num_threads: int) -> Delta:
        """Add checked documents (``embeddings``: a float64 vector or None per document,
        as the caller gave it: the pipeline prepares it). O(pipeline add + text)."""
        p = self.pipeline
        p.add_documents(keys, texts, embeddings, metadatas, num_threads=num_threads)
        analyzer = p._index.analyzer
        df: dict[str, int] = {}
        total = 0
        for text in texts:
            terms = analyze(analyzer, text)
            total += len(terms)
            for t in set(terms):
                df[t] = df.get(t, 0) + 1
        fields: dict[str, int] = {}
        for meta in metadatas:
            for f in meta or ():
                fields[f] = fields.get(f, 0) + 1
        return Delta(len(keys), total, df, sum(e is not None for e in embeddings), fields)

    def delete(self, key: int) -> Delta:
        """Delete ``key``; returns what it removed. KeyError if absent."""
        p = self.pipeline
        terms = p._index.document_terms(key)
        vectors = int(p.has_embedding(key))
        fields = {f: 1 for f in p.get_document(key).metadata}
        p.delete_document(key)
        return Delta(1, sum(terms.values()), dict.fromkeys(terms, 1), vectors, fields)

    def remove(self, keys: list[int]) -> None:
        """Delete whichever of ``keys`` are here (undoes a partly failed add)."""
        for key in keys:
            if key in self.pipeline:
                self.pipeline.delete_document(key)

    # ------------------------------------------------------------------ reads
    def candidates(self, queries: list[str], q: npt.NDArray[np.float32] | None,
                   lex_depth: int, dense_depth: int, filt: Any, fields: list[str] | None,
                   stats: CollectionStats | None, threads: int,
                   ) -> tuple[Packed, Packed, float]:
        """Top ``lex_depth`` BM25 candidates of ``queries`` (scored with ``stats``) and the
        ``dense_depth`` nearest of each row of ``q``, among the documents ``filt``
        admits (``fields``: the collection's); and the seconds spent here."""
        t0 = time.perf_counter()
        p = self.pipeline
        with p._lock.reading():
            mask = None if filt is None else p._docs.filters.mask(filt, len(p), fields)
            lex = p._lexical(queries, lex_depth, mask, threads, stats) if queries else []
            dense = [] if q is None else p._dense(q, dense_depth, mask, threads)
        elapsed = time.perf_counter() - t0
        with self._counter_lock:
            self.num_searches += 1
            self.search_seconds += elapsed
        return pack(lex), pack(dense), elapsed

    def call_pickled(self, blob: bytes) -> bytes:
        """``pickle(self.method(*args))`` for ``blob = pickle((method, args))``: the Ray
        backend's cheap path for searches (see ``RayShards.broadcast``)."""
        method, args = pickle.loads(blob)
        return pickle.dumps(getattr(self, method)(*args), protocol=5)

    def documents(self, keys: list[int]) -> list[tuple[str | None, str | None]]:
        """``(text, metadata JSON)`` of each key."""
        p = self.pipeline
        with p._lock.reading():
            docs = p._docs
            return [(docs.text(s), docs.metadata_json(s)) for s in map(docs.slot, keys)]

    def has_embedding(self, key: int) -> bool:
        return self.pipeline.has_embedding(key)

    def summary(self) -> dict[str, Any]:
        """Everything a coordinator checks and sums on load: keys, BM25 statistics (every
        term), vectors, metadata fields, parameters and the analyzer. O(n + vocabulary)."""
        p = self.pipeline
        with p._lock.reading():
            return {"keys": p._docs.keys().copy(), "lexical": p._index.collection_stats(),
                    "num_vectors": p._vectors.n, "fields": p._docs.filters.field_counts(),
                    "params": p._params(), "analyzer": p._index.analyzer}

    def stats(self) -> dict[str, Any]:
        with self._counter_lock:
            counters = {"shard": self.index, "num_shard_searches": self.num_searches,
                        "search_seconds": self.search_seconds}
        return {**self.pipeline.stats(), **counters}

    def reset_counters(self) -> None:
        with self._counter_lock:
            self.num_searches = 0
            self.search_seconds = 0.0

    def check(self) -> None:
        self.pipeline._check()
