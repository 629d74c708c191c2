"""Retrieval metrics, written plainly: nDCG@k and Recall@k as trec_eval / ir-measures define them.

* ``ndcg_at_k``: DCG = sum over the top ``k`` results of ``grade / log2(rank + 1)``
  (rank from 1, linear gain as trec_eval's ``ndcg_cut``); IDCG is the same sum over
  the judged grades sorted descending; documents without a judgment have grade 0;
  a query without a positive judgment scores 0.
* ``recall_at_k``: relevant documents (grade > 0) among the top ``k`` divided by all
  relevant documents of the query.

Results are ``{query_id: [doc_id, ...]}`` lists in rank order (ties already broken).
``mean_*`` average over the queries in ``qrels``; a query with no results counts 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

__all__ = ["mean_ndcg", "mean_recall", "ndcg_at_k", "recall_at_k"]


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranked list against graded judgments. O(k + |judged| log |judged|).

    >>> round(ndcg_at_k(["a", "b"], {"b": 1}, 10), 4)
    0.6309
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    dcg = 0.0
    for rank, doc in enumerate(ranked[:k], start=1):
        grade = judged.get(doc, 0)
        if grade > 0:
            dcg += grade / math.log2(rank + 1)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Fraction of the relevant documents found in the top ``k``. O(k + |judged|).

    >>> recall_at_k(["a", "b", "c"], {"a": 1, "z": 2, "c": 0}, 2)
    0.5
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    relevant = {d for d, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mean_ndcg(results: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
              k: int = 10) -> float:
    """Mean nDCG@k over the queries of ``qrels``."""
    if not qrels:
        return 0.0
    return sum(ndcg_at_k(results.get(q, []), j, k) for q, j in qrels.items()) / len(qrels)


def mean_recall(results: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
                k: int = 100) -> float:
    """Mean Recall@k over the queries of ``qrels``."""
    if not qrels:
        return 0.0
    return sum(recall_at_k(results.get(q, []), j, k) for q, j in qrels.items()) / len(qrels)
