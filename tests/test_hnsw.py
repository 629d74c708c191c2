"""HNSW: exactness on small graphs, recall vs brute force, determinism, filters and deletions
(Hypothesis against a naive model), persistence, and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from llmds.bench.ann_data import exact_knn, load_fashion_mnist
from llmds.bench.datasets import find_data_dir
from llmds.hnsw import HNSW


class NaiveKNN:
    """Reference model: a dict of vectors and brute-force search (ties by id)."""

    def __init__(self, metric: str = "l2") -> None:
        self.metric = metric
        self.vectors: dict[int, np.ndarray] = {}

    def add(self, vec: np.ndarray, vec_id: int) -> None:
        v = np.asarray(vec, dtype=np.float32)
        if self.metric == "cosine":
            v = v / np.linalg.norm(v)
        self.vectors[vec_id] = v

    def delete(self, vec_id: int) -> None:
        del self.vectors[vec_id]

    def distance(self, vec_id: int, q: np.ndarray) -> float:
        v = self.vectors[vec_id].astype(np.float64)
        q = q.astype(np.float64)
        if self.metric == "l2":
            return float(((v - q) ** 2).sum())
        if self.metric == "cosine":
            q = q / np.linalg.norm(q)
        return float(1.0 - v @ q)

    def search(self, q: np.ndarray, k: int, allowed: set[int] | None = None) -> list[int]:
        ids = [i for i in self.vectors if allowed is None or i in allowed]
        return sorted(ids, key=lambda i: (self.distance(i, q), i))[:k]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b)
                          for a, b in zip(found, truth, strict=True)]))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _state(index: HNSW) -> tuple:
    n = index._num_slots
    return (len(index), n, index._vectors[:n].copy(), index._links0[:n].copy(),
            index._upper_links[: index._upper_rows].copy(), index._deleted[:n].copy(),
            index._meta.copy(), list(index._free), dict(index._id_to_slot),
            index._rng.bit_generator.state)


def _same_state(a: tuple, b: tuple) -> bool:
    return all(np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y
               for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------ exactness / recall
@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_complete_small_graph_is_exact(metric, rng):
    n, m = 33, 16  # n <= 2M + 1: no level-0 list ever overflows, search reaches every node
    x = rng.standard_normal((n, 12)).astype(np.float32)
    index = HNSW(12, M=m, seed=3, metric=metric)
    index.add_items(x, np.arange(100, 100 + n))
    index._check()
    model = NaiveKNN(metric)
    for i, v in enumerate(x):
        model.add(v, 100 + i)
    for q in rng.standard_normal((20, 12)).astype(np.float32):
        got = index.search(q, 10, ef=64)
        assert [i for i, _ in got] == model.search(q, 10)
        for i, d in got:
            assert d == pytest.approx(model.distance(i, q), rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_recall_against_brute_force(metric, rng):
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    q = rng.standard_normal((100, 16)).astype(np.float32)
    index = HNSW(16, M=12, ef_construction=100, seed=0, metric=metric)
    index.add_items(x, np.arange(2000))
    ids, dists = index.search_batch(q, 10, ef=100)
    if metric == "l2":
        truth = exact_knn(x, q, 10)
    else:
        xs, qs = x, q
        if metric == "cosine":
            xs = x / np.linalg.norm(x, axis=1, keepdims=True)
            qs = q / np.linalg.norm(q, axis=1, keepdims=True)
        truth = np.argsort(-(qs @ xs.T), axis=1)[:, :10]
    assert _recall(ids, truth) >= 0.95
    assert (np.diff(dists, axis=1) >= 0).all()
    single = index.search(q[0], 10, ef=100)
    assert [i for i, _ in single] == ids[0].tolist()


@pytest.mark.slow
def test_fashion_mnist_recall_at_ef20():
    data = find_data_dir()
    folder = data / "ann" / "fashion-mnist" if data is not None else None
    if folder is None or not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST not found under the datasets folder (../shared/datasets/ann)")
    base, queries = load_fashion_mnist(folder)
    base, queries = base[:5000], queries[:200]
    truth = exact_knn(base, queries, 10)
    index = HNSW(784, M=16, ef_construction=200, seed=0)
    index.add_items(base, np.arange(5000))
    ids, _ = index.search_batch(queries, 10, ef=20)
    assert _recall(ids, truth) >= 0.97


# ------------------------------------------------------------------------ determinism
def test_same_seed_same_graph(rng):
    x = rng.standard_normal((400, 8)).astype(np.float32)
    a, b = HNSW(8, M=6, seed=7), HNSW(8, M=6, seed=7)
    a.add_items(x, np.arange(400))
    for i, v in enumerate(x):  # one at a time draws the same levels as one batch
        b.add(v, i)
    assert np.array_equal(a._levels[:400], b._levels[:400])
    assert np.array_equal(a._links0[:400], b._links0[:400])
    assert np.array_equal(a._upper_links[: a._upper_rows], b._upper_links[: b._upper_rows])
    drop = {"capacity", "memory_bytes"}
    assert {k: v for k, v in a.stats().items() if k not in drop} == {
        k: v for k, v in b.stats().items() if k not in drop}
    c = HNSW(8, M=6, seed=8)
    c.add_items(x, np.arange(400))
    assert not np.array_equal(a._levels[:400], c._levels[:400])


def test_default_ml_and_layers():
    index = HNSW(4, M=16)
    assert index.stats()["ml"] == pytest.approx(1 / math.log(16))
    assert HNSW(4, ml=1 / math.log(2)).stats()["ml"] == pytest.approx(1 / math.log(2))
    x = np.random.default_rng(0).standard_normal((3000, 4)).astype(np.float32)
    index.add_items(x, np.arange(3000))
    upper = (index._levels[:3000] > 0).mean()
    assert 0.03 < upper < 0.1  # about one node in M
    assert index.stats()["num_layers"] == index._levels[:3000].max() + 1


# ----------------------------------------------------------- api behaviour / edge cases
def test_empty_index_and_fewer_than_k(rng):
    index = HNSW(3, seed=0)
    assert index.search(np.zeros(3, np.float32), 5) == []
    ids, d = index.search_batch(np.zeros((2, 3), np.float32), 2)
    assert (ids == -1).all() and np.isinf(d).all()
    assert index.stats()["entry_point"] is None and len(index) == 0
    index.add(np.ones(3), 42)
    assert index.search(np.zeros(3), 5) == [(42, 3.0)]
    ids, d = index.search_batch(np.zeros((1, 3)), 3)
    assert ids.tolist() == [[42, -1, -1]] and d[0, 0] == 3.0 and np.isinf(d[0, 1:]).all()


def test_update_delete_reuse_and_growth(rng):
    index = HNSW(4, M=4, seed=1)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    index.add_items(x, np.arange(50))
    assert index.capacity >= 50 and len(index) == 50 and 7 in index and 99 not in index
    assert "7" not in index
    index.add(np.full(4, 9.0), 7)  # update in place
    assert len(index) == 50 and np.array_equal(index.get_vector(7), np.full(4, 9.0))
    assert index.search(np.full(4, 9.0), 1)[0][0] == 7
    index.mark_deleted(3)
    assert 3 not in index and len(index) == 49
    assert all(i != 3 for i, _ in index.search(x[3], 50, ef=100))
    slots = index._num_slots
    index.add(x[3] + 0.5, 1000)  # reuses the deleted slot
    assert index._num_slots == slots and index.stats()["num_deleted"] == 0
    index.add(x[3], 3)  # a deleted id can come back
    assert index.search(x[3], 1)[0][0] == 3
    index._check()
    big = rng.standard_normal((500, 4)).astype(np.float32)
    index.add_items(big, np.arange(2000, 2500))
    assert index.capacity >= 551 and len(index) == 551
    index._check()
    st_ = index.stats()
    assert st_["num_vectors"] == 551 and st_["memory_bytes"] > 551 * 4 * 4
    assert 0 < st_["mean_degree"] <= 8


def test_ef_per_call_and_property(rng):
    index = HNSW(8, seed=0, ef_search=5)
    index.add_items(rng.standard_normal((300, 8)).astype(np.float32), np.arange(300))
    q = rng.standard_normal(8).astype(np.float32)
    assert len(index.search(q, 20)) == 20  # ef is raised to k
    assert index.search(q, 5, ef=300) == index.search(q, 5, ef=299)
    index.ef_search = 300
    assert index.search(q, 5) == index.search(q, 5, ef=300)


def test_cosine_normalises_and_ip(rng):
    index = HNSW(3, metric="cosine", seed=0)
    index.add(np.array([3.0, 0, 0]), 1)
    index.add(np.array([0, 2.0, 0]), 2)
    assert np.allclose(index.get_vector(1), [1, 0, 0])
    (i, d), _ = index.search(np.array([5.0, 0.1, 0]), 2)
    assert i == 1 and d == pytest.approx(1 - 5 / math.hypot(5, 0.1), abs=1e-6)
    ip = HNSW(2, metric="ip", seed=0)
    ip.add(np.array([1.0, 0]), 1)
    ip.add(np.array([3.0, 0]), 2)
    assert [i for i, _ in ip.search(np.array([1.0, 0]), 2)] == [2, 1]
    assert ip.search(np.array([1.0, 0], np.float32), 2) == [(2, -2.0), (1, 0.0)]


# -------------------------------------------------------------------- filter / deletion
def test_filter_through_graph_never_leaks(rng):
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    q = rng.standard_normal((40, 8)).astype(np.float32)
    index = HNSW(8, M=8, ef_construction=64, seed=2)
    index.add_items(x, np.arange(3000))
    mask = rng.random(3000) < 0.5
    allowed = np.flatnonzero(mask)
    truth = allowed[exact_knn(x[allowed], q, 10)]
    for filt in (mask, allowed, allowed.tolist()):
        ids, _ = index.search_batch(q, 10, ef=64, filter=filt)
        assert mask[ids].all()
        assert _recall(ids, truth) >= 0.9
    got = index.search(q[0], 10, filter=mask)
    assert all(mask[i] for i, _ in got) and len(got) == 10
    # few admitted: exact brute force, and fewer than k when fewer qualify
    assert [i for i, _ in index.search(q[0], 10, filter=[5, 7, 123456])] == sorted(
        [5, 7], key=lambda i: ((x[i] - q[0]) ** 2).sum())
    assert index.search(q[0], 10, filter=np.zeros(3000, bool)) == []
    assert index.search(q[0], 10, filter=np.array([], dtype=np.int64)) == []


def test_deletions_through_graph_never_leak(rng):
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    q = rng.standard_normal((40, 8)).astype(np.float32)
    index = HNSW(8, M=8, ef_construction=64, seed=2)
    index.add_items(x, np.arange(3000))
    gone = rng.choice(3000, 1000, replace=False)
    for i in gone:
        index.mark_deleted(int(i))
    live = np.setdiff1d(np.arange(3000), gone)
    ids, _ = index.search_batch(q, 10, ef=64)
    assert not np.isin(ids, gone).any()
    assert _recall(ids, live[exact_knn(x[live], q, 10)]) >= 0.9
    index._check()


vec_strategy = st.lists(st.floats(-4, 4, width=32), min_size=3, max_size=3)


class HNSWMachine(RuleBasedStateMachine):
    """Random add / update / delete / filtered search against NaiveKNN."""

    @initialize(metric=st.sampled_from(["l2", "cosine"]), seed=st.integers(0, 3))
    def setup(self, metric: str, seed: int) -> None:
        self.index = HNSW(3, M=4, ef_construction=16, seed=seed, metric=metric)
        self.model = NaiveKNN(metric)
        self.metric = metric

    def _ok(self, vec: list[float]) -> bool:
        return self.metric != "cosine" or float(np.linalg.norm(vec)) > 1e-3

    @rule(vec=vec_strategy, vec_id=st.integers(0, 25))
    def add(self, vec: list[float], vec_id: int) -> None:
        if not self._ok(vec):
            return
        self.index.add(np.array(vec, np.float32), vec_id)
        self.model.add(np.array(vec, np.float32), vec_id)

    @rule(vecs=st.lists(vec_strategy, min_size=1, max_size=5), start=st.integers(0, 25))
    def add_items(self, vecs: list[list[float]], start: int) -> None:
        if not all(self._ok(v) for v in vecs):
            return
        ids = list(range(start, start + len(vecs)))
        self.index.add_items(np.array(vecs, np.float32), ids)
        for v, i in zip(vecs, ids, strict=True):
            self.model.add(np.array(v, np.float32), i)

    @rule(vec_id=st.integers(0, 30))
    def delete(self, vec_id: int) -> None:
        if vec_id in self.model.vectors:
            self.index.mark_deleted(vec_id)
            self.model.delete(vec_id)
        else:
            before = _state(self.index)
            with pytest.raises(KeyError):
                self.index.mark_deleted(vec_id)
            assert _same_state(before, _state(self.index))

    @rule(q=vec_strategy, k=st.integers(1, 8), allowed=st.none() | st.sets(st.integers(0, 30)),
          as_mask=st.booleans())
    def search(self, q: list[float], k: int, allowed: set[int] | None, as_mask: bool) -> None:
        if not self._ok(q):
            return
        qv = np.array(q, np.float32)
        filt = None
        if allowed is not None:
            filt = np.isin(np.arange(31), list(allowed)) if as_mask else sorted(allowed)
        got = self.index.search(qv, k, ef=64, filter=filt)
        ids = [i for i, _ in got]
        assert len(set(ids)) == len(ids)
        assert all(i in self.model.vectors for i in ids), "deleted item returned"
        if allowed is not None:
            assert all(i in allowed for i in ids), "filtered-out item returned"
            expect = self.model.search(qv, k, allowed)  # few admitted: exact brute force
            assert [self.model.distance(i, qv) for i in ids] == pytest.approx(
                [self.model.distance(i, qv) for i in expect], rel=1e-4, abs=1e-4)
        dists = [d for _, d in got]
        assert dists == sorted(dists)
        for i, d in got:
            assert d == pytest.approx(self.model.distance(i, qv), rel=1e-4, abs=1e-4)

    @rule(mmap=st.booleans())
    def save_and_load(self, mmap: bool) -> None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/g.llmds"
            self.index.save(path)
            loaded = HNSW.load(path, mmap=mmap)
            loaded._check()
            self.index.save(path)  # over the mapped file: the loaded copy keeps working
            loaded._check()
            self.index = loaded

    @invariant()
    def consistent(self) -> None:
        if hasattr(self, "index"):
            self.index._check()
            assert len(self.index) == len(self.model.vectors)
            for i in self.model.vectors:
                assert i in self.index


TestHNSWStateful = HNSWMachine.TestCase
TestHNSWStateful.settings = __import__("hypothesis").settings(max_examples=25,
                                                              stateful_step_count=30)


# -------------------------------------------------------------------------- bad inputs
def test_constructor_errors():
    for kwargs in ({"dim": 0}, {"dim": 10**12}, {"dim": 4, "M": 1}, {"dim": 4, "M": 10**6},
                   {"dim": 4, "ef_construction": 0}, {"dim": 4, "ef_search": 0},
                   {"dim": 4, "ml": -1.0}, {"dim": 4, "ml": math.nan},
                   {"dim": 4, "metric": "hamming"}, {"dim": 4, "seed": -1}):
        with pytest.raises(ValueError, match=next(iter(kwargs)) if len(kwargs) == 1 else
                           list(kwargs)[1]):
            HNSW(**kwargs)
    for kwargs in ({"dim": 2.5}, {"dim": True}, {"dim": 4, "seed": "x"},
                   {"dim": 4, "ml": "1"}, {"dim": 4, "metric": None}):
        with pytest.raises(TypeError):
            HNSW(**kwargs)


def test_ids_must_be_non_negative_int64(rng):
    """-1 pads search_batch results and uint64 ids used to wrap: both are refused."""
    index = HNSW(2, seed=0)
    index.add_items(rng.standard_normal((3, 2)).astype(np.float32), [0, 1, 2**63 - 1])
    before = _state(index)
    for ids in ([-1], np.array([2**63], dtype=np.uint64), [2**64], [-(2**63)]):
        with pytest.raises(ValueError, match="ids must"):
            index.add_items(np.ones((1, 2)), ids)
        assert _same_state(before, _state(index))
    with pytest.raises(ValueError, match=r"vec_id must be in \[0, 9223372036854775807\]"):
        index.add(np.ones(2), -1)
    assert index.search(np.ones(2, np.float32), 3)[0][0] in (0, 1, 2**63 - 1)
    ids, _ = index.search_batch(np.ones((1, 2)), 5)
    assert sorted(ids[0, :3].tolist()) == [0, 1, 2**63 - 1] and ids[0, 3:].tolist() == [-1, -1]


def test_bad_inputs_change_nothing(rng):
    index = HNSW(4, seed=0, metric="l2")
    index.add_items(rng.standard_normal((30, 4)).astype(np.float32), np.arange(30))
    before = _state(index)
    q = np.zeros(4, np.float32)
    bad_calls = [
        (ValueError, lambda: index.add(np.zeros(5), 100)),
        (ValueError, lambda: index.add(np.array([1, np.nan, 0, 0]), 100)),
        (ValueError, lambda: index.add(np.array([1, np.inf, 0, 0]), 100)),
        (TypeError, lambda: index.add(np.zeros(4), "a")),
        (TypeError, lambda: index.add(np.zeros(4), 1.5)),
        (TypeError, lambda: index.add(["a", "b", "c", "d"], 1)),
        (ValueError, lambda: index.add_items(np.zeros((3, 4)), [1, 2])),
        (ValueError, lambda: index.add_items(np.zeros((2, 4)), [200, -1])),
        (ValueError, lambda: index.add_items(np.zeros((2, 4)), [200, 200])),
        (ValueError, lambda: index.add_items(np.zeros((2, 3)), [200, 201])),
        (ValueError, lambda: index.add_items(np.array([[0, 0, 0, np.nan]] * 2), [200, 201])),
        (TypeError, lambda: index.add_items(np.zeros((2, 4)), [1.5, 2.5])),
        (ValueError, lambda: index.search(np.zeros(3, np.float32), 1)),
        (ValueError, lambda: index.search(np.array([0, np.nan, 0, 0], np.float32), 1)),
        (ValueError, lambda: index.search(np.array([0, np.inf, 0, 0]), 1)),
        (ValueError, lambda: index.search(q, 0)),
        (ValueError, lambda: index.search(q, -1)),
        (TypeError, lambda: index.search(q, 2.0)),
        (ValueError, lambda: index.search(q, 2, ef=0)),
        (ValueError, lambda: index.search_batch(np.zeros((2, 5)), 1)),
        (ValueError, lambda: index.search_batch(np.zeros((2, 4)), 0)),
        (TypeError, lambda: index.search(q, 1, filter=np.array([0.5]))),
        (ValueError, lambda: index.search(q, 1, filter=np.zeros((2, 2), bool))),
        (KeyError, lambda: index.mark_deleted(999)),
        (KeyError, lambda: index.get_vector(999)),
        (TypeError, lambda: index.get_vector("1")),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
        assert _same_state(before, _state(index))
    with pytest.raises(ValueError, match="k must be"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="zero vector"):
        HNSW(2, metric="cosine").add(np.zeros(2), 1)
    with pytest.raises(ValueError, match="ef_search"):
        index.ef_search = 0
