"""Seed-style entry point: ``from benchmarks.bench_sim_cluster import benchmark_sim_cluster``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_sim_cluster
from llmds.bench.harness import BenchContext


def benchmark_sim_cluster(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the replica-cluster experiments (see :mod:`llmds.bench.bench_sim_cluster`).

    Four simulated A100 replicas behind round-robin, least-outstanding, cache-aware
    and oracle routers, with and without a shared prefix tier, on two chat traces;
    then the simulator's speed on 100,000 requests. Returns the result record.
    """
    return bench_sim_cluster.run(BenchContext(quick=quick, seed=seed))
