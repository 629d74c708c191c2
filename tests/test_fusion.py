"""Fusion math of the retrieval pipeline against a plain-Python reference."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmds.fusion import (
    RRF_K,
    fuse_rrf,
    fuse_weighted,
    minmax_normalize,
    top_k_heap,
)
from tests.reference import fusion as ref


def as_dict(ids, scores):
    return dict(zip(ids.tolist(), scores.tolist(), strict=True))


# ------------------------------------------------------------------ hand-built lists
def test_minmax_hand_built():
    assert minmax_normalize([10.0, 5.0, 7.5]).tolist() == [1.0, 0.0, 0.5]
    assert minmax_normalize([]).tolist() == []
    assert minmax_normalize([3.0]).tolist() == [1.0]


def test_minmax_all_equal_scores_are_all_one():
    assert minmax_normalize([2.5, 2.5, 2.5]).tolist() == [1.0, 1.0, 1.0]
    ids, scores = fuse_weighted([1, 2], [4.0, 4.0], [2, 3], [0.3, 0.3], weight=0.25)
    assert as_dict(ids, scores) == {1: 0.75, 2: 1.0, 3: 0.25}


def test_weighted_hand_built():
    # lexical 1:10 2:6 3:2 -> 1, .5, 0 ; dense 3:.9 4:.5 2:.1 -> 1, .5, 0
    ids, scores = fuse_weighted([1, 2, 3], [10.0, 6.0, 2.0], [3, 4, 2], [0.9, 0.5, 0.1], 0.3)
    got = as_dict(ids, scores)
    assert ids.tolist() == [1, 2, 3, 4]
    assert got[1] == pytest.approx(0.7)
    assert got[2] == pytest.approx(0.35)
    assert got[3] == pytest.approx(0.3)
    assert got[4] == pytest.approx(0.15)


def test_rrf_hand_built_is_plain_rrf_at_half_weight():
    ids, scores = fuse_rrf([5, 6, 7], [7, 5], weight=0.5)
    got = as_dict(ids, scores)
    assert got[5] == pytest.approx(1 / 61 + 1 / 62)
    assert got[6] == pytest.approx(1 / 62)
    assert got[7] == pytest.approx(1 / 63 + 1 / 61)
    assert RRF_K == 60


def test_rrf_weights_and_k():
    ids, scores = fuse_rrf([1], [2], weight=0.75, k=0)
    assert as_dict(ids, scores) == {1: 0.5, 2: 1.5}


@pytest.mark.parametrize("fuse", ["weighted", "rrf"])
def test_one_side_empty(fuse):
    if fuse == "weighted":
        ids, scores = fuse_weighted([], [], [3, 1], [0.9, 0.1], 0.5)
        assert as_dict(ids, scores) == {1: 0.0, 3: 0.5}
        ids, scores = fuse_weighted([4], [2.0], [], [], 0.5)
        assert as_dict(ids, scores) == {4: 0.5}
    else:
        ids, scores = fuse_rrf([], [3, 1], 0.5)
        assert as_dict(ids, scores) == {3: 1 / 61, 1: 1 / 62}
    ids, scores = (fuse_weighted([], [], [], [], 0.5) if fuse == "weighted"
                   else fuse_rrf([], [], 0.5))
    assert ids.tolist() == [] and scores.tolist() == []


def test_zero_weight_side_contributes_no_candidates():
    ids, _ = fuse_weighted([1], [1.0], [2], [1.0], weight=0.0)
    assert ids.tolist() == [1]
    ids, _ = fuse_weighted([1], [1.0], [2], [1.0], weight=1.0)
    assert ids.tolist() == [2]
    ids, _ = fuse_rrf([1], [2], weight=1.0)
    assert ids.tolist() == [2]


def test_ties_go_to_the_smaller_id():
    ids, scores = fuse_weighted([9, 4, 7], [1.0, 1.0, 1.0], [], [], 0.5)
    assert top_k_heap(ids, scores, 3) == [(4, 0.5), (7, 0.5), (9, 0.5)]
    ids, scores = fuse_rrf([3], [8], 0.5)  # both rank 1 on their side: equal scores
    assert [d for d, _ in top_k_heap(ids, scores, 2)] == [3, 8]


def test_top_k_heap_cuts_and_orders():
    ids = np.array([5, 1, 3, 2], dtype=np.int64)
    scores = np.array([0.1, 0.9, 0.5, 0.9])
    assert top_k_heap(ids, scores, 3) == [(1, 0.9), (2, 0.9), (3, 0.5)]
    assert top_k_heap(ids, scores, 10)[-1] == (5, 0.1)
    assert top_k_heap(np.zeros(0, dtype=np.int64), np.zeros(0), 3) == []


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: fuse_weighted([1, 1], [1.0, 2.0], [], [], 0.5), ValueError, "repeated"),
        (lambda: fuse_weighted([1], [1.0, 2.0], [], [], 0.5), ValueError, "one score per id"),
        (lambda: fuse_weighted([1], [math.nan], [], [], 0.5), ValueError, "finite"),
        (lambda: fuse_weighted([1], [1.0], [], [], 1.5), ValueError, "weight must be <= 1"),
        (lambda: fuse_weighted([1], [1.0], [], [], math.nan), ValueError, "weight must be"),
        (lambda: fuse_weighted([1.5], [1.0], [], [], 0.5), TypeError, "lexical_ids"),
        (lambda: fuse_rrf([1], [2, 2], 0.5), ValueError, "dense_ids contains a repeated"),
        (lambda: fuse_rrf([1], [2], 0.5, k=-1), ValueError, "k must be"),
        (lambda: fuse_rrf([1], [2], "0.5"), TypeError, "weight must be a number"),
    ],
)
def test_bad_fusion_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ------------------------------------------------------------------ against the reference
# Few distinct scores and ids, so ties and overlaps between the sides are common.
scores_st = st.sampled_from([0.0, 0.25, 1.0, 2.0, 3.5, -1.0])
side_st = st.lists(st.tuples(st.integers(0, 12), scores_st), max_size=10,
                   unique_by=lambda t: t[0])
weight_st = st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 1.0])


@given(lex=side_st, dense=side_st, w=weight_st, k=st.integers(1, 15))
def test_weighted_matches_reference(lex, dense, w, k):
    ids, scores = fuse_weighted([d for d, _ in lex], [s for _, s in lex],
                                [d for d, _ in dense], [s for _, s in dense], w)
    expected = ref.fuse_weighted(lex, dense, w)
    assert as_dict(ids, scores) == expected  # same float operations: bitwise equal
    assert top_k_heap(ids, scores, k) == ref.top_k(expected, k)


@given(lex=side_st, dense=side_st, w=weight_st, k=st.integers(1, 15),
       rrf_k=st.sampled_from([0, 1, 60]))
def test_rrf_matches_reference(lex, dense, w, k, rrf_k):
    lex_ids, dense_ids = [d for d, _ in lex], [d for d, _ in dense]
    ids, scores = fuse_rrf(lex_ids, dense_ids, w, rrf_k)
    expected = ref.fuse_rrf(lex_ids, dense_ids, w, rrf_k)
    assert as_dict(ids, scores) == expected
    assert top_k_heap(ids, scores, k) == ref.top_k(expected, k)


@given(values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=20))
def test_minmax_range_and_order(values):
    out = minmax_normalize(values)
    assert out.min() >= 0.0 and out.max() == 1.0
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)  # monotone
    assert out.tolist() == ref.minmax(values)


def test_kernels_run_without_the_jit():
    # The numba kernels must also run as plain Python (NUMBA_DISABLE_JIT=1).
    import os
    import subprocess
    import sys

    code = (
        "from llmds.fusion import fuse_weighted, fuse_rrf, top_k_heap\n"
        "ids, s = fuse_weighted([1, 2], [3.0, 1.0], [2, 3], [0.9, 0.5], 0.5)\n"
        "assert ids.tolist() == [1, 2, 3] and s.tolist() == [0.5, 0.5, 0.0], s\n"
        "ids, s = fuse_rrf([1, 2], [2], 0.5)\n"
        "assert top_k_heap(ids, s, 1)[0][0] == 2\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
