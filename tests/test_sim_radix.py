"""llmds.sim with the RadixCache + PagedAllocator KV backend (and the token-id remap)."""

from __future__ import annotations

import numpy as np
import pytest

from llmds.errors import CapacityError
from llmds.sim import LengthDist, SimConfig, SimRequest, simulate, synthetic_workload
from llmds.sim.arrivals import trace_workload
from llmds.sim.engine import MODES, Simulator
from llmds.sim.kv_backends import KVCacheBackend, RadixBackend, TokenRemap, make_backend
from llmds.sim.metrics import FINISHED
from llmds.sim.workloads import multi_turn_chat_trace


class _CheckedSimulator(Simulator):
    """Asserts the radix backend's invariants after every iteration."""

    def _record_util(self) -> None:
        super()._record_util()
        self.kv._check()


def _run_checked(reqs, cfg):
    sim = _CheckedSimulator(cfg)
    res = sim.run(reqs)
    return sim, res


# ------------------------------------------------------------------ conservation
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunked", [True, False])
def test_radix_conservation_no_page_leaked(mode, chunked):
    reqs = trace_workload(multi_turn_chat_trace(120, seed=3), 6.0, seed=3)
    cfg = SimConfig(mode=mode, kv_backend="radix", chunked_prefill=chunked, kv_pages=260,
                    kv_page_size=16, max_num_batched_tokens=4096, max_num_seqs=16)
    sim, res = _run_checked(reqs, cfg)
    by_id = {r.request_id: r for r in reqs}
    for rec in res.records:
        assert rec.status == FINISHED
        assert rec.generated == by_id[rec.request_id].output_tokens
    ks = res.kv_stats
    assert ks["backend"] == "radix" and ks["num_sequences"] == 0 and ks["used_pages"] == 0
    assert ks["free_pages"] + ks["cached_pages"] == cfg.kv_pages
    kv = sim.kv
    assert kv.tree.protected_size() == 0  # every lock was released
    assert kv.drain() == cfg.kv_pages  # everything evicted: the pool is whole again
    assert kv.pool.num_free == kv.pool.num_pages and kv.tree.total_size() == 0
    kv.pool._check()
    assert res.metrics["prefix_hit_rate"] > 0.1
    if mode == "continuous" and chunked:
        assert res.metrics["preemptions"] > 0  # the small pool forces recomputation


def test_radix_synthetic_ids_above_uint32():
    # Synthetic ids are (request_id + 1) * 2**32 + position: remapped, never shared.
    reqs = synthetic_workload(60, 20.0, prompt=LengthDist("uniform", low=8, high=80),
                              output=LengthDist("uniform", low=1, high=20), seed=2)
    sim, res = _run_checked(reqs, SimConfig(kv_backend="radix", kv_pages=64, kv_page_size=4,
                                            max_num_seqs=8, max_num_batched_tokens=256))
    assert res.metrics["completed"] == 60
    assert res.metrics["prefix_hit_rate"] == 0.0
    assert sim.kv.drain() == 64
    assert res.kv_stats["distinct_token_codes"] == sum(
        r.prompt_tokens + r.output_tokens for r in reqs)


def test_radix_large_trace_ids_share_prefixes():
    # Token ids far above 2**32 that repeat must still match each other.
    base = np.int64(7) << 40
    shared = base + np.arange(64, dtype=np.int64)
    reqs = []
    for i in range(6):
        ids = np.concatenate((shared, base + 1000 + 10 * i + np.arange(10, dtype=np.int64)))
        reqs.append(SimRequest(i, 1.0 * i, 70, 4, token_ids=ids))
    res = simulate(reqs, SimConfig(kv_backend="radix", kv_pages=64, kv_page_size=16))
    recs = sorted(res.records, key=lambda r: r.request_id)
    assert recs[0].cached_tokens == 0
    assert all(r.cached_tokens == 64 for r in recs[1:])  # 4 whole pages of the shared prefix


def test_token_remap():
    m = TokenRemap()
    a = m.encode(np.array([5, 2**40, 5, 2**63 - 1], dtype=np.int64))
    assert a.dtype == np.uint32 and a[0] == a[2] and len(set(a.tolist())) == 3
    f = m.fresh(3)
    assert set(f.tolist()).isdisjoint(a.tolist())
    b = m.encode(np.array([2**40, 9]))
    assert b[0] == a[1] and b[1] not in set(a.tolist()) | set(f.tolist())
    assert len(m) == 7
    assert m.encode(np.array([5, 9]))[0] == a[0]  # table path agrees with the mixed path
    neg = m.encode(np.array([-3, 5, -3]))
    assert neg[0] == neg[2] and neg[1] == a[0] and len(m) == 8
    assert m.encode(np.array([], dtype=np.int64)).size == 0
    with pytest.raises(TypeError, match="integers"):
        m.encode(np.array([1.5]))
    m._next = (1 << 32) - 1
    with pytest.raises(ValueError, match="2\\*\\*32"):
        m.fresh(2)


# ----------------------------------------------------- the backend's life cycle
def _ids(b, lo, hi):
    return b.remap.encode(np.arange(lo, hi))


def test_radix_lock_while_running_unlock_when_done():
    b = RadixBackend(page_size=4, max_pages=16)
    b.allocate(0, _ids(b, 0, 12))
    b.free(0, computed=12)  # 3 pages into the tree, unlocked
    assert b.tree.evictable_size() == 12 and b.tree.protected_size() == 0
    hit = b.allocate(1, _ids(b, 0, 10))  # matches 2 whole pages
    assert hit == 8
    assert b.tree.protected_size() == 8  # the matched path is locked
    assert b.tree.evict(100).full_evicted == 4  # only the unlocked leaf can go
    b._check()
    b.free(1, computed=10)
    assert b.tree.protected_size() == 0
    b._check()
    assert b.drain() == 16


def test_radix_cache_prefill_moves_lock_and_shares():
    b = RadixBackend(page_size=4, max_pages=16)
    b.allocate(0, _ids(b, 0, 10))
    b.cache_prefill(0, 10)  # 2 whole pages into the tree, locked by request 0
    assert b.tree.protected_size() == 8 and b.tree.evictable_size() == 0
    assert b.allocate(1, _ids(b, 0, 9)) == 8  # hits request 0's pages while it runs
    assert b.active_pages() == 3 + 1  # 2 shared + 1 own each
    b._check()
    b.free(0, 12)
    b.free(1, 9)
    b._check()
    assert b.tree.protected_size() == 0 and b.drain() == 16


def test_radix_duplicate_insert_frees_own_pages():
    b = RadixBackend(page_size=4, max_pages=16)
    b.allocate(0, _ids(b, 0, 8))
    b.allocate(1, _ids(b, 0, 8))  # same prompt, nothing cached yet: own pages
    b.free(0, 8)
    b.free(1, 8)  # its pages duplicate the tree's: freed, not leaked
    b._check()
    assert b.pool.num_used == 2 and b.drain() == 16


def test_radix_evicts_lru_before_raising_and_failed_allocate_changes_nothing():
    b = RadixBackend(page_size=4, max_pages=8)
    for i in range(4):  # four cached 2-page entries fill the pool
        b.allocate(i, _ids(b, 100 * i, 100 * i + 8))
        b.free(i, 8)
    assert b.pool.num_free == 0 and b.num_free_pages == 8
    b.allocate(10, _ids(b, 0, 4))  # locks one page of entry 0 (touches it)
    b.allocate(11, _ids(b, 1000, 1016))  # needs 4 pages: evicts LRU entries 1 and 2
    b._check()
    assert b.allocate(12, _ids(b, 300, 308)) == 8  # entry 3 survived (more recent)
    b.free(12, 8)
    before = (b.pool.num_free, b.tree.total_size(), b.tree.protected_size())
    with pytest.raises(CapacityError):
        b.allocate(13, _ids(b, 5000, 5040))  # 10 pages can never fit
    assert (b.pool.num_free, b.tree.total_size(), b.tree.protected_size()) == before
    assert 13 not in b.seqs
    b._check()
    b.append_tokens(11, _ids(b, 1016, 1020))  # grows into a 5th page (evicts entry 3)
    b._check()
    b.free(10, 4)
    b.free(11, 20)
    assert b.drain() == 8


def test_prefix_caching_off_never_matches():
    b = RadixBackend(page_size=4, max_pages=8, prefix_caching=False)
    b.allocate(0, _ids(b, 0, 8))
    b.free(0, 8)
    assert b.tree.total_size() == 0 and b.pool.num_free == 8
    assert b.allocate(1, _ids(b, 0, 8)) == 0


def test_make_backend():
    assert isinstance(make_backend("kvcache", 16, 8, True), KVCacheBackend)
    assert isinstance(make_backend("radix", 16, 8, True), RadixBackend)
    with pytest.raises(ValueError, match="kv_backend"):
        make_backend("paged", 16, 8, True)
    with pytest.raises(ValueError, match="kv_backend"):
        SimConfig(kv_backend="lru")


# ------------------------------------------------------------- in the simulator
def test_radix_prefix_hits_skip_prefill_like_kvcache():
    trace = multi_turn_chat_trace(150, seed=6)
    res = {}
    for backend, on in (("kvcache", False), ("kvcache", True), ("radix", True)):
        res[backend, on] = simulate(trace_workload(trace, 2.0, seed=6),
                                    SimConfig(kv_backend=backend, prefix_caching=on)).metrics
    off, hc, rx = res["kvcache", False], res["kvcache", True], res["radix", True]
    assert rx["prefix_hit_rate"] > 0.3 and off["prefix_hit_rate"] == 0.0
    assert abs(rx["prefix_hit_rate"] - hc["prefix_hit_rate"]) < 0.05
    assert rx["ttft_ms"]["mean"] < off["ttft_ms"]["mean"]
    assert rx["kv_pages_per_running_mean"] < off["kv_pages_per_running_mean"]
    assert rx["kv_backend"] == "radix" and off["kv_backend"] == "off"
    for m in (off, hc, rx):
        assert 0 < m["kv_pages_per_running_mean"] <= m["kv_pages_per_running_peak"]
        assert m["kv_active_pages_peak"] >= m["kv_active_pages_mean"] > 0
