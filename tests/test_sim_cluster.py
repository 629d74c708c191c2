"""Replica clusters (llmds.sim.cluster): routers on hand-made traces, conservation,
determinism, the shared tier, and the read-only cache probe the oracle relies on."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmds.mem_cache.base_prefix_cache import RadixKey
from llmds.sim.arrivals import LengthDist, SimRequest, synthetic_workload, trace_workload
from llmds.sim.cluster import ROUTERS, Cluster, RouterConfig, SharedTier, simulate_cluster
from llmds.sim.config import SimConfig
from llmds.sim.cost_model import CostModel
from llmds.sim.engine import simulate
from llmds.sim.kv_backends import RadixBackend, cached_prefix
from llmds.sim.metrics import FINISHED
from llmds.sim.workloads import multi_turn_chat_trace

COST = CostModel(5.0, 0.05, 0.0, 1e-4)
RADIX = SimConfig(kv_backend="radix", kv_pages=256, cost=COST)


def _where(res: Any) -> dict[int, int]:
    """request id -> replica index."""
    return {rec.request_id: k for k, rep in enumerate(res.replicas) for rec in rep.records}


def _req(rid: int, t: float, ids: np.ndarray, out: int = 4) -> SimRequest:
    prompt = np.asarray(ids, dtype=np.int64)
    return SimRequest(rid, t, len(prompt), out,
                      token_ids=np.concatenate([prompt, 50_000 + rid * 100 + np.arange(out)]))


def _tokens(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 30_000, n)


# --------------------------------------------------------------------- routers
def test_round_robin_turns():
    reqs = synthetic_workload(7, 100.0, prompt=LengthDist("constant", mean=16),
                              output=LengthDist("constant", mean=2), seed=0)
    res = Cluster(RADIX, 3, "round_robin").run(reqs)
    assert [_where(res)[i] for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert [r["routed"] for r in res.metrics["replicas"]] == [3, 2, 2]


def test_least_outstanding_avoids_the_busy_replica():
    # a long request takes replica 0; two short ones arriving while it runs go elsewhere
    reqs = [SimRequest(0, 0.0, 64, 200), SimRequest(1, 0.01, 16, 2),
            SimRequest(2, 0.02, 16, 2)]
    where = _where(Cluster(RADIX, 2, "least_outstanding").run(reqs))
    assert where == {0: 0, 1: 1, 2: 1}


@pytest.mark.parametrize("router", ["cache_aware", "oracle"])
def test_cache_aware_sends_a_follow_up_to_the_replica_holding_its_prefix(router):
    a, b, c = _tokens(1, 96), _tokens(2, 96), _tokens(3, 96)
    first = [_req(0, 0.0, a), _req(1, 0.001, b), _req(2, 0.002, c), _req(3, 1.0, _tokens(6, 96))]
    # turn 2 of conversations a and b: their whole history plus 16 new tokens
    follow = [_req(4, 5.0, np.concatenate([a, first[0].token_ids[96:], _tokens(4, 16)])),
              _req(5, 5.1, np.concatenate([b, first[1].token_ids[96:], _tokens(5, 16)]))]
    res = Cluster(RADIX, 3, router).run(first + follow)
    where = _where(res)
    assert len({where[0], where[1], where[2]}) == 3  # nothing matches: spread out
    assert where[4] == where[0] and where[5] == where[1]
    recs = {r.request_id: r for r in res.records}
    assert recs[4].cached_tokens >= 96 and recs[5].cached_tokens >= 96
    assert res.metrics["router"]["cache_hit"] == 2
    # round-robin sends them to the next replica in turn, which holds nothing of them
    rr = Cluster(RADIX, 3, "round_robin").run(first + follow)
    assert [_where(rr)[i] for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert [r.cached_tokens for r in rr.records if r.request_id >= 4] == [0, 0]


def test_imbalance_overrides_the_cache():
    a = _tokens(1, 64)
    reqs = [_req(0, 0.0, a, out=500), _req(1, 0.01, np.concatenate([a, _tokens(2, 32)]))]
    cfg = RouterConfig("cache_aware", balance_abs_threshold=0, balance_rel_threshold=1.0)
    res = Cluster(RADIX, 2, cfg).run(reqs)
    assert _where(res) == {0: 0, 1: 1}  # replica 0 is busier, although it has the prefix
    assert res.metrics["router"]["imbalanced"] == 1
    # with the default thresholds the prefix wins
    assert _where(Cluster(RADIX, 2, "cache_aware").run(reqs)) == {0: 0, 1: 0}


def test_a_weak_match_goes_to_the_smallest_tree():
    big, small = _tokens(1, 320), _tokens(2, 32)
    reqs = [_req(0, 0.0, big), _req(1, 1.0, small),
            # 32 of 320 tokens match replica 0's tree: below the 0.3 threshold
            _req(2, 2.0, np.concatenate([big[:32], _tokens(3, 288)]))]
    res = Cluster(RADIX, 2, "cache_aware").run(reqs)
    assert _where(res) == {0: 0, 1: 1, 2: 1}
    assert res.metrics["router"]["cache_miss"] == 3


# ------------------------------------------------------- conservation, determinism
def _trace_reqs(n: int = 120, rate: float = 30.0, seed: int = 5) -> list[SimRequest]:
    return trace_workload(multi_turn_chat_trace(n, seed=seed, system_prompt_tokens=120,
                                                user_tokens=(20, 120),
                                                output_tokens=(5, 60),
                                                follow_up_tokens=(10, 60)), rate, seed=seed)


def _check_conserved(reqs: list[SimRequest], res: Any, cfg: SimConfig) -> None:
    by_id = {r.request_id: r for r in reqs}
    assert sorted(r.request_id for r in res.records) == sorted(by_id)
    for rec in res.records:
        assert rec.status == FINISHED and rec.generated == by_id[rec.request_id].output_tokens
        assert rec.finish >= rec.first_token >= rec.first_scheduled >= rec.arrival
    for rep in res.replicas:
        ks = rep.kv_stats
        assert ks["num_sequences"] == 0 and ks["used_pages"] == 0
        assert ks["free_pages"] + ks["cached_pages"] == cfg.kv_pages
        assert rep.scheduler_stats["queued"] == 0 and rep.scheduler_stats["in_flight"] == 0
    assert sum(r["routed"] for r in res.metrics["replicas"]) == len(reqs)
    assert res.metrics["completed"] == len(reqs)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("tier", [None, SharedTier(25.0)])
def test_conservation_with_preemption(router, tier):
    cfg = SimConfig(kv_backend="radix", kv_pages=60, max_num_seqs=6, cost=COST)
    reqs = _trace_reqs()
    res = Cluster(cfg, 3, router, tier).run(reqs)
    _check_conserved(reqs, res, cfg)
    assert res.metrics["preemptions"] > 0


@pytest.mark.parametrize("backend", ["kvcache", "radix"])
def test_one_replica_is_the_plain_simulator(backend):
    cfg = SimConfig(kv_backend=backend, kv_pages=80, max_num_seqs=6, cost=COST)
    reqs = _trace_reqs(100, 8.0)
    alone = simulate(reqs, cfg)
    res = Cluster(cfg, 1, "round_robin").run(reqs)
    for a, b in zip(sorted(alone.records, key=lambda r: r.request_id),
                    sorted(res.records, key=lambda r: r.request_id), strict=True):
        assert (a.first_scheduled, a.first_token, a.finish, a.cached_tokens, a.preemptions,
                list(a.itls)) == (b.first_scheduled, b.first_token, b.finish,
                                  b.cached_tokens, b.preemptions, list(b.itls))
    assert alone.metrics["num_iterations"] == res.metrics["num_iterations"]


def test_deterministic():
    reqs = _trace_reqs(150, 40.0)
    runs = [Cluster(RADIX, 4, "cache_aware", SharedTier(25.0)).run(reqs) for _ in range(2)]
    assert json.dumps(runs[0].metrics, sort_keys=True) == json.dumps(runs[1].metrics,
                                                                     sort_keys=True)
    assert [(r.request_id, r.first_token, r.finish) for r in runs[0].records] == \
        [(r.request_id, r.first_token, r.finish) for r in runs[1].records]


@settings(max_examples=15, deadline=None)
@given(router=st.sampled_from(ROUTERS), replicas=st.integers(1, 4),
       pages=st.integers(0, 80), seqs=st.integers(1, 6), rate=st.floats(1.0, 200.0),
       seed=st.integers(0, 1000), tier=st.booleans())
def test_conservation_random_clusters(router, replicas, pages, seqs, rate, seed, tier):
    reqs = _trace_reqs(40, rate, seed)
    need = max(-(-(r.prompt_tokens + r.output_tokens) // 16) for r in reqs)
    cfg = SimConfig(kv_backend="radix", kv_pages=need + pages, max_num_seqs=seqs, cost=COST,
                    max_num_batched_tokens=256)
    res = Cluster(cfg, replicas, router, SharedTier(10.0) if tier else None).run(reqs)
    _check_conserved(reqs, res, cfg)


# ------------------------------------------------------------------- shared tier
def test_tier_serves_a_prefix_computed_on_another_replica():
    a = _tokens(1, 160)
    reqs = [_req(0, 0.0, a), _req(1, 2.0, np.concatenate([a, _tokens(2, 16)]))]
    tier = SharedTier(bandwidth_gb_s=25.0, request_latency_ms=0.5)
    res = Cluster(RADIX, 2, "round_robin", tier).run(reqs)
    assert _where(res) == {0: 0, 1: 1}
    rec = {r.request_id: r for r in res.records}[1]
    assert rec.cached_tokens == rec.remote_tokens == 160
    fetch = tier.fetch_ms(160, 524_288)
    assert res.metrics["router"]["fetches"] == 1
    assert res.metrics["router"]["fetch_ms_total"] == pytest.approx(fetch)
    assert rec.first_scheduled == pytest.approx(2.0 + fetch / 1000.0)
    assert res.metrics["remote_hit_rate"] > 0
    # a link so slow that recomputing is faster: no fetch
    slow = Cluster(RADIX, 2, "round_robin", SharedTier(bandwidth_gb_s=0.001)).run(reqs)
    assert slow.metrics["router"]["fetches"] == 0 and slow.metrics["remote_hit_rate"] == 0
    # without the tier, nothing is cached on the other replica
    plain = Cluster(RADIX, 2, "round_robin").run(reqs)
    assert {r.request_id: r.cached_tokens for r in plain.records}[1] == 0


def test_a_request_waiting_for_its_fetch_does_not_hold_later_ones():
    a = _tokens(1, 160)
    reqs = [_req(0, 0.0, a), _req(1, 1.0, _tokens(2, 32)), _req(2, 1.5, _tokens(3, 32)),
            _req(3, 2.0, np.concatenate([a, _tokens(4, 16)])),  # replica 1: fetches a
            _req(4, 2.0001, _tokens(5, 32)), _req(5, 2.001, _tokens(6, 32))]  # replica 1
    tier = SharedTier(25.0)
    res = Cluster(RADIX, 2, "round_robin", tier).run(reqs)
    rec = {r.request_id: r for r in res.records}
    ready = 2.0 + tier.fetch_ms(160, 524_288) / 1000.0
    assert rec[3].remote_tokens == 160 and rec[3].first_scheduled >= ready
    # request 5 entered (and started) while request 3's pages were still moving
    assert rec[5].first_scheduled < ready < rec[3].first_scheduled


def test_tier_capacity_is_lru_trimmed():
    reqs = [_req(i, float(i), _tokens(i, 96)) for i in range(4)]
    reqs.append(_req(9, 9.0, np.concatenate([reqs[0].token_ids[:96], _tokens(9, 16)])))
    tier = SharedTier(25.0, capacity_tokens=200)  # holds two 96-token prompts at most
    res = Cluster(RADIX, 5, "round_robin", tier).run(reqs)
    # the first prompt was evicted from the tier by the later ones: no remote hit
    assert {r.request_id: r.remote_tokens for r in res.records}[9] == 0


# ------------------------------------------------------------------ bad settings
def test_bad_cluster_settings_are_named():
    with pytest.raises(ValueError, match="router must be one of"):
        Cluster(RADIX, 2, "random")
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        Cluster(RADIX, 0)
    with pytest.raises(ValueError, match=r"config\.mode must be 'continuous'"):
        Cluster(SimConfig(mode="micro_batch"), 2)
    with pytest.raises(ValueError, match=r"config\.kv_backend must be 'radix'"):
        Cluster(SimConfig(), 2, "oracle")
    with pytest.raises(ValueError, match=r"config\.kv_backend must be 'radix'"):
        Cluster(SimConfig(), 2, "round_robin", SharedTier())
    with pytest.raises(ValueError, match="prefix_caching=True"):
        Cluster(SimConfig(kv_backend="radix", prefix_caching=False), 2, "oracle")
    with pytest.raises(TypeError, match="tier must be a SharedTier"):
        Cluster(RADIX, 2, "round_robin", 25.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be a SimConfig"):
        Cluster("cfg", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bandwidth_gb_s must be > 0"):
        SharedTier(0.0)
    with pytest.raises(ValueError, match="cache_threshold must be <= 1"):
        RouterConfig(cache_threshold=2.0)
    with pytest.raises(ValueError, match="balance_rel_threshold must be >= 1"):
        RouterConfig(balance_rel_threshold=0.5)
    with pytest.raises(ValueError, match="kv_pages=4"):  # a request too big for a replica
        simulate_cluster([SimRequest(0, 0.0, 100, 1)], SimConfig(kv_pages=4), 2)


# --------------------------------------------------------- the read-only cache probe
@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=24), min_size=1, max_size=8),
       st.lists(st.integers(0, 3), min_size=0, max_size=24), st.sampled_from([1, 2, 4]))
def test_cached_prefix_equals_match_prefix_and_changes_nothing(inserted, probe, page):
    b = RadixBackend(page_size=page, max_pages=64)
    for sid, ids in enumerate(inserted):
        codes = np.asarray(ids, dtype=np.uint32)
        b.allocate(sid, codes)
        b.free(sid, len(codes))
    key = np.asarray(probe, dtype=np.uint32)

    def nodes() -> list[tuple[int, int, bytes]]:  # every node's id, LRU time and tokens
        out, stack = [], list(b.tree.root_node.children.values())
        while stack:
            node = stack.pop()
            out.append((node.id, node.last_access, node.kb))
            stack.extend(node.children.values())
        return sorted(out)

    before = (nodes(), b.stats())
    got = b.cached_prefix(key)
    assert (nodes(), b.stats()) == before
    assert got == cached_prefix(b.tree, key)
    assert got == b.tree.match_prefix(RadixKey(key)).prefix_len
    b._check()
