"""The contract of the index family (HNSW, InvertedIndex, RetrievalPipeline) as one
Hypothesis state machine, run over each index through a small adapter.

What every index promises, checked after every step against a brute-force model of
the documents it holds (cachetools' ``CacheTestMixin`` idea: one suite for a family):

* ``add`` makes a document findable, ``delete`` makes it never come back, ``len`` and
  ``in`` follow;
* ``search(query, k)`` returns an exact top-k of the model's scores (HNSW at an ``ef``
  above the collection size, the pipeline on its exact dense path): at most ``k``
  distinct live ids, best first, nothing left out scoring better than the last one
  kept; scores equal the model's where the index reports raw scores (BM25, L2
  distances), the order only where it reports fused ones (the pipeline);
* ``save`` then ``load`` gives an index with identical answers (the machine goes on
  with the loaded one), and so does a pickle;
* bad input (a duplicate id where the index refuses one, an unknown id to delete,
  ``k`` of 0, -1, ``True``, 1.5 or None, an id of the wrong type) raises and changes
  nothing (the probe query's answer and the size are compared before and after);
* ``_check()`` holds after every step.

The test file ``tests/test_index_contract.py`` binds the machine to each index.
"""

from __future__ import annotations

import itertools
import math
import pickle
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from llmds import HNSW, InvertedIndex, RetrievalPipeline
from llmds.analysis import Analyzer
from tests.reference.bm25 import NaiveBM25

WORDS = ["alpha", "beta", "gamma", "delta", "kv", "cache", "graph", "page"]
DIM = 4
IDS = st.integers(0, 40)
TEXTS = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
VECS = st.lists(st.integers(-3, 3), min_size=DIM, max_size=DIM).map(
    lambda v: np.asarray(v, dtype=np.float32))
KS = st.integers(1, 12)
BAD_KS = [0, -1, True, 1.5, None]

Doc = tuple[str, np.ndarray]  # (text, vector)
_ANALYZE = Analyzer()


class IndexAdapter:
    """How the machine drives one kind of index. ``scores`` are higher-is-better."""

    duplicate_add: ClassVar[str] = "error"  # or "update" (HNSW, as hnswlib)
    raw_scores: ClassVar[bool] = True  # search returns the model's scores, not fused ones

    def make(self) -> Any:
        raise NotImplementedError

    def add(self, index: Any, doc_id: int, doc: Doc) -> None:
        raise NotImplementedError

    def delete(self, index: Any, doc_id: int) -> None:
        raise NotImplementedError

    def search(self, index: Any, query: Doc, k: Any) -> list[tuple[int, float]]:
        raise NotImplementedError

    def load(self, path: Path) -> Any:
        raise NotImplementedError

    def model_scores(self, docs: dict[int, Doc], query: Doc) -> dict[int, float]:
        """Score of every document the query can return (higher is better)."""
        raise NotImplementedError

    def reported(self, score: float) -> float:
        """The model's score as the index reports it."""
        return score


def _l2_scores(docs: dict[int, Doc], q: np.ndarray) -> dict[int, float]:
    return {d: -float(np.sum((v.astype(np.float64) - q) ** 2)) for d, (_, v) in docs.items()}


def _bm25_scores(docs: dict[int, Doc], text: str) -> dict[int, float]:
    model = NaiveBM25()
    for d, (t, _) in docs.items():
        model.add(d, _ANALYZE(t))
    return model.scores(_ANALYZE(text))


class HNSWAdapter(IndexAdapter):
    duplicate_add = "update"

    def make(self) -> HNSW:
        return HNSW(DIM, M=16, ef_construction=64, ef_search=128, seed=7)

    def add(self, index: HNSW, doc_id: int, doc: Doc) -> None:
        index.add(doc[1], doc_id)

    def delete(self, index: HNSW, doc_id: int) -> None:
        index.mark_deleted(doc_id)

    def search(self, index: HNSW, query: Doc, k: Any) -> list[tuple[int, float]]:
        return index.search(query[1], k)

    def load(self, path: Path) -> HNSW:
        return HNSW.load(path)

    def model_scores(self, docs: dict[int, Doc], query: Doc) -> dict[int, float]:
        return _l2_scores(docs, query[1].astype(np.float64))

    def reported(self, score: float) -> float:
        return -score  # a distance


class InvertedIndexAdapter(IndexAdapter):
    def make(self) -> InvertedIndex:
        return InvertedIndex(seal_postings=8)

    def add(self, index: InvertedIndex, doc_id: int, doc: Doc) -> None:
        index.add_document(doc_id, doc[0])

    def delete(self, index: InvertedIndex, doc_id: int) -> None:
        index.delete_document(doc_id)

    def search(self, index: InvertedIndex, query: Doc, k: Any) -> list[tuple[int, float]]:
        return index.search(query[0], k)

    def load(self, path: Path) -> InvertedIndex:
        return InvertedIndex.load(path)

    def model_scores(self, docs: dict[int, Doc], query: Doc) -> dict[int, float]:
        return _bm25_scores(docs, query[0])


class PipelineAdapter(IndexAdapter):
    """Lexical queries (``fusion_weight=0``) rank as BM25 does; dense ones (a query text
    matching nothing, ``fusion_weight=1``) as exact L2 distance. Scores are fused."""

    raw_scores = False

    def make(self) -> RetrievalPipeline:
        return RetrievalPipeline(embedding_dim=DIM, metric="l2", seed=7)

    def add(self, index: RetrievalPipeline, doc_id: int, doc: Doc) -> None:
        index.add_document(doc_id, doc[0], doc[1])

    def delete(self, index: RetrievalPipeline, doc_id: int) -> None:
        index.delete_document(doc_id)

    def search(self, index: RetrievalPipeline, query: Doc, k: Any) -> list[tuple[int, float]]:
        text, vec = query
        if text:
            return index.search(text, None, top_k=k, fusion_weight=0.0, use_cache=False)
        return index.search("zzzz", vec, top_k=k, fusion_weight=1.0, use_cache=False)

    def load(self, path: Path) -> RetrievalPipeline:
        return RetrievalPipeline.load(path)

    def model_scores(self, docs: dict[int, Doc], query: Doc) -> dict[int, float]:
        text, vec = query
        if text:
            return _bm25_scores(docs, text)
        return _l2_scores(docs, vec.astype(np.float64))


def assert_top_k(got: list[tuple[int, float]], scores: dict[int, float], k: int,
                 adapter: IndexAdapter) -> None:
    """``got`` is an exact top-k of ``scores`` (higher is better), up to float noise."""
    tol = 1e-5
    assert len(got) == min(k, len(scores)), (got, scores)
    ids = [d for d, _ in got]
    assert len(set(ids)) == len(ids), got
    assert all(d in scores for d in ids), (got, scores)
    ranked = [scores[d] for d in ids]
    assert all(a >= b - tol * max(1.0, abs(a)) for a, b in itertools.pairwise(ranked)), got
    left = [s for d, s in scores.items() if d not in set(ids)]
    if ranked and left:
        assert ranked[-1] >= max(left) - tol * max(1.0, abs(ranked[-1])), (got, scores)
    if adapter.raw_scores:
        for d, s in got:
            want = adapter.reported(scores[d])
            assert math.isclose(s, want, rel_tol=tol, abs_tol=tol), (d, s, want)


class IndexMachine(RuleBasedStateMachine):
    """One index against the dict of documents it should hold."""

    adapter: ClassVar[IndexAdapter]
    PROBE: ClassVar[Doc] = ("alpha cache", np.zeros(DIM, dtype=np.float32))

    def __init__(self) -> None:
        super().__init__()
        self.index = self.adapter.make()
        self.docs: dict[int, Doc] = {}
        self.tmp = tempfile.TemporaryDirectory()
        self.saves = 0

    def teardown(self) -> None:
        self.tmp.cleanup()

    def _answer(self) -> tuple[int, list[tuple[int, float]]]:
        return len(self.index), self.adapter.search(self.index, self.PROBE, 10)

    def _refused(self, call: Any, errors: tuple[type[BaseException], ...]) -> None:
        before = self._answer()
        try:
            call()
        except errors:
            pass
        else:
            raise AssertionError(f"{call} was accepted")
        assert self._answer() == before

    # ------------------------------------------------------------------ changes
    @rule(doc_id=IDS, text=TEXTS, vec=VECS)
    def add(self, doc_id: int, text: str, vec: np.ndarray) -> None:
        if doc_id in self.docs and self.adapter.duplicate_add == "error":
            self._refused(lambda: self.adapter.add(self.index, doc_id, (text, vec)),
                          (ValueError,))
            return
        self.adapter.add(self.index, doc_id, (text, vec))
        self.docs[doc_id] = (text, vec)

    @precondition(lambda self: self.docs)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(sorted(self.docs)))
        self.adapter.delete(self.index, doc_id)
        del self.docs[doc_id]

    @rule(doc_id=IDS)
    def delete_unknown(self, doc_id: int) -> None:
        if doc_id not in self.docs:
            self._refused(lambda: self.adapter.delete(self.index, doc_id), (KeyError,))

    @rule()
    def save_and_load(self) -> None:
        self.saves += 1
        path = Path(self.tmp.name) / f"index-{self.saves}"
        before = self._answer()
        self.index.save(path)
        assert self._answer() == before  # saving changes nothing
        self.index = self.adapter.load(path)
        assert self._answer() == before

    @rule()
    def pickle_round_trip(self) -> None:
        before = self._answer()
        self.index = pickle.loads(pickle.dumps(self.index))
        assert self._answer() == before

    # ------------------------------------------------------------------ reads
    @rule(text=TEXTS, vec=VECS, k=KS, dense=st.booleans())
    def search(self, text: str, vec: np.ndarray, k: int, dense: bool) -> None:
        query = ("" if dense else text, vec)
        if isinstance(self.adapter, InvertedIndexAdapter):
            query = (text, vec)
        got = self.adapter.search(self.index, query, k)
        assert_top_k(got, self.adapter.model_scores(self.docs, query), k, self.adapter)

    @rule(k=st.sampled_from(BAD_KS))
    def bad_k(self, k: Any) -> None:
        self._refused(lambda: self.adapter.search(self.index, self.PROBE, k),
                      (TypeError, ValueError))

    @rule(doc_id=st.sampled_from(["7", 1.0, None, True]), text=TEXTS, vec=VECS)
    def bad_id(self, doc_id: Any, text: str, vec: np.ndarray) -> None:
        if isinstance(self.adapter, PipelineAdapter) and isinstance(doc_id, str) \
                and not self.docs:
            return  # a pipeline takes str ids until its first int id fixes the kind
        self._refused(lambda: self.adapter.add(self.index, doc_id, (text, vec)),
                      (TypeError, ValueError))

    # ------------------------------------------------------------------ invariants
    @invariant()
    def consistent(self) -> None:
        assert len(self.index) == len(self.docs)
        for doc_id in self.docs:
            assert doc_id in self.index
        self.index._check()
