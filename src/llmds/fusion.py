"""Score fusion for hybrid retrieval: weighted min-max fusion, reciprocal-rank fusion,
and the top-k cut through an :class:`~llmds.indexed_heap.IndexedHeap`.

Used by :class:`~llmds.retrieval_pipeline.RetrievalPipeline`; usable on its own for any
two ranked candidate lists (ids with scores). Ties always go to the smaller id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from llmds._kernels import fusion as _kf
from llmds._validate import INT64_MAX, check_finite_array, check_int, check_int_array, check_number
from llmds.indexed_heap import IndexedHeap

__all__ = ["FUSIONS", "RRF_K", "fuse_rrf", "fuse_weighted", "minmax_normalize", "top_k_heap"]
# Not in __all__ but named for the pipeline (no validation; see each docstring):
# NO_IDS, NO_SCORES, check_weight, fuse_top_k, top_k_sorted.

FUSIONS = ("weighted", "rrf")
RRF_K = 60  # Elasticsearch's and Vespa's rank constant (Cormack et al. 2009 used 60 too)
MAX_RRF_K = 2**31 - 1  # k + rank stays far from int64 overflow in the kernel

IdArray = npt.NDArray[np.int64]
ScoreArray = npt.NDArray[np.float64]
NO_IDS: IdArray = np.zeros(0, dtype=np.int64)
NO_SCORES: ScoreArray = np.zeros(0, dtype=np.float64)
_MODES = {"weighted": 0, "rrf": 1}


def minmax_normalize(scores: npt.ArrayLike) -> ScoreArray:
    """Scale ``scores`` to [0, 1]: ``(s - min) / (max - min)``; all 1.0 if max == min. O(n).

    >>> minmax_normalize([2.0, 4.0, 3.0]).tolist()
    [0.0, 1.0, 0.5]
    >>> minmax_normalize([7.0, 7.0]).tolist()
    [1.0, 1.0]
    """
    s = check_finite_array(scores, "scores", dtype=np.float64)
    if s.size == 0:
        return s.copy()
    lo, hi = s.min(), s.max()
    if hi == lo:  # one candidate, or a flat list: each is a full match of its side
        return np.ones_like(s)
    if not np.isfinite(hi - lo):  # a span beyond float64 (e.g. -1e308 .. 1e308): halve
        return (s / 2 - lo / 2) / (hi / 2 - lo / 2)
    return (s - lo) / (hi - lo)


def _side(ids: npt.ArrayLike, name: str) -> IdArray:
    out = check_int_array(ids, name)
    if np.unique(out).shape[0] != out.shape[0]:
        raise ValueError(f"{name} contains a repeated id")
    return out


def _scores(scores: npt.ArrayLike, name: str, ids: IdArray, ids_name: str) -> ScoreArray:
    out = check_finite_array(scores, name, shape=(None,), dtype=np.float64)
    if out.shape[0] != ids.shape[0]:
        raise ValueError(f"{name} must hold one score per id of {ids_name} "
                         f"({ids.shape[0]}), got {out.shape[0]}")
    return out


def check_weight(weight: Any, name: str = "fusion_weight") -> float:
    """A fusion weight: a number in [0, 1] (the dense side's share). O(1)."""
    return check_number(weight, name, minimum=0.0, maximum=1.0)


def _fuse(lex_ids: IdArray, lex_scores: ScoreArray, dense_ids: IdArray, dense_scores: ScoreArray,
          w_lex: float, w_dense: float, mode: int, rrf_k: int) -> tuple[IdArray, ScoreArray]:
    """Call the fusion kernel on validated arrays; ids come back ascending."""
    size = lex_ids.shape[0] + dense_ids.shape[0]
    out_ids = np.empty(size, dtype=np.int64)
    out_scores = np.empty(size, dtype=np.float64)
    n = _kf.fuse(lex_ids, lex_scores, dense_ids, dense_scores, w_lex, w_dense, mode, rrf_k,
                 out_ids, out_scores)
    return out_ids[:n], out_scores[:n]


def fuse_top_k(lex_ids: IdArray, lex_scores: ScoreArray, dense_ids: IdArray,
               dense_scores: ScoreArray, weight: float, fusion: str, rrf_k: int, k: int,
               ) -> list[tuple[int, float]]:
    """The fast path of a hybrid search: fuse both sides by ``fusion`` and keep the best ``k``.

    ``fusion="weighted"`` is :func:`fuse_weighted`, ``"rrf"`` :func:`fuse_rrf` with
    ``rrf_k``; ``weight`` is the dense side's share. No validation: ids int64 and
    unique within a side, scores float64 and finite, in rank order, ``weight`` in
    [0, 1], ``k >= 1`` (the caller checked them once). O((n + m) log(n + m)).
    """
    if fusion == "weighted":
        ids, scores = _fuse(lex_ids, lex_scores, dense_ids, dense_scores, 1.0 - weight, weight,
                            0, 0)
    else:
        ids, scores = _fuse(lex_ids, lex_scores, dense_ids, dense_scores, 2.0 * (1.0 - weight),
                            2.0 * weight, _MODES[fusion], rrf_k)
    return top_k_sorted(ids, scores, k)


def fuse_weighted(lexical_ids: npt.ArrayLike, lexical_scores: npt.ArrayLike,
                  dense_ids: npt.ArrayLike, dense_scores: npt.ArrayLike,
                  weight: float = 0.5) -> tuple[IdArray, ScoreArray]:
    """Relative-score fusion (Weaviate's ``relativeScoreFusion``). O(n log n), n candidates.

    Each side's scores are min-max normalised over its own candidate list
    (:func:`minmax_normalize`; higher is better on both sides), then
    ``score(d) = (1 - weight) * lexical(d) + weight * dense(d)``, a side contributing
    0 for a document it did not return. ``weight`` is the dense side's share; a side
    whose weight is 0 contributes no candidates. Returns every candidate as
    ``(ids ascending, scores)``; :func:`top_k_heap` picks the best. Ids must be
    unique within a side.

    >>> ids, s = fuse_weighted([1, 2], [3.0, 1.0], [2, 3], [0.9, 0.5], weight=0.5)
    >>> ids.tolist(), s.tolist()
    ([1, 2, 3], [0.5, 0.5, 0.0])
    """
    w = check_weight(weight, "weight")
    lex, dense = _side(lexical_ids, "lexical_ids"), _side(dense_ids, "dense_ids")
    ls = _scores(lexical_scores, "lexical_scores", lex, "lexical_ids")
    ds = _scores(dense_scores, "dense_scores", dense, "dense_ids")
    return _fuse(lex, ls, dense, ds, 1.0 - w, w, 0, 0)


def fuse_rrf(lexical_ids: npt.ArrayLike, dense_ids: npt.ArrayLike, weight: float = 0.5,
             k: int = RRF_K) -> tuple[IdArray, ScoreArray]:
    """Reciprocal rank fusion (Cormack, Clarke & Buettcher 2009). O(n log n).

    Each list is in rank order (best first); a document scores
    ``2 (1 - weight) / (k + lexical_rank) + 2 weight / (k + dense_rank)`` with ranks
    from 1 and a missing side contributing 0. The default ``weight=0.5`` gives both
    lists weight 1, plain RRF as in Elasticsearch and Vespa (``k=60``); a side whose
    weight is 0 contributes no candidates. Returns ``(ids ascending, scores)``.

    >>> ids, s = fuse_rrf([7, 8], [8], k=60)
    >>> ids.tolist(), [round(x * 61 * 62, 6) for x in s.tolist()]
    ([7, 8], [62.0, 123.0])
    """
    w = check_weight(weight, "weight")
    k = check_int(k, "k", minimum=0, maximum=MAX_RRF_K)
    lex, dense = _side(lexical_ids, "lexical_ids"), _side(dense_ids, "dense_ids")
    zeros = np.zeros(0, dtype=np.float64)
    return _fuse(lex, np.zeros(lex.shape[0]) if lex.shape[0] else zeros, dense,
                 np.zeros(dense.shape[0]) if dense.shape[0] else zeros,
                 2.0 * (1.0 - w), 2.0 * w, 1, int(k))


def top_k_heap(ids: IdArray, scores: ScoreArray, k: int) -> list[tuple[int, float]]:
    """The ``k`` best ``(id, score)``, best first, ties to the smaller id. O(n + k log k).

    The entries that can make the top ``k`` (score at least the ``k``-th best, ties
    included) go through an :class:`IndexedHeap` (a max-heap, FIFO among equal
    scores) in ascending id order, so equal scores leave smaller id first.
    """
    k = check_int(k, "k", minimum=1, maximum=INT64_MAX)
    ids = _side(ids, "ids")
    scores = _scores(scores, "scores", ids, "ids")
    if ids.shape[0] > 1 and (np.diff(ids) <= 0).any():
        order = np.argsort(ids, kind="stable")
        ids, scores = ids[order], scores[order]
    return top_k_sorted(ids, scores, k)


def top_k_sorted(ids: IdArray, scores: ScoreArray, k: int) -> list[tuple[int, float]]:
    """:func:`top_k_heap` without validation: ``ids`` ascending and unique. O(n + k log k)."""
    n = ids.shape[0]
    if n == 0:
        return []
    if n > k:
        keep = _kf.top_candidates(scores, n, k)
        ids, scores = ids[keep], scores[keep]
    heap = IndexedHeap(max_heap=True)
    heap.push_many(ids.tolist(), scores)
    return [(key, score) for score, key in heap.pop_many(k)]
