"""ShardedRetrievalPipeline on the in-process backend: identity with one RetrievalPipeline
(random add/delete/search sequences, SciFact), placement, failures, bad input, files.
The Ray backend's tests are in test_sharded_ray.py."""

from __future__ import annotations

import builtins
import pickle
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from llmds import RetrievalPipeline
from llmds._persist import MANIFEST, read_container, write_container
from llmds.dist import ShardedRetrievalPipeline, ShardError
from llmds.dist._sharded_file import KIND
from llmds.dist._shards import shard_of
from llmds.errors import CorruptFileError
from tests.sharded_util import (
    DIM,
    WORDS,
    assert_same,
    check_concurrent,
    check_queries,
    corpus,
    pair,
)


# ------------------------------------------------------------------ identity, random data
class ShardedMatchesOne(RuleBasedStateMachine):
    """Random adds (batches), deletes and searches on a sharded pipeline and on one
    pipeline: every search answers the same; the coordinator's invariants hold."""

    @initialize(num_shards=st.integers(1, 4), str_ids=st.booleans(),
                seed=st.integers(0, 2**16), metric=st.sampled_from(["cosine", "ip", "l2"]),
                lexical_depth=st.integers(1, 12), dense_depth=st.integers(1, 12))
    def start(self, num_shards: int, str_ids: bool, seed: int, metric: str,
              lexical_depth: int, dense_depth: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.str_ids = str_ids
        self.one, self.sharded = pair(num_shards, metric=metric, lexical_depth=lexical_depth,
                                      dense_depth=dense_depth)
        self.next_id = 0
        self.ids: list = []

    @rule(n=st.integers(1, 12), lexical_only=st.booleans())
    def add(self, n: int, lexical_only: bool) -> None:
        ids, texts, vecs, metas = corpus(self.rng, n, self.next_id, self.str_ids)
        embeddings = None if lexical_only else vecs
        for p in (self.one, self.sharded):
            assert p.add_documents(ids, texts, embeddings, metas, num_threads=1) == n
        self.next_id += n
        self.ids += ids

    @rule(pick=st.integers(0, 10**6))
    def delete(self, pick: int) -> None:
        if self.ids:
            d = self.ids.pop(pick % len(self.ids))
            self.one.delete_document(d)
            self.sharded.delete_document(d)

    @rule(pick=st.integers(0, 10**6), text=st.sampled_from(WORDS))
    def add_one(self, pick: int, text: str) -> None:
        d = f"d{self.next_id}" if self.str_ids else self.next_id
        v = self.rng.standard_normal(DIM) if pick % 2 else None
        for p in (self.one, self.sharded):
            p.add_document(d, text, v, {"g": pick % 3})
        self.next_id += 1
        self.ids.append(d)

    @rule()
    def search(self) -> None:
        check_queries(self.one, self.sharded, self.rng, num=2)

    @invariant()
    def consistent(self) -> None:
        if hasattr(self, "sharded"):
            self.sharded._check()
            assert len(self.sharded) == len(self.one)
            one, sh = self.one.stats(), self.sharded.stats()
            assert sh["num_embedded"] == one["num_embedded"]
            assert sh["lexical"]["avgdl"] == one["lexical"]["avgdl"]

    def teardown(self) -> None:
        if hasattr(self, "sharded"):
            self.sharded.close()


TestShardedMatchesOne = pytest.mark.slow(ShardedMatchesOne.TestCase)
TestShardedMatchesOne.settings = settings(
    max_examples=25, stateful_step_count=10, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])


def test_global_statistics_not_per_shard_idf():
    """A term frequent on one shard and rare on another: per-shard IDF would rank by the
    shard; global IDF gives one pipeline's scores."""
    one, sharded = pair(2)
    ids = list(range(40))
    texts = ["river stone" if shard_of(i, 2) == 0 else f"alpha {WORDS[i % 5]}" for i in ids]
    texts[next(i for i in ids if shard_of(i, 2) == 1)] = "river alpha"
    for p in (one, sharded):
        p.add_documents(ids, texts, num_threads=1)
    assert_same(one.search("river", top_k=40), sharded.search("river", top_k=40))
    shard_scores = {shard_of(d, 2) for d, _ in sharded.search("river", top_k=40)}
    assert shard_scores == {0, 1}


def test_embedder_in_the_coordinator_matches_one():
    class Hashing:
        dim = DIM

        def embed(self, texts):
            return np.array([[len(t) % 7 + 1, t.count("a") + 1, 1, 2, 3, hash(t) % 5]
                             for t in texts], dtype=np.float64)

    one, sharded = pair(3, embedder=Hashing())
    rng = np.random.default_rng(1)
    ids, texts, _, metas = corpus(rng, 30)
    for p in (one, sharded):
        p.add_documents(ids, texts, None, metas, num_threads=1)
    assert sharded.stats()["num_embedded"] == 30
    check_queries(one, sharded, rng)


@pytest.mark.data
@pytest.mark.slow
def test_scifact_subset_matches_one():
    from llmds.bench.datasets import find_data_dir
    from llmds.bench.ir_data import load_beir

    data = find_data_dir()
    if data is None or not (data / "ir" / "scifact").is_dir():
        pytest.skip("SciFact not found (set LLMDS_DATA or place ../shared/datasets)")
    c = load_beir(data / "ir" / "scifact")
    n = 600
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, 16))
    one = RetrievalPipeline(16, seed=0)
    sharded = ShardedRetrievalPipeline(3, backend="local", embedding_dim=16, seed=0)
    for p in (one, sharded):
        p.add_documents(c.doc_ids[:n], c.docs[:n], vecs, num_threads=1)
        p.delete_document(c.doc_ids[7])
    queries = c.queries[:40]
    qv = rng.standard_normal((len(queries), 16))
    for kw in ({"fusion_weight": 0.0}, {}, {"fusion": "rrf"}):
        a = one.search_batch(queries, qv, top_k=10, num_threads=1, **kw)
        b = sharded.search_batch(queries, qv, top_k=10, num_threads=1, **kw)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    sharded._check()


# ------------------------------------------------------------------ placement, API
def test_placement_is_stable_and_typed():
    assert [shard_of(i, 4) for i in range(8)] == [shard_of(i, 4) for i in range(8)]
    assert shard_of("doc-1", 4) == 3 and shard_of(7, 4) == 3  # frozen: saved files rely on it
    assert all(shard_of(i, 1) == 0 for i in range(20))
    counts = np.bincount([shard_of(f"x{i}", 4) for i in range(4000)], minlength=4)
    assert counts.min() > 850  # roughly even


def test_documents_stats_and_lifecycle(tmp_path):
    one, sharded = pair(2)
    rng = np.random.default_rng(2)
    ids, texts, vecs, metas = corpus(rng, 20, str_ids=True)
    for p in (one, sharded):
        p.add_documents(ids, texts, vecs, metas)
    assert sharded.get_document("d3") == one.get_document("d3")
    assert sharded.has_embedding("d3") and "d3" in sharded and "zz" not in sharded
    assert sharded.id_kind == "str" and sharded.num_shards == 2
    assert sharded.backend == "local"
    sharded.search("alpha", top_k=3)
    s = sharded.stats()
    assert s["num_documents"] == 20 and len(s["shards"]) == 2
    assert sum(x["num_documents"] for x in s["shards"]) == 20
    assert all(x["num_shard_searches"] == 1 and x["search_seconds"] > 0 for x in s["shards"])
    with pytest.raises(KeyError):
        sharded.delete_document("missing")
    with pytest.raises(ValueError, match="already"):
        sharded.add_document("d3", "text")
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(sharded)
    with sharded:
        pass
    sharded.close()  # idempotent


def test_concurrent_searches_match_one():
    one, sharded = pair(3)
    rng = np.random.default_rng(4)
    ids, texts, vecs, metas = corpus(rng, 60)
    for p in (one, sharded):
        p.add_documents(ids, texts, vecs, metas, num_threads=1)
    check_concurrent(one, sharded, rng, clients=4, num=16)


# ------------------------------------------------------------------ failures
class _Failing:
    """A shard whose ``method`` raises ``exc``; every other call reaches the shard."""

    def __init__(self, shard, method, exc):
        self._shard, self._method, self._exc = shard, method, exc

    def __getattr__(self, name):
        if name == self._method:
            def boom(*args):
                raise self._exc
            return boom
        return getattr(self._shard, name)


def fail_on(monkeypatch, sharded, i, method, exc):
    shards = list(sharded._shards.shards)
    shards[i] = _Failing(shards[i], method, exc)
    monkeypatch.setattr(sharded._shards, "shards", shards)


def test_failed_search_names_the_shard_and_returns_nothing(monkeypatch):
    _, sharded = pair(3)
    sharded.add_documents(list(range(30)), ["alpha beta"] * 30, num_threads=1)

    fail_on(monkeypatch, sharded, 1, "candidates", MemoryError("out of memory"))
    with pytest.raises(ShardError, match=r"search failed on 1 of 3 shards.*shard 1 .*"
                                         r"MemoryError: out of memory"):
        sharded.search("alpha", top_k=5, use_cache=False)


def test_failed_add_is_undone_on_every_shard(monkeypatch):
    one, sharded = pair(3)
    rng = np.random.default_rng(5)
    ids, texts, vecs, metas = corpus(rng, 20)
    for p in (one, sharded):
        p.add_documents(ids, texts, vecs, metas, num_threads=1)
    new_ids, new_texts, new_vecs, new_metas = corpus(rng, 30, start=100)
    victim = shard_of(new_ids[0], 3)

    fail_on(monkeypatch, sharded, victim, "add", OSError("disk gone"))
    with pytest.raises(ShardError, match=f"add_documents failed on 1 of 3 shards.*shard "
                                         f"{victim} .*OSError: disk gone"):
        sharded.add_documents(new_ids, new_texts, new_vecs, new_metas)
    assert len(sharded) == 20 and new_ids[0] not in sharded
    sharded._check()
    check_queries(one, sharded, rng)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(("num_shards", "error", "match"), [
    (0, ValueError, "num_shards"), (-1, ValueError, "num_shards"),
    ("2", TypeError, "num_shards"), (True, TypeError, "num_shards"),
    (1.5, TypeError, "num_shards")])
def test_bad_num_shards(num_shards, error, match):
    with pytest.raises(error, match=match):
        ShardedRetrievalPipeline(num_shards, backend="local", embedding_dim=4)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"backend": "spark"}, ValueError, r"backend must be one of .*'ray'.*'local'.*'spark'"),
    ({"backend": "local", "ray_init": "local"}, ValueError, "backend='ray' only"),
    ({"backend": "local", "ray_options": {"num_cpus": 1}}, ValueError, "backend='ray' only"),
    ({"backend": "local", "timeout": 0}, ValueError, "timeout"),
    ({"backend": "local", "max_concurrency": 0}, ValueError, "max_concurrency"),
    ({"backend": "local", "embedding_dim": 0}, ValueError, "embedding_dim"),
    ({"backend": "local", "metric": "hamming"}, ValueError, "metric"),
    ({"backend": "local", "bogus": 1}, TypeError, "bogus"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ShardedRetrievalPipeline(2, **{"embedding_dim": 4, **kwargs})


def test_ray_missing_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError, match=r"pip install 'llmds\[ray\]'"):
        ShardedRetrievalPipeline(2, backend="ray", embedding_dim=4)


@pytest.mark.slow
def test_importing_llmds_dist_imports_no_ray():
    import subprocess

    code = ("import sys, llmds, llmds.dist; from llmds.dist import ShardedRetrievalPipeline; "
            "p = ShardedRetrievalPipeline(2, backend='local', embedding_dim=4); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bad_search_input_is_the_pipelines_error():
    one, sharded = pair(2)
    for p in (one, sharded):
        p.add_documents([1, 2], ["alpha", "beta"], metadatas=[{"g": 1}, None])
    for bad, error in (({"nofield": 1}, ValueError), ({"g": {"$near": 1}}, ValueError),
                       ("x", TypeError)):
        with pytest.raises(error) as a:
            one.search("alpha", filter=bad)
        with pytest.raises(error) as b:
            sharded.search("alpha", filter=bad)
        assert str(a.value) == str(b.value)
    with pytest.raises(ValueError, match="query_embedding"):
        sharded.search("alpha", np.ones(DIM + 1))
    with pytest.raises(ValueError, match="embeddings"):
        sharded.add_documents([3], ["x"], np.full((1, DIM), np.nan))
    assert len(sharded) == 2


# ------------------------------------------------------------------ files
def _saved(tmp_path: Path, num_shards: int = 3) -> tuple[RetrievalPipeline, Path]:
    one, sharded = pair(num_shards)
    rng = np.random.default_rng(6)
    ids, texts, vecs, metas = corpus(rng, 40, str_ids=True)
    for p in (one, sharded):
        p.add_documents(ids, texts, vecs, metas, num_threads=1)
        p.delete_document("d11")
    sharded.save(tmp_path / "s")
    sharded.save(tmp_path / "s")  # a second save replaces the first's folders
    sharded.close()
    return one, tmp_path / "s"


def test_save_load_round_trip(tmp_path):
    one, path = _saved(tmp_path)
    assert len([p for p in path.iterdir() if p.is_dir()]) == 3
    loaded = ShardedRetrievalPipeline.load(path, backend="local")
    loaded._check()
    assert len(loaded) == 39 and loaded.id_kind == "str"
    check_queries(one, loaded, np.random.default_rng(7))
    loaded.add_document("new", "alpha river", np.ones(DIM))
    one.add_document("new", "alpha river", np.ones(DIM))
    check_queries(one, loaded, np.random.default_rng(8))


def _rewrite_manifest(path: Path, change) -> None:
    c = read_container(path / MANIFEST, KIND, (1,))
    meta = dict(c.meta)
    change(meta)
    write_container(path / MANIFEST, KIND, 1, meta, {})


def test_manifest_shard_count_disagrees_with_folders(tmp_path):
    _, path = _saved(tmp_path)

    def more(meta):
        meta["num_shards"] = 4

    _rewrite_manifest(path, more)
    with pytest.raises(CorruptFileError, match="num_shards is 4 but the manifest names 3"):
        ShardedRetrievalPipeline.load(path, backend="local")


def test_missing_or_swapped_shard_folder(tmp_path):
    _, path = _saved(tmp_path)
    folders = sorted(p for p in path.iterdir() if p.is_dir())
    tmp = folders[0].with_name("tmp")
    folders[0].rename(tmp)
    with pytest.raises(CorruptFileError, match=r"shard 0's folder .* is missing"):
        ShardedRetrievalPipeline.load(path, backend="local")
    folders[1].rename(folders[0])
    tmp.rename(folders[1])  # shards 0 and 1 swapped
    with pytest.raises(CorruptFileError, match="shard 0"):
        ShardedRetrievalPipeline.load(path, backend="local")


def test_damaged_manifest(tmp_path):
    _, path = _saved(tmp_path)
    raw = bytearray((path / MANIFEST).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (path / MANIFEST).write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError):
        ShardedRetrievalPipeline.load(path, backend="local")


def test_shard_folder_from_another_save(tmp_path):
    """A shard folder replaced by another save's: its MANIFEST is not the recorded one."""
    _, path = _saved(tmp_path)
    other = ShardedRetrievalPipeline(3, backend="local", embedding_dim=DIM)
    other.add_documents(["a", "b", "c"], ["x", "y", "z"])
    other.save(tmp_path / "other")
    mine = sorted(p for p in path.iterdir() if p.is_dir())[2]
    theirs = sorted(p for p in (tmp_path / "other").iterdir() if p.is_dir())[2]
    shutil.rmtree(mine)
    shutil.copytree(theirs, mine)
    with pytest.raises(CorruptFileError, match=r"shard 2.*not the shard the manifest names"):
        ShardedRetrievalPipeline.load(path, backend="local")


def test_no_such_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        ShardedRetrievalPipeline.load(tmp_path / "none", backend="local")
    one = RetrievalPipeline(4)
    one.save(tmp_path / "single")
    with pytest.raises(CorruptFileError):
        ShardedRetrievalPipeline.load(tmp_path / "single", backend="local")


# ------------------------------------------------------------------ batching
def test_batcher_groups_concurrent_calls_and_shares_errors():
    from llmds.dist._batcher import Batcher

    release = threading.Event()
    batches: list[list[int]] = []

    def work(key, items):
        batches.append(list(items))
        if len(batches) == 1:
            release.wait(30)  # the first batch is in flight while the others queue
        if -1 in items:
            raise ValueError("bad item")
        return [key * 100 + i for i in items]

    b = Batcher(work)
    out: dict[int, object] = {}

    def call(i, key=1):
        try:
            out[i] = b.run(key, i)
        except ValueError as exc:
            out[i] = exc

    first = threading.Thread(target=call, args=(0,))
    first.start()
    deadline = time.monotonic() + 30  # a broken batcher fails here rather than hangs
    while not batches:
        assert time.monotonic() < deadline, "the first batch never started"
        threading.Event().wait(0.001)
    others = [threading.Thread(target=call, args=(i,)) for i in (1, 2, 3)]
    other_key = threading.Thread(target=call, args=(9, 2))
    for t in [*others, other_key]:
        t.start()
    while len(batches) < 2 or len(b._queues.get(1, ())) < 3:  # key 2 runs meanwhile
        assert time.monotonic() < deadline, (batches, b._queues)
        threading.Event().wait(0.001)
    release.set()
    for t in [first, *others, other_key]:
        t.join(30)
    assert out == {0: 100, 1: 101, 2: 102, 3: 103, 9: 209}
    assert sorted(map(sorted, batches)) == [[0], [1, 2, 3], [9]]
    call(-1)
    assert isinstance(out[-1], ValueError)
    assert b.run(1, 5) == 105  # a failed batch leaves the batcher usable


def test_batcher_with_two_batches_in_flight():
    from llmds.dist._batcher import Batcher

    running = [0, 0]  # now, most
    lock = threading.Lock()

    def work(key, items):
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        threading.Event().wait(0.002)
        with lock:
            running[0] -= 1
        return [2 * i for i in items]

    b = Batcher(work, max_in_flight=2)
    wrong: list[int] = []

    def client(k):
        for i in range(k * 100, k * 100 + 25):
            if b.run("k", i) != 2 * i:
                wrong.append(i)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not wrong and 1 <= running[1] <= 2 and not b._busy and not b._queues


def test_connect_uses_joins_or_starts_ray_only_when_asked():
    from llmds.dist._shards import connect

    class FakeRay:
        def __init__(self, running: bool, cluster: bool) -> None:
            self.running, self.cluster, self.calls = running, cluster, []

        def is_initialized(self) -> bool:
            return self.running

        def init(self, **kwargs) -> None:
            self.calls.append(kwargs)
            if kwargs.get("address") == "auto" and not self.cluster:
                raise ConnectionError("Could not find any running Ray instance")
            self.running = True

    ray = FakeRay(running=True, cluster=False)
    connect(ray, None)
    assert ray.calls == []  # this process's Ray is used as it is
    ray = FakeRay(running=False, cluster=True)
    connect(ray, None)
    assert ray.calls == [{"address": "auto"}]  # joins the running cluster
    ray = FakeRay(running=False, cluster=False)
    with pytest.raises(RuntimeError, match=r"no Ray is running: call ray.init.*ray_init='local'"):
        connect(ray, None)  # never starts one unasked
    connect(ray, "local")
    assert ray.calls[-1] == {"include_dashboard": False}
    ray = FakeRay(running=False, cluster=False)
    connect(ray, {"num_cpus": 2})
    assert ray.calls == [{"num_cpus": 2}]
    with pytest.raises(ValueError, match="ray_init must be None, 'local' or a dict"):
        connect(FakeRay(running=True, cluster=True), "remote")
