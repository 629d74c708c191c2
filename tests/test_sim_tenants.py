"""Tenants in llmds.sim: per-tenant admission buckets, SFQ fair share, per-tenant metrics."""

from __future__ import annotations

import pytest

from llmds.sim import SimConfig, SLOClass, Tenant, simulate, synthetic_workload
from llmds.sim.metrics import FINISHED

_SLO = [SLOClass("interactive", ttft_ms=2000.0)]
_TENANTS = (Tenant("noisy", share=4.0), Tenant("quiet", share=1.0))


@pytest.fixture(scope="module")
def capacity() -> float:
    return simulate(synthetic_workload(300, 1e5, seed=0), SimConfig()).metrics[
        "request_throughput"]


@pytest.fixture(scope="module")
def overload(capacity):
    # The noisy tenant sends 4x the quiet one's requests, 1.5x capacity in total.
    return synthetic_workload(700, 1.5 * capacity, tenants=_TENANTS, slo_classes=_SLO, seed=1)


def test_workload_assigns_tenants_by_share(overload):
    quiet = sum(r.tenant == "quiet" for r in overload) / len(overload)
    assert quiet == pytest.approx(0.2, abs=0.05)
    # adding tenants leaves every other draw of the workload unchanged
    plain = synthetic_workload(700, 10.0, slo_classes=_SLO, seed=1)
    tagged = synthetic_workload(700, 10.0, tenants=_TENANTS, slo_classes=_SLO, seed=1)
    assert [(r.arrival, r.prompt_tokens, r.slo_class) for r in plain] == [
        (r.arrival, r.prompt_tokens, r.slo_class) for r in tagged]
    assert {r.tenant for r in plain} == {0}


def test_fair_share_protects_the_quiet_tenant(overload):
    fcfs = simulate(overload, SimConfig(policy="fcfs", tenants=_TENANTS)).metrics
    fair = simulate(overload, SimConfig(policy="fair", tenants=_TENANTS)).metrics
    for m in (fcfs, fair):
        bt = m["by_tenant"]
        assert set(bt) == {"noisy", "quiet"}
        assert sum(t["completed"] for t in bt.values()) == m["completed"] == len(overload)
        assert sum(t["goodput"] for t in bt.values()) == pytest.approx(m["goodput"])
    q_fcfs, q_fair = fcfs["by_tenant"]["quiet"], fair["by_tenant"]["quiet"]
    # FCFS makes the quiet tenant wait behind the noisy backlog; SFQ serves it at its share.
    assert q_fair["ttft_ms"]["p95"] < 0.2 * q_fcfs["ttft_ms"]["p95"]
    assert q_fair["goodput"] > 2 * q_fcfs["goodput"]
    assert q_fair["slo_attainment"] > 0.9


def test_fair_share_follows_weights():
    tenants = (Tenant("a", weight=2.0), Tenant("b", weight=1.0))
    reqs = synthetic_workload(400, 1e5, tenants=tenants, seed=2)  # all backlogged at once
    res = simulate(reqs, SimConfig(policy="fair", tenants=tenants, max_num_seqs=8))
    first = sorted(res.records, key=lambda r: r.first_scheduled)[:150]
    share_a = sum(r.tenant == "a" for r in first) / len(first)
    assert 0.58 < share_a < 0.75  # ~2/3 of the token service while both are backlogged
    # FCFS ignores weights: about half
    res = simulate(reqs, SimConfig(policy="fcfs", tenants=tenants, max_num_seqs=8))
    first = sorted(res.records, key=lambda r: r.first_scheduled)[:150]
    assert abs(sum(r.tenant == "a" for r in first) / len(first) - 0.5) < 0.1


def test_per_tenant_admission_bucket(overload, capacity):
    tenants = (Tenant("noisy", share=4.0, qps_limit=0.5 * capacity), Tenant("quiet", share=1.0))
    res = simulate(overload, SimConfig(policy="fcfs", tenants=tenants))
    m = res.metrics
    bt = m["by_tenant"]
    assert bt["quiet"]["rejected"] == 0 and bt["noisy"]["rejected"] > 0
    assert m["rejected"] == {"tenant_rate_limited_requests": bt["noisy"]["rejected"]}
    assert set(res.tenant_admission_stats) == {"noisy"}
    assert res.admission_stats is None  # no global bucket configured
    for rec in res.records:
        assert rec.status == FINISHED or rec.tenant == "noisy"
    # the bucket keeps the server below saturation: the quiet tenant meets its SLO
    assert bt["quiet"]["slo_attainment"] > 0.9


def test_tenant_and_global_buckets_together(capacity):
    tenants = (Tenant("a", token_rate_limit=2000.0), Tenant("b"))
    reqs = synthetic_workload(200, 4 * capacity, tenants=tenants, seed=3)
    res = simulate(reqs, SimConfig(tenants=tenants, qps_limit=capacity))
    rej = res.metrics["rejected"]
    assert rej.get("tenant_rate_limited_tokens", 0) > 0 and rej.get("rate_limited_requests", 0) > 0
    m = res.metrics
    assert m["completed"] + m["num_rejected"] == 200


def test_single_tenant_has_no_breakdown():
    m = simulate(synthetic_workload(30, 5.0, seed=4), SimConfig()).metrics
    assert "by_tenant" not in m


def test_bad_tenants():
    with pytest.raises(ValueError, match="share"):
        Tenant("a", share=0.0)
    with pytest.raises(ValueError, match="weight"):
        Tenant("a", weight=-1.0)
    with pytest.raises(ValueError, match="qps_limit"):
        Tenant("a", qps_limit=float("inf"))
    with pytest.raises(ValueError, match="name"):
        Tenant("")
    with pytest.raises(ValueError, match="distinct"):
        SimConfig(tenants=(Tenant("a"), Tenant("a")))
    with pytest.raises(TypeError, match="tenants"):
        SimConfig(tenants=[Tenant("a")])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct"):
        synthetic_workload(5, 1.0, tenants=[Tenant("a"), Tenant("a")])
