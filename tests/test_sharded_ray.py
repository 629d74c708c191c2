"""ShardedRetrievalPipeline on a real local Ray (one session-wide Ray, see
tests/ray_cluster.py): identity with one pipeline, concurrent clients, a killed actor,
save/load across backends. Skipped with the reason when Ray is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from llmds.dist import ShardedRetrievalPipeline, ShardError
from llmds.dist._shards import RayShards, shard_of
from tests.sharded_util import check_concurrent, check_queries, corpus, pair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(ray_cluster):
    """One pipeline and a 2-shard Ray pipeline holding the same 80 documents (after
    deletes and a second batch), shared by the module's read-only tests."""
    one, sharded = pair(2, backend="ray")
    rng = np.random.default_rng(11)
    ids, texts, vecs, metas = corpus(rng, 60, str_ids=True)
    ids2, texts2, vecs2, metas2 = corpus(rng, 25, start=60, str_ids=True)
    for p in (one, sharded):
        p.add_documents(ids, texts, vecs, metas, num_threads=1)
        for d in ("d3", "d17", "d40", "d41", "d59"):
            p.delete_document(d)
        p.add_documents(ids2, texts2, [None if i % 4 == 0 else v for i, v in enumerate(vecs2)],
                        metas2, num_threads=1)
    yield one, sharded
    sharded.close()


def test_identity_with_one_pipeline(built):
    one, sharded = built
    assert sharded.backend == "ray" and len(sharded) == 80
    sharded._check()
    check_queries(one, sharded, np.random.default_rng(12), num=6)


def test_concurrent_clients(built):
    one, sharded = built
    check_concurrent(one, sharded, np.random.default_rng(13), clients=8, num=32)


def test_search_time_is_measured_inside_the_actors(built):
    _, sharded = built
    sharded.search("alpha river", top_k=3, use_cache=False)
    shards = sharded.stats()["shards"]
    assert [s["shard"] for s in shards] == [0, 1]
    assert all(s["num_shard_searches"] > 0 and s["search_seconds"] > 0 for s in shards)
    assert sum(s["num_documents"] for s in shards) == 80


class _Sleeper:
    def sleep(self, seconds: float) -> float:
        import time

        time.sleep(seconds)
        return seconds


def test_timeout_names_the_late_shard(built, ray_cluster, monkeypatch):
    """A shard that does not answer within ``timeout`` fails the call, naming it, after
    the others answered (their answers are not returned)."""
    _, sharded = built
    shards = RayShards.__new__(RayShards)
    shards._ray = ray_cluster
    shards.actors = [ray_cluster.remote(_Sleeper).options(num_cpus=0).remote()
                     for _ in range(2)]
    try:
        monkeypatch.setattr(sharded, "_shards", shards)
        monkeypatch.setattr(sharded, "_timeout", 2.0)
        with pytest.raises(ShardError, match=r"sleeping failed on 1 of 2 shards.*shard 1 "
                                             r"\(Ray actor [0-9a-f]+\) did not answer within "
                                             r"2.0 s"):
            sharded._map("sleep", {0: (0.0,), 1: (30.0,)}, "sleeping")
    finally:
        for a in shards.actors:
            ray_cluster.kill(a)


def test_save_load_across_backends(built, tmp_path):
    one, sharded = built
    sharded.save(tmp_path / "from-ray")
    local = ShardedRetrievalPipeline.load(tmp_path / "from-ray", backend="local")
    local._check()
    check_queries(one, local, np.random.default_rng(14))
    local.save(tmp_path / "from-local")
    again = ShardedRetrievalPipeline.load(tmp_path / "from-local", backend="ray")
    try:
        again._check()
        check_queries(one, again, np.random.default_rng(15))
    finally:
        again.close()


def test_killed_actor_fails_every_call_naming_the_shard(ray_cluster):
    _, sharded = pair(2, backend="ray")
    try:
        ids, texts, vecs, metas = corpus(np.random.default_rng(16), 30)
        sharded.add_documents(ids, texts, vecs, metas)
        ray_cluster.kill(sharded._shards.actors[1])
        dead = r"shard 1 \(Ray actor [0-9a-f]+\) is dead .*load\(\) the last save"
        with pytest.raises(ShardError, match=r"search failed on 1 of 2 shards.*" + dead):
            sharded.search("alpha", top_k=5, use_cache=False)
        with pytest.raises(ShardError, match=dead):
            sharded.search_batch(["alpha", "beta"], top_k=5, use_cache=False)
        with pytest.raises(ShardError, match=dead):
            sharded.stats()
        victim = next(d for d in range(100, 200) if shard_of(d, 2) == 1)
        with pytest.raises(ShardError, match=dead):
            sharded.add_document(victim, "alpha")
        assert victim not in sharded and len(sharded) == 30
    finally:
        sharded.close()


def test_bad_ray_options(ray_cluster):
    with pytest.raises(ValueError, match="ray_options"):
        ShardedRetrievalPipeline(2, backend="ray", embedding_dim=4,
                                 ray_options={"no_such_option": 1})
    with pytest.raises(TypeError, match="ray_options"):
        ShardedRetrievalPipeline(2, backend="ray", embedding_dim=4, ray_options=[1])
    with pytest.raises(ValueError, match="ray_init"):
        ShardedRetrievalPipeline(2, backend="ray", embedding_dim=4, ray_init=3)
