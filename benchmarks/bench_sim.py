"""Seed-style entry point: ``from benchmarks.bench_sim import benchmark_sim``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_sim
from llmds.bench.harness import BenchContext


def benchmark_sim(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the serving-simulator ``max_wait_ms`` sweep (micro-batching mode).

    Returns the result record: ``rows`` (throughput relative to always-full
    batches, p95 queue wait / E2E / TTFT per load and max_wait_ms) and ``ratios``.
    """
    return bench_sim.run(BenchContext(quick=quick, seed=seed))
