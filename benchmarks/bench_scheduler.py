"""Seed-style entry point: ``from benchmarks.bench_scheduler import benchmark_scheduler``."""

from __future__ import annotations

from typing import Any

from llmds.bench import bench_scheduler
from llmds.bench.harness import BenchContext


def benchmark_scheduler(quick: bool = False, repeat: int = 5, seed: int = 0) -> dict[str, Any]:
    """Run the Scheduler benchmark (vs a FCFS deque re-sorted per batch).

    Returns the result record: ``rows`` (requests/s per CPU-second, get_batch
    latency percentiles in ms, peak RSS) and ``ratios`` (ours / baseline).
    """
    return bench_scheduler.run(BenchContext(quick=quick, repeat=repeat, seed=seed))
