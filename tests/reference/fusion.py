"""Naive reference for hybrid retrieval: plain-Python fusion and a brute-force pipeline.

Everything here is obviously correct and deliberately slow: dicts and sorted lists,
a fresh BM25 index over the live documents for every search, exact dense scores.
"""

from __future__ import annotations

from llmds.inverted_index import InvertedIndex


def minmax(scores):
    """Min-max normalise a list of floats; all 1.0 when they are all equal."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def fuse_weighted(lexical, dense, weight):
    """``lexical``/``dense``: lists of (id, score). Returns {id: fused score}.

    Contributions are added lexical first, dense second, starting from 0.0.
    """
    fused = {}
    if weight < 1.0:
        for (doc, _), norm in zip(lexical, minmax([s for _, s in lexical]), strict=True):
            fused[doc] = fused.get(doc, 0.0) + (1.0 - weight) * norm
    if weight > 0.0:
        for (doc, _), norm in zip(dense, minmax([s for _, s in dense]), strict=True):
            fused[doc] = fused.get(doc, 0.0) + weight * norm
    return fused


def fuse_rrf(lexical_ids, dense_ids, weight, k=60):
    """Weighted reciprocal rank fusion over rank-ordered id lists. Returns {id: score}."""
    fused = {}
    if weight < 1.0:
        for rank, doc in enumerate(lexical_ids, start=1):
            fused[doc] = fused.get(doc, 0.0) + (2.0 * (1.0 - weight)) / (k + rank)
    if weight > 0.0:
        for rank, doc in enumerate(dense_ids, start=1):
            fused[doc] = fused.get(doc, 0.0) + (2.0 * weight) / (k + rank)
    return fused


def top_k(fused, k):
    """The k best (id, score) of a dict, best first, ties to the smaller id."""
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:k]


class NaivePipeline:
    """A dict of documents; every search rebuilds BM25 and scores every vector exactly.

    Dense scores are the inner product (``metric="ip"``), computed in Python floats.
    """

    def __init__(self, lexical_depth, dense_depth, rrf_k=60):
        self.docs = {}  # doc_id -> (text, vector or None)
        self.lexical_depth = lexical_depth
        self.dense_depth = dense_depth
        self.rrf_k = rrf_k

    def add(self, doc_id, text, vector):
        assert doc_id not in self.docs
        self.docs[doc_id] = (text, None if vector is None else [float(x) for x in vector])

    def delete(self, doc_id):
        del self.docs[doc_id]

    def search(self, query, qvec, top_k_, weight, fusion, admit=None):
        """``admit(doc_id) -> bool``: a filter, applied before anything is scored."""
        if qvec is None:
            weight = 0.0
        lexical, dense = [], []
        docs = {d: v for d, v in self.docs.items() if admit is None or admit(d)}
        if weight < 1.0 and docs:
            # BM25 statistics over every document; the filter only picks who is returned
            index = InvertedIndex()
            for doc_id in sorted(self.docs):
                index.add_document(doc_id, self.docs[doc_id][0])
            ranked = index.search(query, len(self.docs))
            lexical = [(d, s) for d, s in ranked if d in docs][
                : max(self.lexical_depth, top_k_)]
        if weight > 0.0:
            q = [float(x) for x in qvec]
            scored = [(doc_id, sum(a * b for a, b in zip(v, q, strict=True)))
                      for doc_id, (_, v) in docs.items() if v is not None]
            scored.sort(key=lambda item: (-item[1], item[0]))
            dense = scored[: max(self.dense_depth, top_k_)]
        if fusion == "weighted":
            fused = fuse_weighted(lexical, dense, weight)
        else:
            fused = fuse_rrf([d for d, _ in lexical], [d for d, _ in dense], weight, self.rrf_k)
        return top_k(fused, top_k_)
