"""Seed-style entry point: ``from benchmarks.bench_remote_tier import benchmark_remote_tier``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_remote_tier
from llmds.bench.harness import BenchContext


def benchmark_remote_tier(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the shared-tier experiment (see :mod:`llmds.bench.bench_remote_tier`): two
    replicas on the chat trace, isolated vs shared Redis tier vs one cache, and the
    remote fetch cost. Rows are skipped, with the reason, without redis-server or
    redis-py."""
    return bench_remote_tier.run(BenchContext(quick=quick, seed=seed))
