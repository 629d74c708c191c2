"""HNSW kernels against NumPy / heapq, exact search on a hand-built complete graph, the
atomics under threads, and the same checks once more with NUMBA_DISABLE_JIT=1 (pure
Python) in a subprocess."""

from __future__ import annotations

import heapq
import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

from llmds._kernels import hnsw as K
from llmds._kernels import hnsw_build as KB
from llmds._kernels.atomics import fetch_add, spin_lock, spin_unlock


def _complete_graph(x: np.ndarray, m: int) -> dict:
    n = x.shape[0]
    assert n <= 2 * m + 1
    links0 = np.zeros((n, 2 * m + 1), dtype=np.int32)
    for s in range(n):
        others = [t for t in range(n) if t != s]
        links0[s, 0] = len(others)
        links0[s, 1 : 1 + len(others)] = others
    return {
        "vectors": np.ascontiguousarray(x, dtype=np.float32), "links0": links0,
        "upper_links": np.zeros((1, m + 1), dtype=np.int32),
        "upper_start": np.full(n, -1, dtype=np.int32), "meta": np.array([0, 0], np.int64),
    }


def _run_search(g: dict, q: np.ndarray, k: int, ef: int, blocked=None):  # type: ignore[no-untyped-def]
    n = g["vectors"].shape[0]
    out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
    out_d = np.full((q.shape[0], k), np.inf, dtype=np.float32)
    found = np.zeros(q.shape[0], dtype=np.int64)
    use = blocked is not None
    blocked = np.zeros(n, np.uint8) if blocked is None else blocked
    K.search_batch(g["vectors"], g["links0"], g["upper_links"], g["upper_start"], g["meta"], q,
                   k, ef, blocked, use, np.zeros(n, np.uint16), np.zeros(1, np.uint16),
                   np.empty(n, np.float32), np.empty(n, np.int32), np.empty(ef + 1, np.float32),
                   np.empty(ef + 1, np.int32), 0, np.arange(n, dtype=np.int64) + 10, out_i,
                   out_d, found, np.zeros(1, np.int64))
    return found, out_i, out_d


def test_heaps_match_heapq():
    """One max-heap serves both roles: negated distances make it the candidates' min-heap."""
    rng = np.random.default_rng(0)
    vals = rng.random(200).astype(np.float32)
    hd, hi = np.empty(200, np.float32), np.empty(200, np.int32)
    n = 0
    for i, v in enumerate(vals):
        n = K._push(hd, hi, n, -v, i)
    out = []
    while n:
        out.append(hi[0])
        n = K._pop(hd, hi, n)
    assert vals[out].tolist() == sorted(vals.tolist())
    n = 0
    for i, v in enumerate(vals):
        n = K._push(hd, hi, n, v, i)
    out = []
    while n:
        out.append(float(hd[0]))
        n = K._pop(hd, hi, n)
    assert out == heapq.nlargest(200, vals.tolist())


def test_distance_matches_numpy():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((5, 37)).astype(np.float32)
    q = rng.standard_normal((2, 37)).astype(np.float32)
    for s in range(5):
        assert K._dist(v, s, q, 1, 0) == pytest.approx(((v[s] - q[1]) ** 2).sum(), rel=1e-5)
        assert K._dist(v, s, q, 1, 1) == pytest.approx(1 - v[s] @ q[1], rel=1e-5, abs=1e-5)
        assert K._dist(v, s, v, 0, 0) == pytest.approx(((v[s] - v[0]) ** 2).sum(), rel=1e-5)


def test_visited_tag_wraps_and_clears():
    visited = np.full(4, 7, np.uint16)
    tag = np.array([65535], np.uint16)
    assert K._next_tag(visited, tag) == 1 and (visited == 0).all() and tag[0] == 1
    assert K._next_tag(visited, tag) == 2


def test_complete_graph_search_is_exact_and_filtered():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((17, 5)).astype(np.float32)
    q = rng.standard_normal((6, 5)).astype(np.float32)
    g = _complete_graph(x, 8)
    d = ((q[:, None, :] - x[None]) ** 2).sum(-1)
    found, ids, dist = _run_search(g, q, 5, 17)
    assert (found == 5).all()
    assert (ids - 10).tolist() == np.argsort(d, axis=1)[:, :5].tolist()
    assert np.allclose(dist, np.sort(d, axis=1)[:, :5], rtol=1e-5)
    blocked = (np.arange(17) % 2).astype(np.uint8)  # only even slots admitted
    found, ids, _ = _run_search(g, q, 12, 17, blocked)
    assert (found == 9).all() and ((ids[:, :9] - 10) % 2 == 0).all() and (ids[:, 9:] == -1).all()


def test_insert_batch_builds_a_searchable_graph():
    rng = np.random.default_rng(3)
    n, m, ef_c = 60, 4, 20
    x = rng.standard_normal((n, 6)).astype(np.float32)
    links0 = np.zeros((n, 2 * m + 1), np.int32)
    levels = np.zeros(n, np.int32)
    meta = np.array([-1, -1], np.int64)
    KB.insert_batch(x, links0, np.zeros((1, m + 1), np.int32), np.full(n, -1, np.int32), levels,
                    np.zeros(n, np.uint8), np.arange(n, dtype=np.int32), meta, m, ef_c,
                    np.zeros(n, np.uint16), np.zeros(1, np.uint16), np.empty(n, np.float32),
                    np.empty(n, np.int32), np.empty(ef_c + 1, np.float32),
                    np.empty(ef_c + 1, np.int32), 0, np.zeros(1, np.int32),
                    np.zeros(1, np.int64), False)
    assert meta[0] == 0 and (links0[:, 0] >= 1).all() and (links0[:, 0] <= 2 * m).all()
    g = {"vectors": x, "links0": links0, "upper_links": np.zeros((1, m + 1), np.int32),
         "upper_start": np.full(n, -1, np.int32), "meta": meta}
    _, ids, _ = _run_search(g, x[:10], 1, 60)
    assert (ids[:, 0] - 10).tolist() == list(range(10))  # every point finds itself


@numba.njit(nogil=True)
def _count_under_lock(counter, locks, shared, n):  # type: ignore[no-untyped-def]
    while True:
        i = fetch_add(counter, 0, 1)
        if i >= n:
            return
        spin_lock(locks, 0)
        shared[0] += 1  # a plain read-modify-write: only the lock makes it exact
        shared[1] += i
        spin_unlock(locks, 0)


def test_fetch_add_and_spin_lock_under_threads():
    n = 200_000
    counter, locks, shared = np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(2, np.int64)
    threads = [threading.Thread(target=_count_under_lock, args=(counter, locks, shared, n))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.tolist() == [n, n * (n - 1) // 2] and locks[0] == 0 and counter[0] == n + 8


NO_JIT_SCRIPT = textwrap.dedent("""
    import numba, numpy as np
    assert numba.config.DISABLE_JIT
    from llmds.hnsw import HNSW
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 5)).astype(np.float32)
    q = rng.standard_normal((8, 5)).astype(np.float32)
    index = HNSW(5, M=4, ef_construction=16, seed=0)
    index.add_items(x, np.arange(120))
    index.mark_deleted(0)
    index._check()
    ids, d = index.search_batch(q, 3, ef=120)
    live = np.arange(1, 120)
    dd = ((q[:, None, :] - x[live][None]) ** 2).sum(-1)
    truth = live[np.argsort(dd, axis=1)[:, :3]]
    hits = sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), truth.tolist()))
    assert hits >= 0.9 * truth.size, hits
    assert index.search(q[0], 3, ef=120)[0][0] == ids[0, 0]
    assert np.array_equal(index.search_batch(q, 3, ef=120, num_threads=3)[0], ids)
    import llmds.hnsw
    llmds.hnsw._MIN_INSERTS_PER_THREAD = 1  # the pure-Python atomics under 3 build threads
    more = rng.standard_normal((30, 5)).astype(np.float32)
    index.add_items(more, np.arange(200, 230), num_threads=3)
    index._check()
    assert index.search(more[4], 1, ef=150)[0][0] == 204
    try:
        index.search(np.array([0, np.nan, 0, 0, 0], np.float32), 1)
    except ValueError:
        pass
    else:
        raise AssertionError("NaN query accepted")
    print("ok")
""")


@pytest.mark.slow
def test_kernels_without_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", NO_JIT_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
