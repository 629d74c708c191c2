"""Tests for llmds.sim: queueing-theory checks, conservation, determinism, bad configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmds.sim.arrivals import (
    LengthDist,
    SimRequest,
    SLOClass,
    arrival_times,
    synthetic_workload,
    trace_workload,
)
from llmds.sim.cost_model import CostModel
from llmds.sim.engine import MODES, POLICIES, SimConfig, Simulator, simulate
from llmds.sim.metrics import FINISHED, REJECTED
from llmds.sim.workloads import multi_turn_chat_trace


def _queue_waits(res):
    recs = sorted(res.records, key=lambda r: r.arrival)
    return np.array([(r.first_scheduled - r.arrival) for r in recs if r.status == FINISHED])


def _check_against(waits: np.ndarray, theory: float) -> None:
    """Mean wait within 4 batch-means standard errors (and 15%) of the formula."""
    burn = len(waits) // 20  # drop the empty-system warm-up
    w = waits[burn:]
    batches = np.array_split(w, 25)
    means = np.array([b.mean() for b in batches])
    se = means.std(ddof=1) / math.sqrt(len(means))
    mean = w.mean()
    assert abs(mean - theory) < 4 * se, (mean, theory, se)
    assert abs(mean - theory) < 0.15 * theory, (mean, theory)


# ------------------------------------------------------------- queueing theory
@pytest.mark.slow
def test_md1_mean_wait_matches_formula():
    lam, service = 6.0, 0.1  # rho = 0.6
    reqs = synthetic_workload(
        15000, lam, prompt=LengthDist("constant", mean=8),
        output=LengthDist("constant", mean=1), seed=11,
    )
    cfg = SimConfig(
        mode="micro_batch", policy="fcfs", max_num_seqs=1, max_wait_ms=0.0,
        cost=CostModel(service * 1000.0, 0.0, 0.0, 0.0), kv_pages=16,
    )
    res = simulate(reqs, cfg)
    rho = lam * service
    _check_against(_queue_waits(res), rho * service / (2 * (1 - rho)))
    # every batch held exactly one request
    assert res.scheduler_stats["mean_batch_size"] == 1.0


@pytest.mark.slow
def test_mm1_mean_wait_matches_formula():
    lam, mean_tokens, per_token_ms = 5.0, 1000.0, 0.1  # E[S] ~ 0.1 s, rho ~ 0.5
    reqs = synthetic_workload(
        15000, lam, prompt=LengthDist("exponential", mean=mean_tokens, high=10**6),
        output=LengthDist("constant", mean=1), seed=12,
    )
    cfg = SimConfig(
        mode="micro_batch", policy="fcfs", max_num_seqs=1, max_wait_ms=0.0,
        cost=CostModel(0.0, per_token_ms, 0.0, 0.0), kv_pages=2048, kv_page_size=64,
        prefix_caching=False,
    )
    res = simulate(reqs, cfg)
    es = mean_tokens * per_token_ms / 1000.0
    mu = 1.0 / es
    _check_against(_queue_waits(res), lam / mu / (mu - lam))


# --------------------------------------------------------------- conservation
def _conserved(reqs, res, cfg):
    by_id = {r.request_id: r for r in reqs}
    for rec in res.records:
        assert rec.status in (FINISHED, REJECTED)
        if rec.status == FINISHED:
            assert rec.generated == by_id[rec.request_id].output_tokens
            assert rec.first_token is not None and rec.finish >= rec.first_token >= rec.arrival
            assert len(rec.itls) == rec.generated - 1
        else:
            assert rec.generated == 0 and rec.reason
    assert len(res.records) == len(reqs)
    ks = res.kv_stats
    assert ks["num_sequences"] == 0 and ks["used_pages"] == 0
    assert ks["free_pages"] + ks["cached_pages"] == cfg.kv_pages
    assert res.scheduler_stats["queued"] == 0 and res.scheduler_stats["in_flight"] == 0
    m = res.metrics
    assert m["completed"] + m["num_rejected"] == len(reqs)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("chunked", [True, False])
def test_conservation_trace_with_preemption(mode, chunked):
    reqs = trace_workload(multi_turn_chat_trace(150, seed=3), 6.0, seed=3)
    cfg = SimConfig(mode=mode, chunked_prefill=chunked, kv_pages=260, kv_page_size=16,
                    max_num_batched_tokens=4096, max_num_seqs=16)
    res = simulate(reqs, cfg)
    _conserved(reqs, res, cfg)
    assert res.metrics["completed"] == len(reqs)
    assert res.metrics["prefix_hit_rate"] > 0.1  # shared system prompts and histories
    if mode == "continuous" and chunked:
        assert res.metrics["preemptions"] > 0  # the small pool forces recomputation


def test_conservation_with_admission_rejections():
    reqs = synthetic_workload(300, 50.0, seed=4)
    cfg = SimConfig(qps_limit=10.0, kv_pages=2048)
    res = simulate(reqs, cfg)
    _conserved(reqs, res, cfg)
    rej = res.metrics["rejected"]
    assert rej.get("rate_limited_requests", 0) > 0
    assert res.admission_stats is not None


def test_token_rate_rejects_too_large():
    reqs = synthetic_workload(20, 1.0, prompt=LengthDist("constant", mean=600),
                              output=LengthDist("constant", mean=10), seed=5)
    res = simulate(reqs, SimConfig(token_rate_limit=500.0, kv_pages=256))
    assert res.metrics["rejected"] == {"request_too_large": 20}
    assert res.metrics["completed"] == 0


def test_prefix_hits_skip_prefill_work():
    trace = multi_turn_chat_trace(120, seed=6)
    on = simulate(trace_workload(trace, 2.0), SimConfig(prefix_caching=True))
    off = simulate(trace_workload(trace, 2.0), SimConfig(prefix_caching=False))
    assert on.metrics["prefix_hit_rate"] > 0.3 and off.metrics["prefix_hit_rate"] == 0.0
    assert on.metrics["ttft_ms"]["mean"] < off.metrics["ttft_ms"]["mean"]


def test_metrics_basic_relations():
    reqs = synthetic_workload(
        200, 5.0, slo_classes=[SLOClass("interactive", 1.0, ttft_ms=200.0),
                               SLOClass("batch", 1.0, e2e_ms=30_000.0)], seed=7)
    res = simulate(reqs, SimConfig())
    m = res.metrics
    for key in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms"):
        d = m[key]
        assert d["p50"] <= d["p95"] <= d["p99"]
    assert m["goodput"] <= m["request_throughput"]
    assert set(m["slo_attainment_by_class"]) == {"interactive", "batch"}
    assert 0.0 <= m["kv_utilisation_mean"] <= m["kv_utilisation_max"] <= 1.0
    assert m["ttft_ms"]["mean"] <= m["e2e_ms"]["mean"]


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_runs(policy):
    reqs = synthetic_workload(60, 20.0, slo_classes=[SLOClass("i", ttft_ms=100.0),
                                                     SLOClass("b")], seed=8)
    for mode in MODES:
        res = simulate(reqs, SimConfig(mode=mode, policy=policy, kv_pages=1024))
        assert res.metrics["completed"] == 60


def test_micro_batch_waits_for_max_wait():
    # Two requests far apart, batch size 8: each waits exactly max_wait_ms.
    reqs = [SimRequest(0, 1.0, 16, 1), SimRequest(1, 5.0, 16, 1)]
    cfg = SimConfig(mode="micro_batch", max_num_seqs=8, max_wait_ms=50.0, kv_pages=8)
    res = simulate(reqs, cfg)
    for rec in res.records:
        assert rec.first_scheduled - rec.arrival == pytest.approx(0.05)


# ---------------------------------------------------------------- determinism
def test_deterministic_for_seed():
    def once(seed):
        reqs = trace_workload(multi_turn_chat_trace(80, seed=seed), 8.0, process="gamma",
                              cv=3.0, seed=seed)
        return simulate(reqs, SimConfig(kv_pages=300)).metrics

    a, b, c = once(1), once(1), once(2)
    assert a == b
    assert a != c


def test_arrivals():
    t = arrival_times(20000, 50.0, seed=0)
    assert np.all(np.diff(t) >= 0)
    assert 1 / np.diff(t).mean() == pytest.approx(50.0, rel=0.05)
    g = np.diff(arrival_times(20000, 50.0, "gamma", cv=3.0, seed=0))
    assert g.std() / g.mean() == pytest.approx(3.0, rel=0.15)
    assert 1 / g.mean() == pytest.approx(50.0, rel=0.1)
    rng = np.random.default_rng(0)
    u = LengthDist("uniform", low=3, high=9).sample(rng, 1000)
    assert u.min() == 3 and u.max() == 9
    e = LengthDist("exponential", mean=100.0).sample(rng, 20000)
    assert e.mean() == pytest.approx(100.0, rel=0.05)


# ----------------------------------------------------------------- cost model
def test_cost_model_fit_recovers_parameters():
    true = CostModel(4.0, 0.05, 2e-5, 5e-4)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        b = int(rng.integers(1, 4096))
        sq = float(rng.integers(0, b)) ** 2
        kv = int(rng.integers(0, 100_000))
        rows.append((b, sq, kv, true.iteration_ms(b, sq, kv) * (1 + rng.normal(0, 0.001))))
    m = CostModel.fit(rows)
    assert m.overhead_ms == pytest.approx(4.0, rel=0.05, abs=0.05)
    assert m.per_token_ms == pytest.approx(0.05, rel=0.05)
    assert m.prefill_quad_ms == pytest.approx(2e-5, rel=0.05)
    assert m.per_kv_token_ms == pytest.approx(5e-4, rel=0.05)


def test_cost_model_fit_bad_input():
    with pytest.raises(ValueError, match="at least 4"):
        CostModel.fit([(1, 1, 1, 1.0)])
    with pytest.raises(ValueError, match="rows of"):
        CostModel.fit([(1, 2), (3, 4), (5, 6), (7, 8)])
    with pytest.raises(ValueError, match="overhead_ms"):
        CostModel(overhead_ms=-1.0)


# ----------------------------------------------------------- bad configurations
def test_bad_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="rate"):
        arrival_times(10, -1.0)
    with pytest.raises(ValueError, match="rate"):
        synthetic_workload(10, 0.0)
    with pytest.raises(ValueError, match="process"):
        arrival_times(10, 1.0, "weibull")
    with pytest.raises(ValueError, match="policy"):
        SimConfig(policy="lifo")
    with pytest.raises(ValueError, match="mode"):
        SimConfig(mode="static")
    with pytest.raises(ValueError, match="kind"):
        LengthDist("zipf")
    with pytest.raises(ValueError, match="qps_limit"):
        SimConfig(qps_limit=-5.0)
    with pytest.raises(ValueError, match="kv_pages"):
        SimConfig(kv_pages=0)
    reqs = synthetic_workload(5, 1.0, prompt=LengthDist("constant", mean=1000), seed=0)
    with pytest.raises(ValueError, match="kv_pages=4"):
        Simulator(SimConfig(kv_pages=4, kv_page_size=16)).run(reqs)
    with pytest.raises(ValueError, match="chunked_prefill"):
        simulate(reqs, SimConfig(chunked_prefill=False, max_num_batched_tokens=512))
    with pytest.raises(ValueError, match="output_tokens"):
        SimRequest(0, 0.0, 10, 0)


@pytest.mark.slow
def test_bench_sim_quick_smoke():
    from llmds.bench import bench_sim
    from llmds.bench.harness import BenchContext

    rec = bench_sim.run(BenchContext(quick=True))
    assert rec["benchmark"] == "sim"
    caps = [r["capacity_vs_full"] for r in rec["rows"] if "capacity_vs_full" in r]
    assert caps and all(0.0 < c <= 1.0 + 1e-9 for c in caps)
    names = {r["name"] for r in rec["ratios"]}
    for exp in ("exp1:", "exp2:", "exp3:", "exp4:"):
        assert any(n.startswith(exp) for n in names), exp
    saved = [r for r in rec["ratios"] if "memory saved" in r["name"]]
    assert {r["name"].split(" vs ")[0] for r in saved} == {
        "exp3: memory saved by KVCache", "exp3: memory saved by RadixCache"}
    assert all(-1.0 < r["value"] < 1.0 for r in saved)
    setups = rec["params"]["setups"]
    assert setups[0] == bench_sim.GUESS  # (+ a100 and h100 when the profiles exist)
    exp1 = [r for r in rec["ratios"] if r["name"].startswith("exp1:")]
    assert {r["cost"] for r in exp1} == set(setups)
    for r in exp1:
        kind = r["cost_model"]["kind"]
        assert (kind == "guess") == (r["cost"] == bench_sim.GUESS)
        assert r["cost_model"]["overhead_ms"] > 0 if kind == "guess" else r["cost_model"]["gpu"]
        # goals only on the setup the claims are judged on
        assert (r["goal"] is not None) == (r["cost"] == bench_sim.CLAIMS_SETUP)
    mem_rows = [r for r in rec["rows"] if r.get("experiment") == "prefix_cache"]
    assert {r["cache"] for r in mem_rows} == {"off", "KVCache", "RadixCache"}
    assert {r["cost"] for r in mem_rows} == set(setups)


@pytest.mark.slow
@settings(max_examples=40)
@given(
    mode=st.sampled_from(MODES),
    policy=st.sampled_from(POLICIES),
    chunked=st.booleans(),
    prefix=st.booleans(),
    backend=st.sampled_from(["kvcache", "radix"]),
    page=st.sampled_from([1, 4, 16]),
    extra_pages=st.integers(0, 60),
    seqs=st.integers(1, 8),
    budget=st.integers(64, 600),
    rate=st.floats(0.5, 200.0),
    seed=st.integers(0, 10_000),
)
def test_conservation_random_configs(
    mode, policy, chunked, prefix, backend, page, extra_pages, seqs, budget, rate, seed
):
    reqs = synthetic_workload(
        25, rate, prompt=LengthDist("uniform", low=1, high=40),
        output=LengthDist("uniform", low=1, high=24),
        slo_classes=[SLOClass("i", ttft_ms=50.0), SLOClass("b")], seed=seed,
    )
    need = max(-(-(r.prompt_tokens + r.output_tokens) // page) for r in reqs)
    cfg = SimConfig(mode=mode, policy=policy, chunked_prefill=chunked, prefix_caching=prefix,
                    kv_backend=backend, kv_page_size=page, kv_pages=need + extra_pages,
                    max_num_seqs=seqs,
                    max_num_batched_tokens=budget, max_wait_ms=20.0)
    res = simulate(reqs, cfg)
    _conserved(reqs, res, cfg)
    assert res.metrics["completed"] == len(reqs)


@pytest.mark.parametrize("name", ["chat", "chat-bursty", "mixed-slo", "micro-batch",
                                  "overload-admission", "chat-radix", "tenants-fair"])
def test_scenarios_run_and_print(name):
    from llmds.sim import format_table, scenario

    reqs, cfg = scenario(name, 60, seed=1)
    res = simulate(reqs, cfg)
    assert res.metrics["completed"] + res.metrics["num_rejected"] == 60
    table = format_table(res.metrics)
    assert "ttft" in table and "goodput" in table


def test_unknown_scenario():
    from llmds.sim import scenario

    with pytest.raises(ValueError, match="scenario"):
        scenario("nope")
