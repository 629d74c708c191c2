"""Replica clusters in the serving simulator (``llmds bench sim_cluster``).

Four replicas of the simulated server (Llama-2-7B on an A100-80GB, timed by Vidur's
GPU profiles, RadixCache KV with vLLM's pool size) behind each router of
:mod:`llmds.sim.cluster`: round-robin, least-outstanding-requests, SGLang-style
cache-aware (approximate per-replica prefix trees) and an oracle that sees the
replicas' real caches; each without and with a shared prefix tier (RDMA at 25 GB/s;
10 GbE at 1.25 GB/s at one load), on two multi-turn chat traces:

* ``default``: :func:`~llmds.sim.workloads.multi_turn_chat_trace`'s defaults (40%
  follow-ups, eight 500-token system prompts, which end up cached on every replica);
* ``follow-ups``: 60% follow-ups and 200-token system prompts, where affinity
  matters (the goal: cache-aware >= 1.3x round-robin's prefix hit rate and a lower
  TTFT p95 at the same load).

Load is a fraction of four times one replica's saturation throughput on the trace
with prefix caching off (0.5, 1.0, 1.5: prefix hits raise the real capacity, so 1.5
overloads only the routers that lose them). Goodput counts requests meeting a 200 ms
TTFT SLO. The oracle routes by the replicas' exact cache contents with the same rule;
it is not an upper bound: under memory pressure it loses a conversation's replica once
that replica evicted the history, where the router's own tree still sends it back. Rows:
prefix hit rate (and the part the tier supplied), TTFT p50/p95, goodput, the
router's decisions. Last, the simulator's own speed: 100,000 requests of the default
trace on four replicas with the cache-aware router, CPU seconds of one run (goal:
under 60 s on one core; the trace is built outside the timing).

No peer simulates clusters from its own structures; Vidur's cluster simulator is not
importable here (recorded as skipped).
"""

from __future__ import annotations

import time
from typing import Any

from llmds.bench import harness
from llmds.bench.harness import BenchContext
from llmds.sim import SimConfig, SLOClass, simulate, trace_workload
from llmds.sim.cluster import NETWORKS, ROUTERS, Cluster, SharedTier
from llmds.sim.workloads import multi_turn_chat_trace

NAME = "sim_cluster"
TITLE = ("Replica clusters (simulated): 4 replicas behind routers, shared prefix tier, "
         "simulator speed")
REPLICAS = 4
_SLO = (SLOClass("chat", 1.0, ttft_ms=200.0),)
_TRACES: dict[str, dict[str, Any]] = {
    "default": {}, "follow-ups": {"follow_up_prob": 0.6, "system_prompt_tokens": 200}}
_RDMA, _TEN_GBE = NETWORKS["rdma-25GB/s"], NETWORKS["10GbE-1.25GB/s"]


def _row(trace: str, load: float, rate: float, router: str, tier: SharedTier | None,
         m: dict[str, Any], cpu_s: float) -> dict[str, Any]:
    r = m["router"]
    return {"impl": "llmds.sim.cluster", "experiment": "router", "trace": trace,
            "load": load, "offered_rate": rate, "router": router,
            "tier": "none" if tier is None else tier.name,
            "prefix_hit_rate": m["prefix_hit_rate"], "remote_hit_rate": m["remote_hit_rate"],
            "p50_ttft_ms": m["ttft_ms"]["p50"], "p95_ttft_ms": m["ttft_ms"]["p95"],
            "goodput": m["goodput"], "slo_attainment": m["slo_attainment"],
            "preemptions": m["preemptions"], "cache_routed": r["cache_hit"],
            "balance_routed": r["imbalanced"], "tier_fetches": r.get("fetches", 0),
            "routed_max_share": max(x["routed"] for x in m["replicas"]) / m["num_requests"],
            "num_extrapolated": m["num_extrapolated"], "cpu_s": cpu_s}


def _experiment(ctx: BenchContext, cfg: SimConfig, trace_name: str, n: int,
                loads: list[float]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every router x tier at each load on one trace: rows and ratios."""
    trace = multi_turn_chat_trace(n, seed=ctx.seed, **_TRACES[trace_name])
    off = SimConfig(**{**_fields(cfg), "prefix_caching": False})
    one = simulate(trace_workload(trace, 1e5, seed=ctx.seed), off).metrics
    capacity = REPLICAS * one["request_throughput"]
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    for load in loads:
        reqs = trace_workload(trace, load * capacity, slo_classes=_SLO, seed=ctx.seed)
        by: dict[tuple[str, str], dict[str, Any]] = {}
        tiers: list[SharedTier | None] = [None, _RDMA]
        if load == loads[len(loads) // 2]:
            tiers.append(_TEN_GBE)
        for tier in tiers:
            for router in ROUTERS:
                c0 = time.process_time()
                m = Cluster(cfg, REPLICAS, router, tier).run(reqs).metrics
                row = _row(trace_name, load, load * capacity, router, tier, m,
                           time.process_time() - c0)
                by[router, row["tier"]] = row
                rows.append(row)
        ratios += _ratios(trace_name, load, by)
    return rows, ratios


def _ratios(trace: str, load: float, by: dict[tuple[str, str], dict[str, Any]]
            ) -> list[dict[str, Any]]:
    ca, rr, oracle = by["cache_aware", "none"], by["round_robin", "none"], by["oracle", "none"]
    goal = trace == "follow-ups"
    where = f"{trace} trace, load {load}"
    out = [
        {"name": f"prefix hit rate cache-aware/round-robin, {where}",
         "value": ca["prefix_hit_rate"] / rr["prefix_hit_rate"],
         "goal": 1.3 if goal else None, "trace": trace, "load": load},
        {"name": f"TTFT p95 cache-aware/round-robin, {where}",
         "value": ca["p95_ttft_ms"] / rr["p95_ttft_ms"], "goal": 1.0 if goal else None,
         "higher_is_better": False, "trace": trace, "load": load},
        {"name": f"prefix hit rate cache-aware/oracle, {where}",
         "value": ca["prefix_hit_rate"] / oracle["prefix_hit_rate"], "goal": None,
         "trace": trace, "load": load},
        {"name": f"prefix hit rate round-robin with/without RDMA tier, {where}",
         "value": by["round_robin", _RDMA.name]["prefix_hit_rate"] / rr["prefix_hit_rate"],
         "goal": None, "trace": trace, "load": load},
    ]
    return out


def _fields(cfg: SimConfig) -> dict[str, Any]:
    return {"cost": cfg.cost, "kv_pages": cfg.kv_pages, "kv_backend": cfg.kv_backend}


def _speed(ctx: BenchContext, cfg: SimConfig, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """CPU seconds to simulate ``n`` chat requests on 4 cache-aware replicas (one run)."""
    trace = multi_turn_chat_trace(n, seed=ctx.seed)
    off = SimConfig(**{**_fields(cfg), "prefix_caching": False})
    one = simulate(trace_workload(trace[: min(n, 2000)], 1e5, seed=ctx.seed), off).metrics
    reqs = trace_workload(trace, 0.8 * REPLICAS * one["request_throughput"], seed=ctx.seed)
    del trace
    c0, w0 = time.process_time(), time.perf_counter()
    m = Cluster(cfg, REPLICAS, "cache_aware").run(reqs).metrics
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    row = {"impl": "llmds.sim.cluster", "experiment": "speed", "trace": "default",
           "router": "cache_aware", "replicas": REPLICAS, "num_requests": n, "cpu_s": cpu,
           "wall_s": wall, "requests_per_cpu_s": n / cpu, "iterations": m["num_iterations"],
           "completed": m["completed"]}
    per_100k = cpu * 100_000 / n
    ratio = {"name": f"simulator CPU s per 100,000 requests, {REPLICAS} replicas"
                     + ("" if n == 100_000 else f" (scaled from {n:,})"),
             "value": per_100k, "goal": 60.0, "higher_is_better": False,
             "num_requests": n}
    return row, ratio


def run(ctx: BenchContext) -> dict[str, Any]:
    """The router experiment on both traces, then the speed run."""
    data = ctx.dataset("serving", "vidur") or ctx.data_dir
    try:
        cfg = SimConfig.on_gpu("a100", "llama-2-7b", profiles_dir=data, kv_backend="radix")
    except FileNotFoundError as e:
        return harness.result_record(NAME, TITLE, ctx=ctx, params={}, data="none", rows=[],
                                     notes=[f"skipped: GPU profiles not found ({e})"])
    n = 600 if ctx.quick else 3000
    loads = [1.0] if ctx.quick else [0.5, 1.0, 1.5]
    speed_n = 5_000 if ctx.quick else 100_000
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    total = len(_TRACES) + 1
    for i, name in enumerate(_TRACES):
        ctx.progress(i, total, f"routers on the {name} trace")
        more_rows, more_ratios = _experiment(ctx, cfg, name, n, loads)
        rows += more_rows
        ratios += more_ratios
    ctx.progress(total - 1, total, f"speed: {speed_n:,} requests on {REPLICAS} replicas")
    row, ratio = _speed(ctx, cfg, speed_n)
    rows.append(row)
    ratios.append(ratio)
    rows.append({"impl": "vidur", "skipped": harness.skipped("vidur")})
    ctx.progress(total, total, "done")
    return harness.result_record(
        NAME, TITLE, ctx=ctx,
        params={"replicas": REPLICAS, "num_requests": n, "loads": loads,
                "traces": {k: v or "defaults" for k, v in _TRACES.items()},
                "gpu": "a100", "model": "llama-2-7b", "kv_backend": "radix",
                "kv_pages_per_replica": cfg.kv_pages, "slo_ttft_ms": _SLO[0].ttft_ms,
                "tiers": {t.name: {"bandwidth_gb_s": t.bandwidth_gb_s,
                                   "request_latency_ms": t.request_latency_ms,
                                   "capacity_tokens": t.capacity_tokens}
                          for t in (_RDMA, _TEN_GBE)},
                "speed_requests": speed_n},
        data=f"seeded multi-turn chat traces (seed {ctx.seed}), Poisson arrivals",
        rows=rows, ratios=ratios,
        notes=["Load: a fraction of 4 x one replica's saturation throughput with prefix "
               "caching off. Prefix hit rate: prompt tokens not prefilled at first "
               "scheduling / prompt tokens; remote_hit_rate: the part fetched from the tier.",
               "cache_aware follows sgl-router's rule (imbalanced when max - min outstanding "
               "> 64 and max > 1.5 x min: least loaded; else the longest match in the "
               "router's own approximate tree if above 0.3 of the prompt, else the smallest "
               "tree); oracle applies it to the replicas' real caches.",
               "Shared tier: a fetch costs 0.08 ms (one pipelined Redis round trip on "
               "loopback, llmds' Redis benchmark) + KV bytes / bandwidth (25 GB/s RDMA, "
               "1.25 GB/s 10 GbE; stated, not measured: no per-page remote fetch figure was "
               "available); pages are fetched only when faster than recomputing them.",
               "Speed: CPU seconds of one Cluster.run (trace built outside the timing)."],
    )
