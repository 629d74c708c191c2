"""Brute-force BM25, written plainly: the model InvertedIndex is tested against."""

from __future__ import annotations

import itertools
import math
from collections import Counter


class NaiveBM25:
    """Documents as token lists in a dict; every search scores every document."""

    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.docs: dict[int, list[str]] = {}

    def add(self, doc_id: int, tokens: list[str]) -> None:
        self.docs[doc_id] = list(tokens)

    def delete(self, doc_id: int) -> None:
        del self.docs[doc_id]

    def df(self, term: str) -> int:
        return sum(1 for tokens in self.docs.values() if term in tokens)

    def tf(self, term: str, doc_id: int) -> int:
        return self.docs[doc_id].count(term)

    def scores(self, query_tokens: list[str]) -> dict[int, float]:
        """BM25 (Lucene idf) of every document containing a query term."""
        n = len(self.docs)
        if n == 0:
            return {}
        avgdl = sum(len(t) for t in self.docs.values()) / n
        query = Counter(query_tokens)
        out: dict[int, float] = {}
        for doc_id, tokens in self.docs.items():
            counts = Counter(tokens)
            score = 0.0
            hit = False
            for term, times in query.items():
                tf = counts.get(term, 0)
                if tf == 0:
                    continue
                hit = True
                df = self.df(term)
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                norm = self.k1 * (1 - self.b + self.b * len(tokens) / avgdl)
                score += times * idf * tf / (tf + norm)
            if hit:
                out[doc_id] = score
        return out

    def search(self, query_tokens: list[str], k: int) -> list[tuple[int, float]]:
        ranked = sorted(self.scores(query_tokens).items(), key=lambda x: (-x[1], x[0]))
        return ranked[:k]


def assert_same_top_k(got: list[tuple[int, float]], ref_scores: dict[int, float], k: int,
                      tol: float = 1e-9) -> None:
    """``got`` must be an exact top-k of ``ref_scores`` up to float tolerance.

    Scores match the reference; the list is sorted by (-score, id); it has
    min(k, matches) entries; nothing left out scores more than the last kept one.
    """
    assert len(got) == min(k, len(ref_scores)), (got, ref_scores)
    ids = [d for d, _ in got]
    assert len(set(ids)) == len(ids)
    for doc_id, score in got:
        assert doc_id in ref_scores, (doc_id, ref_scores)
        assert math.isclose(score, ref_scores[doc_id], rel_tol=tol, abs_tol=tol)
    for (d1, s1), (d2, s2) in itertools.pairwise(got):
        assert s1 > s2 or (s1 == s2 and d1 < d2), got
    if got:
        last_score, last_id = got[-1][1], got[-1][0]
        for doc_id, score in ref_scores.items():
            if doc_id not in ids:
                assert score < last_score + tol, (doc_id, score, got)
                if abs(score - last_score) <= tol and score == last_score:
                    assert doc_id > last_id
