"""Helpers of the ShardedRetrievalPipeline tests: small random corpora, one pipeline and
a sharded one built alike, and the identity check between their answers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from llmds import RetrievalPipeline
from llmds.dist import ShardedRetrievalPipeline
from tests.test_inverted_index_threads import run_threads

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota",
         "kappa", "lambda", "mu", "apple", "orange", "river", "stone"]
DIM = 6


def corpus(rng: np.random.Generator, n: int, start: int = 0, str_ids: bool = False,
           ) -> tuple[list[Any], list[str], np.ndarray, list[dict[str, Any]]]:
    """``n`` documents: ids, texts of 1-8 words, vectors, metadata ``{"g": 0..2}``
    (every fifth document has no metadata)."""
    ids: list[Any] = [f"d{i}" if str_ids else i for i in range(start, start + n)]
    texts = [" ".join(rng.choice(WORDS, int(rng.integers(1, 9)))) for _ in range(n)]
    vectors = rng.standard_normal((n, DIM))
    metas = [{} if i % 5 == 4 else {"g": int(i % 3), "w": float(i)} for i in range(n)]
    return ids, texts, vectors, metas


def pair(num_shards: int, backend: str = "local", **kwargs: Any,
         ) -> tuple[RetrievalPipeline, ShardedRetrievalPipeline]:
    """One pipeline and a sharded one with the same arguments."""
    kwargs = {"embedding_dim": DIM, "seed": 3, **kwargs}
    return (RetrievalPipeline(**kwargs),
            ShardedRetrievalPipeline(num_shards, backend=backend, **kwargs))


def assert_same(expected: list[Any], got: list[Any]) -> None:
    """Same ids in the same order, scores within 1e-6 relative (Documents or pairs)."""
    def flat(r: Any) -> tuple[Any, float, Any]:
        if isinstance(r, tuple):
            return r[0], r[1], None
        return r.id, r.score, (r.text, r.metadata)
    a, b = [flat(r) for r in expected], [flat(r) for r in got]
    assert [x[0] for x in a] == [x[0] for x in b], (a, b)
    assert [x[2] for x in a] == [x[2] for x in b]
    for (_, s, _), (_, t, _) in zip(a, b, strict=True):
        assert math.isclose(s, t, rel_tol=1e-6, abs_tol=1e-12), (s, t)


def same(one_call: Any, sharded_call: Any) -> None:
    """Both calls answer the same (one list, or a batch of lists) or raise the same error."""
    try:
        expected = one_call()
    except (ValueError, TypeError, KeyError) as exc:
        with pytest.raises(type(exc)) as got:
            sharded_call()
        assert str(got.value) == str(exc)
        return
    answer = sharded_call()
    if expected and isinstance(expected[0], list):
        assert len(answer) == len(expected)
        for x, y in zip(expected, answer, strict=True):
            assert_same(x, y)
    else:
        assert_same(expected, answer)


def check_queries(one: RetrievalPipeline, sharded: ShardedRetrievalPipeline,
                  rng: np.random.Generator, num: int = 4) -> None:
    """Single and batch searches, both fusions, with and without vectors and a filter."""
    queries = [" ".join(rng.choice(WORDS, 2)) for _ in range(num)]
    vecs = rng.standard_normal((num, DIM))
    for kw in ({}, {"fusion": "rrf"}, {"filter": {"g": {"$in": [0, 2]}}},
               {"filter": {"$or": [{"g": {"$ne": 1}}, {"$not": {"w": {"$lt": 30}}}]}},
               {"fusion_weight": 0.0}, {"fusion_weight": 1.0, "return_documents": True}):
        for q, v in zip(queries, vecs, strict=True):
            same(lambda q=q, v=v, kw=kw: one.search(q, v, top_k=7, **kw),
                 lambda q=q, v=v, kw=kw: sharded.search(q, v, top_k=7, **kw))
        same(lambda kw=kw: one.search(queries[0], top_k=5, **kw),
             lambda kw=kw: sharded.search(queries[0], top_k=5, **kw))
        same(lambda kw=kw: one.search_batch(queries, vecs, top_k=6, num_threads=1, **kw),
             lambda kw=kw: sharded.search_batch(queries, vecs, top_k=6, num_threads=1, **kw))


def check_concurrent(one: RetrievalPipeline, sharded: ShardedRetrievalPipeline,
                     rng: np.random.Generator, clients: int, num: int) -> None:
    """``clients`` threads search ``sharded`` at once (``num`` queries in all, each
    uncached, so concurrent ones are batched together); every answer is one node's."""
    queries = [" ".join(rng.choice(WORDS, 2)) for _ in range(num)]
    qv = rng.standard_normal((num, DIM))
    expected = [one.search(q, v, top_k=6, use_cache=False)
                for q, v in zip(queries, qv, strict=True)]

    def client(k: int) -> None:
        for j in range(k, num, clients):
            assert_same(expected[j], sharded.search(queries[j], qv[j], top_k=6,
                                                    use_cache=False))

    run_threads(client, clients)  # all start together; the first error is raised
