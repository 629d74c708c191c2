"""Seed-style entry point: ``from benchmarks.bench_redis import benchmark_redis``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_redis
from llmds.bench.harness import BenchContext


def benchmark_redis(quick: bool = False, seed: int = 0) -> dict[str, Any]:
    """Run the Redis tier benchmark (see :mod:`llmds.bench.bench_redis`): page-key
    lookups, 64 KiB page transfers, admission decisions against ``limits`` and pages
    under ``allkeys-lru``. Rows are skipped, with the reason, without redis-server or
    redis-py."""
    return bench_redis.run(BenchContext(quick=quick, seed=seed))
